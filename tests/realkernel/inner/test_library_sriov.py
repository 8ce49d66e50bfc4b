"""The library's records when VFs vanish and come back under ``sriov_numvfs`` changes.

(f) numvfs 0 under a VF tracked inactive: prune_missing reports the record;
(g) numvfs back up: the new VF at the old address is not taken for the old record.
Those two write the VF counts to sysfs directly (an operator acting behind the library's
back); the last two change them through the library's ``set_num_vfs``, the very last to
let ``allocate`` choose among the VFs.
"""

from __future__ import annotations

import os

import pytest

from hostdev.errors import DeviceInUse, NotEnoughFreeVfs
from hostdev.manager import HostdevManager
from hostdev.state.records import HostdevSpec, Owner

from . import guest
from .guest import DEV_VFIO, dev
from .observing import Observer

pytestmark = pytest.mark.realkernel


def test_numvfs_zero_then_prune(pf: str, manager: HostdevManager, observe: Observer) -> None:
    """(f) A VF detached by node_detach vanishes with numvfs 0; prune_missing drops it."""
    vfs = guest.enable_vfs(2, autoprobe=False)
    manager.node_detach(vfs[0])
    group = str(guest.group_of(vfs[0]))
    assert guest.driver_of(vfs[0]) == "vfio-pci" and (DEV_VFIO / group).exists()
    [record] = manager.inactive()
    result, seconds = guest.timed_write(dev(pf) / "sriov_numvfs", "0")
    assert result == "ok"
    observe.record("numvfs 0 under an idle vfio-pci VF took (s)", round(seconds, 2))
    assert not dev(vfs[0]).exists() and not (DEV_VFIO / group).exists()
    assert manager.inactive() == [record], "the record went away by itself"
    pruned = manager.prune_missing()
    assert pruned == [record]
    assert manager.inactive() == [] and manager.active() == []
    assert manager.prune_missing() == []


def test_recreated_vf_is_not_the_old_record(pf: str, manager: HostdevManager,
                                            observe: Observer) -> None:
    """(g) node_detach VF 0, numvfs 0 then 2: a new VF sits at the old address (same ids,
    PF and index, and here the same group number). The old record is stale: prune_missing
    drops it, and the new VF is left as the kernel made it."""
    vfs = guest.enable_vfs(2, autoprobe=False)
    vf = vfs[0]
    manager.node_detach(vf)
    [old] = manager.inactive()
    old_group = guest.group_of(vf)
    guest.must(dev(pf) / "sriov_numvfs", "0")
    assert guest.enable_vfs(2, autoprobe=False) == vfs
    new_inode = os.stat(dev(vf)).st_ino
    observe.record("VF 0 group and directory inode before/after re-creation",
                   {"group": [old_group, guest.group_of(vf)],
                    "inode": [old.identity, new_inode]})
    assert new_inode != old.identity, "kernfs reused the inode: identity check is blind"
    assert (guest.driver_of(vf), guest.override_of(vf)) == (None, "(null)")
    assert manager.inactive() == [old], "the stale record went away by itself"

    pruned = manager.prune_missing()
    assert pruned == [old]
    assert manager.inactive() == [] and manager.active() == []
    assert (guest.driver_of(vf), guest.override_of(vf)) == (None, "(null)"), "new VF touched"

    # The new VF is a fresh device for the library: it can be given to an owner.
    owner = Owner(driver="qemu", domain="vm-new")
    report = manager.prepare(owner, [HostdevSpec(address=vf)])
    assert [r.identity for r in report.prepared] == [new_inode]
    assert guest.driver_of(vf) == "vfio-pci"
    back = manager.reattach(owner, [vf])
    assert [str(a) for a in back.reattached] == [vf] and back.failed == []
    assert (guest.driver_of(vf), guest.override_of(vf)) == (None, "(null)")


def test_stale_record_is_pruned_by_node_reattach(pf: str, manager: HostdevManager) -> None:
    """(g, through a verb) node_reattach of the re-created VF prunes the old record and
    does not bind the new VF anywhere (autoprobe 0, no override)."""
    vf = guest.enable_vfs(1, autoprobe=False)[0]
    manager.node_detach(vf)
    [old] = manager.inactive()
    guest.must(dev(pf) / "sriov_numvfs", "0")
    guest.enable_vfs(1, autoprobe=False)
    result = manager.node_reattach(vf)
    assert result.pruned == [old]
    assert result.driver is None and guest.driver_of(vf) is None
    assert guest.override_of(vf) == "(null)"
    assert manager.inactive() == []


