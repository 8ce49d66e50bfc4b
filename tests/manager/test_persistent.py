"""Persistent wishes: recorded with the change they describe, applied again after a reboot.

A "reboot" here puts every device back on its host driver, removes every VF,
empties the state directory and starts a new manager; only the configuration
directory survives, as /etc does.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from pyfakefs.helpers import set_uid

from hostdev.address import PciAddress
from hostdev.errors import (
    DeviceNotFound,
    DeviceUsedByHost,
    StateCorrupt,
    StateUnusable,
    StateWriteFailed,
)
from hostdev.linux.binding import current_driver
from hostdev.linux.drivers import is_stub_driver
from hostdev.linux.vpd import build_vpd
from hostdev.manager import HostdevManager
from hostdev.state import files as statedir
from hostdev.state.wishes import Wishes
from hostdev.testing import FakeKernel
from tests.smallhost import GPU, NIC, NVME, PF, VM1, Host


def config_file() -> Path:
    """The wishes file (a function: a Path made before pyfakefs patches the file system
    would reach the real one on Python 3.10)."""
    return Path("/etc/hostdev/wishes.json")

CARD = PciAddress.parse("0000:05:00.0")
ROOT_UID = os.getuid()  # the real one (pyfakefs takes it as its first uid)


def new_manager(kernel: FakeKernel) -> HostdevManager:
    return HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0.0,
                          lock_timeout=1.0, module_loader=kernel.modprobe)


def reboot(host: Host) -> None:
    """Every device back on its host driver, no VFs, an empty state directory, a new manager."""
    sysfs = host.mgr.sysfs
    for addr in host.kernel.addresses():
        numvfs = sysfs.device_path(addr, "sriov_numvfs")
        if sysfs.exists(numvfs) and int(sysfs.read_text(numvfs)):
            sysfs.write(numvfs, "0\n")
    for addr in host.kernel.addresses():
        driver = current_driver(sysfs, addr)
        if sysfs.read_override(addr) is not None:
            sysfs.write(sysfs.device_path(addr, "driver_override"), "\n")
        if driver is not None and is_stub_driver(driver):
            sysfs.write(sysfs.device_path(addr, "driver/unbind"), str(addr))
            sysfs.write(sysfs.drivers_probe_path, str(addr))
    shutil.rmtree("/run/hostdev")
    host.mgr = new_manager(host.kernel)


def snapshot(host: Host) -> dict[PciAddress, tuple[str | None, str | None]]:
    return host.where(*host.kernel.addresses())


def test_reboot_reapplies_vf_count_then_detaches(host: Host) -> None:
    host.mgr.set_num_vfs(PF, 4, persistent=True)
    vf2 = host.vfs_now()[2]
    host.mgr.node_detach(vf2, persistent=True)
    host.mgr.node_detach(GPU, "pci-stub", persistent=True)
    assert stat.S_IMODE(os.stat(config_file()).st_mode) == 0o644
    tracked = {r.address: r.model_copy(update={"identity": None})
               for r in host.mgr.inactive()}

    reboot(host)
    assert host.vfs_now() == [] and host.driver(GPU) == "nouveau"
    assert host.mgr.inactive() == []

    report = host.mgr.apply_persistent()
    assert report.ok and report.changed
    assert [(o.address, o.wish) for o in report.done] == [
        (PF, "4 VFs"), (vf2, "on vfio-pci"), (GPU, "on pci-stub")]
    assert len(host.vfs_now()) == 4
    assert host.where(vf2, GPU) == {vf2: ("vfio-pci", "vfio-pci"),
                                    GPU: ("pci-stub", "pci-stub")}
    # Recorded exactly as node_detach records them (the kernel object is a new one).
    again = {r.address: r.model_copy(update={"identity": None})
             for r in host.mgr.inactive()}
    assert again == tracked


def test_second_apply_does_nothing_and_says_so(host: Host) -> None:
    host.mgr.set_num_vfs(PF, 2, persistent=True)
    host.mgr.node_detach(NIC, persistent=True)
    reboot(host)
    host.mgr.apply_persistent()
    writes = len(host.kernel.writes)
    saves = host.mgr.store.saves
    report = host.mgr.apply_persistent()
    assert not report.changed and report.ok
    assert [o.address for o in report.already] == [PF, NIC]
    assert len(host.kernel.writes) == writes and host.mgr.store.saves == saves


def test_wish_recorded_only_when_the_operation_succeeded(host: Host) -> None:
    host.kernel.add_block(NVME, "nvme0n1")
    host.kernel.add_mount("/dev/nvme0n1", "/")
    with pytest.raises(DeviceUsedByHost):
        host.mgr.node_detach(NVME, persistent=True)
    assert not config_file().exists()
    with pytest.raises(Exception, match="supports 0 to 8"):
        host.mgr.set_num_vfs(PF, 9, persistent=True)
    assert not config_file().exists()


def test_reattach_and_zero_vfs_drop_the_wishes(host: Host) -> None:
    host.mgr.set_num_vfs(PF, 2, persistent=True)
    host.mgr.set_num_vfs(PF, 3, persistent=True)
    host.mgr.node_detach(NIC, persistent=True)
    wishes = host.mgr.wishes()
    assert [(w.device.address, w.num_vfs) for w in wishes.sriov] == [(PF, 3)]
    host.mgr.node_reattach(NIC, persistent=True)
    host.mgr.set_num_vfs(PF, 0, persistent=True)
    assert host.mgr.wishes().detach == [] and host.mgr.wishes().sriov == []
    reboot(host)
    assert not host.mgr.apply_persistent().changed


def test_plain_reattach_keeps_the_wish(host: Host) -> None:
    host.mgr.node_detach(NIC, persistent=True)
    host.mgr.node_reattach(NIC)
    assert [w.device.address for w in host.mgr.wishes().detach] == [NIC]


def test_wish_of_a_removed_card_can_be_dropped(host: Host) -> None:
    host.mgr.node_detach(NIC, persistent=True)
    host.mgr.set_num_vfs(PF, 2, persistent=True)
    host.mgr.node_reattach(NIC)
    host.mgr.set_num_vfs(PF, 0)
    host.kernel.remove_device(NIC)
    host.kernel.remove_device(PF)
    result = host.mgr.node_reattach(NIC, persistent=True)
    assert "persistent detach was removed" in result.action
    host.mgr.set_num_vfs(PF, 0, persistent=True)
    assert host.mgr.wishes().detach == [] and host.mgr.wishes().sriov == []
    with pytest.raises(DeviceNotFound, match="no persistent detach"):
        host.mgr.node_reattach(NIC, persistent=True)


def test_missing_device_is_reported_not_failed(host: Host) -> None:
    host.mgr.node_detach(NIC, persistent=True)
    reboot(host)
    host.kernel.remove_device(NIC)
    report = host.mgr.apply_persistent()
    assert report.ok and not report.changed
    assert [(o.address, o.detail) for o in report.missing] == [(NIC, "not on this host")]
    # Hot-plugged back: the wish for that one address is applied.
    host.kernel.rescan()
    report = host.mgr.apply_persistent(only=[NIC])
    assert [o.address for o in report.done] == [NIC] and host.driver(NIC) == "vfio-pci"


def test_only_applies_the_named_addresses(host: Host) -> None:
    host.mgr.set_num_vfs(PF, 2, persistent=True)
    host.mgr.node_detach(NIC, persistent=True)
    reboot(host)
    report = host.mgr.apply_persistent(only=str(NIC))
    assert [o.address for o in report.done] == [NIC] and host.vfs_now() == []


def test_other_device_at_the_address_is_never_touched(host: Host) -> None:
    host.kernel.add_device(CARD, vendor=0x8086, device=0x10D3, class_code=0x020000,
                           iommu_group=50, vpd=build_vpd("card", {"SN": "A1"}))
    host.mgr.node_detach(CARD, persistent=True)
    assert host.mgr.wishes().detach[0].device.serial == "A1"
    reboot(host)
    # Same model, another card (another serial) in the slot.
    host.kernel.remove_device(CARD)
    host.kernel.add_device(CARD, vendor=0x8086, device=0x10D3, class_code=0x020000,
                           iommu_group=51, vpd=build_vpd("card", {"SN": "B2"}))
    before = snapshot(host)
    report = host.mgr.apply_persistent()
    assert [o.address for o in report.failed] == [CARD] and not report.ok
    assert "serial 'B2', not serial 'A1'" in report.failed[0].detail
    assert snapshot(host) == before and host.mgr.inactive() == []


def test_other_model_at_the_address_is_never_touched(host: Host) -> None:
    host.mgr.node_detach(NIC, persistent=True)
    reboot(host)
    host.kernel.remove_device(NIC)
    host.kernel.add_device(NIC, vendor=0x144D, device=0xA808, class_code=0x010802,
                           iommu_group=41)
    before = snapshot(host)
    report = host.mgr.apply_persistent()
    assert "now holds 144d:a808, not 8086:10d3" in report.failed[0].detail
    assert snapshot(host) == before


def test_device_the_host_uses_is_reported_never_forced(host: Host) -> None:
    host.mgr.node_detach(NVME, persistent=True)
    host.mgr.node_detach(NIC, persistent=True)
    reboot(host)
    host.kernel.add_block(NVME, "nvme0n1")
    host.kernel.add_mount("/dev/nvme0n1", "/")
    report = host.mgr.apply_persistent()
    assert [o.address for o in report.failed] == [NVME]
    assert "mounted" in report.failed[0].detail
    assert [o.address for o in report.done] == [NIC]
    assert host.driver(NVME) == "nvme" and host.mgr.inactive()[0].address == NIC


def test_assigned_device_is_left_alone(host: Host) -> None:
    host.mgr.node_detach(NIC, persistent=True)
    host.mgr.node_reattach(NIC)
    host.mgr.prepare(VM1, [NIC])
    report = host.mgr.apply_persistent()
    assert [o.address for o in report.already] == [NIC]
    assert host.mgr.used_by(NIC) == VM1


def test_failed_write_during_apply_leaves_host_consistent(host: Host) -> None:
    host.mgr.set_num_vfs(PF, 2, persistent=True)
    host.mgr.node_detach(GPU, persistent=True)
    host.mgr.node_detach(NIC, persistent=True)
    reboot(host)
    before = snapshot(host)
    host.kernel.fail_write(f"*/{GPU}/driver_override", errno.EIO)
    report = host.mgr.apply_persistent()
    assert [o.address for o in report.failed] == [GPU]
    assert "EIO" in report.failed[0].detail
    assert [o.address for o in report.done] == [PF, NIC]
    # The GPU is as it was before; the others got their wish and are tracked.
    assert host.where(GPU) == {GPU: before[GPU]}
    assert sorted(r.address for r in host.mgr.inactive()) == [NIC]
    # Once the fault is gone, the next run finishes the job.
    report = host.mgr.apply_persistent()
    assert [o.address for o in report.done] == [GPU] and report.ok


def test_failed_vf_count_write_is_reported(host: Host) -> None:
    host.mgr.set_num_vfs(PF, 2, persistent=True)
    vf = host.vfs_now()[0]
    host.mgr.node_detach(vf, persistent=True)
    reboot(host)
    host.kernel.fail_write(f"*/{PF}/sriov_numvfs", errno.ENOMEM)
    report = host.mgr.apply_persistent()
    assert [o.address for o in report.failed] == [PF]
    assert [o.address for o in report.missing] == [vf]
    assert host.vfs_now() == [] and host.mgr.inactive() == []


@pytest.mark.parametrize("content", [b"{not json", b'{"format": "hostdev-wishes",'
                                     b' "version": 7}', b'{"format": "other"}',
                                     b'{"format": "hostdev-wishes", "version": 1, "detach":'
                                     b' [{"device": {"address": "zz"}}]}'])
def test_corrupt_wishes_file_is_refused_and_nothing_changes(host: Host, content: bytes) -> None:
    config_file().parent.mkdir(parents=True, exist_ok=True)
    config_file().write_bytes(content)
    before = snapshot(host)
    for call in (host.mgr.apply_persistent, lambda: host.mgr.node_detach(NIC, persistent=True),
                 lambda: host.mgr.set_num_vfs(PF, 2, persistent=True)):
        with pytest.raises(StateCorrupt, match=r"wishes file /etc/hostdev/wishes\.json"):
            call()
    assert snapshot(host) == before and host.mgr.inactive() == []
    assert config_file().read_bytes() == content


def test_unsafe_configuration_directory_is_refused(host: Host) -> None:
    host.mgr.node_detach(NIC, persistent=True)
    os.chmod(config_file().parent, 0o777)
    before = snapshot(host)
    with pytest.raises(StateUnusable, match="configuration directory /etc/hostdev is writable"):
        host.mgr.apply_persistent()
    with pytest.raises(StateUnusable, match="configuration directory"):
        host.mgr.node_reattach(NIC, persistent=True)
    assert snapshot(host) == before
    shutil.rmtree(config_file().parent)
    config_file().parent.symlink_to("/tmp")
    with pytest.raises(StateUnusable, match="is a symlink"):
        host.mgr.apply_persistent()


def test_duplicate_address_in_wishes_file_is_refused(host: Host) -> None:
    host.mgr.node_detach(NIC, persistent=True)
    doc = json.loads(config_file().read_text())
    doc["detach"].append(doc["detach"][0])
    config_file().write_text(json.dumps(doc))
    with pytest.raises(StateCorrupt, match=f"names {NIC} twice"):
        host.mgr.apply_persistent()


@pytest.mark.parametrize("failing", ["write", "fsync", "rename"])
def test_wish_that_cannot_be_written_undoes_the_change(
        host: Host, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    before = snapshot(host)

    def full(step: str, path: Path) -> None:
        if step == failing and "wishes" in path.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(statedir, "fault_hook", full)
    with pytest.raises(StateWriteFailed, match="wishes file"):
        host.mgr.node_detach(NIC, persistent=True)
    with pytest.raises(StateWriteFailed, match="wishes file"):
        host.mgr.set_num_vfs(PF, 2, persistent=True)
    assert snapshot(host) == before and host.mgr.inactive() == []
    assert not config_file().exists() and os.listdir(config_file().parent) == []
    assert host.mgr.reconcile().changed is False


def test_config_dir_follows_root_and_can_be_given(fake_kernel: FakeKernel) -> None:
    assert HostdevManager(root="/", state_dir="/run/x").wish_store.dir == Path("/etc/hostdev")
    assert HostdevManager(root="/srv/host", state_dir="/run/x").wish_store.dir == \
        Path("/srv/host/etc/hostdev")
    assert HostdevManager(state_dir="/run/x", config_dir="/cfg").wish_store.path == \
        Path("/cfg/wishes.json")


def test_device_held_by_a_vfio_user_is_reported(host: Host) -> None:
    host.mgr.node_detach(NIC, "pci-stub", persistent=True)
    reboot(host)
    # Someone else put it on vfio-pci and a guest opened it.
    sysfs = host.mgr.sysfs
    sysfs.write(sysfs.device_path(NIC, "driver_override"), "vfio-pci")
    sysfs.write(sysfs.device_path(NIC, "driver/unbind"), str(NIC))
    sysfs.write(sysfs.drivers_probe_path, str(NIC))
    holder = host.kernel.hold_vfio(NIC, pid=4242)
    before = snapshot(host)
    report = host.mgr.apply_persistent()
    assert [o.address for o in report.failed] == [NIC]
    assert "4242" in report.failed[0].detail
    assert snapshot(host) == before and host.mgr.inactive() == []
    holder.release()
    assert [o.address for o in host.mgr.apply_persistent().done] == [NIC]
    assert host.driver(NIC) == "pci-stub"


def test_a_pf_without_its_driver_waits_for_it_and_vf_counts_only_leaves_detaches(
        host: Host) -> None:
    host.mgr.set_num_vfs(PF, 2, persistent=True)
    host.mgr.node_detach(NIC, persistent=True)
    reboot(host)
    sysfs = host.mgr.sysfs
    sysfs.write(sysfs.device_path(PF, "driver/unbind"), str(PF))  # its module not loaded yet
    report = host.mgr.apply_persistent(only=[PF])
    # Not a failure: the kernel takes a VF count from the PF's driver only.
    assert report.ok and [(o.address, o.detail) for o in report.missing] == [
        (PF, "its driver is not bound yet: applied when it binds")]
    assert host.vfs_now() == []
    sysfs.write(sysfs.drivers_probe_path, str(PF))  # the driver binds: the udev rule runs
    report = host.mgr.apply_persistent(only=[PF, NIC], vf_counts_only=True)
    assert [o.address for o in report.done] == [PF] and len(host.vfs_now()) == 2
    assert host.driver(NIC) == "e1000e", "a detach wish is not applied at a bind"


def test_boot_acts_on_the_wishes_as_they_are_when_it_acts(
        host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another hostdev changes the wishes after a boot read them (and before the boot
    acts): the boot neither undoes that command's change nor applies the wish it
    dropped."""
    host.mgr.set_num_vfs(PF, 2, persistent=True)
    host.mgr.node_detach(NIC, persistent=True)
    host.mgr.node_detach(GPU, "pci-stub", persistent=True)
    reboot(host)
    booting, operator = host.mgr, new_manager(host.kernel)
    read = booting.wish_store.load
    reads = []

    def read_then_race(*, for_update: bool = False) -> Wishes:
        wishes = read(for_update=for_update)
        reads.append(wishes)
        if len(reads) == 1:  # the boot's first read: the operator acts now
            operator.node_reattach(NIC, persistent=True)
            operator.set_num_vfs(PF, 3, persistent=True)
            operator.node_detach(GPU, "vfio-pci", persistent=True)
        return wishes

    monkeypatch.setattr(booting.wish_store, "load", read_then_race)
    report = booting.apply_persistent()
    assert report.ok and not report.changed
    assert [(o.address, o.wish) for o in report.already] == [(PF, "3 VFs"),
                                                             (GPU, "on vfio-pci")]
    assert report.done == [] and report.missing == [] and report.failed == []
    assert len(host.vfs_now()) == 3
    assert host.where(NIC, GPU) == {NIC: ("e1000e", None), GPU: ("vfio-pci", "vfio-pci")}
    assert [r.address for r in booting.inactive()] == [GPU]
    assert len(reads) == 4  # read again for each wish, in its transaction


def test_user_reads_roots_wishes_but_never_changes_them(
        host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    host.mgr.node_detach(NIC, persistent=True)
    root_wishes = host.mgr.wishes()
    os.makedirs("/run/user/1000", mode=0o700)
    os.chown("/run/user/1000", 1000, 1000)
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    set_uid(1000)
    try:
        user = HostdevManager(state_dir="/run/user/1000/hostdev", lock_timeout=1.0)
        assert user.wishes() == root_wishes
        before = snapshot(host)
        with pytest.raises(StateUnusable, match="configuration directory /etc/hostdev is owned"
                                                " by uid 0, not by uid 1000 running hostdev"):
            user.node_detach(GPU, persistent=True)
    finally:
        set_uid(ROOT_UID)
    assert snapshot(host) == before and host.mgr.wishes() == root_wishes
