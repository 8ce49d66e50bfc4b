"""7.1 rows for drivers/D/bind and drivers/D/unbind, and VFIO node lifetime."""

from __future__ import annotations

import errno
import os

import pytest

from hostdev.testing import FakeKernel

from .hostlib import DEVICES, GPU, GPU_AUDIO, NIC, NOGROUP, PF, ROOT_PORT, Sys


def _unbind(sysfs: Sys, address: str) -> None:
    sysfs.write(sysfs.dev(address, "driver/unbind"), address)


def test_row_bind_unknown_address(host: FakeKernel, sysfs: Sys) -> None:
    assert sysfs.errno(sysfs.drv("e1000e", "bind"), "0000:77:00.0") == errno.ENODEV


@pytest.mark.parametrize("name", ["0000:00:19.0 ", "00:19.0", "0000:00:19.00", "0000:00:1F.3"])
def test_bind_needs_the_exact_kernel_name(host: FakeKernel, sysfs: Sys, name: str) -> None:
    _unbind(sysfs, NIC)
    assert sysfs.errno(sysfs.drv("e1000e", "bind"), name) == errno.ENODEV
    assert sysfs.driver(NIC) is None


def test_bind_accepts_one_trailing_newline(host: FakeKernel, sysfs: Sys) -> None:
    _unbind(sysfs, NIC)
    assert sysfs.write(sysfs.drv("e1000e", "bind"), NIC + "\n") == len(NIC) + 1
    assert sysfs.driver(NIC) == "e1000e"


def test_row_bind_id_mismatch(host: FakeKernel, sysfs: Sys) -> None:
    _unbind(sysfs, GPU)
    assert sysfs.errno(sysfs.drv("e1000e", "bind"), GPU) == errno.ENODEV
    # vfio-pci matches nothing without an override or new_id
    assert sysfs.errno(sysfs.drv("vfio-pci", "bind"), GPU) == errno.ENODEV
    assert sysfs.driver(GPU) is None


def test_row_bind_override_names_another_driver(host: FakeKernel, sysfs: Sys) -> None:
    _unbind(sysfs, GPU)
    sysfs.write(sysfs.dev(GPU, "driver_override"), "vfio-pci")
    assert sysfs.errno(sysfs.drv("nouveau", "bind"), GPU) == errno.ENODEV
    sysfs.write(sysfs.dev(GPU, "driver_override"), "none")
    assert sysfs.errno(sysfs.drv("vfio-pci", "bind"), GPU) == errno.ENODEV


def test_row_bind_vf_with_autoprobe_off(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.dev(PF, "sriov_drivers_autoprobe"), "0")
    sysfs.write(sysfs.dev(PF, "sriov_numvfs"), "1")
    vf = "0000:03:10.0"
    assert sysfs.driver(vf) is None
    assert sysfs.errno(sysfs.drv("ixgbevf", "bind"), vf) == errno.ENODEV
    sysfs.write(sysfs.dev(vf, "driver_override"), "ixgbevf")
    sysfs.write(sysfs.drv("ixgbevf", "bind"), vf)
    assert sysfs.driver(vf) == "ixgbevf"


def test_row_bind_already_bound(host: FakeKernel, sysfs: Sys) -> None:
    assert sysfs.errno(sysfs.drv("e1000e", "bind"), NIC) == errno.EBUSY
    sysfs.write(sysfs.dev(NIC, "driver_override"), "vfio-pci")
    assert sysfs.errno(sysfs.drv("vfio-pci", "bind"), NIC) == errno.EBUSY
    assert sysfs.driver(NIC) == "e1000e"


def test_bind_mismatch_checked_before_busy(host: FakeKernel, sysfs: Sys) -> None:
    assert sysfs.errno(sysfs.drv("nouveau", "bind"), NIC) == errno.ENODEV


