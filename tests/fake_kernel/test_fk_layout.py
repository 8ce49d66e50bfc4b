"""Layout of the fake sysfs (docs/kernel-model.md §1, 7.2) and the two generic 7.1 rows."""

from __future__ import annotations

import errno
import os

import pytest

from hostdev.testing import FakeKernel

from .hostlib import (
    DEVICES,
    GPU,
    GPU_AUDIO,
    NIC,
    NOGROUP,
    PF,
    ROOT_PORT,
    Sys,
)


def test_empty_host_layout(kernel: FakeKernel, sysfs: Sys) -> None:
    for path in ("/sys/bus/pci/devices", "/sys/bus/pci/drivers", "/sys/devices",
                 "/sys/kernel/iommu_groups", "/sys/class/vfio-dev", "/proc"):
        assert os.path.isdir(path), path
    assert sysfs.ls("/sys/bus/pci/devices") == []
    assert sysfs.ls("/sys/bus/pci/drivers") == []
    assert sysfs.ls("/sys/kernel/iommu_groups") == []
    assert sysfs.read("/sys/bus/pci/drivers_autoprobe") == "1\n"
    for path in ("/sys/bus/pci/drivers_probe", "/sys/bus/pci/rescan", "/dev/vfio/vfio"):
        assert os.path.exists(path), path


def test_device_directory_and_bus_link(host: FakeKernel, sysfs: Sys) -> None:
    real = f"/sys/devices/pci0000:00/{ROOT_PORT}/{PF}"
    assert os.path.isdir(real) and not os.path.islink(real)
    assert sysfs.link(sysfs.dev(PF)) == f"../../../devices/pci0000:00/{ROOT_PORT}/{PF}"
    assert os.path.realpath(sysfs.dev(PF)) == real
    assert os.path.realpath(sysfs.dev(PF, "subsystem")) == "/sys/bus/pci"
    # a device on the root bus sits right under the host bridge
    assert os.path.realpath(sysfs.dev(NIC)) == f"/sys/devices/pci0000:00/{NIC}"


def test_attribute_formats(host: FakeKernel, sysfs: Sys) -> None:
    assert sysfs.read(sysfs.dev(PF, "vendor")) == "0x8086\n"
    assert sysfs.read(sysfs.dev(PF, "device")) == "0x10fb\n"
    assert sysfs.read(sysfs.dev(PF, "subsystem_vendor")) == "0x8086\n"
    assert sysfs.read(sysfs.dev(PF, "subsystem_device")) == "0x000c\n"
    assert sysfs.read(sysfs.dev(PF, "class")) == "0x020000\n"
    assert sysfs.read(sysfs.dev(PF, "revision")) == "0x01\n"
    assert sysfs.read(sysfs.dev(PF, "driver_override")) == "(null)\n"
    assert sysfs.read(sysfs.dev(PF, "numa_node")) == "0\n"
    assert sysfs.read(sysfs.dev(GPU, "numa_node")) == "-1\n"
    assert sysfs.read(sysfs.dev(PF, "reset_method")) == "flr bus\n"
    assert sysfs.read(sysfs.dev(PF, "enable")) == "1\n"  # ixgbe enabled it
    assert sysfs.read(sysfs.dev(NOGROUP, "enable")) == "0\n"
    assert sysfs.read(sysfs.dev(PF, "modalias")) == (
        "pci:v00008086d000010FBsv00008086sd0000000Cbc02sc00i00\n"
    )
    assert sysfs.read(sysfs.dev(PF, "sriov_totalvfs")) == "8\n"
    assert sysfs.read(sysfs.dev(PF, "sriov_numvfs")) == "0\n"
    assert sysfs.read(sysfs.dev(PF, "sriov_offset")) == "128\n"
    assert sysfs.read(sysfs.dev(PF, "sriov_stride")) == "2\n"
    assert sysfs.read(sysfs.dev(PF, "sriov_vf_device")) == "10ed\n"
    assert sysfs.read(sysfs.dev(PF, "sriov_drivers_autoprobe")) == "1\n"


def test_config_space(host: FakeKernel) -> None:
    with open(f"{DEVICES}/{PF}/config", "rb") as handle:
        cfg = handle.read()
    assert len(cfg) == 256
    assert cfg[0:4] == bytes([0x86, 0x80, 0xFB, 0x10])
    assert cfg[9:12] == bytes([0x00, 0x00, 0x02])
    assert cfg[0x0E] == 0
    with open(f"{DEVICES}/{ROOT_PORT}/config", "rb") as handle:
        assert handle.read()[0x0E] == 1  # bridge header


