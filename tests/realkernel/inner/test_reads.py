"""Read formats, links and write-protection of PCI sysfs (docs/kernel-model.md §0, 1, 7.2)."""

from __future__ import annotations

import os
import re

import pytest

from . import guest
from .guest import dev
from .observing import Observer

pytestmark = pytest.mark.realkernel


def _matches(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern, text) is not None


def test_pf_identity_and_formats(pf: str, observe: Observer) -> None:
    """vendor/device/class/revision/modalias/numa_node/enable read in their documented format."""
    d = dev(pf)
    observe.check("pf vendor", guest.read(d / "vendor"), "0x1b36\n", "docs/real-kernel.md")
    observe.check("pf device", guest.read(d / "device"), "0x0010\n", "docs/real-kernel.md")
    observe.check("pf class", guest.read(d / "class"), "0x010802\n", "docs/real-kernel.md")
    for attr, pattern in (
        ("vendor", r"0x[0-9a-f]{4}\n"),
        ("device", r"0x[0-9a-f]{4}\n"),
        ("subsystem_vendor", r"0x[0-9a-f]{4}\n"),
        ("subsystem_device", r"0x[0-9a-f]{4}\n"),
        ("class", r"0x[0-9a-f]{6}\n"),
        ("revision", r"0x[0-9a-f]{2}\n"),
        ("numa_node", r"-?\d+\n"),
        ("enable", r"\d+\n"),
        ("modalias",
         r"pci:v[0-9A-F]{8}d[0-9A-F]{8}sv[0-9A-F]{8}sd[0-9A-F]{8}bc[0-9A-F]{2}"
         r"sc[0-9A-F]{2}i[0-9A-F]{2}\n"),
    ):
        value = guest.read(d / attr)
        observe.check(f"format of {attr} ({value!r})", _matches(pattern, value), True,
                      f"1/7.2 {pattern}")
    observe.check("numa_node when unknown", guest.read(d / "numa_node"), "-1\n", "7.2")
    observe.record("power_state of the nvme-bound PF", guest.read(d / "power_state"))
    observe.record("pf revision", guest.read(d / "revision"))
    observe.record("pf modalias", guest.read(d / "modalias"))


def test_sriov_attribute_formats(pf: str, observe: Observer) -> None:
    """sriov_* files: decimal counts, ``%x`` VF device id without 0x, autoprobe 1 at boot."""
    d = dev(pf)
    observe.check("sriov_totalvfs", guest.read(d / "sriov_totalvfs"), "4\n", "docs/real-kernel.md")
    observe.check("sriov_numvfs at boot", guest.read(d / "sriov_numvfs"), "0\n", "3.1 %u")
    observe.check("sriov_drivers_autoprobe at boot", guest.read(d / "sriov_drivers_autoprobe"),
                  "1\n", "3.3 starts at 1")
    for attr in ("sriov_offset", "sriov_stride"):
        value = guest.read(d / attr)
        observe.check(f"{attr} is %u ({value!r})", _matches(r"\d+\n", value), True, "3.2")
        observe.record(attr, value)
    vf_device = guest.read(d / "sriov_vf_device")
    observe.check(f"sriov_vf_device is %x without 0x ({vf_device!r})",
                  _matches(r"[0-9a-f]+\n", vf_device) and not vf_device.startswith("0"),
                  True, "3.2 %x no padding")
    observe.record("sriov_vf_device", vf_device)
    observe.record("sriov_vf_total_msix", guest.read(d / "sriov_vf_total_msix"))


def test_driver_override_reads_null_at_boot(pf: str, observe: Observer) -> None:
    """A device without an override reads ``(null)\\n``."""
    for addr in (pf, guest.ROOT_PORT, guest.HOST_BRIDGE):
        observe.check(f"driver_override of {addr}", guest.read(dev(addr) / "driver_override"),
                      "(null)\n", "1.1")


def test_links_are_relative(pf: str, observe: Observer) -> None:
    """driver, iommu_group, subsystem and bus links are relative and point where claimed."""
    d = dev(pf)
    bus_link = guest.readlink(d)
    observe.record("devices/PF link", bus_link)
    observe.check("devices/PF link is relative into devices/", bool(
        bus_link and bus_link.startswith("../../../devices/pci0000:00/")
        and bus_link.endswith(f"/{pf}")), True, "1 bus_add_device")
    real = os.path.realpath(d)
    observe.check("PF sits below its root port", os.path.basename(os.path.dirname(real)),
                  guest.ROOT_PORT, "1 placement")
    driver = guest.readlink(d / "driver")
    observe.check("driver link", driver, "../../../../bus/pci/drivers/nvme", "1 driver_sysfs_add")
    observe.check("driver dir has a link back", os.path.realpath(guest.DRIVERS / "nvme" / pf),
                  real, "1 driver_sysfs_add")
    group = guest.readlink(d / "iommu_group")
    observe.record("iommu_group link", group)
    observe.check("iommu_group link form", bool(group and re.fullmatch(
        r"\.\./\.\./\.\./\.\./kernel/iommu_groups/\d+", group)), True, "1 iommu_group")
    number = guest.group_of(pf)
    observe.check("group lists the PF", pf in os.listdir(guest.GROUPS / str(number) / "devices"),
                  True, "1 iommu_group")
    observe.check("subsystem link", guest.readlink(d / "subsystem"), "../../../../bus/pci",
                  "1 subsystem")
    observe.check("driver link of a root-bus device (root port)",
                  guest.readlink(dev(guest.ROOT_PORT) / "driver"),
                  "../../../bus/pci/drivers/pcieport", "1 driver link")


