"""update_active: rebuild an owner's active entries after the caller restarts."""

from __future__ import annotations

from collections.abc import Sequence

from hostdev.errors import DeviceInUse, NotAssignable
from hostdev.linux.drivers import is_stub_driver
from hostdev.linux.scan import read_device
from hostdev.ops.common import in_use_message, unique_specs
from hostdev.ops.identity import Presence, check_identity
from hostdev.ops.stub import new_record
from hostdev.ops.transaction import Transaction
from hostdev.reports import UpdateReport
from hostdev.state.records import DeviceRecord, HostdevSpec, Owner


def update_active(txn: Transaction, owner: Owner, specs: Sequence[HostdevSpec]) -> UpdateReport:
    """Make each spec an active entry of ``owner``; all or nothing, no sysfs writes.

    What the state file remembers (original driver and override) is kept. A
    device missing from the host is pruned and reported; a device held by
    another owner, or not on its stub (a tracked device must still be on the
    stub its record names) although the owner's guest should be using it,
    fails the whole call. A device adopted untracked has no known original
    driver: giving it back lets the kernel choose its driver.
    """
    specs = unique_specs(specs)
    report = UpdateReport()
    plan: list[DeviceRecord] = []
    for spec in specs:
        addr = spec.address
        known = txn.lists.find(addr)
        if not txn.sysfs.device_exists(addr):
            if known is not None and known.owner in (owner, None):
                txn.lists.drop(addr)
                report.pruned.append(known)
            elif known is None:
                report.pruned.append(DeviceRecord(address=addr, owner=owner, vendor=0, device=0,
                                                  managed=spec.managed,
                                                  stub_driver=spec.stub_driver))
            continue
        dev = read_device(txn.sysfs, addr)
        if known is not None and check_identity(txn.sysfs, known, dev) is not Presence.PRESENT:
            txn.lists.drop(addr)
            report.pruned.append(known)
            known = None
        if known is not None and known.owner is not None and known.owner != owner:
            raise DeviceInUse(in_use_message(addr, known), address=addr)
        if known is not None:
            if dev.driver != known.stub_driver:
                raise NotAssignable(
                    f"cannot mark PCI device {addr} active for {owner}: it is on"
                    f" {dev.driver or 'no driver'}, not on its stub {known.stub_driver}, so"
                    " the guest cannot be using it",
                    address=addr,
                )
            plan.append(known.model_copy(update={"owner": owner}))
            continue
        if not is_stub_driver(dev.driver, dev.vfio_dev):
            raise NotAssignable(
                f"cannot mark PCI device {addr} active for {owner}: it is on"
                f" {dev.driver or 'no driver'}, not on a stub driver",
                address=addr,
            )
        assert dev.driver is not None
        # The driver it had before it was put on the stub is not known: the
        # record says None, and giving it back lets the kernel choose.
        record = new_record(txn, dev, stub=dev.driver, managed=spec.managed,
                            original_driver=None, original_override=None,
                            unbind_from_stub=spec.managed)
        plan.append(record.model_copy(update={"owner": owner}))
    for record in plan:
        txn.lists.inactive.pop(record.address, None)
        txn.lists.active[record.address] = record
        report.active.append(record)
    return report