def test_driver_and_group_links(host: FakeKernel, sysfs: Sys) -> None:
    assert sysfs.link(sysfs.dev(PF, "driver")) == "../../../../bus/pci/drivers/ixgbe"
    assert sysfs.link(sysfs.dev(NIC, "driver")) == "../../../bus/pci/drivers/e1000e"
    assert os.path.realpath(sysfs.dev(PF, "driver")) == "/sys/bus/pci/drivers/ixgbe"
    assert os.path.realpath(f"/sys/bus/pci/drivers/ixgbe/{PF}") == os.path.realpath(
        sysfs.dev(PF))
    assert sysfs.link(sysfs.dev(PF, "iommu_group")) == "../../../../kernel/iommu_groups/2"
    assert sysfs.ls("/sys/kernel/iommu_groups/4/devices") == [GPU, GPU_AUDIO]
    assert os.path.realpath(f"/sys/kernel/iommu_groups/4/devices/{GPU}") == os.path.realpath(
        sysfs.dev(GPU))
    assert not sysfs.exists(sysfs.dev(NOGROUP, "iommu_group"))
    assert not sysfs.exists(sysfs.dev(NOGROUP, "driver"))


def test_visibility_of_optional_attributes(host: FakeKernel, sysfs: Sys) -> None:
    assert not sysfs.exists(sysfs.dev(NOGROUP, "reset"))
    assert not sysfs.exists(sysfs.dev(NOGROUP, "reset_method"))
    assert not sysfs.exists(sysfs.dev(GPU, "sriov_numvfs"))
    sysfs.write(sysfs.dev(PF, "sriov_numvfs"), "1")
    vf = "0000:03:10.0"
    assert sysfs.exists(sysfs.dev(vf, "reset"))
    for attr in ("remove", "rescan", "sriov_numvfs", "sriov_totalvfs"):
        assert not sysfs.exists(sysfs.dev(vf, attr)), attr
    assert sysfs.exists(sysfs.dev(PF, "remove"))


@pytest.mark.parametrize("attr", ["vendor", "device", "class", "revision", "modalias",
                                  "sriov_totalvfs", "sriov_vf_device", "power_state"])
def test_row_readonly_attribute_write(host: FakeKernel, sysfs: Sys, attr: str) -> None:
    """7.1 "any RO attr": the real 6.1 kernel refuses at open() with EACCES, even for root.

    A first reading of the kernel source expected EIO from the missing handler; the
    real-kernel tier observed EACCES at open (kernfs checks the mode), and the real
    kernel wins (docs/kernel-model.md §0).
    """
    path = sysfs.dev(PF, attr)
    before = sysfs.read(path)
    for flags in (os.O_WRONLY | os.O_TRUNC, os.O_WRONLY, os.O_RDWR):
        with pytest.raises(PermissionError):
            os.open(path, flags)
    assert sysfs.read(path) == before
    assert host.writes == []  # nothing reached the kernel


def test_vf_msix_count(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.dev(PF, "sriov_drivers_autoprobe"), "0")
    sysfs.write(sysfs.dev(PF, "sriov_numvfs"), "1")
    vf = "0000:03:10.0"
    assert sysfs.read(sysfs.dev(PF, "sriov_vf_total_msix")) == "0\n"
    assert sysfs.read(sysfs.dev(vf, "power_state")) == "unknown\n"  # as a real 6.1 VF
    assert sysfs.errno(sysfs.dev(vf, "sriov_vf_msix_count"), "x") == errno.EINVAL
    assert sysfs.errno(sysfs.dev(vf, "sriov_vf_msix_count"), "4") == errno.EOPNOTSUPP
    assert not sysfs.exists(sysfs.dev(PF, "sriov_vf_msix_count"))


@pytest.mark.parametrize(("address", "attr"), [
    (GPU, "sriov_numvfs"), (NOGROUP, "reset"), (NOGROUP, "reset_method"),
])
def test_row_hidden_attribute(host: FakeKernel, sysfs: Sys, address: str, attr: str) -> None:
    """7.1 "hidden attr": ENOENT at open."""
    with pytest.raises(FileNotFoundError):
        os.open(sysfs.dev(address, attr), os.O_WRONLY)


def test_hidden_remove_on_vf(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.dev(PF, "sriov_numvfs"), "1")
    with pytest.raises(FileNotFoundError):
        os.open(sysfs.dev("0000:03:10.0", "remove"), os.O_WRONLY)


def test_write_only_files_refuse_reads_even_for_root(host: FakeKernel, sysfs: Sys) -> None:
    """Observed on a real 6.1 kernel: kernfs refuses the open with EACCES (no show handler)."""
    sysfs.write("/sys/bus/pci/drivers_probe", GPU)
    sysfs.write(sysfs.dev(PF, "reset"), "1")
    for path in ("/sys/bus/pci/drivers_probe", sysfs.dev(PF, "reset")):
        with pytest.raises(PermissionError):
            sysfs.read(path)


def test_python_open_write_also_reaches_kernel(host: FakeKernel, sysfs: Sys) -> None:
    with open(sysfs.dev(GPU, "driver_override"), "w") as handle:
        handle.write("vfio-pci\n")
    assert sysfs.read(sysfs.dev(GPU, "driver_override")) == "vfio-pci\n"
    assert host.writes[-1].path == f"{DEVICES}/{GPU}/driver_override"