def test_row_vfio_bind_pf_with_vfs(kernel: FakeKernel, sysfs: Sys) -> None:
    kernel.add_driver("ixgbe", ids=[(0x8086, 0x10FB)], sriov=True, leaves_vfs_on_remove=True)
    kernel.add_driver("vfio-pci")
    kernel.add_device(PF, 0x8086, 0x10FB, 0x020000, iommu_group=2, sriov_totalvfs=4,
                      vf_device=0x10ED)
    sysfs.write(sysfs.dev(PF, "sriov_numvfs"), "2")
    _unbind(sysfs, PF)
    assert sysfs.read(sysfs.dev(PF, "sriov_numvfs")) == "2\n"  # the driver left them
    sysfs.write(sysfs.dev(PF, "driver_override"), "vfio-pci")
    assert sysfs.errno(sysfs.drv("vfio-pci", "bind"), PF) == errno.EBUSY
    assert sysfs.driver(PF) is None


@pytest.mark.parametrize("case", ["bridge", "no-group", "denylisted"])
def test_row_vfio_bind_refused(host: FakeKernel, sysfs: Sys, case: str) -> None:
    if case == "bridge":
        address = ROOT_PORT
    elif case == "no-group":
        address = NOGROUP
    else:
        address = "0000:00:1e.0"
        host.add_device(address, 0x8086, 0x37C8, 0x0B4000, iommu_group=40)
    if sysfs.driver(address):
        _unbind(sysfs, address)
    sysfs.write(sysfs.dev(address, "driver_override"), "vfio-pci")
    assert sysfs.errno(sysfs.drv("vfio-pci", "bind"), address) == errno.EINVAL
    assert sysfs.driver(address) is None
    assert sysfs.ls("/dev/vfio") == ["vfio"]


@pytest.mark.parametrize(("injected", "seen"), [
    (errno.ENOMEM, errno.ENOMEM), (errno.EIO, errno.EIO), (517, errno.EAGAIN),
])
def test_row_bind_probe_error(host: FakeKernel, sysfs: Sys, injected: int, seen: int) -> None:
    _unbind(sysfs, NIC)
    host.fail_probe("e1000e", injected, times=1)
    assert sysfs.errno(sysfs.drv("e1000e", "bind"), NIC) == seen
    assert sysfs.driver(NIC) is None
    sysfs.write(sysfs.drv("e1000e", "bind"), NIC)
    assert sysfs.driver(NIC) == "e1000e"


def test_row_bind_ok_host_driver(host: FakeKernel, sysfs: Sys) -> None:
    _unbind(sysfs, NIC)
    assert not sysfs.exists(f"/sys/bus/pci/drivers/e1000e/{NIC}")
    assert sysfs.read(sysfs.dev(NIC, "enable")) == "0\n"
    assert sysfs.write(sysfs.drv("e1000e", "bind"), NIC) == len(NIC)
    assert sysfs.driver(NIC) == "e1000e"
    assert sysfs.exists(f"/sys/bus/pci/drivers/e1000e/{NIC}")
    assert sysfs.read(sysfs.dev(NIC, "enable")) == "1\n"
    assert "DRIVER=e1000e\n" in sysfs.read(sysfs.dev(NIC, "uevent"))


def test_row_bind_ok_vfio_nodes(host: FakeKernel, sysfs: Sys) -> None:
    _unbind(sysfs, NIC)
    sysfs.write(sysfs.dev(NIC, "driver_override"), "vfio-pci\n")
    sysfs.write(sysfs.drv("vfio-pci", "bind"), NIC)
    assert sysfs.driver(NIC) == "vfio-pci"
    assert sysfs.ls("/dev/vfio") == ["5", "devices", "vfio"]
    assert sysfs.ls(sysfs.dev(NIC, "vfio-dev")) == ["vfio0"]
    assert sysfs.ls("/dev/vfio/devices") == ["vfio0"]
    assert os.path.realpath("/sys/class/vfio-dev/vfio0") == os.path.realpath(
        sysfs.dev(NIC, "vfio-dev/vfio0"))
    assert sysfs.read(sysfs.dev(NIC, "power_state")) == "D3hot\n"
    _unbind(sysfs, NIC)
    assert sysfs.ls("/dev/vfio") == ["vfio"]
    assert not sysfs.exists(sysfs.dev(NIC, "vfio-dev"))
    assert sysfs.ls("/sys/class/vfio-dev") == []


