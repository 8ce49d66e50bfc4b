"""libvirt's behaviours that hostdev follows, and the differences the README claims.

Each test pins one line of the README's "Differences from libvirt" or one
libvirt behaviour (reattach pruning both lists, update_active checking the
stub, node reset skipping vfio-bound devices) on the fake kernel.
"""

from __future__ import annotations

import pytest

from hostdev.errors import DeviceInUse, DeviceNotFound, KernelRefused, NotAssignable
from hostdev.manager import HostdevManager
from hostdev.state.records import HostdevSpec
from tests.smallhost import NIC, NVME, ROOT_PORT, VM1, VM2, Host

# ------------------------------------------------- reattach prunes vanished devices


def test_reattach_prunes_a_named_inactive_record_whose_device_vanished(host: Host) -> None:
    vf0, _ = host.vfs(2)
    host.mgr.node_detach(vf0)
    host.vfs(0)
    report = host.mgr.reattach(VM1, [vf0])
    assert [r.address for r in report.pruned] == [vf0]
    assert report.warnings == [] and report.failed == []
    assert host.mgr.inactive() == [] and host.mgr.active() == []


def test_reattach_prunes_a_named_inactive_record_of_a_recreated_device(host: Host) -> None:
    vf0, _ = host.vfs(2)
    host.mgr.node_detach(vf0)
    assert host.vfs(2)[0] == vf0  # 2 -> 0 -> 2: a new function at the same address
    report = host.mgr.reattach(VM1, [vf0])
    assert [r.address for r in report.pruned] == [vf0]
    assert host.mgr.inactive() == [] and host.driver(vf0) == "ixgbevf"


def test_reattach_leaves_a_present_inactive_record_alone(host: Host) -> None:
    host.mgr.node_detach(NIC)
    report = host.mgr.reattach(VM1, [NIC, "0000:00:19.0"])
    assert report.warnings == [f"{NIC} is not active; left alone"]
    assert [r.address for r in host.mgr.inactive()] == [NIC]
    assert host.driver(NIC) == "vfio-pci"


def test_reattach_leaves_another_owners_vanished_record_alone(host: Host) -> None:
    """Difference: libvirt deletes it whatever the owner; hostdev only for the
    caller's or ownerless records, so one guest cannot drop another's."""
    vf0, _ = host.vfs(2)
    host.mgr.prepare(VM2, [vf0])
    host.vfs(0)
    report = host.mgr.reattach(VM1, [vf0])
    assert report.pruned == []
    assert report.warnings == [f"{vf0} is owned by driver qemu, domain vm2; left alone"]
    assert host.mgr.used_by(vf0) == VM2
    assert [r.address for r in host.mgr.reattach(VM2, [vf0]).pruned] == [vf0]
    assert host.mgr.active() == []


# ------------------------------------------------- update_active checks the stub


def test_update_active_refuses_a_tracked_device_that_left_its_stub(host: Host) -> None:
    host.mgr.prepare(VM1, [NIC])
    sysfs = host.mgr.sysfs
    # Behind our back: back on e1000e.
    sysfs.write(sysfs.device_path(NIC, "driver_override"), "\n")
    sysfs.write(sysfs.driver_dir("vfio-pci") + "/unbind", f"{NIC}\n")
    sysfs.write(sysfs.drivers_probe_path, f"{NIC}\n")
    before = host.mgr.lists()
    with pytest.raises(NotAssignable) as caught:
        host.mgr.update_active(VM1, [NIC])
    assert str(caught.value) == (
        f"cannot mark PCI device {NIC} active for driver qemu, domain vm1: it is on e1000e,"
        " not on its stub vfio-pci, so the guest cannot be using it")
    assert host.mgr.lists() == before


def test_update_active_refuses_an_inactive_record_off_its_stub(host: Host) -> None:
    host.mgr.node_detach(NIC)
    sysfs = host.mgr.sysfs
    sysfs.write(sysfs.driver_dir("vfio-pci") + "/unbind", f"{NIC}\n")
    with pytest.raises(NotAssignable, match=f"{NIC} .*: it is on no driver, not on its stub"):
        host.mgr.update_active(VM1, [NIC])
    assert host.mgr.active() == [] and [r.address for r in host.mgr.inactive()] == [NIC]


