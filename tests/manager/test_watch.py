"""Watch mode on the fake kernel: prune, drift, bursts, lost events, stopping.

Most tests drive the watch from its ``stop`` callable: each call (made between
two batches) runs the next step of a script (a change to the fake kernel),
and the last call stops the watch, so the tests run in one thread and in order.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from hostdev.address import PciAddress
from hostdev.errors import BadInput, StateBusy
from hostdev.linux import uevents
from hostdev.linux.sysfs import Sysfs
from hostdev.linux.uevents import BATCH_LIMIT, Batch, EventSource
from hostdev.manager import HostdevManager

# watch_loop imported here, not in a test: pyfakefs unloads the modules first
# imported during a test, and a later test would patch a stale copy of it.
from hostdev.ops import identity, recovery, watch_loop
from hostdev.ops.identity import Presence
from hostdev.reports import WatchEvent
from hostdev.state.records import DeviceRecord
from hostdev.testing import FakeKernel
from hostdev.testing.uevents import FakeMonitor
from tests.smallhost import NIC, PF, VM1, Host

Step = Callable[[], object]


class Script:
    """A ``stop`` for :meth:`HostdevManager.watch`: one step per call, then stop."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)

    def __call__(self) -> bool:
        if not self.steps:
            return True
        self.steps.pop(0)()
        return False


def watch(mgr: HostdevManager, *steps: Step) -> list[WatchEvent]:
    """Run the watch through ``steps``; return what it handed to the callback."""
    seen: list[WatchEvent] = []
    mgr.watch(seen.append, Script(*steps), poll_interval=0.01)
    return seen


def unbind(address: PciAddress, driver: str) -> Step:
    """Someone else (not hostdev) unbinds the device."""
    def step() -> None:
        with open(f"/sys/bus/pci/drivers/{driver}/unbind", "w") as f:
            f.write(str(address))
    return step


def bind(address: PciAddress, driver: str, *, clear_override: bool = False) -> Step:
    """Someone else binds the device (``clear_override``: clears its override first)."""
    def step() -> None:
        if clear_override:
            with open(f"/sys/bus/pci/devices/{address}/driver_override", "w") as f:
                f.write("\n")
        with open(f"/sys/bus/pci/drivers/{driver}/bind", "w") as f:
            f.write(str(address))
    return step


def test_vf_count_change_behind_our_back_prunes_tracked_vfs(
        host: Host, caplog: pytest.LogCaptureFixture) -> None:
    vf0, vf1, vf2 = host.vfs(3)
    host.mgr.prepare(VM1, [vf0])
    host.mgr.node_detach(vf1)
    caplog.set_level(logging.INFO, logger="hostdev")
    events = watch(host.mgr, lambda: host.vfs(0))
    assert [(e.kind, e.address, e.owner) for e in events] == [
        ("pruned", vf0, VM1), ("pruned", vf1, None)]
    assert events[0].uevents == ["unbind", "remove"]
    assert host.mgr.active() == [] and host.mgr.inactive() == []
    lines = [r.getMessage() for r in caplog.records if r.name == "hostdev"]
    assert any(str(vf0) in line and "held by driver qemu, domain vm1" in line
               for line in lines), lines
    assert not any(str(vf2) in line for line in lines), "an untracked VF is not acted on"


def test_recreated_vfs_are_stale_not_kept(host: Host) -> None:
    vf0, _ = host.vfs(2)
    host.mgr.node_detach(vf0)
    events = watch(host.mgr, lambda: host.vfs(2))  # 2 -> 0 -> 2: new VFs at the same places
    assert [(e.kind, e.address) for e in events] == [("stale", vf0)]
    assert events[0].uevents == ["unbind", "remove", "add", "bind"]
    assert host.mgr.inactive() == [] and host.driver(vf0) == "ixgbevf"


