"""How device attributes read, computed from the model (docs/kernel-model.md §7.2).

The readers of the larger formats live here; which attribute uses which reader
is declared in :mod:`hostdev.testing.registry`.
"""

from __future__ import annotations

import struct

from hostdev.testing.model import Device


def config_space(dev: Device) -> bytes:
    """256 bytes of type-0 or type-1 config header (VFs read 0xffff ids, as hardware does)."""
    t = dev.t
    data = bytearray(256)
    vendor, device = (0xFFFF, 0xFFFF) if dev.is_vf else (t.vendor, t.device)
    struct.pack_into("<HHHH", data, 0, vendor, device, 0, 0x0010)
    data[8] = t.revision
    data[9] = t.class_code & 0xFF
    data[10] = (t.class_code >> 8) & 0xFF
    data[11] = (t.class_code >> 16) & 0xFF
    header = 1 if (t.class_code >> 8) == 0x0604 else 2 if (t.class_code >> 8) == 0x0607 else 0
    data[0x0E] = header
    if header == 0:
        struct.pack_into("<HH", data, 0x2C, t.subsystem_vendor, t.subsystem_device)
    return bytes(data)


def modalias(dev: Device) -> str:
    """``pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X``."""
    t = dev.t
    c = t.class_code
    return (
        f"pci:v{t.vendor:08X}d{t.device:08X}sv{t.subsystem_vendor:08X}"
        f"sd{t.subsystem_device:08X}bc{c >> 16:02X}sc{(c >> 8) & 0xFF:02X}i{c & 0xFF:02X}\n"
    )


def enable_count(dev: Device) -> int:
    """``enable``: user enables, plus the bound driver's, plus an open VFIO user's."""
    count = dev.user_enable
    if dev.driver is not None and dev.driver.enables_device:
        count += 1
    if dev.holders:
        count += 1
    return count


def power_state(dev: Device) -> str:
    """Idle vfio-bound: D3hot; never enabled nor put in a state: unknown; else D0.

    ``pci_setup_device`` starts every function, VFs included, at PCI_UNKNOWN; the
    state becomes known once something sets it: ``pci_enable_device`` (a host
    driver's probe, a write to ``enable``) or vfio-pci (D3hot while idle, D0
    when it lets go). Observed on a real 6.1 guest: its unbound host bridge and
    ICH9 functions and its fresh VFs read ``unknown``.
    """
    if dev.driver is not None and dev.driver.vfio and not dev.holders:
        return "D3hot\n"
    if not dev.power_known:
        return "unknown\n"
    return "D0\n"


def runtime_usage(dev: Device) -> str:
    """``power/runtime_usage``: the runtime PM usage count (seen on a real 6.1 kernel).

    The PCI core forbids runtime PM at enumeration (1 with no driver); a probe
    takes a reference that host drivers such as nvme keep (2); vfio-pci allows
    runtime PM and drops both, so an idle vfio-bound function reads 0, and each
    open of the device (held by fd or by a mapping) counts 1 until released.
    """
    if dev.driver is None:
        return "1\n"
    if dev.driver.vfio:
        return "1\n" if dev.holders else "0\n"
    return "2\n"


def runtime_status(dev: Device) -> str:
    """``power/runtime_status``: an idle vfio-bound function is suspended, else active."""
    if dev.driver is not None and dev.driver.vfio and not dev.holders:
        return "suspended\n"
    return "active\n"


def uevent(dev: Device) -> str:
    """The device's uevent variables."""
    t = dev.t
    lines = []
    if dev.driver is not None:
        lines.append(f"DRIVER={dev.driver.name}")
    lines += [
        f"PCI_CLASS={t.class_code:X}",
        f"PCI_ID={t.vendor:04X}:{t.device:04X}",
        f"PCI_SUBSYS_ID={t.subsystem_vendor:04X}:{t.subsystem_device:04X}",
        f"PCI_SLOT_NAME={dev.name}",
        "MODALIAS=" + modalias(dev).rstrip("\n"),
    ]
    return "\n".join(lines) + "\n"