def test_reset_method_format(pf: str, observe: Observer) -> None:
    """reset_method lists known names separated by spaces with one trailing newline."""
    value = guest.read(dev(pf) / "reset_method")
    observe.record("PF reset_method", value)
    names = value[:-1].split(" ") if value.endswith("\n") else []
    observe.check(f"reset_method format ({value!r})",
                  bool(names) and all(n in guest.RESET_METHOD_NAMES for n in names)
                  and value.count("\n") == 1, True, "5 reset_method read")


def test_write_only_and_read_only_as_root(pf: str, observe: Observer) -> None:
    """Root writing a read-only attribute or reading a write-only one.

    A first reading of the kernel source expected EIO from the missing handler; the
    real 6.1 kernel refuses earlier, at open(), with EACCES (kernfs checks the file
    mode even for root). The real kernel wins: this pins what it does
    (docs/kernel-model.md §0).
    """
    d = dev(pf)
    for attr in ("vendor", "class", "sriov_totalvfs"):
        observe.check(f"root writes {attr} (0444)", guest.write_detail(d / attr, "1"),
                      "open:EACCES", "0 missing handler / 7.1 (real: EACCES at open)")
    for path in (d / "reset", d / "remove", guest.DRIVERS / "nvme/bind",
                 guest.DRIVERS / "vfio-pci/new_id", guest.PCI / "drivers_probe"):
        observe.check(f"root reads {path} (write-only)", guest.read_detail(path),
                      "open:EACCES", "0 missing handler / 7.2 (real: EACCES at open)")


def test_hidden_attributes_do_not_exist(pf: str, observe: Observer) -> None:
    """sriov_* on a non-PF and reset on a device with no method are absent (ENOENT)."""
    port = dev(guest.ROOT_PORT)
    observe.check("sriov_numvfs on the root port", guest.write(port / "sriov_numvfs", "1"),
                  "ENOENT", "1 sriov_pf_attrs_are_visible")
    observe.check("sriov_totalvfs on the root port", guest.read(port / "sriov_totalvfs"),
                  "!ENOENT", "1")
    bridge = dev(guest.HOST_BRIDGE)
    observe.record("host bridge reset_method", guest.read(bridge / "reset_method"))
    observe.check("reset on the host bridge (no method)", guest.write(bridge / "reset", "1"),
                  "ENOENT", "1 pci_dev_reset_attr_is_visible")
    observe.check("sriov_vf_msix_count on the PF", guest.read(dev(pf) / "sriov_vf_msix_count"),
                  "!ENOENT", "1 VFs only")


def test_bus_drivers_autoprobe(pf: str, observe: Observer) -> None:
    """drivers_autoprobe reads 1/0; a first character '0' sets 0, anything else sets 1."""
    path = guest.PCI / "drivers_autoprobe"
    observe.check("drivers_autoprobe at boot", guest.read(path), "1\n", "2.6")
    try:
        observe.check("write '0x'", guest.write(path, "0x"), "ok", "2.6")
        observe.check("after '0x'", guest.read(path), "0\n", "2.6 first char '0'")
        observe.check("write 'no'", guest.write(path, "no"), "ok", "2.6")
        observe.check("after 'no'", guest.read(path), "1\n", "2.6 anything else sets 1")
        guest.must(path, "0")
        observe.check("write 'yes'", guest.write(path, "yes"), "ok", "2.6")
        observe.check("after 'yes'", guest.read(path), "1\n", "2.6")
    finally:
        guest.must(path, "1")


def test_enable_and_numa_node_writes(pf: str, observe: Observer) -> None:
    """enable: EINVAL bad, EBUSY while bound; numa_node: EINVAL bad or offline node."""
    d = dev(pf)
    observe.check("enable 'x'", guest.write(d / "enable", "x"), "EINVAL", "1 enable")
    observe.check("enable 1 while bound", guest.write(d / "enable", "1"), "EBUSY", "1 enable")
    observe.check("numa_node 'abc'", guest.write(d / "numa_node", "abc"), "EINVAL", "1 numa")
    observe.check("numa_node 7 (offline)", guest.write(d / "numa_node", "7"), "EINVAL",
                  "1 numa offline node")
    observe.check("numa_node unchanged", guest.read(d / "numa_node"), "-1\n", "1 numa")
