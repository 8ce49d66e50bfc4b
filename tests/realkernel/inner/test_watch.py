"""Watch mode on a real kernel: the kernel's own uevents through pyudev, and
``hostdev watch`` pruning a parked VF's record when the VF count drops.

The guest runs no udevd, which is why watch mode listens to the kernel's
netlink group itself. Every wait here has a deadline, and each test a hard
limit (SIGALRM).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostdev.linux.uevents import PyudevSource, Uevent
from hostdev.manager import HostdevManager

from . import guest
from .guest import dev
from .observing import Observer

pytestmark = pytest.mark.realkernel

LIMIT = 120
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def hard_limit() -> Iterator[None]:
    """Raise TimeoutError in the test when it runs longer than LIMIT seconds."""
    with guest.hard_limit(LIMIT):
        yield


def collect(source: PyudevSource, want: set[tuple[str, str]], seconds: float) -> list[Uevent]:
    """What ``source`` hears until every (action, address) of ``want`` came, or time is up."""
    heard: list[Uevent] = []
    deadline = time.monotonic() + seconds
    while not want <= {(e.action, str(e.address)) for e in heard}:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        heard += source.drain(min(left, 0.5)).events
    return heard


def test_pyudev_hears_the_kernel_without_udevd(pf: str, observe: Observer) -> None:
    """A kernel-source monitor opens here and every VF add, bind, unbind and remove
    comes through parse() with its address (and, for a bind, its driver)."""
    assert (guest.DRIVERS / "vfio-pci").is_dir(), "the guest boots with vfio-pci loaded"
    source = PyudevSource()
    try:
        vfs = guest.enable_vfs(1, autoprobe=False)
        vf = vfs[0]
        guest.must(dev(vf) / "driver_override", "vfio-pci")
        assert guest.bind_to(vf, "vfio-pci") == "ok"
        guest.must(guest.DRIVERS / "vfio-pci" / "unbind", vf)
        guest.must(dev(pf) / "sriov_numvfs", "0")
        want = {("add", vf), ("bind", vf), ("unbind", vf), ("remove", vf)}
        heard = collect(source, want, 10.0)
    finally:
        source.close()
    about_vf = [(e.action, e.driver) for e in heard if str(e.address) == vf]
    observe.record("uevents of a VF: add, bind to vfio-pci, unbind, numvfs 0", about_vf)
    # docs/kernel-model.md §9 (a ``change`` would be news, but not wrong for the watch)
    assert [a for a in about_vf if a[0] != "change"] == [
        ("add", None), ("bind", "vfio-pci"), ("unbind", None), ("remove", None)]


def test_an_overrun_monitor_reports_a_lost_batch(pf: str, observe: Observer) -> None:
    """With the receive buffer at its minimum, a VF count change overruns the socket:
    the kernel marks it ENOBUFS, poll() reports an error, and drain() says the batch
    is lost (the watch then reconciles) instead of failing."""
    source = PyudevSource()
    try:
        source._monitor.set_receive_buffer_size(1)  # the kernel rounds up to its minimum
        vfs = guest.enable_vfs(3, autoprobe=True)
        time.sleep(1.0)  # every add and bind sent before the first read
        lost = False
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            batch = source.drain(0.2)
            lost = lost or batch.lost
            if not batch.events and not batch.lost:
                break
        guest.must(dev(pf) / "sriov_numvfs", "0")
    finally:
        source.close()
    observe.record("a minimal receive buffer and 3 VFs enabled: batch lost", lost)
    assert vfs and lost


def _start_watch(state_dir: Path) -> tuple[subprocess.Popen[bytes], guest.LineReader,
                                           guest.LineReader]:
    argv = [sys.executable, "-m", "hostdev.cli.main", "--state-dir", str(state_dir),
            "--no-load-modules", "watch", "--json"]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    return proc, guest.LineReader(proc.stdout), guest.LineReader(proc.stderr)


def _wait_for(reader: guest.LineReader, needle: str, seconds: float) -> list[str]:
    """Lines read until one holds ``needle`` (the last), or all read when time is up."""
    lines: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = reader.readline(max(0.0, deadline - time.monotonic()))
        if line is None:
            break
        lines.append(line)
        if needle in line:
            break
    return lines


def test_watch_prunes_a_parked_vf_at_numvfs_zero(pf: str, manager: HostdevManager,
                                                 observe: Observer) -> None:
    """`hostdev watch` running, a VF parked on vfio-pci by node_detach, numvfs 0 behind
    the library's back: the record is pruned within a second; SIGTERM ends the watch."""
    vf = guest.enable_vfs(2, autoprobe=False)[0]
    manager.node_detach(vf)
    assert guest.driver_of(vf) == "vfio-pci" and len(manager.inactive()) == 1
    proc, out, err = _start_watch(manager.store.dir)
    try:
        started = _wait_for(err, "watching PCI uevents", 60.0)
        assert started and "watching PCI uevents" in started[-1], \
            f"the watch did not start: {started} (exit {proc.poll()})"
        result, seconds = guest.timed_write(dev(pf) / "sriov_numvfs", "0")
        assert result == "ok"
        written = time.monotonic()
        events = [json.loads(line) for line in _wait_for(out, '"pruned"', 1.0)]
        pruned_after = time.monotonic() - written
        assert [(e["kind"], e["address"]) for e in events] == [("pruned", vf)], \
            f"one prune within a second of the VF count change, no drift: {events}"
        assert "remove" in events[0]["uevents"]
        assert manager.inactive() == [] and manager.active() == []
        observe.record("numvfs 0 write (s), then the watch's prune after it returned (s)",
                       [round(seconds, 3), round(pruned_after, 3)])

        proc.send_signal(signal.SIGTERM)
        asked = time.monotonic()
        try:
            code = proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            pytest.fail("hostdev watch did not stop within 5 s of SIGTERM")
        observe.record("hostdev watch exit after SIGTERM (s)",
                       round(time.monotonic() - asked, 3))
        assert code == 0, _wait_for(err, "\0", 1.0)  # no line holds NUL: what it printed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
