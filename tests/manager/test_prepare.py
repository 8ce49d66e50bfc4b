"""prepare: checks, detach to the stub, reset, activation, and every refusal."""

from __future__ import annotations

import pytest

from hostdev.errors import BadInput, DeviceInUse, DeviceNotFound, NotAssignable
from hostdev.state.records import HostdevSpec
from tests.smallhost import GPU, GPU_AUDIO, NIC, NVME, PF, ROOT_PORT, VM1, VM2, Host


def test_prepare_managed_vf(host: Host) -> None:
    vf0, _ = host.vfs(2)
    assert host.driver(vf0) == "ixgbevf"
    report = host.mgr.prepare(VM1, [HostdevSpec(address=vf0)])
    assert host.driver(vf0) == "vfio-pci"
    assert host.override(vf0) == "vfio-pci"
    record = report.prepared[0]
    assert (record.address, record.owner, record.managed) == (vf0, VM1, True)
    assert record.original_driver == "ixgbevf" and record.original_override is None
    assert record.unbind_from_stub is True
    assert (record.vendor, record.device, record.pf, record.vf_index) == (0x8086, 0x10ED, PF, 0)
    assert host.mgr.used_by(vf0) == VM1
    assert [r.address for r in host.mgr.active()] == [vf0]
    assert host.mgr.inactive() == []


@pytest.mark.parametrize("owner", ["qemu/vm1", None, ("qemu", "vm1"), 5])
def test_an_owner_that_is_not_an_owner_is_refused(host: Host, owner: object) -> None:
    """It was kept in the record as it was: the device moved, and the state file written
    then was refused as damaged by every later call (StateCorrupt at active.0.owner)."""
    host.vfs(2)  # free VFs for allocate
    writes = len(host.kernel.writes)
    for call in (lambda: host.mgr.prepare(owner, [NIC]),  # type: ignore[arg-type]
                 lambda: host.mgr.allocate(owner, 1),  # type: ignore[arg-type]
                 lambda: host.mgr.reattach(owner, [NIC]),  # type: ignore[arg-type]
                 lambda: host.mgr.update_active(owner, [NIC])):  # type: ignore[arg-type]
        with pytest.raises(BadInput, match=r"owner must be an Owner, not .*Owner\.parse"):
            call()
    assert len(host.kernel.writes) == writes and host.driver(NIC) == "e1000e"
    assert host.mgr.active() == [] and host.mgr.lists().active == {}


@pytest.mark.parametrize("specs", [str(NIC), NIC, HostdevSpec(address=NIC), None, 5])
def test_devices_that_are_not_a_list_are_refused(host: Host, specs: object) -> None:
    """A lone address was taken one character at a time: "invalid PCI address '0'"."""
    with pytest.raises(BadInput, match="the devices must be a list of addresses or"
                                       " HostdevSpecs, not"):
        host.mgr.prepare(VM1, specs)  # type: ignore[arg-type]
    assert host.driver(NIC) == "e1000e"


def test_prepare_accepts_plain_addresses(host: Host) -> None:
    host.mgr.prepare(VM1, [str(NIC)])
    assert host.driver(NIC) == "vfio-pci"
    assert host.mgr.used_by("00:19.0") == VM1


def test_one_state_write_per_batch(host: Host) -> None:
    vfs = host.vfs(4)
    saves = host.mgr.store.saves
    host.mgr.prepare(VM1, [HostdevSpec(address=a) for a in [*vfs, NIC]])
    assert host.mgr.store.saves == saves + 1
    assert all(host.driver(a) == "vfio-pci" for a in [*vfs, NIC])


def test_missing_device_is_an_error_naming_it(host: Host) -> None:
    before = host.where(NIC)
    with pytest.raises(DeviceNotFound, match="0000:05:00.0 not found"):
        host.mgr.prepare(VM1, [HostdevSpec(address=NIC), HostdevSpec(address="0000:05:00.0")])
    assert host.where(NIC) == before
    assert host.mgr.active() == [] and host.mgr.inactive() == []


def test_bridge_refused(host: Host) -> None:
    with pytest.raises(NotAssignable, match="Non-endpoint PCI devices cannot be assigned"):
        host.mgr.prepare(VM1, [ROOT_PORT])
    assert host.driver(ROOT_PORT) == "pcieport"


def test_active_device_refused_even_for_same_owner(host: Host) -> None:
    host.mgr.prepare(VM1, [NIC])
    with pytest.raises(DeviceInUse) as info:
        host.mgr.prepare(VM1, [NIC])
    assert str(info.value) == "PCI device 0000:00:19.0 is in use by driver qemu, domain vm1"
    with pytest.raises(DeviceInUse, match="in use by driver qemu, domain vm1"):
        host.mgr.prepare(VM2, [NIC])
    assert host.mgr.used_by(NIC) == VM1


