"""Writes that block in the kernel until a VFIO user lets go, made the bounded way.

The library makes writes that can block (``unbind``, ``sriov_numvfs`` 0) through
a helper process and waits for it with a deadline (:meth:`hostdev.linux.sysfs.Sysfs.write`
with ``blocking``). A forked helper would write into its own copy of pyfakefs's
in-memory filesystem, so the fake kernel takes these writes over through the
seam :data:`hostdev.linux.sysfs.write_starters`:

* the write runs at once, in the caller's process, through the ordinary write
  path (faults, records and crashes apply as to any write);
* when a VFIO user holds a device the write would wait for, the write is parked
  instead of raising :class:`~hostdev.testing.events.VfioWouldBlock`: a helper
  process shows in ``/proc`` (with a ``stat`` file), and the caller's wait runs
  out at its deadline;
* when the last such holder releases, the write completes (its store handler
  runs then, and it is recorded in ``writes``), and the helper exits.

A write made without ``blocking`` still raises VfioWouldBlock, so tests keep
catching writes the library makes unguarded. Not modelled: a real kernel
removes the ``driver`` link (and, for ``sriov_numvfs`` 0, the VFs before the
held one) at once and applies the rest later; here all of it waits.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator

from pyfakefs.fake_file import FakeFile
from pyfakefs.fake_os import FakeOsModule

from hostdev.linux import sysfs as sysfs_module
from hostdev.testing.active import active_state, track
from hostdev.testing.dispatch import SysfsNode, write
from hostdev.testing.events import WriteParked
from hostdev.testing.model import KernelState
from hostdev.testing.vfio_users import VfioProcess

_INSTALL_LOCK = threading.Lock()
#: Pids of fake helper processes (above the range fake VFIO users get).
_FIRST_HELPER_PID = 30000


def register(state: KernelState) -> None:
    """Take over the bounded writes made on ``state``'s filesystem."""
    with _INSTALL_LOCK:
        if _starter not in sysfs_module.write_starters:
            sysfs_module.write_starters.append(_starter)
    track(state)


def _starter(path: str, data: bytes) -> FakeHelperWrite | None:
    """The seam: a write through a filesystem with a fake kernel runs here."""
    state = active_state()
    if state is None:
        return None
    return FakeHelperWrite(state, path, data)


class FakeHelperWrite:
    """A write started through the seam; implements :class:`hostdev.linux.sysfs.WriteHandle`."""

    def __init__(self, state: KernelState, path: str, data: bytes) -> None:
        self.state = state
        self.path = path
        self.data = data
        self.written = 0
        self.result: int | None = None
        self._target: tuple[SysfsNode, FakeFile] | None = None
        self._done = threading.Condition(state.lock)
        with state.lock:
            pid = _FIRST_HELPER_PID
            while pid in state.processes:
                pid += 1
            self.process = state.processes[pid] = VfioProcess(state, pid, "python3")
            self.pid = pid
            start = 100000 + len(state.writes)
            self.start: int | None = start
            assert self.process.dir is not None, "a helper is a process /proc shows"
            state.vfs.file(self.process.dir, "stat", _stat_line(pid, "D", start), 0o444)
            fake_os = FakeOsModule(state.fs)
            # A test's write watch may make a bounded write of its own inside this one.
            outer = state.bounded
            state.bounded = self
            try:
                fd = fake_os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
                try:
                    written = fake_os.write(fd, data)
                finally:
                    fake_os.close(fd)
            except WriteParked:
                state.parked.append(self)
            except OSError as exc:
                self._finish(exc.errno or errno.EIO, 0)
            except BaseException:  # a simulated crash: the process dies, its helper too
                self._finish(0, len(data))
                raise
            else:
                self._finish(0, written)
            finally:
                state.bounded = outer

    def park(self, node: SysfsNode, fake_file: FakeFile) -> None:
        """Called by the write path: the store waits for VFIO users to let go."""
        self._target = (node, fake_file)

    @property
    def blocked(self) -> bool:
        """The write has not returned yet (its helper is still in /proc)."""
        return self.result is None

    def wait(self, timeout: float) -> int | None:
        """0 when the write succeeded, its errno when it failed, None if still blocked."""
        with self._done:
            self._done.wait_for(lambda: self.result is not None, max(0.0, timeout))
            return self.result

    def resume(self) -> None:
        """Retry the parked store (holders went away); it may park again."""
        assert self._target is not None
        node, fake_file = self._target
        state = self.state
        state.bounded = self
        try:
            write(node, fake_file, self.data)
        except WriteParked:
            return
        except OSError as exc:
            self._finish(exc.errno or errno.EIO, 0)
        else:
            self._finish(0, len(self.data))
        finally:
            state.bounded = None
        state.parked.remove(self)

    def _finish(self, result: int, written: int) -> None:
        self.written = written
        self.result = result
        self.process.exit()  # the helper exits as soon as its write returns
        self._done.notify_all()

    def __repr__(self) -> str:
        state = "blocked" if self.blocked else f"done ({self.result})"
        return f"FakeHelperWrite(pid={self.pid}, {self.data!r} to {self.path}, {state})"


def parked(state: KernelState) -> Iterator[FakeHelperWrite]:
    """The writes still blocked."""
    return iter(list(state.parked))


def _stat_line(pid: int, status: str, start: int) -> str:
    """``/proc/PID/stat`` as the kernel prints it (start time is field 22)."""
    fields = [str(pid), "(python3)", status, "1", str(pid), str(pid)] + ["0"] * 15
    fields.append(str(start))
    return " ".join(fields + ["0"] * 30) + "\n"
