"""Node-level verbs on one device: detach, reattach, reset (libvirt's nodedev-*)."""

from __future__ import annotations

from hostdev.address import PciAddress
from hostdev.errors import NotAssignable, RestoreFailed
from hostdev.linux import binding
from hostdev.linux.drivers import is_stub_driver, is_vfio_driver
from hostdev.linux.hostuse import check_host_use
from hostdev.ops import vf_net
from hostdev.ops.common import check_pf, drop_stale, refuse_active, snapshot
from hostdev.ops.stub import detach_to_stub, new_record, require_stub_loaded
from hostdev.ops.transaction import Transaction, UndoStep
from hostdev.reports import NodeResult
from hostdev.state.records import DeviceRecord


def node_detach(txn: Transaction, address: PciAddress, stub: str, *,
                force: bool = False) -> NodeResult:
    """Bind the device to ``stub`` and track it inactive (no group check, no reset).

    ``force``: even when the host uses what it carries (see :mod:`hostdev.linux.hostuse`)."""
    dev = snapshot(txn, address, "detach")
    pruned: list[DeviceRecord] = []
    drop_stale(txn, dev, pruned)
    refuse_active(txn, address)
    if dev.is_bridge:
        raise NotAssignable(
            f"PCI device {address} is a bridge; only endpoint devices can be detached",
            address=address,
        )
    check_pf(txn, dev, "detach")
    require_stub_loaded(txn, stub, dev)
    if dev.driver != stub:
        check_host_use(txn.sysfs, [address], verb="detach", force=force)
    txn.declare("node_detach", [dev])
    before = dev.driver
    detach_to_stub(txn, dev, stub=stub, managed=False)
    action = f"already on {stub}" if before == stub else f"detached to {stub}"
    return NodeResult(address=address, driver=stub, action=action, pruned=pruned)


def node_reattach(txn: Transaction, address: PciAddress) -> NodeResult:
    """Give the device back to the host, tracked or not (libvirt forces this too)."""
    refuse_active(txn, address)
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
        saved = vf_net.journaled(record) if record is not None else None
        if record is not None and saved is not None:
            # Put on a host driver behind our back with a guest's network settings
            # still to give back: they go back before the record is dropped.
            txn.declare("node_reattach", [dev], vf_nets=[saved])
            vf_net.give_back(txn, record, saved)
        txn.lists.inactive.pop(address, None)
        return NodeResult(address=address, driver=dev.driver,
                          action=f"already on host driver {dev.driver}", pruned=pruned)
    override = record.original_override if record is not None else None
    if is_stub_driver(override):
        override = None  # an override naming the stub would only send it back there
    saved_net = vf_net.journaled(record) if record is not None else None
    txn.declare("node_reattach", [dev], vf_nets=[saved_net] if saved_net is not None else [])
    if record is not None and saved_net is not None:
        # A reattach that could not give a VF its network settings back left them here.
        vf_net.give_back(txn, record, saved_net)
    sysfs, stub, stub_override = txn.sysfs, dev.driver, dev.driver_override
    keep = record
    if keep is None and stub is not None:
        # Untracked: if it can be put back neither on a host driver nor on its
        # stub, a record lets a later node reattach finish the job.
        keep = new_record(txn, dev, stub=stub, managed=False, original_driver=None,
                          original_override=None, unbind_from_stub=True)
    txn.push(UndoStep(
        what=f"put {address} back on {stub or 'no driver'}",
        run=lambda: binding.give_back(sysfs, address, stub, stub_override, txn.guard),
        keep_if_failed=keep, address=address,
    ))
    wanted = record.original_driver if record is not None else None
    if wanted is not None and not is_stub_driver(wanted):
        try:
            now = binding.give_back(txn.sysfs, address, wanted, override, txn.guard)
        except RestoreFailed as exc:
            # The rollback puts it back on the stub; its record stays as it was.
            raise RestoreFailed(
                f"cannot reattach PCI device {address}: {exc}; it goes back on"
                f" {stub or 'no driver'}, still tracked",
                address=address,
            ) from None
        action = f"reattached to {now}" if now == wanted else \
            f"reattached to {now}, not to its original driver {wanted}"
    else:
        # No known host driver to go back to (untracked, adopted, or it had none):
        # the kernel's choice is the result, whatever it is.
        now = binding.reprobe(txn.sysfs, address, dev.driver, override, txn.guard)
        action = f"reattached to {now}" if now is not None else \
            f"off {stub or 'its stub'}; no host driver took it (none matches, or its probe" \
            " failed: see dmesg)"
    txn.lists.inactive.pop(address, None)
    return NodeResult(address=address, driver=now, action=action, pruned=pruned)


def node_reset(txn: Transaction, address: PciAddress) -> NodeResult:
    """Reset a device that no owner holds; a no-op on a vfio driver, which resets
    the device itself when a user opens and closes it."""
    dev = snapshot(txn, address, "reset")
    refuse_active(txn, address)
    if dev.is_bridge:
        raise NotAssignable(
            f"Invalid attempt to reset PCI device {address}. Only PCI endpoint devices can be"
            " reset",
            address=address,
        )
    if is_vfio_driver(dev.driver, dev.vfio_dev):
        # As libvirt: vfio resets the function itself when it is opened and closed.
        return NodeResult(address=address, driver=dev.driver,
                          action=f"skipped: {dev.driver} resets the device itself")
    txn.declare("node_reset", [dev])
    binding.reset(txn.sysfs, address)
    return NodeResult(address=address, driver=dev.driver, action="reset")