def test_unbind_behind_our_back_is_drift_and_left_alone(host: Host) -> None:
    vf0, vf1 = host.vfs(2)
    host.mgr.node_detach(vf0)
    host.mgr.prepare(VM1, [vf1])
    writes = len(host.kernel.writes)
    events = watch(host.mgr, unbind(vf0, "vfio-pci"), bind(vf0, "vfio-pci"),
                   unbind(vf1, "vfio-pci"), bind(vf1, "ixgbevf", clear_override=True))
    assert [(e.kind, e.address, e.expected, e.found) for e in events] == [
        ("drift", vf0, "vfio-pci", None),
        ("drift", vf0, "vfio-pci", "vfio-pci"),  # put back, but not by hostdev
        ("drift", vf1, "vfio-pci", None),
        ("drift", vf1, "vfio-pci", "ixgbevf"),
    ]
    assert events[2].owner == VM1 and "held by driver qemu, domain vm1" in events[2].message
    assert len(host.kernel.writes) == writes + 5, "drift is reported, never undone"
    assert [r.address for r in host.mgr.inactive()] == [vf0]
    assert host.mgr.used_by(vf1) == VM1


def test_our_own_transactions_are_not_drift(host: Host) -> None:
    vf0, vf1, vf2 = host.vfs(3)
    host.mgr.node_detach(vf0)
    host.mgr.prepare(VM1, [vf1])
    events = watch(host.mgr,
                   lambda: host.mgr.node_detach(vf2),
                   lambda: host.mgr.node_reattach(vf0),
                   lambda: host.mgr.reattach(VM1, [vf1]),
                   lambda: host.mgr.prepare(VM1, [vf0, vf1]))
    assert events == []
    assert host.where(vf0, vf1, vf2) == {a: ("vfio-pci", "vfio-pci") for a in (vf0, vf1, vf2)}


def test_our_transaction_and_someone_elses_in_one_batch(host: Host) -> None:
    vf0, vf1, vf2 = host.vfs(3)
    host.mgr.node_detach(vf0)
    host.mgr.node_detach(vf1)

    def both() -> None:
        host.mgr.node_detach(vf2)  # ours: the batch cannot call vf1's rebind drift...
        unbind(vf1, "vfio-pci")()  # ...but a device left off its stub is drift anyway

    events = watch(host.mgr, both)
    assert [(e.kind, e.address, e.found) for e in events] == [("drift", vf1, None)]


def test_start_reconciles_what_changed_while_no_watch_ran(host: Host) -> None:
    vf0, vf1 = host.vfs(2)
    host.mgr.prepare(VM1, [vf0])
    host.mgr.node_detach(vf1)
    unbind(vf1, "vfio-pci")()
    host.vfs(0)
    host.vfs(1)  # vf0 is back, but another function
    events = watch(host.mgr)
    assert sorted((e.kind, str(e.address)) for e in events) == [
        ("pruned", str(vf1)), ("stale", str(vf0))]
    assert events[[e.address for e in events].index(vf0)].owner == VM1


