"""Hypothesis stateful test: random operations against a simple model of lists and drivers.

The model knows, for each device, its driver, its list (active with an owner,
inactive, or none) and whether a fake VFIO user holds it, and how: through its
fds, through a mapping alone, or from another PID namespace (no /proc entry). After every step the
library's lists and the fake kernel's drivers must match the model, and the
fake kernel's "would block" error must never have fired.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from pyfakefs.fake_filesystem_unittest import Patcher

from hostdev.address import PciAddress
from hostdev.errors import DeviceBusy, DeviceInUse, HostdevError, NotEnoughFreeVfs
from hostdev.linux import vfio
from hostdev.linux.binding import current_driver
from hostdev.manager import HostdevManager
from hostdev.state.records import HostdevSpec, Owner
from hostdev.testing import FakeKernel, VfioHolder
from tests.smallhost import NIC, NVME, PF, build_host

OWNERS = [Owner(driver="qemu", domain="a"), Owner(driver="qemu", domain="b")]
HOST_DRIVER = {NIC: "e1000e", NVME: "nvme"}


@dataclass
class Entry:
    """The model of one tracked device."""

    owner: Owner | None
    #: Giving it back means leaving the stub (it was on a host driver when taken).
    leaves_stub: bool


class Manager(RuleBasedStateMachine):
    """Drive HostdevManager and a model side by side."""

    def __init__(self) -> None:
        super().__init__()
        self.patcher = Patcher()
        self.patcher.setUp()
        assert self.patcher.fs is not None
        self.kernel = FakeKernel(self.patcher.fs)
        build_host(self.kernel)
        self.mgr = HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0,
                                  lock_timeout=1)
        self.vfs: list[PciAddress] = self.mgr.set_num_vfs(PF, 2).vfs
        self.entries: dict[PciAddress, Entry] = {}
        self.on_stub: set[PciAddress] = set()
        self.holders: dict[PciAddress, VfioHolder] = {}
        self.holds_made = 0

    def teardown(self) -> None:
        self.patcher.tearDown()

    def devices(self) -> list[PciAddress]:
        return [NIC, NVME, *self.vfs]

    def host_driver(self, addr: PciAddress) -> str:
        return HOST_DRIVER.get(addr, "ixgbevf")

    # ------------------------------------------------------------------ rules
    @rule(data=st.data(), owner=st.sampled_from(OWNERS))
    def prepare(self, data: st.DataObject, owner: Owner) -> None:
        addr = data.draw(st.sampled_from(self.devices()))
        entry = self.entries.get(addr)
        if entry is not None and entry.owner is not None:
            try:
                self.mgr.prepare(owner, [HostdevSpec(address=addr)])
            except DeviceInUse:
                return
            raise AssertionError(f"prepare of active {addr} succeeded")
        self.mgr.prepare(owner, [HostdevSpec(address=addr)])
        self.entries[addr] = Entry(owner, entry.leaves_stub if entry else True)
        self.on_stub.add(addr)

    @rule(owner=st.sampled_from(OWNERS), count=st.integers(1, 3))
    def allocate(self, owner: Owner, count: int) -> None:
        # Untracked VFs are on their host driver and held by nobody: all free, taken
        # in index order.
        free = [a for a in self.vfs if a not in self.entries]
        if len(free) < count:
            try:
                self.mgr.allocate(owner, count)
            except NotEnoughFreeVfs as exc:
                assert exc.free == free
                return
            raise AssertionError(f"allocated {count} VFs with {len(free)} free")
        report = self.mgr.allocate(owner, count)
        assert report.chosen == free[:count]
        for addr in report.chosen:
            self.entries[addr] = Entry(owner, True)
            self.on_stub.add(addr)

    @rule(data=st.data(), owner=st.sampled_from(OWNERS))
    def reattach(self, data: st.DataObject, owner: Owner) -> None:
        addr = data.draw(st.sampled_from(self.devices()))
        report = self.mgr.reattach(owner, [addr])
        entry = self.entries.get(addr)
        if entry is None or entry.owner != owner:
            assert report.reattached == [] and report.kept_on_stub == []
            return
        if addr in self.holders and entry.leaves_stub:
            assert [f.address for f in report.failed] == [addr]
            return
        if entry.leaves_stub:
            assert report.reattached == [addr]
            del self.entries[addr]
            self.on_stub.discard(addr)
        else:
            assert report.kept_on_stub == [addr]
            self.entries[addr] = Entry(None, False)

    @rule(data=st.data())
    def node_detach(self, data: st.DataObject) -> None:
        addr = data.draw(st.sampled_from(self.devices()))
        entry = self.entries.get(addr)
        if entry is not None and entry.owner is not None:
            try:
                self.mgr.node_detach(addr)
            except DeviceInUse:
                return
            raise AssertionError("node_detach of an active device succeeded")
        self.mgr.node_detach(addr)
        if entry is None:
            self.entries[addr] = Entry(None, False)
        self.on_stub.add(addr)

    @rule(data=st.data())
    def node_reattach(self, data: st.DataObject) -> None:
        addr = data.draw(st.sampled_from(self.devices()))
        entry = self.entries.get(addr)
        try:
            self.mgr.node_reattach(addr)
        except DeviceInUse:
            assert entry is not None and entry.owner is not None
            return
        except DeviceBusy:
            assert addr in self.holders
            return
        assert entry is None or entry.owner is None
        self.entries.pop(addr, None)
        self.on_stub.discard(addr)

    @precondition(lambda self: any(a not in self.holders for a in self.on_stub))
    @rule(data=st.data(), pid=st.integers(100, 200), via=st.sampled_from(["group", "mmap"]),
          visible=st.booleans())
    def hold(self, data: st.DataObject, pid: int, via: str, visible: bool) -> None:
        free = sorted(a for a in self.on_stub if a not in self.holders)
        addr = data.draw(st.sampled_from(free))
        # Every hold is a new process: a pid reused with another visibility is a
        # contradiction the fake kernel refuses (a process cannot be both).
        self.holds_made += 1
        self.holders[addr] = self.kernel.hold_vfio(addr, pid=pid + self.holds_made * 1000,
                                                   via=via, visible=visible)

    @precondition(lambda self: bool(self.holders))
    @rule(data=st.data())
    def let_go(self, data: st.DataObject) -> None:
        addr = data.draw(st.sampled_from(sorted(self.holders)))
        self.holders.pop(addr).release()

    @rule(count=st.integers(0, 3), force=st.booleans())
    def set_num_vfs(self, count: int, force: bool) -> None:
        current = self.vfs
        assigned = [a for a in current if self.entries.get(a, Entry(None, False)).owner]
        held = [a for a in current if a in self.holders]
        if len(current) == count:
            self.mgr.set_num_vfs(PF, count, force=force)
            return
        try:
            report = self.mgr.set_num_vfs(PF, count, force=force)
        except DeviceInUse:
            assert assigned and not force
            return
        except DeviceBusy:
            assert held
            return
        assert not held and (force or not assigned)
        for addr in current:
            self.entries.pop(addr, None)
            self.on_stub.discard(addr)
        self.vfs = report.vfs

    @precondition(lambda self: not any(a in self.holders for a in self.vfs))
    @rule()
    def operator_clears_vfs_behind_our_back(self) -> None:
        sysfs = self.mgr.sysfs
        sysfs.write(sysfs.device_path(PF, "sriov_numvfs"), "0\n")
        self.mgr.prune_missing()
        for addr in self.vfs:
            self.entries.pop(addr, None)
            self.on_stub.discard(addr)
        self.vfs = []

    # ------------------------------------------------------------- invariants
    @invariant()
    def lists_and_drivers_agree(self) -> None:
        lists = self.mgr.lists()
        assert {a: r.owner for a, r in lists.active.items()} == {
            a: e.owner for a, e in self.entries.items() if e.owner is not None}
        assert set(lists.inactive) == {a for a, e in self.entries.items() if e.owner is None}
        for addr in self.devices():
            want = "vfio-pci" if addr in self.on_stub else self.host_driver(addr)
            assert current_driver(self.mgr.sysfs, addr) == want, addr
        assert self.kernel.would_block_events == []

    @invariant()
    def holders_found_and_named(self) -> None:
        """Every holder is found (by pid, or as a user outside our view); nothing idle is.

        An anonymous mapping of a process with no group open cannot be told apart on
        6.1, so such a process may also be named for another device that is held."""
        found = vfio.holders_of(self.mgr.sysfs, self.devices())
        mapping_only = {h.pid for h in self.holders.values() if h.visible and h.via == "mmap"}
        for addr in self.devices():
            held = self.holders.get(addr)
            pids = [h.pid for h in found[addr]]
            if held is None:
                assert pids == [], addr
                continue
            if held.visible:
                want = "mapping" if held.via == "mmap" else "group"
                [mine] = [h for h in found[addr] if h.pid == held.pid]
                assert any(v.startswith(want) for v in mine.via), mine
                others = set(pids) - {held.pid}
            else:
                assert pids, addr
                others = set(pids) - {None}
            assert others <= mapping_only, (addr, pids)


Manager.TestCase.settings = settings(max_examples=25, stateful_step_count=25, deadline=None,
                                     suppress_health_check=list(HealthCheck))
test_manager_agrees_with_model = Manager.TestCase
_ = HostdevError
