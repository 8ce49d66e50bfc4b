"""Taking one device off its host driver onto a stub, and recording how to undo it."""

from __future__ import annotations

import logging

from hostdev.errors import ModuleLoadFailed, NotAssignable
from hostdev.linux import binding
from hostdev.linux.device import PciDevice
from hostdev.linux.drivers import is_vfio_driver
from hostdev.linux.iommu import require_iommu
from hostdev.linux.modules import wait_for_driver
from hostdev.ops.identity import Presence, check_identity
from hostdev.ops.transaction import Transaction, UndoStep
from hostdev.state.records import DeviceRecord

log = logging.getLogger("hostdev")


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
        identity=txn.sysfs.identity(dev.address),
    )


def require_stub_loaded(txn: Transaction, stub: str, dev: PciDevice) -> None:
    """``dev`` can be moved to ``stub``: checked (and the module loaded) before any write.

    A vfio stub needs the device in an IOMMU group (an IOMMU that is on); pci-stub
    does not. A stub that is not registered is loaded with the transaction's
    module loader when it has one (hostdev on the real root), else refused.
    """
    if dev.driver == stub:
        return  # nothing to move
    if is_vfio_driver(stub):
        require_iommu(txn.sysfs, dev.address, dev.iommu_group, stub)
    if binding.driver_loaded(txn.sysfs, stub):
        return
    module = stub.replace("-", "_")
    if txn.module_loader is None:
        raise NotAssignable(
            f"cannot detach PCI device {dev.address}: driver {stub} is not loaded;"
            f" run 'modprobe {module}' first",
            address=dev.address,
        )
    try:
        txn.module_loader(stub)
    except ModuleLoadFailed as exc:
        raise NotAssignable(
            f"cannot detach PCI device {dev.address}: driver {stub} is not loaded and {exc}",
            address=dev.address,
        ) from None
    if not wait_for_driver(txn.sysfs, stub):
        raise NotAssignable(
            f"cannot detach PCI device {dev.address}: module {module} loaded but no PCI"
            f" driver {stub} appeared; check the driver name",
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
    original = (dev.driver, dev.driver_override)
    carried_net = None
    if existing is not None:
        still_ours = check_identity(txn.sysfs, existing, dev) is Presence.PRESENT
        if still_ours:
            # Network settings an earlier give-back could not restore stay owed to
            # the VF, whatever happened to its binding since.
            carried_net = existing.net_saved
        if still_ours and dev.driver == existing.stub_driver:
            return existing
        if still_ours and dev.driver is None and existing.unbind_from_stub and \
                existing.original_driver is not None:
            # An earlier give-back left it with no driver: what to give it back to
            # is still the driver it had before we first took it.
            original = (existing.original_driver, existing.original_override)
        else:
            log.warning("dropping outdated inactive record of %s (driver now %s)",
                        dev.address, dev.driver)
        del lists.inactive[dev.address]
    if dev.driver == stub:
        record = new_record(txn, dev, stub=stub, managed=managed, original_driver=stub,
                            original_override=dev.driver_override, unbind_from_stub=False)
    else:
        record = new_record(txn, dev, stub=stub, managed=managed,
                            original_driver=original[0], original_override=original[1],
                            unbind_from_stub=True)
        sysfs, addr = txn.sysfs, dev.address
        txn.push(UndoStep(
            what=f"give {addr} back to {dev.driver or 'no driver'}",
            run=lambda: binding.give_back(sysfs, addr, dev.driver, dev.driver_override,
                                          txn.guard),
            keep_if_failed=record, address=addr,
        ))
        binding.move_to(sysfs, addr, stub, dev.driver, txn.guard)
    if carried_net is not None:
        record = record.model_copy(update={"net_saved": carried_net})
    lists.inactive[dev.address] = record
    return record
