"""7.1 rows for remove and rescan (docs/kernel-model.md §2.7 and 6)."""

from __future__ import annotations

import errno
import os

import pytest

from hostdev.address import PciAddress
from hostdev.testing import FakeKernel

from .hostlib import GPU, GPU_AUDIO, NIC, PF, ROOT_PORT, ROOT_PORT2, Sys, vf_addresses


@pytest.mark.parametrize("value", ["x", "-1", "1 ", ""])
def test_row_remove_bad_number(host: FakeKernel, sysfs: Sys, value: str) -> None:
    if value == "":
        return  # a zero-byte write never reaches the kernel
    assert sysfs.errno(sysfs.dev(NIC, "remove"), value) == errno.EINVAL
    assert sysfs.exists(sysfs.dev(NIC))


def test_row_remove_zero_is_a_no_op(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.dev(NIC, "remove"), "0\n")
    assert sysfs.driver(NIC) == "e1000e"


def test_row_remove_device(host: FakeKernel, sysfs: Sys) -> None:
    real = os.path.realpath(sysfs.dev(NIC))
    sysfs.write(sysfs.dev(NIC, "remove"), "1")
    assert not sysfs.exists(sysfs.dev(NIC))
    assert not os.path.exists(real)
    assert not sysfs.exists(f"/sys/bus/pci/drivers/e1000e/{NIC}")
    assert not sysfs.exists("/sys/kernel/iommu_groups/5")
    assert not host.has_device(NIC)


def test_remove_bridge_takes_children_and_vfs(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.dev(PF, "sriov_numvfs"), "2")
    sysfs.write(sysfs.dev(ROOT_PORT, "remove"), "1")
    for address in (ROOT_PORT, PF, *vf_addresses(2)):
        assert not sysfs.exists(sysfs.dev(address)), address
    assert sysfs.ls("/sys/bus/pci/drivers/ixgbevf") == ["bind", "new_id", "remove_id",
                                                        "unbind"]


def test_remove_group_member_keeps_group(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.dev(GPU_AUDIO, "remove"), "1")
    assert sysfs.ls("/sys/kernel/iommu_groups/4/devices") == [GPU]


def test_write_through_stale_fd_gives_enodev(host: FakeKernel, sysfs: Sys) -> None:
    fd = os.open(sysfs.dev(GPU, "driver_override"), os.O_WRONLY | os.O_TRUNC)
    try:
        sysfs.write(sysfs.dev(GPU, "remove"), "1")
        with pytest.raises(OSError) as info:
            os.write(fd, b"vfio-pci")
        assert info.value.errno == errno.ENODEV
    finally:
        os.close(fd)


@pytest.mark.parametrize("path", ["/sys/bus/pci/rescan", f"/sys/bus/pci/devices/{NIC}/rescan"])
def test_row_rescan_bad_number(host: FakeKernel, sysfs: Sys, path: str) -> None:
    assert sysfs.errno(path, "yes") == errno.EINVAL


def test_row_rescan_zero_is_a_no_op(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.dev(GPU, "remove"), "1")
    sysfs.write("/sys/bus/pci/rescan", "0")
    assert not sysfs.exists(sysfs.dev(GPU))


def test_row_bus_rescan_brings_devices_back(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.dev(GPU, "driver/unbind"), GPU)
    sysfs.write(sysfs.dev(GPU, "driver_override"), "vfio-pci")
    sysfs.write(sysfs.drv("vfio-pci", "bind"), GPU)
    sysfs.write(sysfs.dev(PF, "sriov_numvfs"), "2")
    sysfs.write(sysfs.dev(ROOT_PORT2, "remove"), "1")
    sysfs.write(sysfs.dev(ROOT_PORT, "remove"), "1")
    assert not sysfs.exists("/dev/vfio/4")
    sysfs.write("/sys/bus/pci/rescan", "1\n")
    for address in (ROOT_PORT, PF, ROOT_PORT2, GPU, GPU_AUDIO):
        assert sysfs.exists(sysfs.dev(address)), address
    # new objects: NULL override, probed normally, same place in the tree
    assert sysfs.read(sysfs.dev(GPU, "driver_override")) == "(null)\n"
    assert sysfs.driver(GPU) == "nouveau"
    assert sysfs.driver(PF) == "ixgbe"
    assert sysfs.read(sysfs.dev(PF, "sriov_numvfs")) == "0\n"
    assert not sysfs.exists(sysfs.dev(vf_addresses(1)[0]))  # VFs are not rescanned
    assert os.path.realpath(sysfs.dev(PF)) == f"/sys/devices/pci0000:00/{ROOT_PORT}/{PF}"
    assert sysfs.ls("/sys/kernel/iommu_groups/4/devices") == [GPU, GPU_AUDIO]


def test_device_rescan_scans_its_own_bus(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.dev(GPU_AUDIO, "remove"), "1")
    sysfs.write(sysfs.dev(PF, "remove"), "1")
    sysfs.write(sysfs.dev(GPU, "rescan"), "1")
    assert sysfs.exists(sysfs.dev(GPU_AUDIO))
    assert sysfs.driver(GPU_AUDIO) == "snd_hda_intel"
    assert not sysfs.exists(sysfs.dev(PF))  # another bus
    sysfs.write(sysfs.dev(ROOT_PORT, "rescan"), "1")  # root bus: finds the bridge's child
    assert sysfs.exists(sysfs.dev(PF))


def test_helper_remove_and_rescan(host: FakeKernel, sysfs: Sys) -> None:
    host.remove_device(NIC)
    assert not sysfs.exists(sysfs.dev(NIC))
    assert host.rescan() == [PciAddress.parse(NIC)]
    assert sysfs.driver(NIC) == "e1000e"
