"""Checks and lookups every operation shares (one home, so no operation imports another)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from hostdev.address import PciAddress
from hostdev.errors import BadInput, DeviceInUse, DeviceNotFound, NotAssignable
from hostdev.linux.device import PciDevice
from hostdev.linux.drivers import is_group_safe, is_vfio_driver
from hostdev.linux.scan import read_device
from hostdev.ops.identity import Presence, check_identity
from hostdev.ops.transaction import Transaction
from hostdev.state.lists import Lists
from hostdev.state.records import DeviceRecord, HostdevSpec, Owner


def unique_specs(specs: Sequence[HostdevSpec]) -> list[HostdevSpec]:
    """Reject a batch naming one address twice."""
    seen: set[PciAddress] = set()
    for spec in specs:
        if spec.address in seen:
            raise BadInput(f"PCI device {spec.address} is listed twice; name each device once")
        seen.add(spec.address)
    return list(specs)


def snapshot(txn: Transaction, address: PciAddress, why: str) -> PciDevice:
    """Read a device that must exist (error naming it otherwise)."""
    if not txn.sysfs.device_exists(address):
        raise DeviceNotFound.at(address, why)
    return read_device(txn.sysfs, address)


def drop_stale(txn: Transaction, dev: PciDevice, report: list[DeviceRecord]) -> None:
    """Forget a record whose device was re-created at the same address."""
    record = txn.lists.find(dev.address)
    if record is not None and check_identity(txn.sysfs, record, dev) is not Presence.PRESENT:
        txn.lists.drop(dev.address)
        report.append(record)


def check_pf(txn: Transaction, dev: PciDevice, verb: str) -> None:
    """A PF cannot leave its driver while it has VFs or any of its VFs is tracked."""
    if dev.sriov is None:
        return
    addr = dev.address
    if dev.sriov.numvfs > 0 and not is_vfio_driver(dev.driver, dev.vfio_dev):
        raise NotAssignable(
            f"cannot {verb} PCI device {addr}: it is an SR-IOV PF with {dev.sriov.numvfs} VFs"
            f" enabled; set its VF count to 0 first ('hostdev sriov {addr} 0')",
            address=addr,
        )
    for record in (*txn.lists.active.values(), *txn.lists.inactive.values()):
        if record.pf == addr:
            where = "active" if record.address in txn.lists.active else "inactive"
            raise NotAssignable(
                f"cannot {verb} PCI device {addr}: its VF {record.address} is still tracked"
                f" ({where}); release or reattach it, or run 'hostdev prune'",
                address=addr,
            )


def in_use_message(address: PciAddress, record: DeviceRecord) -> str:
    """libvirt's wording for a device in the active list."""
    if record.owner is None:
        return f"PCI device {address} is in use"
    return f"PCI device {address} is in use by {record.owner}"


def refuse_active(txn: Transaction, address: PciAddress) -> None:
    """DeviceInUse if an owner holds ``address`` (libvirt's wording)."""
    record = txn.lists.active.get(address)
    if record is not None:
        raise DeviceInUse(in_use_message(address, record), address=address)


@dataclass
class GroupCheck:
    """What stops a device's IOMMU group from going to one owner."""

    #: The first other member an owner other than the one asking holds, with its record.
    taken: tuple[PciAddress, DeviceRecord] | None = None
    #: Other members on a driver VFIO cannot share a group with: ``ADDR on DRIVER``.
    on_host: list[str] = field(default_factory=list)


def check_group(lists: Lists, owner: Owner, dev: PciDevice, batch: Collection[PciAddress],
                read: Callable[[PciAddress], PciDevice | None]) -> GroupCheck:
    """Check the other members of ``dev``'s IOMMU group (those in ``batch`` go with it).

    ``read`` gives a member as it is now (None when it is gone): a fresh read in
    prepare, the scan's snapshot when choosing VFs to allocate.
    """
    result = GroupCheck()
    for member in dev.iommu_group_members:
        if member == dev.address or member in batch:
            continue
        other = lists.active.get(member)
        if other is not None and other.owner != owner and result.taken is None:
            result.taken = (member, other)
        mdev = read(member)
        if mdev is not None and not is_group_safe(mdev.driver, mdev.vfio_dev):
            result.on_host.append(f"{member} on {mdev.driver}")
    return result


def read_if_present(txn: Transaction, address: PciAddress) -> PciDevice | None:
    """The device as it is now, or None when it is not on the host."""
    try:
        return read_device(txn.sysfs, address)
    except DeviceNotFound:
        return None