def test_set_num_vfs_through_the_library(pf: str, manager: HostdevManager,
                                         observe: Observer) -> None:
    """VF creation and removal through set_num_vfs: refusal under an assigned VF, the
    change through 0, and the records of vanished VFs pruned."""
    guest.must(dev(pf) / "sriov_drivers_autoprobe", "0")  # nvme would grab, then drop them
    report = manager.set_num_vfs(pf, 2)
    assert (report.before, report.after, report.went_through_zero) == (0, 2, False)
    vfs = [str(v) for v in report.vfs]
    assert vfs == [os.path.basename(os.readlink(dev(pf) / f"virtfn{i}")) for i in range(2)]
    owner = Owner(driver="qemu", domain="rk")
    manager.prepare(owner, [HostdevSpec(address=vfs[0])])
    manager.node_detach(vfs[1])
    with pytest.raises(DeviceInUse, match=f"{vfs[0]} is in use by driver qemu, domain rk"):
        manager.set_num_vfs(pf, 3)
    assert guest.read(dev(pf) / "sriov_numvfs") == "2\n"
    assert manager.reattach(owner, [vfs[0]]).reattached == [report.vfs[0]]
    grown = manager.set_num_vfs(pf, 3)
    assert (grown.before, grown.after, grown.went_through_zero) == (2, 3, True)
    assert [str(r.address) for r in grown.pruned] == [vfs[1]]
    assert manager.inactive() == [] and manager.active() == []
    assert guest.driver_of(vfs[1]) is None, "the new VF at the old address was left alone"
    observe.record("set_num_vfs 2 -> 3 VFs", [str(v) for v in grown.vfs])
    assert manager.set_num_vfs(pf, 0).after == 0
    assert guest.read(dev(pf) / "sriov_numvfs") == "0\n"


def test_allocate_through_the_library(pf: str, manager: HostdevManager) -> None:
    """allocate takes the free VFs of the PF in index order, passes over a tracked one,
    refuses without touching anything when too few are free, and they go back."""
    guest.must(dev(pf) / "sriov_drivers_autoprobe", "0")  # VFs stay driverless
    vfs = [str(v) for v in manager.set_num_vfs(pf, 3).vfs]
    manager.node_detach(vfs[0])
    owner = Owner(driver="qemu", domain="alloc")
    with pytest.raises(NotEnoughFreeVfs, match="2 of 3 candidate VFs are free"):
        manager.allocate(owner, 3, pf=pf)
    assert [guest.driver_of(v) for v in vfs[1:]] == [None, None]
    assert [str(r.address) for r in manager.active()] == []
    report = manager.allocate(owner, 2, pf=pf)
    assert [str(a) for a in report.chosen] == vfs[1:]
    assert [guest.driver_of(v) for v in vfs] == ["vfio-pci"] * 3
    back = manager.reattach(owner, report.chosen)
    assert back.failed == [] and [str(a) for a in back.reattached] == vfs[1:]
    assert [guest.driver_of(v) for v in vfs[1:]] == [None, None]
    manager.node_reattach(vfs[0])
    assert manager.set_num_vfs(pf, 0).after == 0


def test_vfs_created_straight_onto_vfio_pci(pf: str, manager: HostdevManager,
                                            observe: Observer) -> None:
    """set_num_vfs with a stub: the PF's autoprobe is off while the VFs appear, each
    is moved to vfio-pci through its override (which the kernel lets through with
    autoprobe off), tracked inactive, and the setting is back on afterwards."""
    guest.must(dev(pf) / "sriov_drivers_autoprobe", "1")
    report = manager.set_num_vfs(pf, 2, stub_driver="vfio-pci")
    vfs = [str(v) for v in report.vfs]
    assert vfs == [os.path.basename(os.readlink(dev(pf) / f"virtfn{i}")) for i in range(2)]
    assert [(str(r.address), r.driver) for r in report.detached] == [
        (vf, "vfio-pci") for vf in vfs]
    assert [guest.driver_of(v) for v in vfs] == ["vfio-pci", "vfio-pci"]
    assert [guest.read(dev(v) / "driver_override") for v in vfs] == ["vfio-pci\n"] * 2
    assert guest.read(dev(pf) / "sriov_drivers_autoprobe") == "1\n"
    assert sorted(str(r.address) for r in manager.inactive()) == vfs
    observe.record("set_num_vfs 0 -> 2 VFs onto vfio-pci",
                   [f"{v}: {guest.driver_of(v)}" for v in vfs])
    # Given back: off the stub and its override cleared, for the kernel to choose
    # (the guest's nvme takes a VF and drops it: no driver is what it ends with).
    back = manager.node_reattach(vfs[0])
    assert back.address == report.vfs[0]
    assert guest.read(dev(vfs[0]) / "driver_override") == "(null)\n"
    assert guest.driver_of(vfs[0]) != "vfio-pci"
    assert manager.set_num_vfs(pf, 0).after == 0
    assert manager.inactive() == []
