"""bind, unbind, drivers_probe, driver_override, new_id and remove_id.

docs/kernel-model.md §1.1, 2 and 7.1.
"""

from __future__ import annotations

import pytest

from . import guest
from .guest import DRIVERS, PCI, UNKNOWN, dev
from .observing import Observer

pytestmark = pytest.mark.realkernel

#: A vendor/device pair no device in the guest has (for new_id/remove_id).
FAKE_IDS = "1234 5678"


def test_bind_unknown_address(pf: str, observe: Observer) -> None:
    """Binding a name no device has gives ENODEV."""
    for drv in ("nvme", "vfio-pci"):
        observe.check(f"{drv}/bind unknown", guest.write(DRIVERS / drv / "bind", UNKNOWN),
                      "ENODEV", "2.1 step 1")


def test_bind_bound_device(pf: str, observe: Observer) -> None:
    """Binding a bound device: EBUSY if the driver matches, ENODEV (match first) if not."""
    observe.check("nvme/bind of the nvme-bound PF", guest.write(DRIVERS / "nvme/bind", pf),
                  "EBUSY", "2.1 step 3")
    observe.check("nvme/bind with a trailing newline", guest.write(DRIVERS / "nvme/bind",
                                                                   pf + "\n"),
                  "EBUSY", "0 sysfs_streq ignores one newline")
    observe.check("vfio-pci/bind of the nvme-bound PF (no override: no match)",
                  guest.write(DRIVERS / "vfio-pci/bind", pf), "ENODEV", "2.1 step 2")
    observe.check("PF still on nvme", guest.driver_of(pf), "nvme", "2.1")


def test_unbind_errors(pf: str, observe: Observer) -> None:
    """Unbinding from a driver the device is not bound to, or an unknown name: ENODEV."""
    observe.check("vfio-pci/unbind of the nvme-bound PF",
                  guest.write(DRIVERS / "vfio-pci/unbind", pf), "ENODEV", "2.2")
    observe.check("nvme/unbind unknown", guest.write(DRIVERS / "nvme/unbind", UNKNOWN),
                  "ENODEV", "2.2")
    observe.check("PF still on nvme", guest.driver_of(pf), "nvme", "2.2")


def test_unbind_and_bind_pf(pf: str, observe: Observer) -> None:
    """Unbind removes the driver links; numvfs without a PF driver is ENOENT; bind restores."""
    observe.check("nvme/unbind PF", guest.write(DRIVERS / "nvme/unbind", pf), "ok", "2.2")
    observe.check("driver link after unbind", guest.readlink(dev(pf) / "driver"), None, "2.2")
    observe.check("drivers/nvme/<PF> after unbind", guest.readlink(DRIVERS / "nvme" / pf),
                  None, "2.2")
    observe.check("nvme/unbind again", guest.write(DRIVERS / "nvme/unbind", pf), "ENODEV",
                  "2.2 not bound to this driver")
    observe.check("sriov_numvfs 1 with no PF driver", guest.write(dev(pf) / "sriov_numvfs", "1"),
                  "ENOENT", "3.1 step 4")
    observe.check("sriov_numvfs 0 with no PF driver (N == current)",
                  guest.write(dev(pf) / "sriov_numvfs", "0"), "ok", "3.1 step 3")
    observe.check("drivers_probe of the unbound PF",
                  guest.write(PCI / "drivers_probe", pf), "ok", "2.5")
    observe.check("drivers_probe rebinds nvme", guest.driver_of(pf), "nvme", "2.5")


def test_drivers_probe(pf: str, observe: Observer) -> None:
    """drivers_probe: ENODEV for an unknown name, no-op success for a bound device."""
    observe.check("drivers_probe unknown", guest.write(PCI / "drivers_probe", UNKNOWN),
                  "ENODEV", "2.5")
    observe.check("drivers_probe of a bound device", guest.write(PCI / "drivers_probe", pf),
                  "ok", "2.5 no-op")
    observe.check("still nvme", guest.driver_of(pf), "nvme", "2.5")
    observe.check("drivers_probe of an unbound device no driver wants",
                  guest.write(PCI / "drivers_probe", "0000:00:1f.3"), "ok", "2.5 still succeeds")
    observe.check("drivers_probe with upper-case hex", guest.write(PCI / "drivers_probe",
                                                                  "0000:00:1F.3"),
                  "ENODEV", "0 full lower-case name")
    observe.check("drivers_probe with a trailing newline",
                  guest.write(PCI / "drivers_probe", "0000:00:1f.3\n"), "ok", "0 sysfs_streq")


