"""7.1 rows for sriov_numvfs and sriov_drivers_autoprobe (docs/kernel-model.md §3)."""

from __future__ import annotations

import errno
import os

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from hostdev.testing import FakeKernel

from .hostlib import NIC, PF, ROOT_PORT, Sys, vf_addresses

NUMVFS = f"/sys/bus/pci/devices/{PF}/sriov_numvfs"


@pytest.mark.parametrize("value", ["abc", "-1", "65536", " 1", "1 ", "1\n\n", "0x", "08",
                                   "1.0"])
def test_row_numvfs_not_u16(host: FakeKernel, sysfs: Sys, value: str) -> None:
    assert sysfs.errno(NUMVFS, value) == errno.EINVAL
    assert sysfs.read(NUMVFS) == "0\n"


@pytest.mark.parametrize(("value", "count"), [("0x2", 2), ("010", 8), ("3\n", 3), ("+1", 1)])
def test_numvfs_base_zero_parsing(host: FakeKernel, sysfs: Sys, value: str, count: int) -> None:
    sysfs.write(NUMVFS, value)
    assert sysfs.read(NUMVFS) == f"{count}\n"


def test_row_numvfs_above_total(host: FakeKernel, sysfs: Sys) -> None:
    assert sysfs.errno(NUMVFS, "9") == errno.ERANGE
    sysfs.write(sysfs.dev(PF, "driver/unbind"), PF)
    assert sysfs.errno(NUMVFS, "9") == errno.ERANGE  # checked before the driver


def test_row_numvfs_same_value_is_a_no_op(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.dev(PF, "driver/unbind"), PF)
    sysfs.write(NUMVFS, "0")  # no driver, yet success
    assert host.writes[-1].errno is None


def test_row_numvfs_no_driver(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.dev(PF, "driver/unbind"), PF)
    assert sysfs.errno(NUMVFS, "1") == errno.ENOENT


def test_row_numvfs_driver_without_sriov(kernel: FakeKernel, sysfs: Sys) -> None:
    kernel.add_driver("ixgbe", ids=[(0x8086, 0x10FB)])
    kernel.add_device(PF, 0x8086, 0x10FB, 0x020000, iommu_group=2, sriov_totalvfs=8)
    assert sysfs.errno(NUMVFS, "1") == errno.ENOENT


def test_row_numvfs_vfio_pci_pf(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.dev(PF, "driver/unbind"), PF)
    sysfs.write(sysfs.dev(PF, "driver_override"), "vfio-pci")
    sysfs.write(sysfs.drv("vfio-pci", "bind"), PF)
    assert sysfs.errno(NUMVFS, "2") == errno.ENOENT


