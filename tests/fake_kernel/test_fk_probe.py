"""7.1 rows for new_id, remove_id, drivers_probe and drivers_autoprobe."""

from __future__ import annotations

import errno

import pytest

from hostdev.testing import FakeKernel

from .hostlib import GPU, GPU_AUDIO, NIC, NOGROUP, Sys


def _unbind(sysfs: Sys, address: str) -> None:
    sysfs.write(sysfs.dev(address, "driver/unbind"), address)


@pytest.mark.parametrize("value", ["", "\n", "10de", "zz 10", "10de\n"])
def test_row_new_id_too_few_fields(host: FakeKernel, sysfs: Sys, value: str) -> None:
    if value == "":
        sysfs.write(sysfs.drv("vfio-pci", "new_id"), value)  # never reaches the kernel
        assert host.writes == []
        return
    assert sysfs.errno(sysfs.drv("vfio-pci", "new_id"), value) == errno.EINVAL


def test_row_new_id_duplicate(host: FakeKernel, sysfs: Sys) -> None:
    # already in the static table
    assert sysfs.errno(sysfs.drv("e1000e", "new_id"), "8086 10d3") == errno.EEXIST
    sysfs.write(sysfs.drv("vfio-pci", "new_id"), "10de 1eb8")
    assert sysfs.errno(sysfs.drv("vfio-pci", "new_id"), "0x10de 0x1eb8\n") == errno.EEXIST


def test_row_new_id_driver_data_not_in_table(host: FakeKernel, sysfs: Sys) -> None:
    value = "10de 1eb8 ffffffff ffffffff 0 0 5"
    assert sysfs.errno(sysfs.drv("vfio-pci", "new_id"), value) == errno.EINVAL
    # pci-stub has no id table, so any driver_data is accepted
    sysfs.write(sysfs.drv("pci-stub", "new_id"), value)


def test_row_new_id_probes_unbound_matches_only(host: FakeKernel, sysfs: Sys) -> None:
    host.add_device("0000:04:00.2", 0x10DE, 0x10F0, 0x040300, iommu_group=4,
                    parent="0000:00:02.0")
    _unbind(sysfs, GPU_AUDIO)
    assert sysfs.driver("0000:04:00.2") == "snd_hda_intel"
    sysfs.write(sysfs.drv("vfio-pci", "new_id"), "10de 10f0")
    assert sysfs.driver(GPU_AUDIO) == "vfio-pci"  # was unbound: probed now
    assert sysfs.driver("0000:04:00.2") == "snd_hda_intel"  # bound: left alone
    assert sysfs.driver(GPU) == "nouveau"


