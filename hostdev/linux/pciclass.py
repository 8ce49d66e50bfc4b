"""Human names of PCI class codes, as lspci prints them (subset)."""

from __future__ import annotations

_SUBCLASS_NAMES: dict[int, str] = {
    0x0000: "Non-VGA unclassified device",
    0x0001: "VGA compatible unclassified device",
    0x0100: "SCSI storage controller",
    0x0101: "IDE interface",
    0x0104: "RAID bus controller",
    0x0106: "SATA controller",
    0x0107: "Serial Attached SCSI controller",
    0x0108: "Non-Volatile memory controller",
    0x0180: "Mass storage controller",
    0x0200: "Ethernet controller",
    0x0207: "Infiniband controller",
    0x0280: "Network controller",
    0x0300: "VGA compatible controller",
    0x0302: "3D controller",
    0x0380: "Display controller",
    0x0401: "Multimedia audio controller",
    0x0403: "Audio device",
    0x0480: "Multimedia controller",
    0x0500: "RAM memory",
    0x0580: "Memory controller",
    0x0600: "Host bridge",
    0x0601: "ISA bridge",
    0x0604: "PCI bridge",
    0x0607: "CardBus bridge",
    0x0609: "PCI bridge",
    0x0680: "Bridge",
    0x0700: "Serial controller",
    0x0780: "Communication controller",
    0x0800: "PIC",
    0x0805: "SD Host controller",
    0x0806: "IOMMU",
    0x0880: "System peripheral",
    0x0c03: "USB controller",
    0x0c05: "SMBus",
    0x0c80: "Serial bus controller",
    0x0d00: "IRDA controller",
    0x1000: "Network and computing encryption device",
    0x1080: "Encryption controller",
    0x1101: "Performance counters",
    0x1180: "Signal processing controller",
    0x1200: "Processing accelerators",
    0xFF00: "Unassigned class",
}

_BASE_NAMES: dict[int, str] = {
    0x00: "Unclassified device",
    0x01: "Mass storage controller",
    0x02: "Network controller",
    0x03: "Display controller",
    0x04: "Multimedia controller",
    0x05: "Memory controller",
    0x06: "Bridge",
    0x07: "Communication controller",
    0x08: "Generic system peripheral",
    0x09: "Input device controller",
    0x0A: "Docking station",
    0x0B: "Processor",
    0x0C: "Serial bus controller",
    0x0D: "Wireless controller",
    0x0E: "Intelligent controller",
    0x0F: "Satellite communications controller",
    0x10: "Encryption controller",
    0x11: "Signal processing controller",
    0x12: "Processing accelerators",
    0x13: "Non-Essential Instrumentation",
    0x40: "Coprocessor",
    0xFF: "Unassigned class",
}


def class_name(class_code: int) -> str:
    """Name of a 24-bit class code: the subclass name, else the base class name."""
    sub = (class_code >> 8) & 0xFFFF
    name = _SUBCLASS_NAMES.get(sub)
    if name is not None:
        return name
    return _BASE_NAMES.get(sub >> 8, f"Class {sub:04x}")


#: Kinds of function by PCI base class, as ``hostdev list --class`` names them.
CLASS_KINDS: dict[str, int] = {
    "unclassified": 0x00, "storage": 0x01, "net": 0x02, "display": 0x03,
    "multimedia": 0x04, "memory": 0x05, "bridge": 0x06, "communication": 0x07,
    "system": 0x08, "input": 0x09, "docking": 0x0A, "processor": 0x0B, "serial": 0x0C,
    "wireless": 0x0D, "intelligent": 0x0E, "satellite": 0x0F, "encryption": 0x10,
    "signal": 0x11, "accelerator": 0x12, "instrumentation": 0x13, "coprocessor": 0x40,
    "unassigned": 0xFF,
}