def test_row_numvfs_busy_when_changing_nonzero(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(NUMVFS, "2")
    assert sysfs.errno(NUMVFS, "3") == errno.EBUSY
    assert sysfs.read(NUMVFS) == "2\n"
    sysfs.write(NUMVFS, "0")
    sysfs.write(NUMVFS, "3")
    assert sysfs.read(NUMVFS) == "3\n"


def test_row_numvfs_creates_vfs(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(NUMVFS, "5\n")
    vfs = vf_addresses(5)
    assert vfs == ["0000:03:10.0", "0000:03:10.2", "0000:03:10.4", "0000:03:10.6",
                   "0000:03:11.0"]
    for index, vf in enumerate(vfs):
        # siblings of the PF, under the same root port
        assert os.path.realpath(sysfs.dev(vf)) == f"/sys/devices/pci0000:00/{ROOT_PORT}/{vf}"
        assert sysfs.link(sysfs.dev(PF, f"virtfn{index}")) == f"../{vf}"
        assert sysfs.link(sysfs.dev(vf, "physfn")) == f"../{PF}"
        assert sysfs.read(sysfs.dev(vf, "vendor")) == "0x8086\n"
        assert sysfs.read(sysfs.dev(vf, "device")) == "0x10ed\n"
        assert sysfs.read(sysfs.dev(vf, "driver_override")) == "(null)\n"
        assert sysfs.driver(vf) == "ixgbevf"
    assert not sysfs.exists(sysfs.dev(PF, "virtfn5"))
    # each VF in a new group, lowest free numbers (0 and 7.. since 1-6 are taken)
    groups = [os.path.basename(sysfs.link(sysfs.dev(vf, "iommu_group"))) for vf in vfs]
    assert groups == ["0", "7", "8", "9", "10"]
    assert sysfs.ls("/sys/kernel/iommu_groups/7/devices") == [vfs[1]]


def test_vf_bus_carries_over(kernel: FakeKernel, sysfs: Sys) -> None:
    kernel.add_driver("nvme", ids=[(0x1B36, 0x0010)], sriov=True)
    kernel.add_device("0000:05:1f.7", 0x1B36, 0x0010, 0x010802, iommu_group=1,
                      sriov_totalvfs=2)
    sysfs.write(sysfs.dev("0000:05:1f.7", "sriov_numvfs"), "2")
    assert sysfs.link(sysfs.dev("0000:05:1f.7", "virtfn0")) == "../0000:06:00.0"
    assert sysfs.exists(sysfs.dev("0000:06:00.1"))
    assert os.path.realpath(sysfs.dev("0000:06:00.0")) == "/sys/devices/pci0000:05/0000:06:00.0"


def test_row_numvfs_zero_removes_every_vf(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(NUMVFS, "3")
    vfs = vf_addresses(3)
    groups = [os.path.basename(sysfs.link(sysfs.dev(vf, "iommu_group"))) for vf in vfs]
    sysfs.write(NUMVFS, "0")
    assert sysfs.read(NUMVFS) == "0\n"
    for index, vf in enumerate(vfs):
        assert not sysfs.exists(sysfs.dev(vf))
        assert not sysfs.exists(sysfs.dev(PF, f"virtfn{index}"))
        assert not sysfs.exists(f"/sys/bus/pci/drivers/ixgbevf/{vf}")
    for group in groups:
        assert not sysfs.exists(f"/sys/kernel/iommu_groups/{group}")
    # writes to a vanished VF through a stale path: gone
    with pytest.raises(FileNotFoundError):
        os.open(sysfs.dev(vfs[0], "driver_override"), os.O_WRONLY)


def test_recreated_vfs_are_new_objects(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(NUMVFS, "1")
    vf = vf_addresses(1)[0]
    sysfs.write(sysfs.dev(vf, "driver_override"), "vfio-pci")
    sysfs.write(NUMVFS, "0")
    sysfs.write(NUMVFS, "1")
    assert sysfs.read(sysfs.dev(vf, "driver_override")) == "(null)\n"
    assert sysfs.driver(vf) == "ixgbevf"


def test_vf_autoprobe_off(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.dev(PF, "sriov_drivers_autoprobe"), "0")
    sysfs.write(NUMVFS, "2")
    vf0, vf1 = vf_addresses(2)
    assert sysfs.driver(vf0) is None
    sysfs.write("/sys/bus/pci/drivers_probe", vf0)  # success, still nothing
    assert sysfs.driver(vf0) is None
    sysfs.write(sysfs.drv("vfio-pci", "new_id"), "8086 10ed")
    assert sysfs.driver(vf0) is None  # new_id cannot probe it either
    sysfs.write(sysfs.dev(vf1, "driver_override"), "vfio-pci")
    sysfs.write("/sys/bus/pci/drivers_probe", vf1)
    assert sysfs.driver(vf1) == "vfio-pci"
    # the knob is read at each probe, not only at VF creation
    sysfs.write(sysfs.dev(PF, "sriov_drivers_autoprobe"), "1")
    sysfs.write("/sys/bus/pci/drivers_probe", vf0)
    assert sysfs.driver(vf0) == "ixgbevf"


@pytest.mark.parametrize(("value", "expected"), [
    ("0", "0\n"), ("n", "0\n"), ("N", "0\n"), ("off", "0\n"), ("1", "1\n"), ("y", "1\n"),
    ("on\n", "1\n"), ("yes", "1\n"),
])
def test_row_sriov_drivers_autoprobe(host: FakeKernel, sysfs: Sys, value: str,
                                     expected: str) -> None:
    path = sysfs.dev(PF, "sriov_drivers_autoprobe")
    sysfs.write(path, "0" if expected == "1\n" else "1")
    sysfs.write(path, value)
    assert sysfs.read(path) == expected


@pytest.mark.parametrize("value", ["x", "2", "o", "\n", "-1"])
def test_row_sriov_drivers_autoprobe_not_bool(host: FakeKernel, sysfs: Sys,
                                              value: str) -> None:
    path = sysfs.dev(PF, "sriov_drivers_autoprobe")
    assert sysfs.errno(path, value) == errno.EINVAL
    assert sysfs.read(path) == "1\n"


def test_vfs_under_vfio_pf_get_vfio_override(fs: FakeFilesystem, sysfs: Sys) -> None:
    kernel = FakeKernel(fs, vfio_enable_sriov=True)
    kernel.add_driver("vfio-pci")
    kernel.add_driver("ixgbevf", ids=[(0x8086, 0x10ED)])
    kernel.add_device(PF, 0x8086, 0x10FB, 0x020000, iommu_group=2, sriov_totalvfs=4,
                      vf_device=0x10ED, sriov_offset=128, sriov_stride=2)
    sysfs.write(sysfs.dev(PF, "driver_override"), "vfio-pci")
    sysfs.write("/sys/bus/pci/drivers_probe", PF)
    sysfs.write(NUMVFS, "2")
    for vf in vf_addresses(2):
        assert sysfs.read(sysfs.dev(vf, "driver_override")) == "vfio-pci\n"
        assert sysfs.driver(vf) == "vfio-pci"
    assert sysfs.ls("/dev/vfio") == ["0", "1", "2", "devices", "vfio"]
    # unbinding the PF from vfio-pci disables its VFs first
    sysfs.write(sysfs.drv("vfio-pci", "unbind"), PF)
    assert sysfs.ls("/dev/vfio") == ["vfio"]
    assert not sysfs.exists(sysfs.dev(vf_addresses(1)[0]))


def test_nvme_pf_unbind_leaves_vfs(host: FakeKernel, sysfs: Sys) -> None:
    """Observed on a real 6.1 kernel: nvme's remove does not disable SR-IOV."""
    nvme = "0000:0b:00.0"
    host.add_device(nvme, 0x144D, 0xA808, 0x010802, iommu_group=11, sriov_totalvfs=4,
                    vf_device=0xA824)
    sysfs.write(sysfs.dev(nvme, "sriov_numvfs"), "1")
    sysfs.write(sysfs.drv("nvme", "unbind"), nvme)
    assert sysfs.read(sysfs.dev(nvme, "sriov_numvfs")) == "1\n"
    assert sysfs.exists(sysfs.dev("0000:0b:00.1"))


def test_nic_without_sriov_has_no_numvfs(host: FakeKernel, sysfs: Sys) -> None:
    assert not sysfs.exists(sysfs.dev(NIC, "sriov_numvfs"))
