"""Applying one persistent wish inside a transaction, and naming a device for a wish.

Each wish is checked against the device now at its address first: a device
that is absent is left for later, one whose ids or serial number differ is
reported and never touched. Then the same operation as the command a user
would type runs (``set_num_vfs`` or ``node_detach``), never forced: what it
refuses (a device the host uses, a VFIO holder, a PF with VFs) is reported by
the caller from the error it raises. (The one operation built from others: a
wish is exactly what the user's command would have done.)
"""

from __future__ import annotations

from enum import Enum

from hostdev.address import PciAddress
from hostdev.linux.binding import current_driver
from hostdev.linux.scan import read_device
from hostdev.linux.sysfs import Sysfs
from hostdev.linux.vpd import read_serial
from hostdev.ops.identity import Presence, check_identity
from hostdev.ops.node import node_detach
from hostdev.ops.transaction import Transaction
from hostdev.ops.vf_count import set_num_vfs
from hostdev.state.wishes import DetachWish, DeviceIdentity, VfCountWish, Wish


class Outcome(Enum):
    """Where a wish's result goes in the report."""

    DONE = "done"
    ALREADY = "already"
    MISSING = "missing"
    FAILED = "failed"


def identity_of(sysfs: Sysfs, address: PciAddress) -> DeviceIdentity:
    """The device now at ``address``, named as a wish names it."""
    dev = read_device(sysfs, address)
    return DeviceIdentity(address=address, vendor=dev.vendor, device=dev.device,
                          serial=read_serial(sysfs, address))


def _present(txn: Transaction, wanted: DeviceIdentity) -> tuple[Outcome, str] | None:
    """None when the wished-for device is at its address; else why not."""
    if not txn.sysfs.device_exists(wanted.address):
        return Outcome.MISSING, "not on this host"
    why = wanted.mismatch(identity_of(txn.sysfs, wanted.address))
    if why is not None:
        return Outcome.FAILED, f"another device sits at the address: {why}; not applied"
    return None


def apply_vf_count(txn: Transaction, wish: VfCountWish) -> tuple[Outcome, str]:
    """Give the PF its wished VF count (through 0 if it has another)."""
    blocked = _present(txn, wish.device)
    if blocked is not None:
        return blocked
    if current_driver(txn.sysfs, wish.device.address) is None:
        # The kernel takes a VF count only from a PF's driver: not a failure, the
        # wish is applied when the driver binds (the udev rule), or at the next boot.
        return Outcome.MISSING, "its driver is not bound yet: applied when it binds"
    report = set_num_vfs(txn, wish.device.address, wish.num_vfs, force=False)
    if report.before == wish.num_vfs:
        return Outcome.ALREADY, f"has {wish.num_vfs} VFs"
    return Outcome.DONE, f"{report.before} -> {report.after} VFs"


def apply_detach(txn: Transaction, wish: DetachWish) -> tuple[Outcome, str]:
    """Put the device on its stub and track it inactive, as ``node_detach`` does."""
    address = wish.device.address
    blocked = _present(txn, wish.device)
    if blocked is not None:
        return blocked
    owner = txn.lists.active.get(address)
    if owner is not None:
        return Outcome.ALREADY, f"assigned to {owner.owner or 'an owner'}; left alone"
    record = txn.lists.inactive.get(address)
    if record is not None and check_identity(txn.sysfs, record) is Presence.PRESENT and \
            current_driver(txn.sysfs, address) == wish.stub_driver:
        return Outcome.ALREADY, f"on {wish.stub_driver}, tracked inactive"
    result = node_detach(txn, address, wish.stub_driver, force=False)
    return Outcome.DONE, f"{result.action}, tracked inactive"


def apply_wish(txn: Transaction, wish: Wish) -> tuple[Outcome, str]:
    """Apply ``wish``, of either kind."""
    if isinstance(wish, VfCountWish):
        return apply_vf_count(txn, wish)
    return apply_detach(txn, wish)


def describe(wish: Wish) -> str:
    """What ``wish`` asks for, as the report names it ("8 VFs", "on vfio-pci")."""
    if isinstance(wish, VfCountWish):
        return f"{wish.num_vfs} VFs"
    return f"on {wish.stub_driver}"
