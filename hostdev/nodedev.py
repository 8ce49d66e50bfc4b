"""Node-level verbs on one device: detach, reattach, reset (libvirt's nodedev-*)."""

from __future__ import annotations

from pydantic import BaseModel

from hostdev import binding
from hostdev.address import PciAddress
from hostdev.detach import detach_to_stub, require_stub_loaded
from hostdev.errors import DeviceInUse, NotAssignable
from hostdev.prepare import check_pf, drop_stale, snapshot
from hostdev.records import DeviceRecord
from hostdev.stubs import is_stub_driver
from hostdev.transaction import Transaction, UndoStep, in_use_message


class NodeResult(BaseModel):
    """Outcome of a node-level verb."""

    address: PciAddress
    #: The driver bound when the verb finished.
    driver: str | None
    #: What happened, in a few words (``detached to vfio-pci``, ``already on i40e``...).
    action: str
    pruned: list[DeviceRecord] = []


def _refuse_active(txn: Transaction, address: PciAddress) -> None:
    record = txn.lists.active.get(address)
    if record is not None:
        raise DeviceInUse(in_use_message(address, record), address=address)


def node_detach(txn: Transaction, address: PciAddress, stub: str) -> NodeResult:
    """Bind the device to ``stub`` and track it inactive (no group check, no reset)."""
    dev = snapshot(txn, address, "detach")
    pruned: list[DeviceRecord] = []
    drop_stale(txn, dev, pruned)
    _refuse_active(txn, address)
    if dev.is_bridge:
        raise NotAssignable(
            f"PCI device {address} is a bridge; only endpoint devices can be detached",
            address=address,
        )
    check_pf(txn, dev, "detach")
    require_stub_loaded(txn, stub, dev)
    txn.declare("node_detach", [dev])
    before = dev.driver
    detach_to_stub(txn, dev, stub=stub, managed=False)
    action = f"already on {stub}" if before == stub else f"detached to {stub}"
    return NodeResult(address=address, driver=stub, action=action, pruned=pruned)


def node_reattach(txn: Transaction, address: PciAddress) -> NodeResult:
    """Give the device back to the host, tracked or not (libvirt forces this too)."""
    _refuse_active(txn, address)
    record = txn.lists.inactive.get(address)
    if record is not None and not txn.sysfs.device_exists(address):
        txn.lists.drop(address)
        return NodeResult(address=address, driver=None, action="vanished; record pruned",
                          pruned=[record])
    dev = snapshot(txn, address, "reattach")
    pruned: list[DeviceRecord] = []
    drop_stale(txn, dev, pruned)
    record = txn.lists.inactive.get(address)
    if dev.driver is not None and not is_stub_driver(dev.driver, dev.vfio_dev):
        txn.lists.inactive.pop(address, None)
        return NodeResult(address=address, driver=dev.driver,
                          action=f"already on host driver {dev.driver}", pruned=pruned)
    override = record.original_override if record is not None else None
    if is_stub_driver(override):
        override = None  # an override naming the stub would only send it back there
    txn.declare("node_reattach", [dev])
    sysfs, stub, stub_override = txn.sysfs, dev.driver, dev.driver_override
    txn.push(UndoStep(
        what=f"put {address} back on {stub or 'no driver'}",
        run=lambda: binding.restore(sysfs, address, stub, stub_override, txn.guard),
        keep_if_failed=record, address=address,
    ))
    if record is not None and record.original_driver is not None and \
            not is_stub_driver(record.original_driver):
        now = binding.restore(txn.sysfs, address, record.original_driver, override, txn.guard)
    else:
        now = binding.reprobe(txn.sysfs, address, dev.driver, override, txn.guard)
    txn.lists.inactive.pop(address, None)
    return NodeResult(address=address, driver=now,
                      action=f"reattached to {now or 'no driver'}", pruned=pruned)


def node_reset(txn: Transaction, address: PciAddress) -> NodeResult:
    """Reset a device that no owner holds."""
    dev = snapshot(txn, address, "reset")
    _refuse_active(txn, address)
    if dev.is_bridge:
        raise NotAssignable(
            f"Invalid attempt to reset PCI device {address}. Only PCI endpoint devices can be"
            " reset",
            address=address,
        )
    txn.declare("node_reset", [dev])
    binding.reset(txn.sysfs, address)
    return NodeResult(address=address, driver=dev.driver, action="reset")
