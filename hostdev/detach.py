"""Taking one device off its host driver onto a stub, and recording how to undo it."""

from __future__ import annotations

from hostdev import binding
from hostdev.errors import NotAssignable
from hostdev.identity import Presence, check
from hostdev.pci import PciDevice
from hostdev.records import DeviceRecord
from hostdev.transaction import Transaction, UndoStep, log


def new_record(txn: Transaction, dev: PciDevice, *, stub: str, managed: bool,
               original_driver: str | None, original_override: str | None,
               unbind_from_stub: bool) -> DeviceRecord:
    """A record of ``dev`` as it is now, with how it was before we came."""
    return DeviceRecord(
        address=dev.address,
        managed=managed,
        stub_driver=stub,
        original_driver=original_driver,
        original_override=original_override,
        unbind_from_stub=unbind_from_stub,
        vendor=dev.vendor,
        device=dev.device,
        pf=dev.vf.pf if dev.vf is not None else None,
        vf_index=dev.vf.index if dev.vf is not None else None,
        generation=txn.sysfs.identity(dev.address),
    )


def require_stub_loaded(txn: Transaction, stub: str, dev: PciDevice) -> None:
    """The stub driver must be registered (its module loaded)."""
    if not binding.driver_loaded(txn.sysfs, stub):
        raise NotAssignable(
            f"cannot detach PCI device {dev.address}: driver {stub} is not loaded;"
            f" run 'modprobe {stub.replace('-', '_')}' first",
            address=dev.address,
        )


def detach_to_stub(txn: Transaction, dev: PciDevice, *, stub: str, managed: bool) -> DeviceRecord:
    """Put ``dev`` on ``stub`` and into the inactive list; push the undo.

    A device already tracked inactive on its stub is reused as it is (its
    flags come from whoever detached it first, as in libvirt). A device that
    sits on the stub untracked is adopted without ``unbind_from_stub``, so
    giving it back leaves it where the administrator had put it.
    """
    lists = txn.lists
    existing = lists.inactive.get(dev.address)
    if existing is not None:
        still_ours = check(txn.sysfs, existing, dev) is Presence.PRESENT
        if still_ours and dev.driver == existing.stub_driver:
            return existing
        log.warning("dropping outdated inactive record of %s (driver now %s)",
                    dev.address, dev.driver)
        del lists.inactive[dev.address]
    if dev.driver == stub:
        record = new_record(txn, dev, stub=stub, managed=managed, original_driver=stub,
                            original_override=dev.driver_override, unbind_from_stub=False)
    else:
        record = new_record(txn, dev, stub=stub, managed=managed,
                            original_driver=dev.driver, original_override=dev.driver_override,
                            unbind_from_stub=True)
        sysfs, addr = txn.sysfs, dev.address
        txn.push(UndoStep(
            what=f"give {addr} back to {dev.driver or 'no driver'}",
            run=lambda: binding.restore(sysfs, addr, dev.driver, dev.driver_override,
                                        txn.guard),
            keep_if_failed=record, address=addr,
        ))
        binding.move_to(sysfs, addr, stub, dev.driver, txn.guard)
    lists.inactive[dev.address] = record
    return record