def test_added_devices_go_to_the_wish_hook(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[PciAddress] = []

    def wish(self: HostdevManager, addresses: list[PciAddress]) -> list[WatchEvent]:
        asked.extend(addresses)
        return [WatchEvent(kind="wish", address=a, message=f"{a}: wish") for a in addresses]

    monkeypatch.setattr(HostdevManager, "_wishes_for_added", wish)
    vf0, _ = host.vfs(2)
    host.mgr.node_detach(vf0)
    events = watch(host.mgr, lambda: host.vfs(3))
    added = host.vfs_now()
    assert asked == added, "every added function once, in address order"
    assert [e.kind for e in events] == ["stale"] + ["wish"] * 3


def test_burst_of_thousands_is_coalesced(fake_kernel: FakeKernel,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fake_kernel.add_driver("i40e", ids=[(0x8086, 0x1572)], sriov=True)
    fake_kernel.add_driver("iavf", ids=[(0x8086, 0x154C)])
    fake_kernel.add_driver("vfio-pci")
    pfs = [PciAddress.parse(f"0000:{i + 1:02x}:00.0") for i in range(4)]
    for i, pf in enumerate(pfs):
        fake_kernel.add_device(pf, 0x8086, 0x1572, 0x020000, iommu_group=i,
                               sriov_totalvfs=160, vf_device=0x154C, sriov_offset=8)
    for pf in pfs:
        with open(f"/sys/bus/pci/devices/{pf}/sriov_numvfs", "w") as f:
            f.write("160")
    mgr = HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0.0)
    vfs = [a for a in fake_kernel.addresses() if a not in pfs]
    tracked = vfs[::40]
    for vf in tracked:
        mgr.node_detach(vf)

    def change() -> None:  # every PF: 160 -> 0 -> 160, behind hostdev's back
        for pf in pfs:
            for count in ("0", "160"):
                with open(f"/sys/bus/pci/devices/{pf}/sriov_numvfs", "w") as f:
                    f.write(count)

    checks: list[PciAddress] = []
    transactions: list[int] = []
    real_check, real_run = identity.check_identity, HostdevManager._run

    def counted_check(sysfs: Sysfs, record: DeviceRecord, *rest: Any) -> Presence:
        checks.append(record.address)
        return real_check(sysfs, record, *rest)

    def counted_run(self: HostdevManager, *args: Any, **kwargs: Any) -> Any:
        transactions.append(1)
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(recovery, "check_identity", counted_check)
    monkeypatch.setattr(HostdevManager, "_run", counted_run)
    sent = len(fake_kernel.uevents)
    events = watch(mgr, change)
    burst = len(fake_kernel.uevents) - sent
    assert burst == 4 * 160 * 4  # unbind, remove, add, bind for every VF
    assert sorted(str(e.address) for e in events if e.kind == "stale") == [str(a) for a in tracked]
    assert mgr.inactive() == []
    # Each tracked address looked at once per batch (a batch is up to BATCH_LIMIT
    # events, and the reconcile at start looks at each once too); no rescan per event.
    batches = -(-burst // BATCH_LIMIT)
    assert len(checks) <= len(tracked) * (1 + batches)
    assert len(transactions) <= 1 + batches


def test_lost_events_make_a_full_reconcile(host: Host) -> None:
    vf0, vf1, _ = host.vfs(3)
    host.mgr.prepare(VM1, [vf0])
    host.mgr.node_detach(vf1)
    host.kernel.limit_uevents(2)  # the socket buffer overflows at once
    events = watch(host.mgr, lambda: host.vfs(0))
    assert [(e.kind, e.address) for e in events] == [
        ("resync", None), ("pruned", vf0), ("pruned", vf1)]
    assert "dropped uevents" in events[0].message and events[1].owner == VM1
    assert host.mgr.active() == [] and host.mgr.inactive() == []


def test_unrelated_events_do_nothing(host: Host) -> None:
    vf0, _ = host.vfs(2)
    host.mgr.node_detach(vf0)
    events = watch(host.mgr, lambda: host.kernel.send_uevent("change", vf0),
                   lambda: host.kernel.send_uevent("remove", "0000:77:00.0"),
                   lambda: host.kernel.send_uevent("remove", PF))
    assert events == [] and [r.address for r in host.mgr.inactive()] == [vf0]


def test_stop_event_from_another_thread(host: Host) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            host.mgr.watch(stop=stop, poll_interval=0.01)
        except BaseException as exc:  # reported by the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    for _ in range(500):  # the watch is listening once its monitor is open
        if host.kernel.state.monitors or not thread.is_alive():
            break
        thread.join(0.01)
    assert host.kernel.state.monitors, "the watch never opened its monitor"
    stop.set()
    thread.join(10)
    assert not thread.is_alive() and errors == []
    assert host.kernel.state.monitors == [], "the monitor is closed on the way out"


def test_callback_error_ends_the_watch_and_closes_the_monitor(host: Host) -> None:
    vf0, _ = host.vfs(2)
    host.mgr.node_detach(vf0)

    def boom(event: WatchEvent) -> None:
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        host.mgr.watch(boom, Script(lambda: host.vfs(0), lambda: None), poll_interval=0.01)
    assert host.kernel.state.monitors == []
    assert host.mgr.inactive() == [], "the batch's transaction ended before the callback"


@pytest.mark.parametrize("stop, interval, message", [
    (42, 0.5, "stop must be a threading.Event or a callable"),
    (None, 0, "above 0"),
    (None, float("nan"), "poll interval"),
])
def test_bad_arguments_are_refused_before_anything(host: Host, stop: object, interval: float,
                                                   message: str) -> None:
    with pytest.raises(BadInput, match=message):
        host.mgr.watch(stop=stop, poll_interval=interval)  # type: ignore[arg-type]
    assert host.kernel.state.monitors == []


def test_our_events_split_across_drains_are_still_ours(host: Host,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    vf0, vf1 = host.vfs(2)
    host.mgr.node_detach(vf0)

    def one_at_a_time(source: EventSource, timeout: float, limit: int = BATCH_LIMIT) -> Batch:
        # A batch takes one event: the rest of our transaction's events are still
        # queued when the batch takes the lock.
        return source.drain(timeout, 1)

    monkeypatch.setattr(uevents, "gather", one_at_a_time)
    events = watch(host.mgr, lambda: host.mgr.node_detach(vf1), lambda: None, lambda: None)
    assert events == []
    assert [r.address for r in host.mgr.inactive()] == [vf0, vf1]


def test_a_long_transaction_of_ours_is_drained_whole_under_the_lock(
        host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """Our transaction sends more events than one drain takes: the drain under the
    lock goes on until the queue is empty, so its tail is not taken for drift."""
    vf0, vf1 = host.vfs(2)

    def one_at_a_time(source: EventSource, timeout: float, limit: int = BATCH_LIMIT) -> Batch:
        return source.drain(timeout, 1)

    def two_at_most(self: FakeMonitor, timeout: float, limit: int = BATCH_LIMIT) -> Batch:
        return real_drain(self, timeout, min(limit, 2))

    real_drain = FakeMonitor.drain
    monkeypatch.setattr(uevents, "gather", one_at_a_time)
    # One drain takes at most 2 events (4,096 on a real host).
    monkeypatch.setattr(FakeMonitor, "drain", two_at_most)
    monkeypatch.setattr(uevents, "BATCH_LIMIT", 2)
    events = watch(host.mgr, lambda: host.mgr.prepare(VM1, [vf0, vf1, NIC]), lambda: None,
                   lambda: None)
    assert events == []
    assert [r.address for r in host.mgr.active()] == [NIC, vf0, vf1]


def test_a_queue_that_never_empties_is_reconciled(
        host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """Drains under the lock are bounded: past them the batch counts as lost."""
    vf0, vf1 = host.vfs(2)
    monkeypatch.setattr(uevents, "BATCH_LIMIT", 1)
    monkeypatch.setattr(watch_loop, "QUEUED_DRAINS", 2)

    def one_at_a_time(source: EventSource, timeout: float, limit: int = BATCH_LIMIT) -> Batch:
        return source.drain(timeout, 1)

    monkeypatch.setattr(uevents, "gather", one_at_a_time)
    events = watch(host.mgr, lambda: host.mgr.prepare(VM1, [vf0, vf1, NIC]), lambda: None,
                   lambda: None, lambda: None)
    assert [e.kind for e in events][:1] == ["resync"]
    assert "drift" not in [e.kind for e in events]
    assert [r.address for r in host.mgr.active()] == [NIC, vf0, vf1]


def test_a_busy_lock_is_made_up_for_by_a_reconcile(host: Host,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    vf0, _ = host.vfs(2)
    host.mgr.node_detach(vf0)
    real = HostdevManager._watch_batch
    busy = [True]

    def once_busy(self: HostdevManager, *args: Any, **kwargs: Any) -> Any:
        if busy.pop() if busy else False:
            raise StateBusy("state lock held by pid 4242 for 10 s")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(HostdevManager, "_watch_batch", once_busy)
    events = watch(host.mgr, lambda: host.vfs(0), lambda: None)
    assert [(e.kind, e.address) for e in events] == [("resync", None), ("pruned", vf0)]
    assert "state lock was busy" in events[0].message
    assert host.mgr.inactive() == []


def test_a_recreated_vf_gets_its_persistent_wish(host: Host) -> None:
    vf0, vf1 = host.vfs(2)
    host.mgr.node_detach(vf1, persistent=True)
    events = watch(host.mgr, lambda: host.vfs(2))  # 2 -> 0 -> 2 behind our back
    assert [(e.kind, e.address) for e in events] == [("stale", vf1), ("wish", vf1)]
    assert "applied" in events[1].message and "vfio-pci" in events[1].message
    assert host.driver(vf1) == "vfio-pci" and host.driver(vf0) == "ixgbevf"
    assert [r.address for r in host.mgr.inactive()] == [vf1]


def test_a_wishes_file_that_cannot_be_read_does_not_stop_the_watch(
        host: Host, caplog: pytest.LogCaptureFixture) -> None:
    _, vf1 = host.vfs(2)
    host.mgr.node_detach(vf1, persistent=True)
    with open(host.mgr.wish_store.path, "w") as f:
        f.write("{not json")
    caplog.set_level(logging.INFO, logger="hostdev")
    events = watch(host.mgr, lambda: host.vfs(2))
    assert [(e.kind, e.address) for e in events] == [("stale", vf1)]
    assert host.driver(vf1) == "ixgbevf"
    assert any("not applied: wishes file" in r.getMessage() for r in caplog.records)


class HeldLock:
    """Another process holding the state lock while ``held``: every transaction of the
    manager finds the state busy (flock is not shared under the fake file system)."""

    def __init__(self, mgr: HostdevManager, monkeypatch: pytest.MonkeyPatch) -> None:
        self.held = False
        real = mgr.store.locked

        def locked(timeout: float | None = None) -> Any:
            if self.held:
                raise StateBusy(f"state directory {mgr.store.dir} is locked by another hostdev"
                                " process for more than 1 s; try again, or raise the lock"
                                " timeout")
            return real(timeout)

        monkeypatch.setattr(mgr.store, "locked", locked)

    def take(self) -> None:
        self.held = True

    def release(self) -> None:
        self.held = False


@pytest.mark.parametrize("lost", [False, True], ids=["events", "events-lost"])
def test_a_vf_created_while_the_lock_is_held_gets_its_wish_once_it_is_free(
        host: Host, monkeypatch: pytest.MonkeyPatch, lost: bool) -> None:
    _, vf1 = host.vfs(2)
    host.mgr.node_detach(vf1, persistent=True)
    host.vfs(1)  # vf1 is gone; its wish stays
    lock = HeldLock(host.mgr, monkeypatch)
    drivers: list[str | None] = []

    def create() -> None:  # the VF appears while someone else's transaction runs
        lock.take()
        if lost:
            host.kernel.limit_uevents(2)  # ...and its uevents are dropped too
        host.vfs(2)

    def free() -> None:
        lock.release()
        host.kernel.limit_uevents(None)

    events = watch(host.mgr, create, free,
                   lambda: drivers.append(host.driver(vf1)),
                   lambda: host.mgr.node_reattach(vf1),  # by hand: lasts until the next boot
                   lambda: None, lambda: None)
    assert [(e.kind, e.address) for e in events] == [
        ("pruned", vf1), ("resync", None), ("wish", vf1)]
    assert ("dropped uevents" if lost else "state lock was busy") in events[1].message
    assert drivers == ["vfio-pci"], "the wish was applied once the lock was free"
    assert host.driver(vf1) == "ixgbevf", "the wish owed was applied once, not again"
    assert host.mgr.inactive() == []


def test_devices_added_while_uevents_were_lost_get_their_wishes(host: Host) -> None:
    vf0, vf1 = host.vfs(2)
    host.mgr.node_detach(vf0, persistent=True)
    host.mgr.node_detach(vf1, persistent=True)
    host.mgr.node_detach(NIC, persistent=True)
    host.mgr.node_reattach(NIC)  # by hand: the NIC keeps its driver until the next boot
    host.vfs(1)  # vf1 gone, vf0 another function (on ixgbevf, though wished on a stub)
    host.kernel.limit_uevents(2)  # only vf0's unbind and remove get through
    events = watch(host.mgr, lambda: host.vfs(2))  # vf0 re-created, vf1 appears
    assert [(e.kind, e.address) for e in events] == [
        ("pruned", vf1), ("stale", vf0), ("resync", None), ("wish", vf0), ("wish", vf1)]
    assert "dropped uevents" in events[2].message
    assert host.driver(vf0) == host.driver(vf1) == "vfio-pci"
    assert host.driver(NIC) == "e1000e", "a device present before is not detached again"
    assert [r.address for r in host.mgr.inactive()] == [vf0, vf1]
