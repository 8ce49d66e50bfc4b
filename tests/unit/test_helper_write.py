"""The real helper process of a possibly-blocking write, on ordinary files and FIFOs.

A FIFO nobody reads blocks the helper's ``open()`` as a VFIO user blocks an
``unbind``: the caller must get control back at its deadline, the helper must
not be a child of the caller, must not keep the caller's files open, and must
exit as soon as its write returns.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hostdev.address import PciAddress
from hostdev.errors import KernelRefused, WriteBlocked
from hostdev.linux.sysfs import Sysfs

ADDR = PciAddress.parse("0000:01:00.0")


def _sys(root: Path) -> Path:
    """The ``sys`` directory under ``root`` (hostdev writes nowhere else)."""
    base = root / "sys"
    base.mkdir(exist_ok=True)
    return base


def _sysfs(root: Path, timeout: float) -> Sysfs:
    sysfs = Sysfs(root)
    sysfs.write_timeout = timeout
    return sysfs


def _gone(pid: int, timeout: float = 5.0) -> bool:
    """The process left (or is a zombie of someone else: it no longer runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def test_write_through_the_helper_lands(tmp_path: Path) -> None:
    target = _sys(tmp_path) / "attr"
    target.write_text("")
    sysfs = _sysfs(tmp_path, 10)
    sysfs.write(str(target), "1\n", ADDR, blocking=[ADDR])
    assert target.read_text() == "1\n"
    [helper] = sysfs.helpers
    assert helper.done and not helper.gave_up and not sysfs.fenced
    assert _gone(helper.pid)


def test_no_child_of_the_caller_is_left_behind(tmp_path: Path) -> None:
    """The intermediate child is reaped (without waiting for it in the write's path):
    after the writes, the caller has no child, zombie or not."""
    from hostdev.linux import sysfs as boundary

    target = _sys(tmp_path) / "attr"
    target.write_text("")
    sysfs = _sysfs(tmp_path, 10)
    for value in ("1\n", "0\n"):
        sysfs.write(str(target), value, ADDR, blocking=[ADDR])
    deadline = time.monotonic() + 5.0
    while boundary._unreaped and time.monotonic() < deadline:
        time.sleep(0.02)  # one still exiting when its helper answered: the next write
        boundary._reap()  # (here, this call) reaps it
    assert not boundary._unreaped
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_helper_reports_the_errno(tmp_path: Path) -> None:
    sysfs = _sysfs(tmp_path, 10)
    with pytest.raises(KernelRefused) as info:
        directory = _sys(tmp_path) / "dir"
        directory.mkdir()
        sysfs.write(str(directory), "1\n", ADDR, blocking=[ADDR])  # a directory: EISDIR
    assert info.value.errno == errno.EISDIR


def test_blocked_write_returns_at_the_deadline_and_the_helper_exits_after(
        tmp_path: Path) -> None:
    fifo = _sys(tmp_path) / "unbind"
    os.mkfifo(fifo)
    sysfs = _sysfs(tmp_path, 0.3)
    started = time.monotonic()
    with pytest.raises(WriteBlocked) as info:
        sysfs.write(str(fifo), f"{ADDR}\n", ADDR, blocking=[ADDR])
    assert 0.3 <= time.monotonic() - started < 3
    pid = info.value.pid
    assert ADDR in sysfs.fenced
    stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    assert int(stat[1]) != os.getpid(), "the helper is a child of the caller"
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    fds = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    assert all(t.startswith("pipe:") for t in fds), f"helper kept the caller's files: {fds}"
    reader = os.open(fifo, os.O_RDONLY)  # the "user" lets go: the write returns
    try:
        assert os.read(reader, 64) == f"{ADDR}\n".encode()
    finally:
        os.close(reader)
    assert _gone(pid), "the helper stayed after its write returned"


def test_a_cli_that_exits_does_not_wait_for_its_helper(tmp_path: Path) -> None:
    """A caller whose stdout is a pipe: the helper must not keep it open."""
    fifo = _sys(tmp_path) / "unbind"
    os.mkfifo(fifo)
    script = textwrap.dedent(f"""
        from hostdev.address import PciAddress
        from hostdev.errors import WriteBlocked
        from hostdev.linux.sysfs import Sysfs
        s = Sysfs({str(tmp_path)!r}); s.write_timeout = 0.2
        a = PciAddress.parse("{ADDR}")
        try:
            s.write({str(fifo)!r}, "x\\n", a, blocking=[a])
        except WriteBlocked as exc:
            print("pid", exc.pid)
    """)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30)
    assert time.monotonic() - started < 25
    assert done.stdout.startswith("pid "), done.stderr
    pid = int(done.stdout.split()[1])
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert _gone(pid)
    finally:
        os.close(reader)


def test_a_write_failing_at_once_never_beats_the_helpers_pid(tmp_path: Path) -> None:
    """The helper's result can be ready before a parent process would have written its
    pid: the pid must come first, every time (once one start in ten failed)."""
    directory = _sys(tmp_path) / "dir"
    directory.mkdir()
    sysfs = _sysfs(tmp_path, 10)
    for _ in range(60):
        with pytest.raises(KernelRefused) as info:
            sysfs.write(str(directory), "1\n", ADDR, blocking=[ADDR])
        assert info.value.errno == errno.EISDIR