def test_update_active_keeps_a_tracked_device_still_on_its_stub(host: Host) -> None:
    host.mgr.node_detach(NIC)
    [record] = host.mgr.update_active(VM1, [NIC]).active
    assert (record.owner, record.original_driver) == (VM1, "e1000e")
    assert host.mgr.inactive() == []


# ------------------------------------------------- an adopted device's original driver


def test_adopted_device_goes_back_to_the_kernels_choice_without_a_false_warning(
        host: Host) -> None:
    sysfs = host.mgr.sysfs
    sysfs.write(sysfs.device_path(NIC, "driver_override"), "vfio-pci\n")
    sysfs.write(sysfs.driver_dir("e1000e") + "/unbind", f"{NIC}\n")
    sysfs.write(sysfs.drivers_probe_path, f"{NIC}\n")
    fresh = HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0)
    [record] = fresh.update_active(VM1, [HostdevSpec(address=NIC)]).active
    assert (record.original_driver, record.unbind_from_stub) == (None, True)
    report = fresh.reattach(VM1, [NIC])
    assert report.ok and report.reattached == [NIC] and report.drivers == {NIC: "e1000e"}
    assert report.warnings == []
    assert host.where(NIC) == {NIC: ("e1000e", None)} and fresh.inactive() == []


# ------------------------------------------------- node reset of vfio-bound devices


def test_node_reset_skips_a_vfio_bound_device_without_reset_method(host: Host) -> None:
    dev = host.kernel.add_device("0000:05:00.0", vendor=0x8086, device=0x10D3,
                                 class_code=0x020000, iommu_group=50, reset_methods=())
    with pytest.raises(KernelRefused, match="no reset method"):
        host.mgr.node_reset(dev)  # on e1000e: a reset is needed and there is none
    host.mgr.node_detach(dev)
    writes = len(host.kernel.writes)
    result = host.mgr.node_reset(dev)
    assert (result.driver, result.action) == (
        "vfio-pci", "skipped: vfio-pci resets the device itself")
    assert len(host.kernel.writes) == writes
    assert host.kernel.device_state(dev).reset_count == 0


def test_node_reset_skips_vfio_even_with_a_reset_method(host: Host) -> None:
    host.mgr.node_detach(NIC)
    assert host.mgr.node_reset(NIC).action == "skipped: vfio-pci resets the device itself"
    assert host.kernel.device_state(NIC).reset_count == 0


def test_node_reset_still_refuses_active_and_missing_devices(host: Host) -> None:
    host.mgr.prepare(VM1, [NIC])
    with pytest.raises(DeviceInUse):
        host.mgr.node_reset(NIC)
    with pytest.raises(DeviceNotFound):
        host.mgr.node_reset("0000:09:00.0")


# ------------------------------------------------- other differences the README claims


def test_node_detach_refuses_a_bridge(host: Host) -> None:
    """Difference: libvirt's node detach has no endpoint check."""
    with pytest.raises(NotAssignable, match=f"PCI device {ROOT_PORT} is a bridge"):
        host.mgr.node_detach(ROOT_PORT)
    assert host.where(ROOT_PORT) == {ROOT_PORT: ("pcieport", None)}
    assert host.mgr.inactive() == []


def test_both_lists_are_shared_by_every_manager(host: Host) -> None:
    """Difference: libvirt keeps both lists in one process's memory."""
    host.mgr.prepare(VM1, [NIC])
    host.mgr.node_detach(NVME)
    other = HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0)
    assert [(r.address, r.owner) for r in other.active()] == [(NIC, VM1)]
    assert [(r.address, r.owner) for r in other.inactive()] == [(NVME, None)]
    with pytest.raises(DeviceInUse, match="in use by driver qemu, domain vm1"):
        other.prepare(VM2, [NIC])
