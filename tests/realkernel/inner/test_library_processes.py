"""Several manager processes on one real host: a crash mid-prepare, and a race.

(h) a manager process is SIGKILLed in the middle of prepare; a new manager on the same
state directory still loads its state and converges; (i) four processes race to
prepare one VF for four owners: exactly one wins, the others get DeviceInUse.

The manager processes are forked from the test (a fresh interpreter needs ~7 s under
TCG just to import pydantic); each builds its own HostdevManager on the shared state
directory, talks JSON lines over pipes, and ends with ``os._exit``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hostdev.address import PciAddress
from hostdev.linux import binding
from hostdev.manager import HostdevManager
from hostdev.state.records import HostdevSpec, Owner

from . import guest
from .observing import Observer

pytestmark = pytest.mark.realkernel


class Forked:
    """A child process running ``body(send, wait_go)``; JSON lines go back over a pipe."""

    def __init__(self, name: str, body: Callable[[Callable[[dict[str, Any]], None],
                                                  Callable[[], None]], int]) -> None:
        reason = guest.not_in_guest_reason()
        if reason:  # the child would write to sysfs
            raise RuntimeError(reason)
        self.name = name
        go_r, go_w = os.pipe()
        out_r, out_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # child: never returns into pytest
            code = 70
            try:
                os.close(go_w)
                os.close(out_r)

                def send(doc: dict[str, Any]) -> None:
                    os.write(out_w, (json.dumps(doc) + "\n").encode())

                def wait_go() -> None:
                    while not os.read(go_r, 64).endswith(b"\n"):
                        pass

                code = body(send, wait_go)
            except BaseException:
                with contextlib.suppress(BaseException):
                    os.write(out_w, (json.dumps({"crash": traceback.format_exc()}) + "\n")
                             .encode())
            finally:
                os._exit(code)
        os.close(go_r)
        os.close(out_w)
        self.pid = pid
        self.go_fd = go_w
        self.reader = guest.LineReader(out_r)
        self.out_fd = out_r
        self.status: int | None = None

    def message(self, timeout: float) -> dict[str, Any]:
        line = self.reader.readline(timeout)
        assert line is not None, f"{self.name} said nothing within {timeout:g} s"
        doc: dict[str, Any] = json.loads(line)
        assert "crash" not in doc, f"{self.name} crashed:\n{doc['crash']}"
        return doc

    def go(self) -> None:
        os.write(self.go_fd, b"go\n")

    def kill(self) -> None:
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.wait()

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} (pid {self.pid}) did not end")
            time.sleep(0.02)
        return self.status

    def close(self) -> None:
        self.kill()
        for fd in (self.go_fd, self.out_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.contextmanager
def forked(*children: Forked) -> Iterator[list[Forked]]:
    try:
        yield list(children)
    finally:
        for child in children:
            with contextlib.suppress(Exception):
                child.close()


def _preparer(state_dir: str, domain: str, addresses: list[str],
              pause: Callable[[], None] | None = None) -> Callable[..., int]:
    """A child body: prepare ``addresses`` for qemu/``domain`` when told to go."""
    def body(send: Callable[[dict[str, Any]], None], wait_go: Callable[[], None]) -> int:
        mgr = HostdevManager(root="/", state_dir=state_dir, lock_timeout=30.0)
        if pause is not None:
            pause()
        send({"ready": os.getpid()})
        wait_go()
        try:
            report = mgr.prepare(Owner(driver="qemu", domain=domain),
                                 [HostdevSpec(address=a) for a in addresses])
        except Exception as exc:
            send({"error": type(exc).__name__, "message": str(exc)})
            return 1
        send({"result": "ok", "prepared": [str(r.address) for r in report.prepared]})
        return 0
    return body


def _stop_self() -> None:
    """Stop (SIGSTOP) this process where it stands; the test then SIGKILLs it."""
    os.kill(os.getpid(), signal.SIGSTOP)
    time.sleep(3600)


def _pause_at(point: str, first: str, tell: Callable[[], None]) -> Callable[[], None]:
    """Arm a stop in the child at ``point`` of the prepare of ``first``.

    ``after-override``: right after driver_override=vfio-pci was written, before the
    probe. ``after-first-bound``: right after ``first`` was moved onto vfio-pci, before
    the other device of the same prepare is touched. Only the child's copy of
    hostdev.linux.binding is wrapped.
    """
    def arm() -> None:
        if point == "after-override":
            original_set = binding.set_override

            def set_override(sysfs: Any, address: Any, driver: Any, **kw: Any) -> None:
                original_set(sysfs, address, driver, **kw)
                if str(address) == first and driver == "vfio-pci":
                    tell()
                    _stop_self()

            binding.set_override = set_override
        else:
            original_move = binding.move_to

            def move_to(sysfs: Any, address: Any, *args: Any, **kw: Any) -> None:
                original_move(sysfs, address, *args, **kw)
                if str(address) == first:
                    tell()
                    _stop_self()

            binding.move_to = move_to
    return arm


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
    state_dir = str(manager.store.dir)

    def body(send: Callable[[dict[str, Any]], None], wait_go: Callable[[], None]) -> int:
        arm = _pause_at(kill_point, a, lambda: send({"paused": kill_point}))
        return _preparer(state_dir, "vm-crash", [a, b], arm)(send, wait_go)

    with forked(Forked("crashing manager", body)) as (child,):
        assert "ready" in child.message(60.0)
        child.go()
        assert child.message(60.0) == {"paused": kill_point}
        child.kill()
        assert os.WIFSIGNALED(child.status or 0)
        assert os.WTERMSIG(child.status or 0) == signal.SIGKILL
    seen = {"a": [guest.driver_of(a), guest.override_of(a)],
            "b": [guest.driver_of(b), guest.override_of(b)],
            "state dir": sorted(os.listdir(state_dir))}
    observe.record(f"left behind by a manager killed {kill_point}", seen)
    assert guest.override_of(a) == "vfio-pci"
    if kill_point == "after-first-bound":
        assert guest.driver_of(a) == "vfio-pci"
    assert _clean(b), "the second device was touched before the kill point"
    assert state_file.read_bytes() == saved, "the killed transaction changed the state file"

    # A new manager: the lock died with the process, and the file still loads.
    fresh = HostdevManager(root="/", state_dir=state_dir, lock_timeout=2.0)
    assert fresh.inactive() == [c_record] and fresh.active() == []
    if hasattr(fresh, "reconcile"):
        report = fresh.reconcile()
        observe.record(f"reconcile after a kill {kill_point}", report.model_dump(mode="json"))
        assert any(a in line for line in report.recovered), f"no recovery of {a}: {report}"
        # Converged: every device the dead manager touched is either tracked or clean.
        for addr in (a, b):
            tracked = fresh.lists().find(PciAddress.parse(addr)) is not None
            assert tracked or _clean(addr), f"{addr} left half-prepared: {report}"
        assert fresh.inactive()[-1:] == [c_record], "the record made before the crash is lost"
        for record in fresh.inactive():
            fresh.node_reattach(record.address)
    else:
        # FALLBACK while HostdevManager.reconcile() does not exist: prune_missing finds
        # nothing to prune, and device A is an orphan the dead manager left with
        # driver_override=vfio-pci (after-first-bound: on vfio-pci) and no record.
        # Check that by hand, then repair it with node_reattach (works on untracked
        # devices). Delete this branch once reconcile is in every supported version.
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
    state_dir = str(manager.store.dir)
    domains = [f"vm{i}" for i in range(4)]
    racers = [Forked(d, _preparer(state_dir, d, [vf])) for d in domains]
    with forked(*racers):
        for child in racers:
            assert "ready" in child.message(60.0)
        for child in racers:
            child.go()
        results = {child.name: child.message(120.0) for child in racers}
        for child in racers:
            child.wait()
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
