"""Is the device at a record's address still the device we recorded?

After ``sriov_numvfs`` goes 2 -> 0 -> 2, a new VF sits at the old address. A
record matches the host only if the device exists with the same ids, the same
PF and VF index, and the same identity
(:meth:`~hostdev.linux.sysfs.Sysfs.identity`, the inode of its directory).
"""

from __future__ import annotations

from enum import Enum

from hostdev.address import PciAddress
from hostdev.errors import DeviceNotFound, InvalidAddress
from hostdev.linux.device import PciDevice
from hostdev.linux.sysfs import Sysfs
from hostdev.state.records import DeviceRecord


class Presence(Enum):
    """How a record relates to the host."""

    PRESENT = "present"
    MISSING = "missing"
    #: Something else sits at the address now (re-created or replaced).
    STALE = "stale"


def check_identity(sysfs: Sysfs, record: DeviceRecord,
                   device: PciDevice | None = None) -> Presence:
    """Compare a record with the host.

    The directory inode changes whenever the kernel re-creates the function,
    so a stat settles most cases; the ids and the PF (and the VF index, when a
    snapshot is at hand) are compared as well. Without ``device`` this costs a
    stat and two reads (plus the PF link for a record without an inode, which
    none written today lacks, but older files may).
    """
    addr = record.address
    identity = sysfs.identity(addr)
    if identity is None:
        return Presence.MISSING
    if record.identity is not None and identity != record.identity:
        return Presence.STALE
    if device is not None:
        ids = (device.vendor, device.device)
        pf = device.vf.pf if device.vf is not None else None
        index = device.vf.index if device.vf is not None else None
    else:
        try:
            ids = (sysfs.read_hex(sysfs.device_path(addr, "vendor"), addr),
                   sysfs.read_hex(sysfs.device_path(addr, "device"), addr))
            pf = record.pf
            if record.identity is None:
                name = sysfs.read_link_name(sysfs.device_path(addr, "physfn"), addr)
                try:
                    pf = PciAddress.parse(name) if name is not None else None
                except InvalidAddress:
                    pf = record.pf  # a garbage link tells nothing: not taken as a change
        except DeviceNotFound:
            return Presence.MISSING
        index = None
    if ids != (record.vendor, record.device) or pf != record.pf:
        return Presence.STALE
    if index is not None and record.vf_index is not None and index != record.vf_index:
        return Presence.STALE
    return Presence.PRESENT