def test_group_node_lives_while_any_member_is_on_vfio(host: FakeKernel, sysfs: Sys) -> None:
    for address in (GPU, GPU_AUDIO):
        _unbind(sysfs, address)
        sysfs.write(sysfs.dev(address, "driver_override"), "vfio-pci")
        sysfs.write("/sys/bus/pci/drivers_probe", address)
    assert sysfs.ls("/dev/vfio/devices") == ["vfio0", "vfio1"]
    assert sysfs.exists("/dev/vfio/4")
    _unbind(sysfs, GPU)
    assert sysfs.exists("/dev/vfio/4")
    # the lowest free cdev index is reused
    sysfs.write("/sys/bus/pci/drivers_probe", GPU)
    assert sysfs.ls(sysfs.dev(GPU, "vfio-dev")) == ["vfio0"]
    _unbind(sysfs, GPU)
    _unbind(sysfs, GPU_AUDIO)
    assert not sysfs.exists("/dev/vfio/4")
    assert sysfs.ls("/dev/vfio") == ["vfio"]


def test_vfio_variant_and_stub_bind_by_override(host: FakeKernel, sysfs: Sys) -> None:
    host.add_driver("mlx5-vfio-pci")
    _unbind(sysfs, NIC)
    sysfs.write(sysfs.dev(NIC, "driver_override"), "mlx5-vfio-pci")
    sysfs.write(sysfs.drv("mlx5-vfio-pci", "bind"), NIC)
    assert sysfs.exists("/dev/vfio/5")
    _unbind(sysfs, NIC)
    sysfs.write(sysfs.dev(NIC, "driver_override"), "pci-stub")
    sysfs.write(sysfs.drv("pci-stub", "bind"), NIC)
    assert sysfs.driver(NIC) == "pci-stub"
    assert not sysfs.exists("/dev/vfio/5")


def test_row_unbind_errors(host: FakeKernel, sysfs: Sys) -> None:
    assert sysfs.errno(sysfs.drv("e1000e", "unbind"), "0000:77:00.0") == errno.ENODEV
    assert sysfs.errno(sysfs.drv("nouveau", "unbind"), NIC) == errno.ENODEV
    assert sysfs.errno(sysfs.drv("e1000e", "unbind"), NOGROUP) == errno.ENODEV
    assert sysfs.driver(NIC) == "e1000e"


def test_row_unbind_ok(host: FakeKernel, sysfs: Sys) -> None:
    assert sysfs.write(sysfs.drv("nouveau", "unbind"), GPU + "\n") == len(GPU) + 1
    assert sysfs.driver(GPU) is None
    assert not sysfs.exists(f"/sys/bus/pci/drivers/nouveau/{GPU}")
    assert "DRIVER=" not in sysfs.read(sysfs.dev(GPU, "uevent"))


def test_unbind_through_device_driver_link(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(f"{DEVICES}/{NIC}/driver/unbind", NIC)
    assert sysfs.driver(NIC) is None
    # the link is gone, so the same path no longer opens
    with pytest.raises(FileNotFoundError):
        os.open(f"{DEVICES}/{NIC}/driver/unbind", os.O_WRONLY)


def test_unbind_pf_disables_its_vfs(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.dev(PF, "sriov_numvfs"), "2")
    _unbind(sysfs, PF)
    assert not sysfs.exists(sysfs.dev("0000:03:10.0"))
    assert sysfs.read(sysfs.dev(PF, "sriov_numvfs")) == "0\n"
