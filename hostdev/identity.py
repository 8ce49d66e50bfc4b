"""Is the device at a record's address still the device we recorded?

After ``sriov_numvfs`` goes 2 -> 0 -> 2, a new VF sits at the old address. A
record matches the host only if the device exists with the same ids, the same
PF and VF index, and the same kernel object (directory inode).
"""

from __future__ import annotations

from enum import Enum

from hostdev.errors import DeviceNotFound
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


def examine(sysfs: Sysfs, record: DeviceRecord) -> Presence:
    """Compare a record with the host in a few reads (no full snapshot).

    The directory inode already changes whenever the kernel re-creates the
    function; the ids are read as well, and the PF link for a record that has
    no inode (none is written without one, but files may be older).
    """
    addr = record.address
    generation = sysfs.identity(addr)
    if generation is None:
        return Presence.MISSING
    if record.generation is not None and generation != record.generation:
        return Presence.STALE
    try:
        ids = (sysfs.read_hex(sysfs.device_path(addr, "vendor"), addr),
               sysfs.read_hex(sysfs.device_path(addr, "device"), addr))
        pf = sysfs.read_link_name(sysfs.device_path(addr, "physfn"), addr) \
            if record.generation is None else (str(record.pf) if record.pf else None)
    except DeviceNotFound:
        return Presence.MISSING
    if ids != (record.vendor, record.device):
        return Presence.STALE
    if pf != (str(record.pf) if record.pf is not None else None):
        return Presence.STALE
    return Presence.PRESENT
