"""(d) A VFIO user that appears after every check: the unbind blocks, the caller does not.

The checks are skipped in the library process (its guard does nothing, as if the user
opened the device just after it looked), while a real VFIO user holds the VF's device
fd. The kernel then blocks the ``unbind`` write until the user lets go. The library
must give control back at its write deadline with DeviceBusy, leave a helper process
(not its own child) blocked in the kernel, keep the write journaled and not touch the
device meanwhile; once the user exits, the helper must be gone and reconcile must
record where the VF ended up.

Every library call runs in a forked child and is waited for with a deadline, so a
regression fails this test instead of hanging the guest.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hostdev.address import PciAddress
from hostdev.errors import DeviceBusy, WriteBlocked
from hostdev.linux import binding, vfio
from hostdev.linux.sysfs import Sysfs, start_helper_write
from hostdev.manager import HostdevManager

from . import guest
from .observing import Observer
from .test_library_processes import Forked, forked

pytestmark = pytest.mark.realkernel

HOLDER = Path(__file__).with_name("vfio_holder.py")
WRITE_TIMEOUT = 2.0
#: The whole test, whatever happens (SIGALRM in this process; library calls in children).
HARD_LIMIT = 150




def _process_state(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _reader(path: Path) -> tuple[int, int]:
    """Fork a process that reads ``path`` once and then says so on a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            fd = os.open(path, os.O_RDONLY)
            os.read(fd, 4096)
            os.write(write_end, b"x")
        finally:
            os._exit(0)
    os.close(write_end)
    return pid, read_end


def _answered(reader: tuple[int, int], timeout: float) -> bool:
    ready, _, _ = select.select([reader[1]], [], [], timeout)
    return bool(ready)


def _skip_checks() -> None:
    """In the child only: no holder check and no guard, as if the user came just after."""
    vfio.wait_released = lambda *args, **kwargs: None  # type: ignore[assignment]
    original = binding.reprobe

    def reprobe(sysfs: Any, address: Any, current: Any, override: Any,
                guard: Any = None) -> Any:
        return original(sysfs, address, current, override, None)

    binding.reprobe = reprobe  # type: ignore[assignment]


def _library_child(state_dir: str, vf: str) -> Callable[..., int]:
    def body(send: Callable[[dict[str, Any]], None], wait_go: Callable[[], None]) -> int:
        _skip_checks()
        mgr = HostdevManager(root="/", state_dir=state_dir, lock_timeout=5.0,
                             release_timeout=0.5, write_timeout=WRITE_TIMEOUT)
        send({"ready": os.getpid()})
        wait_go()
        started = time.monotonic()
        try:
            mgr.node_reattach(vf)
            send({"returned": True, "seconds": time.monotonic() - started})
            return 1
        except WriteBlocked as exc:
            send({"blocked": exc.pid, "message": str(exc),
                  "seconds": time.monotonic() - started})
        # A second manager while the user still holds the VF: it must not hang either.
        other = HostdevManager(root="/", state_dir=state_dir, lock_timeout=5.0,
                               release_timeout=0.5, write_timeout=WRITE_TIMEOUT)
        started = time.monotonic()
        report = other.reconcile()
        send({"reconcile": report.model_dump(mode="json"),
              "seconds": time.monotonic() - started})
        started = time.monotonic()
        try:
            other.node_reattach(vf)
            send({"second": "returned"})
        except DeviceBusy as exc:
            send({"second": type(exc).__name__, "message": str(exc),
                  "seconds": time.monotonic() - started})
        return 0
    return body