def test_group_member_on_host_driver_refused(host: Host) -> None:
    before = host.where(GPU, GPU_AUDIO)
    with pytest.raises(NotAssignable) as info:
        host.mgr.prepare(VM1, [GPU])
    assert "0000:04:00.1 on snd_hda_intel" in str(info.value)
    assert "IOMMU group 4" in str(info.value)
    assert host.where(GPU, GPU_AUDIO) == before


def test_whole_group_together(host: Host) -> None:
    host.mgr.prepare(VM1, [GPU, GPU_AUDIO])
    assert host.driver(GPU) == host.driver(GPU_AUDIO) == "vfio-pci"


def test_group_member_of_another_owner_refused(host: Host) -> None:
    host.mgr.prepare(VM1, [GPU_AUDIO, GPU])
    host.mgr.reattach(VM1, [GPU])
    host.mgr.node_detach(GPU)
    # GPU_AUDIO is still active for vm1: vm2 cannot take GPU from the same group.
    with pytest.raises(DeviceInUse, match="0000:04:00.1 is in use by driver qemu, domain vm1"):
        host.mgr.prepare(VM2, [GPU])
    # The same owner may add a function of a group it already holds.
    host.mgr.prepare(VM1, [GPU])
    assert host.mgr.used_by(GPU) == VM1


def test_group_member_parked_on_stub_is_fine(host: Host) -> None:
    host.mgr.node_detach(GPU_AUDIO, stub_driver="pci-stub")
    host.mgr.prepare(VM1, [GPU])
    assert host.driver(GPU) == "vfio-pci"
    assert host.driver(GPU_AUDIO) == "pci-stub"


def test_unmanaged_must_be_detached_first(host: Host) -> None:
    with pytest.raises(NotAssignable, match="must be manually detached.*hostdev detach"):
        host.mgr.prepare(VM1, [HostdevSpec(address=NIC, managed=False)])
    assert host.driver(NIC) == "e1000e"


def test_unmanaged_on_stub_is_adopted_and_kept_on_stub(host: Host) -> None:
    host.mgr.node_detach(NIC)
    host.mgr.prepare(VM1, [HostdevSpec(address=NIC, managed=False)])
    assert host.mgr.used_by(NIC) == VM1
    report = host.mgr.reattach(VM1, [NIC])
    assert report.kept_on_stub == [NIC] and report.reattached == []
    assert host.driver(NIC) == "vfio-pci"
    assert [r.address for r in host.mgr.inactive()] == [NIC]


def test_untracked_device_already_on_vfio_adopted(host: Host) -> None:
    host.mgr.sysfs.write(host.mgr.sysfs.device_path(NIC, "driver_override"), "vfio-pci\n")
    host.mgr.sysfs.write(host.mgr.sysfs.driver_dir("e1000e") + "/unbind", f"{NIC}\n")
    host.mgr.sysfs.write(host.mgr.sysfs.drivers_probe_path, f"{NIC}\n")
    assert host.driver(NIC) == "vfio-pci"
    host.mgr.prepare(VM1, [HostdevSpec(address=NIC, managed=False)])
    record = host.mgr.active()[0]
    assert record.unbind_from_stub is False and record.stub_driver == "vfio-pci"


def test_stub_not_bound_is_a_failure_and_rolled_back(host: Host) -> None:
    host.kernel.fail_probe("vfio-pci", 22)
    before = host.where(NIC, NVME)
    with pytest.raises(Exception, match="did not bind to vfio-pci"):
        host.mgr.prepare(VM1, [NVME, NIC])
    assert host.where(NIC, NVME) == before
    assert host.mgr.active() == [] and host.mgr.inactive() == []


def test_stub_not_loaded(host: Host) -> None:
    with pytest.raises(NotAssignable, match="driver vfio-mdev-x is not loaded"):
        host.mgr.prepare(VM1, [HostdevSpec(address=NIC, stub_driver="vfio-mdev-x")])


def test_duplicate_address_in_batch(host: Host) -> None:
    with pytest.raises(BadInput, match="listed twice"):
        host.mgr.prepare(VM1, [NIC, "00:19.0"])


def test_pci_stub_devices_are_reset(host: Host) -> None:
    host.mgr.prepare(VM1, [HostdevSpec(address=NIC, stub_driver="pci-stub")])
    resets = [w for w in host.kernel.writes if str(w[0]).endswith(f"{NIC}/reset")]
    assert len(resets) == 1
    host.mgr.prepare(VM1, [HostdevSpec(address=NVME)])
    assert not [w for w in host.kernel.writes if str(w[0]).endswith(f"{NVME}/reset")]