def test_new_id_ignores_bus_autoprobe(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write("/sys/bus/pci/drivers_autoprobe", "0")
    _unbind(sysfs, GPU)
    sysfs.write(sysfs.drv("vfio-pci", "new_id"), "10de 1eb8")
    assert sysfs.driver(GPU) == "vfio-pci"


def test_row_remove_id(host: FakeKernel, sysfs: Sys) -> None:
    assert sysfs.errno(sysfs.drv("vfio-pci", "remove_id"), "10de") == errno.EINVAL
    assert sysfs.errno(sysfs.drv("vfio-pci", "remove_id"), "10de 1eb8") == errno.ENODEV
    _unbind(sysfs, GPU)
    sysfs.write(sysfs.drv("vfio-pci", "new_id"), "10de 1eb8")
    assert sysfs.driver(GPU) == "vfio-pci"
    sysfs.write(sysfs.drv("vfio-pci", "remove_id"), "10de 1eb8\n")
    assert sysfs.driver(GPU) == "vfio-pci"  # bound devices stay
    assert sysfs.errno(sysfs.drv("vfio-pci", "remove_id"), "10de 1eb8") == errno.ENODEV
    _unbind(sysfs, GPU)
    sysfs.write("/sys/bus/pci/drivers_probe", GPU)
    assert sysfs.driver(GPU) == "nouveau"  # the dynamic id no longer matches


def test_remove_id_subsystem_must_match_when_given(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.drv("vfio-pci", "new_id"), "10de 1eb8 1043 8768")
    assert sysfs.errno(sysfs.drv("vfio-pci", "remove_id"),
                       "10de 1eb8 1043 1111") == errno.ENODEV
    sysfs.write(sysfs.drv("vfio-pci", "remove_id"), "10de 1eb8 1043")


def test_row_drivers_probe_unknown(host: FakeKernel, sysfs: Sys) -> None:
    assert sysfs.errno("/sys/bus/pci/drivers_probe", "0000:99:00.0") == errno.ENODEV


def test_row_drivers_probe_bound_or_no_match(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write("/sys/bus/pci/drivers_probe", NIC)
    assert sysfs.driver(NIC) == "e1000e"
    sysfs.write("/sys/bus/pci/drivers_probe", NOGROUP + "\n")
    assert sysfs.driver(NOGROUP) is None
    sysfs.write(sysfs.dev(NIC, "driver_override"), "vfio-pci")
    sysfs.write("/sys/bus/pci/drivers_probe", NIC)
    assert sysfs.driver(NIC) == "e1000e"  # no rebind while bound


def test_drivers_probe_override_first(host: FakeKernel, sysfs: Sys) -> None:
    _unbind(sysfs, GPU)
    sysfs.write(sysfs.dev(GPU, "driver_override"), "vfio-pci")
    sysfs.write("/sys/bus/pci/drivers_probe", GPU)
    assert sysfs.driver(GPU) == "vfio-pci"
    _unbind(sysfs, GPU)
    sysfs.write(sysfs.dev(GPU, "driver_override"), "\n")
    sysfs.write("/sys/bus/pci/drivers_probe", GPU)
    assert sysfs.driver(GPU) == "nouveau"


def test_drivers_probe_registration_order(host: FakeKernel, sysfs: Sys) -> None:
    host.add_driver("igb_alt", ids=[(0x8086, 0x10D3)])  # registered after e1000e
    _unbind(sysfs, NIC)
    sysfs.write("/sys/bus/pci/drivers_probe", NIC)
    assert sysfs.driver(NIC) == "e1000e"
    host.fail_probe("e1000e", errno.ENODEV, times=1)
    _unbind(sysfs, NIC)
    sysfs.write("/sys/bus/pci/drivers_probe", NIC)
    assert sysfs.driver(NIC) == "igb_alt"  # the next driver gets its chance


def test_drivers_probe_all_probes_fail_still_succeeds(host: FakeKernel, sysfs: Sys) -> None:
    _unbind(sysfs, NIC)
    host.fail_probe("e1000e", errno.EIO)
    sysfs.write("/sys/bus/pci/drivers_probe", NIC)
    assert sysfs.driver(NIC) is None


def test_row_drivers_probe_attach_error(host: FakeKernel, sysfs: Sys) -> None:
    """A host driver's dma_configure EBUSY (group owned by a VFIO user) becomes EINVAL."""
    _unbind(sysfs, GPU)
    _unbind(sysfs, GPU_AUDIO)
    sysfs.write(sysfs.dev(GPU, "driver_override"), "vfio-pci")
    sysfs.write("/sys/bus/pci/drivers_probe", GPU)
    host.hold_vfio(GPU)
    assert sysfs.errno("/sys/bus/pci/drivers_probe", GPU_AUDIO) == errno.EINVAL
    assert sysfs.driver(GPU_AUDIO) is None


@pytest.mark.parametrize(("value", "expected"), [
    ("0", "0\n"), ("0\n", "0\n"), ("00", "0\n"), ("1", "1\n"), ("x", "1\n"), ("2\n", "1\n"),
])
def test_row_drivers_autoprobe(kernel: FakeKernel, sysfs: Sys, value: str,
                               expected: str) -> None:
    sysfs.write("/sys/bus/pci/drivers_autoprobe", "0")
    sysfs.write("/sys/bus/pci/drivers_autoprobe", value)
    assert sysfs.read("/sys/bus/pci/drivers_autoprobe") == expected


def test_drivers_autoprobe_gates_driver_registration(kernel: FakeKernel, sysfs: Sys) -> None:
    kernel.add_device(NIC, 0x8086, 0x10D3, 0x020000, iommu_group=5)
    sysfs.write("/sys/bus/pci/drivers_autoprobe", "0")
    kernel.add_driver("e1000e", ids=[(0x8086, 0x10D3)])
    assert sysfs.driver(NIC) is None
    sysfs.write("/sys/bus/pci/drivers_autoprobe", "1")
    kernel.add_driver("e1000e_twin", ids=[(0x8086, 0x10D3)])
    assert sysfs.driver(NIC) == "e1000e_twin"


def test_hot_added_device_is_autoprobed(kernel: FakeKernel, sysfs: Sys) -> None:
    kernel.add_driver("e1000e", ids=[(0x8086, 0x10D3)])
    kernel.add_device(NIC, 0x8086, 0x10D3, 0x020000, iommu_group=5)
    assert sysfs.driver(NIC) == "e1000e"