def test_driver_override_rules(pf: str, observe: Observer) -> None:
    """Set, cut at newline, zero-byte no-op, clear with newline, length limit, no rebind."""
    path = dev(pf) / "driver_override"
    observe.check("set vfio-pci\\n", guest.write(path, "vfio-pci\n"), "ok", "1.1")
    observe.check("reads vfio-pci\\n", guest.read(path), "vfio-pci\n", "1.1")
    observe.check("no rebind on set", guest.driver_of(pf), "nvme", "1.1 no rebind")
    observe.check("zero-byte write returns", guest.write(path, b""), "ok", "0 zero-byte")
    observe.check("zero-byte write changes nothing", guest.read(path), "vfio-pci\n", "0")
    observe.check("set 'a\\nb'", guest.write(path, "a\nb"), "ok", "1.1")
    observe.check("'a\\nb' keeps the text before the newline", guest.read(path), "a\n", "1.1")
    observe.check("set a name no driver has", guest.write(path, "none"), "ok",
                  "1.1 no existence check")
    observe.check("clear with \\n", guest.write(path, "\n"), "ok", "1.1")
    observe.check("reads (null) after clear", guest.read(path), "(null)\n", "1.1")
    guest.must(path, "x")
    observe.check("clear with \\0", guest.write(path, b"\0"), "ok", "1.1")
    observe.check("reads (null) after \\0", guest.read(path), "(null)\n", "1.1 strlen")
    observe.check("4095 bytes", guest.write(path, "x" * 4095), "EINVAL", "1.1 len >= 4095")
    observe.check("4094 bytes", guest.write(path, "x" * 4094), "ok", "1.1 len < 4095")
    observe.check("4094 bytes read back", len(guest.read(path)), 4095, "1.1")
    guest.must(path, "\n")


def test_new_id_and_remove_id(pf: str, observe: Observer) -> None:
    """new_id: EINVAL for one field, EEXIST for a duplicate; remove_id: ENODEV when absent."""
    vfio = DRIVERS / "vfio-pci"
    try:
        observe.check("new_id one field", guest.write(vfio / "new_id", "1234"), "EINVAL", "2.3")
        observe.check("new_id ok", guest.write(vfio / "new_id", FAKE_IDS), "ok", "2.3")
        observe.check("new_id duplicate", guest.write(vfio / "new_id", FAKE_IDS), "EEXIST",
                      "2.3 dup")
        observe.check("new_id driver_data not in the id table",
                      guest.write(vfio / "new_id", "1234 5679 ffffffff ffffffff 0 0 1"),
                      "EINVAL", "2.3 driver_data")
        observe.check("remove_id one field", guest.write(vfio / "remove_id", "1234"), "EINVAL",
                      "2.4")
        observe.check("remove_id ok", guest.write(vfio / "remove_id", FAKE_IDS), "ok", "2.4")
        observe.check("remove_id again", guest.write(vfio / "remove_id", FAKE_IDS), "ENODEV",
                      "2.4")
        observe.check("new_id of ids the PF has does not touch a bound device",
                      guest.write(vfio / "new_id", "1b36 0010"), "ok", "2.3")
        observe.check("PF still nvme after new_id", guest.driver_of(pf), "nvme",
                      "2.3 bound devices are left alone")
        observe.check("remove_id 1b36 0010", guest.write(vfio / "remove_id", "1b36 0010"), "ok",
                      "2.4")
    finally:
        for ids in (FAKE_IDS, "1b36 0010"):
            guest.write(vfio / "remove_id", ids)


def test_override_names_another_driver(pf: str, observe: Observer) -> None:
    """With driver_override=vfio-pci, binding nvme gives ENODEV and vfio-pci binds."""
    d = dev(pf)
    guest.must(d / "driver_override", "vfio-pci")
    guest.must(DRIVERS / "nvme/unbind", pf)
    observe.check("nvme/bind with override vfio-pci", guest.write(DRIVERS / "nvme/bind", pf),
                  "ENODEV", "1.1 override names another driver")
    observe.check("vfio-pci/bind with override", guest.write(DRIVERS / "vfio-pci/bind", pf),
                  "ok", "1.1 catch-all match")
    observe.check("PF driver", guest.driver_of(pf), "vfio-pci", "2.1 step 7")
    group = guest.group_of(pf)
    observe.check("/dev/vfio/<group> of the PF", (guest.DEV_VFIO / str(group)).exists(), True,
                  "4.1")
    observe.record("power_state of the idle vfio-pci PF", guest.read(d / "power_state"))
    observe.check("sriov_numvfs 1 under vfio-pci (enable_sriov off)",
                  guest.write(d / "sriov_numvfs", "1"), "ENOENT", "3.1 vfio-pci PF")
    observe.check("enable 1 while bound to vfio-pci", guest.write(d / "enable", "1"), "EBUSY",
                  "1 enable")
    guest.must(DRIVERS / "vfio-pci/unbind", pf)
    observe.check("/dev/vfio/<group> after unbind", (guest.DEV_VFIO / str(group)).exists(),
                  False, "4.1")
    guest.must(d / "driver_override", "\n")
    observe.check("drivers_probe after clearing", guest.write(PCI / "drivers_probe", pf), "ok",
                  "2.5")
    observe.check("PF back on nvme", guest.driver_of(pf), "nvme", "2.5")
