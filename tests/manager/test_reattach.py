"""reattach, update_active and the node verbs: the libvirt round trips."""

from __future__ import annotations

import os

import pytest

from hostdev.address import PciAddress
from hostdev.errors import DeviceInUse, DeviceNotFound, NotAssignable
from hostdev.manager import HostdevManager
from hostdev.state.records import HostdevSpec
from tests.smallhost import GPU, NIC, NVME, PF, VM1, VM2, Host


def test_managed_round_trip(host: Host) -> None:
    vf0, vf1 = host.vfs(2)
    host.mgr.prepare(VM1, [vf0, vf1, NIC])
    report = host.mgr.reattach(VM1, [vf0, vf1, NIC])
    assert report.ok and sorted(report.reattached) == sorted([vf0, vf1, NIC])
    assert host.where(vf0, vf1, NIC) == {vf0: ("ixgbevf", None), vf1: ("ixgbevf", None),
                                          NIC: ("e1000e", None)}
    assert host.mgr.active() == [] and host.mgr.inactive() == []


def test_original_override_restored(host: Host) -> None:
    sysfs = host.mgr.sysfs
    sysfs.write(sysfs.device_path(NIC, "driver_override"), "e1000e\n")
    host.mgr.prepare(VM1, [NIC])
    assert host.mgr.active()[0].original_override == "e1000e"
    host.mgr.reattach(VM1, [NIC])
    assert host.where(NIC) == {NIC: ("e1000e", "e1000e")}


def test_reattach_only_touches_the_callers_devices(host: Host) -> None:
    host.mgr.prepare(VM1, [NIC])
    host.mgr.prepare(VM2, [NVME])
    report = host.mgr.reattach(VM1, [NIC, NVME])
    assert report.reattached == [NIC]
    assert any("owned by driver qemu, domain vm2" in w for w in report.warnings)
    assert host.mgr.used_by(NVME) == VM2 and host.driver(NVME) == "vfio-pci"


def test_original_driver_not_coming_back_is_a_failure(host: Host) -> None:
    host.mgr.prepare(VM1, [NIC])
    host.kernel.fail_probe("e1000e", 5)
    report = host.mgr.reattach(VM1, [NIC])
    assert report.reattached == [] and not report.ok
    assert "did not come back on e1000e (driver is now none)" in report.failed[0].reason
    assert [r.original_driver for r in host.mgr.inactive()] == ["e1000e"]


def test_mixed_node_detached_then_prepared_stays_on_stub(host: Host) -> None:
    host.mgr.node_detach(NIC)
    host.mgr.prepare(VM1, [HostdevSpec(address=NIC, managed=True)])
    report = host.mgr.reattach(VM1, [NIC])
    assert report.kept_on_stub == [NIC]
    assert host.driver(NIC) == "vfio-pci"
    host.mgr.node_reattach(NIC)
    assert host.where(NIC) == {NIC: ("e1000e", None)}
    assert host.mgr.inactive() == []


def test_node_detach_reattach_round_trip(host: Host) -> None:
    result = host.mgr.node_detach(NVME)
    assert result.action == "detached to vfio-pci"
    record = host.mgr.inactive()[0]
    assert (record.address, record.owner, record.managed) == (NVME, None, False)
    assert record.original_driver == "nvme"
    assert host.mgr.node_reattach(NVME).driver == "nvme"
    assert host.where(NVME) == {NVME: ("nvme", None)}
    assert host.mgr.inactive() == []


def test_node_reattach_of_untracked_stub_device(host: Host) -> None:
    sysfs = host.mgr.sysfs
    sysfs.write(sysfs.device_path(NIC, "driver_override"), "vfio-pci\n")
    sysfs.write(sysfs.driver_dir("e1000e") + "/unbind", f"{NIC}\n")
    sysfs.write(sysfs.drivers_probe_path, f"{NIC}\n")
    result = host.mgr.node_reattach(NIC)
    assert result.driver == "e1000e"
    assert host.where(NIC) == {NIC: ("e1000e", None)}


def test_node_reattach_of_device_on_host_driver_is_a_no_op(host: Host) -> None:
    writes = len(host.kernel.writes)
    assert host.mgr.node_reattach(NIC).action == "already on host driver e1000e"
    assert len(host.kernel.writes) == writes


def test_node_verbs_refuse_active_devices(host: Host) -> None:
    host.mgr.prepare(VM1, [NIC])
    for verb in (host.mgr.node_detach, host.mgr.node_reattach, host.mgr.node_reset):
        with pytest.raises(DeviceInUse, match="in use by driver qemu, domain vm1"):
            verb(NIC)
    assert host.driver(NIC) == "vfio-pci"


def test_node_reset(host: Host) -> None:
    host.mgr.node_reset(NVME)
    assert [w for w in host.kernel.writes if str(w[0]).endswith(f"{NVME}/reset")]
    with pytest.raises(NotAssignable, match="Only PCI endpoint devices can be reset"):
        host.mgr.node_reset("0000:00:01.0")
    with pytest.raises(DeviceNotFound):
        host.mgr.node_reset("0000:09:00.0")


def test_node_detach_refuses_pf_with_vfs(host: Host) -> None:
    host.vfs(2)
    with pytest.raises(NotAssignable, match="set its VF count to 0 first"):
        host.mgr.node_detach(PF)


def test_update_active_after_state_loss(host: Host) -> None:
    host.mgr.prepare(VM1, [NIC, NVME])
    os.unlink(host.mgr.store.path)
    fresh = HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0)
    report = fresh.update_active(VM1, [NIC, NVME, "0000:0a:00.0"])
    assert sorted(r.address for r in report.active) == [NIC, NVME]
    assert [r.address for r in report.pruned] == [PciAddress.parse("0000:0a:00.0")]
    assert fresh.used_by(NIC) == VM1
    done = fresh.reattach(VM1, [NIC, NVME])
    assert sorted(done.reattached) == [NIC, NVME]
    assert host.where(NIC, NVME) == {NIC: ("e1000e", None), NVME: ("nvme", None)}


def test_update_active_keeps_remembered_state(host: Host) -> None:
    host.mgr.prepare(VM1, [NIC])
    report = host.mgr.update_active(VM1, [NIC])
    assert report.active[0].original_driver == "e1000e"


def test_update_active_is_all_or_nothing(host: Host) -> None:
    host.mgr.prepare(VM2, [NVME])
    host.mgr.node_detach(NIC)
    with pytest.raises(DeviceInUse):
        host.mgr.update_active(VM1, [NIC, NVME])
    assert host.mgr.used_by(NIC) is None and host.mgr.used_by(NVME) == VM2
    with pytest.raises(NotAssignable, match="not on a stub driver"):
        host.mgr.update_active(VM1, [NIC, GPU])
    assert host.mgr.used_by(NIC) is None


def test_node_reattach_clears_an_override_naming_the_stub(host: Host) -> None:
    sysfs = host.mgr.sysfs
    sysfs.write(sysfs.device_path(NIC, "driver_override"), "vfio-pci\n")
    sysfs.write(sysfs.driver_dir("e1000e") + "/unbind", f"{NIC}\n")
    sysfs.write(sysfs.drivers_probe_path, f"{NIC}\n")
    host.mgr.prepare(VM1, [HostdevSpec(address=NIC, managed=False)])
    host.mgr.reattach(VM1, [NIC])
    assert host.mgr.inactive()[0].original_override == "vfio-pci"
    assert host.mgr.node_reattach(NIC).driver == "e1000e"
    assert host.where(NIC) == {NIC: ("e1000e", None)}
