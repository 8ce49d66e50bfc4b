"""Checks and lookups every operation shares (one home, so no operation imports another)."""

from __future__ import annotations

from collections.abc import Sequence

from hostdev.address import PciAddress
from hostdev.errors import BadInput, DeviceInUse, DeviceNotFound, NotAssignable
from hostdev.linux.device import PciDevice
from hostdev.linux.drivers import is_vfio_driver
from hostdev.linux.scan import read_device
from hostdev.ops.identity import Presence, check_identity
from hostdev.ops.transaction import Transaction
from hostdev.state.records import DeviceRecord, HostdevSpec


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
