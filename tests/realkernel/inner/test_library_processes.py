"""Several manager processes on one real host: a crash mid-prepare, and a race.

(h) a manager process is SIGKILLed in the middle of prepare; a new manager on the same
state directory still loads its state and converges; (i) four processes race to
prepare one VF for four owners: exactly one wins, the others get DeviceInUse.

The manager processes are this module run as a program (``python -m
tests.realkernel.inner.test_library_processes worker ...``); like every inner test
they refuse to touch sysfs outside the QEMU guest.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hostdev.address import PciAddress
from hostdev.manager import HostdevManager
from hostdev.records import HostdevSpec, Owner

from . import guest
from .observing import Observer

pytestmark = pytest.mark.realkernel

MODULE = "tests.realkernel.inner.test_library_processes"
#: Seconds a worker may take to start (Python and pydantic imports over 9p, under TCG).
STARTUP = 90.0


# --------------------------------------------------------------------------- worker side


def _pause_here(what: str) -> None:
    """Tell the test where we are, then stop (SIGSTOP) until it kills us."""
    print(json.dumps({"paused": what}), flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
    time.sleep(3600)  # never reached unless someone sends SIGCONT


def _arm_pause(point: str, first: str) -> None:
    """Stop the worker at ``point`` of the prepare of ``first`` (the kill point).

    ``after-override``: right after driver_override=vfio-pci was written, before the
    probe. ``after-first-bound``: right after ``first`` was moved onto vfio-pci, before
    the other devices of the same prepare are touched.
    """
    from hostdev import binding

    if point == "after-override":
        original_set = binding.set_override

        def set_override(sysfs: Any, address: Any, driver: Any, **kw: Any) -> None:
            original_set(sysfs, address, driver, **kw)
            if str(address) == first and driver == "vfio-pci":
                _pause_here(point)

        binding.set_override = set_override  # type: ignore[assignment]
    elif point == "after-first-bound":
        original_move = binding.move_to

        def move_to(sysfs: Any, address: Any, *args: Any, **kw: Any) -> None:
            original_move(sysfs, address, *args, **kw)
            if str(address) == first:
                _pause_here(point)

        binding.move_to = move_to  # type: ignore[assignment]
    elif point != "none":
        raise SystemExit(f"unknown pause point {point}")


def worker(argv: list[str]) -> int:
    """``worker STATE_DIR DOMAIN PAUSE ADDR...``: prepare ADDRs for qemu/DOMAIN.

    Prints ``{"ready": pid}``, waits for a line on stdin, prepares, and prints
    ``{"result": "ok"}`` or ``{"error": ClassName, "message": ...}``.
    """
    reason = guest.not_in_guest_reason()
    if reason:
        print(json.dumps({"error": "NotInGuest", "message": reason}), flush=True)
        return 3
    state_dir, domain, pause, *addresses = argv
    mgr = HostdevManager(root="/", state_dir=state_dir, lock_timeout=30.0)
    owner = Owner(driver="qemu", domain=domain)
    _arm_pause(pause, addresses[0])
    print(json.dumps({"ready": os.getpid()}), flush=True)
    sys.stdin.readline()
    try:
        report = mgr.prepare(owner, [HostdevSpec(address=a) for a in addresses])
    except Exception as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), flush=True)
        return 1
    print(json.dumps({"result": "ok", "prepared": [str(r.address) for r in report.prepared]}),
          flush=True)
    return 0


# --------------------------------------------------------------------------- test side


class Worker:
    """A manager process started by a test (killed at teardown if still running)."""

    def __init__(self, state_dir: Path, domain: str, pause: str, addresses: list[str]) -> None:
        argv = [sys.executable, "-m", MODULE, "worker", str(state_dir), domain, pause,
                *addresses]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     bufsize=0, cwd=os.getcwd())
        assert self.proc.stdout is not None
        self.reader = guest.LineReader(self.proc.stdout)
        self.domain = domain

    def message(self, timeout: float) -> dict[str, Any]:
        line = self.reader.readline(timeout)
        assert line is not None, f"worker {self.domain} said nothing within {timeout:g} s"
        doc: dict[str, Any] = json.loads(line)
        return doc

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


@contextlib.contextmanager
def workers(*items: Worker) -> Iterator[list[Worker]]:
    try:
        yield list(items)
    finally:
        for w in items:
            with contextlib.suppress(Exception):
                w.kill()


def _clean(addr: str) -> bool:
    """Off vfio-pci and without an override: nothing of ours left on the device."""
    return guest.driver_of(addr) != "vfio-pci" and guest.override_of(addr) == "(null)"


@pytest.mark.parametrize("kill_point", ["after-override", "after-first-bound"])
def test_manager_killed_mid_prepare(pf: str, manager: HostdevManager, observe: Observer,
                                    kill_point: str) -> None:
    """(h) SIGKILL a manager in prepare; a new manager loads the state and converges."""
    vfs = guest.enable_vfs(3, autoprobe=False)
    a, b, c = vfs
    manager.node_detach(c)  # state.json exists and holds a record before the crash
    [c_record] = manager.inactive()
    state_file = manager.store.path
    saved = state_file.read_bytes()

    with workers(Worker(manager.store.dir, "vm-crash", kill_point, [a, b])) as (w,):
        assert "ready" in w.message(STARTUP)
        w.go()
        assert w.message(60.0) == {"paused": kill_point}
        w.kill()
        assert w.proc.returncode == -signal.SIGKILL
    seen = {"a": [guest.driver_of(a), guest.override_of(a)],
            "b": [guest.driver_of(b), guest.override_of(b)]}
    observe.record(f"left behind by a manager killed {kill_point}", seen)
    assert guest.override_of(a) == "vfio-pci"
    if kill_point == "after-first-bound":
        assert guest.driver_of(a) == "vfio-pci"
    assert _clean(b), "the second device was touched before the kill point"
    assert state_file.read_bytes() == saved, "the killed transaction changed the state file"

    # A new manager: the lock died with the process, and the file still loads.
    fresh = HostdevManager(root="/", state_dir=manager.store.dir, lock_timeout=2.0)
    assert fresh.inactive() == [c_record] and fresh.active() == []
    if hasattr(fresh, "reconcile"):
        fresh.reconcile()
        # Converged: every device the dead manager touched is either tracked or clean.
        for addr in (a, b):
            tracked = fresh.lists().find(PciAddress.parse(addr)) is not None
            assert tracked or _clean(addr), f"{addr} left half-prepared by reconcile"
        for record in fresh.inactive():
            fresh.node_reattach(record.address)
    else:
        # FALLBACK until HostdevManager.reconcile() exists (another engineer is adding it):
        # prune_missing finds nothing to prune, and device A is an orphan the dead manager
        # left with driver_override=vfio-pci (and, after-first-bound, on vfio-pci) without
        # any record. Check that by hand, then repair it with node_reattach, which works
        # on untracked devices. Replace this branch by the one above once reconcile lands.
        assert fresh.prune_missing() == []
        assert fresh.lists().find(PciAddress.parse(a)) is None
        assert not _clean(a)
        result = fresh.node_reattach(a)
        assert result.driver is None and _clean(a)
        assert fresh.inactive() == [c_record]
        fresh.node_reattach(c)
    for addr in vfs:
        assert _clean(addr), f"{addr} not given back"
    assert fresh.active() == [] and fresh.inactive() == []
    # And the devices can be prepared again.
    owner = Owner(driver="qemu", domain="vm-after")
    fresh.prepare(owner, [HostdevSpec(address=a), HostdevSpec(address=b)])
    assert [guest.driver_of(a), guest.driver_of(b)] == ["vfio-pci", "vfio-pci"]
    back = fresh.reattach(owner, [a, b])
    assert back.failed == [] and all(_clean(x) for x in (a, b))


def test_four_processes_race_for_one_vf(pf: str, manager: HostdevManager,
                                        observe: Observer) -> None:
    """(i) Four owners prepare the same VF at once: one wins, three get DeviceInUse."""
    vf = guest.enable_vfs(1, autoprobe=False)[0]
    state = manager.store.dir
    domains = [f"vm{i}" for i in range(4)]
    with workers(*(Worker(state, d, "none", [vf]) for d in domains)) as racers:
        for w in racers:
            assert "ready" in w.message(STARTUP)
        for w in racers:
            w.go()
        results = {w.domain: w.message(120.0) for w in racers}
        for w in racers:
            w.proc.wait(timeout=30)
    observe.record("race results", {d: r.get("result") or r.get("error")
                                    for d, r in results.items()})
    winners = [d for d, r in results.items() if r.get("result") == "ok"]
    assert len(winners) == 1, f"winners: {results}"
    losers = {d: r for d, r in results.items() if d not in winners}
    assert {r.get("error") for r in losers.values()} == {"DeviceInUse"}, results
    for r in losers.values():
        assert f"in use by driver qemu, domain {winners[0]}" in r["message"]
    owner = Owner(driver="qemu", domain=winners[0])
    assert manager.used_by(vf) == owner
    assert [str(r.address) for r in manager.active()] == [vf]
    assert guest.driver_of(vf) == "vfio-pci"
    back = manager.reattach(owner, [vf])
    assert back.failed == [] and _clean(vf)


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        sys.exit(worker(sys.argv[2:]))
    sys.exit(f"usage: python -m {MODULE} worker STATE_DIR DOMAIN PAUSE ADDR...")
