"""VF count changes that never orphan assigned VFs, and PF/VF ordering."""

from __future__ import annotations

import pytest

from hostdev.errors import BadInput, DeviceBusy, DeviceInUse, NotAssignable
from tests.smallhost import NIC, PF, VM1, Host


def test_grow_from_zero_and_through_zero(host: Host) -> None:
    report = host.mgr.set_num_vfs(PF, 2)
    assert (report.before, report.after, report.went_through_zero) == (0, 2, False)
    assert len(report.vfs) == 2
    report = host.mgr.set_num_vfs(PF, 4)
    assert (report.before, report.after, report.went_through_zero) == (2, 4, True)
    writes = [(w.path, w.value) for w in host.kernel.writes if w.path.endswith("sriov_numvfs")]
    assert [v for _, v in writes][-2:] == ["0\n", "4\n"]
    assert host.mgr.set_num_vfs(PF, 4).after == 4


def test_refuses_when_assigned_vf_would_vanish(host: Host) -> None:
    vf0, _ = host.vfs(2)
    host.mgr.prepare(VM1, [vf0])
    with pytest.raises(DeviceInUse, match=f"{vf0} is in use by driver qemu, domain vm1"):
        host.mgr.set_num_vfs(PF, 0)
    assert host.mgr.used_by(vf0) == VM1 and host.driver(vf0) == "vfio-pci"


def test_force_orphans_and_reports(host: Host) -> None:
    vf0, vf1 = host.vfs(2)
    host.mgr.prepare(VM1, [vf0])
    host.mgr.node_detach(vf1)
    report = host.mgr.set_num_vfs(PF, 1, force=True)
    assert [r.address for r in report.orphaned] == [vf0]
    assert [r.address for r in report.pruned] == [vf1]
    assert host.mgr.active() == [] and host.mgr.inactive() == []
    assert host.driver(vf0) == "ixgbevf", "a new VF at the old address, on its own driver"


def test_held_vf_refused_even_with_force(host: Host) -> None:
    vf0, _ = host.vfs(2)
    host.mgr.prepare(VM1, [vf0])
    host.kernel.hold_vfio(vf0, pid=99)
    with pytest.raises(DeviceBusy, match="pid 99"):
        host.mgr.set_num_vfs(PF, 0, force=True, release_timeout=0.01)
    assert host.kernel.would_block_events == []
    assert len(host.vfs_now()) == 2


def test_bad_counts(host: Host) -> None:
    with pytest.raises(BadInput, match="supports 0 to 8 VFs, not 9"):
        host.mgr.set_num_vfs(PF, 9)
    with pytest.raises(NotAssignable, match="not an SR-IOV physical function"):
        host.mgr.set_num_vfs(NIC, 1)


def test_pf_with_vfs_or_tracked_vfs_refused(host: Host) -> None:
    vf0, _ = host.vfs(2)
    with pytest.raises(NotAssignable, match="set its VF count to 0 first"):
        host.mgr.prepare(VM1, [PF])
    host.mgr.node_detach(vf0)
    host.vfs(0)
    with pytest.raises(NotAssignable, match=f"its VF {vf0} is still tracked"):
        host.mgr.node_detach(PF)
    host.mgr.prune_missing()
    host.mgr.node_detach(PF)
    assert host.driver(PF) == "vfio-pci"


def test_reattach_gives_vfs_back_before_their_pf(host: Host) -> None:
    vf0, vf1 = host.vfs(2)
    host.mgr.prepare(VM1, [vf1, vf0])
    # Track the PF as active too (as a guest holding PF and VFs would): its
    # record is written straight into the state, the PF stays on ixgbe.
    from hostdev.state.records import DeviceRecord

    with host.mgr.store.locked():
        lists = host.mgr.store.load()
        lists.active[PF] = DeviceRecord(address=PF, owner=VM1, vendor=0x8086, device=0x10FB,
                                        original_driver="ixgbe", unbind_from_stub=True,
                                        identity=host.mgr.sysfs.identity(PF))
        host.mgr.store.save(lists)
    report = host.mgr.reattach(VM1, [PF, vf1, vf0])
    assert report.reattached[-1] == PF
    assert set(report.reattached[:2]) == {vf0, vf1}


def test_prepare_takes_pf_before_its_vfs() -> None:
    from hostdev.address import PciAddress
    from hostdev.linux.device import PciDevice, VfInfo
    from hostdev.ops.prepare import _is_vf_of

    pf = PciDevice(address=PF, vendor=0x8086, device=0x10FB, class_code=0x020000)
    vf = PciDevice(address=PciAddress.parse("0000:03:10.0"), vendor=0x8086, device=0x10ED,
                   class_code=0x020000, vf=VfInfo(pf=PF, index=0))
    batch = {vf.address: vf, pf.address: pf}
    assert sorted(batch.values(), key=lambda d: _is_vf_of(d, batch)) == [pf, vf]
