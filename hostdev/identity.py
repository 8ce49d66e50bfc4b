"""Is the device at a record's address still the device we recorded?

After ``sriov_numvfs`` goes 2 -> 0 -> 2, a new VF sits at the old address. A
record matches the host only if the device exists with the same ids, the same
PF and VF index, and the same kernel object (directory inode).
"""

from __future__ import annotations

from enum import Enum

from hostdev.pci import PciDevice
from hostdev.records import DeviceRecord
from hostdev.sysfs import Sysfs


class Presence(Enum):
    """How a record relates to the host."""

    PRESENT = "present"
    MISSING = "missing"
    #: Something else sits at the address now (re-created or replaced).
    STALE = "stale"


def check(sysfs: Sysfs, record: DeviceRecord, device: PciDevice | None = None) -> Presence:
    """Compare a record with the host (with a fresh snapshot when one is at hand)."""
    if not sysfs.device_exists(record.address):
        return Presence.MISSING
    generation = sysfs.identity(record.address)
    if generation is None:
        return Presence.MISSING
    if record.generation is not None and generation != record.generation:
        return Presence.STALE
    if device is not None:
        if (device.vendor, device.device) != (record.vendor, record.device):
            return Presence.STALE
        pf = device.vf.pf if device.vf is not None else None
        if pf != record.pf:
            return Presence.STALE
        if device.vf is not None and record.vf_index is not None and \
                device.vf.index is not None and device.vf.index != record.vf_index:
            return Presence.STALE
    return Presence.PRESENT