def _start_holder(vf: str) -> subprocess.Popen[str]:
    group = str(guest.group_of(vf))
    proc = subprocess.Popen([sys.executable, str(HOLDER), vf, group], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = guest.LineReader(proc.stdout).readline(60.0)
    assert line is not None, "the VFIO holder said nothing"
    report = json.loads(line)
    assert report.get("error") is None, report
    assert "device" in report, report
    return proc


def test_blocked_unbind_returns_at_the_deadline(pf: str, manager: HostdevManager,
                                                observe: Observer) -> None:
    """(d) unbind blocked by a late VFIO user: control back at the deadline, then recorded."""
    with guest.hard_limit(HARD_LIMIT):
        vf = guest.enable_vfs(1, autoprobe=False)[0]
        manager.node_detach(vf)
        assert guest.driver_of(vf) == "vfio-pci"
        state_dir = str(manager.store.dir)
        holder = _start_holder(vf)
        readers: dict[str, tuple[int, int]] = {}
        try:
            with forked(Forked("library", _library_child(state_dir, vf))) as (child,):
                assert "ready" in child.message(60.0)
                child.go()
                first = child.message(WRITE_TIMEOUT + 60.0)
                observe.record("node_reattach with a late VFIO user", first)
                assert "blocked" in first, first
                assert WRITE_TIMEOUT <= first["seconds"] < WRITE_TIMEOUT + 30
                assert "unbind from vfio-pci is blocked in the kernel until the VFIO user" \
                       " releases it" in first["message"]
                helper = int(first["blocked"])
                state = _process_state(helper)
                observe.record("helper while blocked (state, parent is the caller)",
                               None if state is None else [state[0], state[1] == child.pid])
                assert state is not None, "the helper is not blocked in the kernel"
                assert state[1] != child.pid, "the helper is a child of the caller"
                observe.record("driver link while the unbind is blocked", guest.driver_of(vf))
                blocked_lines = [ln for ln in guest.kmsg_lines() if "blocked until" in ln]
                observe.record("kernel log while blocked", blocked_lines[-2:])
                # Which reads wait behind the blocked unbind (they take the device lock)?
                readers = {name: _reader(guest.dev(vf) / name)
                           for name in ("driver_override", "uevent", "vendor")}
                observe.record("reads that wait for the blocked unbind",
                               sorted(n for n, r in readers.items() if not _answered(r, 2.0)))
                second = child.message(60.0)
                observe.record("reconcile while the user holds on", second)
                assert "reconcile" in second, second
                assert second["seconds"] < 30
                assert any(vf in line for line in second["reconcile"]["blocked"]), second
                assert second["reconcile"]["driver_changed"] == [], second
                third = child.message(60.0)
                assert third.get("second") == "DeviceBusy", third
                assert "still blocked in the kernel" in third["message"]
                assert child.wait(60.0) == 0
            journal = json.loads((Path(state_dir) / "intent.json").read_text())
            assert [p["pid"] for p in journal["pending"]] == [helper]
        finally:
            guest.release_holder(holder)
        assert guest.wait_until(lambda: _process_state(helper) is None
                                or _process_state(helper) == ("Z", 1), 30.0), \
            f"helper {helper} still there after the user let go: {_process_state(helper)}"
        for pid, fd in readers.values():  # they return once the unbind finished
            os.close(fd)
            guest.wait_until(functools.partial(_reaped, pid), 30.0)
        observe.record("helper after the user let go", _process_state(helper))
        fresh = HostdevManager(root="/", state_dir=state_dir, lock_timeout=5.0,
                               release_timeout=0.5, write_timeout=WRITE_TIMEOUT)
        report = fresh.reconcile()
        observe.record("reconcile after the user let go", report.model_dump(mode="json"))
        assert any(vf in line and "has finished" in line for line in report.recovered), report
        assert guest.driver_of(vf) != "vfio-pci" and guest.override_of(vf) == "(null)"
        assert fresh.lists().find(PciAddress.parse(vf)) is None, "the lists do not say the truth"
        assert not (Path(state_dir) / "intent.json").exists()
        assert not fresh.reconcile().changed
        # No process of ours stays behind: no child of this test is left unreaped.
        with contextlib.suppress(ChildProcessError):
            assert os.waitpid(-1, os.WNOHANG) == (0, 0)


def test_cost_of_the_helper(pf: str, manager: HostdevManager, observe: Observer) -> None:
    """How much the helper process adds to a node detach + reattach (recorded only)."""
    with guest.hard_limit(120):
        vf = guest.enable_vfs(1, autoprobe=False)[0]
        rounds = 2

        def cycle_time() -> float:
            started = time.monotonic()
            for _ in range(rounds):
                manager.node_detach(vf)
                manager.node_reattach(vf)
            return (time.monotonic() - started) / rounds

        cycle = cycle_time()
        original = Sysfs.write

        def plain(self: Sysfs, path: str, value: str, address: Any = None,
                  **options: Any) -> None:
            original(self, path, value, address)  # as before: no helper, no deadline

        Sysfs.write = plain  # type: ignore[method-assign]
        try:
            unbounded = cycle_time()
        finally:
            Sysfs.write = original  # type: ignore[method-assign]
        with tempfile.NamedTemporaryFile() as target:
            started = time.monotonic()
            for _ in range(rounds):
                handle = start_helper_write(target.name, b"1\n")
                assert handle.wait(30.0) == 0
            helper = (time.monotonic() - started) / rounds
        observe.record("node detach + reattach (s, one cycle)", round(cycle, 4))
        observe.record("the same with plain writes (s, one cycle)", round(unbounded, 4))
        observe.record("one helper write (s)", round(helper, 4))
        assert guest.driver_of(vf) is None and manager.inactive() == []


def _reaped(pid: int) -> bool:
    return os.waitpid(pid, os.WNOHANG)[0] == pid
