"""Changing a PF's VF count without orphaning assigned VFs, then reconciling the lists.

Any change of a nonzero count goes through 0 (the kernel refuses nonzero to
nonzero), so every current VF vanishes: the change is refused while one of
them is active, or while the host uses something a vanishing VF carries (a
mounted disk, a routed interface; both unless forced), or while a VF
is held by a VFIO user (never: the kernel would block). Afterwards records of
vanished VFs are pruned, and records whose address now holds a new VF are
dropped as stale.

With a stub driver, the new VFs are created straight onto it: the PF's
``sriov_drivers_autoprobe`` is turned off while they appear (so no host VF driver
binds them, and no interface shows up for a network manager to configure), each
is moved to the stub through its ``driver_override`` and tracked inactive, and
the setting is put back as it was.
"""

from __future__ import annotations

import logging

from hostdev.address import PciAddress
from hostdev.errors import BadInput, DeviceInUse, NotAssignable
from hostdev.linux import binding
from hostdev.linux.hostuse import check_host_use
from hostdev.linux.modules import AUTO, choose_stub
from hostdev.linux.scan import read_device
from hostdev.ops.common import in_use_message, snapshot
from hostdev.ops.identity import Presence, check_identity
from hostdev.ops.stub import detach_to_stub, require_stub_loaded
from hostdev.ops.transaction import Transaction, UndoStep
from hostdev.reports import NodeResult, SriovReport
from hostdev.state.journal import VfCountBefore

log = logging.getLogger("hostdev")


def set_num_vfs(txn: Transaction, pf: PciAddress, count: int, *, force: bool,
                stub: str | None = None) -> SriovReport:
    """Set ``pf``'s VF count to ``count`` inside ``txn``; with ``stub`` (a driver name,
    or :data:`~hostdev.linux.modules.AUTO`), the VFs it creates go onto it."""
    dev = snapshot(txn, pf, "change the VF count of")
    if dev.sriov is None:
        raise NotAssignable(f"PCI device {pf} is not an SR-IOV physical function", address=pf)
    if not 0 <= count <= dev.sriov.totalvfs:
        raise BadInput(
            f"PCI device {pf} supports 0 to {dev.sriov.totalvfs} VFs, not {count}", address=pf
        )
    before = dev.sriov.numvfs
    report = SriovReport(pf=pf, before=before, after=before, vfs=list(dev.sriov.vfs))
    if count == before:
        return report
    pf_record = txn.lists.find(pf)
    if pf_record is not None and check_identity(txn.sysfs, pf_record, dev) is Presence.PRESENT:
        raise DeviceInUse(
            f"cannot change the VF count of PCI device {pf}: the PF itself is tracked"
            f" ({'active' if pf in txn.lists.active else 'inactive'}); reattach it first",
            address=pf,
        )
    vanishing = list(dev.sriov.vfs)
    assigned = [txn.lists.active[vf] for vf in vanishing if vf in txn.lists.active]
    if assigned and not force:
        names = "; ".join(in_use_message(r.address, r) for r in assigned)
        raise DeviceInUse(
            f"cannot change the VF count of PCI device {pf}: its VFs would vanish under their"
            f" guests: {names}; release them first, or force to orphan them",
            address=pf,
        )
    # The vanishing VFs take their disks and interfaces with them. The PF keeps
    # its driver (some drivers reset the adapter, a link blip, not a lost device),
    # so a PF that is the host's own NIC can still get VFs without --force.
    check_host_use(txn.sysfs, vanishing, verb="change the VF count of",
                   force=force, subject=pf)
    for vf in vanishing:
        driver = binding.current_driver(txn.sysfs, vf)
        if driver is not None:
            txn.guard(vf, driver)  # DeviceBusy while a VFIO user holds it
    sysfs = txn.sysfs
    autoprobe = None
    if stub is not None and count:
        if stub != AUTO:
            # The stub must be there (or loadable) and usable before any write;
            # the PF's IOMMU group stands for its VFs' until they exist.
            require_stub_loaded(txn, stub, dev)
        autoprobe = binding.vf_autoprobe(sysfs, pf)
    txn.declare("set_num_vfs", [], [VfCountBefore(pf=pf, count=before, target=count,
                                                  autoprobe=autoprobe)])
    txn.push(UndoStep(what=f"set {pf}'s VF count back to {before}",
                      run=lambda: restore_count(txn, pf, before), address=pf))
    if autoprobe:
        # Undone before the count (undo runs in reverse): VFs re-created by the
        # undo get their host driver, as they had before.
        # No address: it is undone even while the PF is fenced by a blocked write
        # (the kernel writes this flag without the device lock).
        txn.push(UndoStep(what=f"turn {pf}'s VF driver autoprobe back on",
                          run=lambda: binding.set_vf_autoprobe(sysfs, pf, True)))
        binding.set_vf_autoprobe(sysfs, pf, False)
    if before and count:
        log.info("%s: the kernel refuses %d -> %d VFs directly; going through 0", pf, before,
                 count)
        report.went_through_zero = True
    if before:
        binding.set_num_vfs(sysfs, pf, 0)
    if count:
        binding.set_num_vfs(sysfs, pf, count)
    after = read_device(sysfs, pf)
    assert after.sriov is not None
    report.after, report.vfs = after.sriov.numvfs, list(after.sriov.vfs)
    for vf in vanishing:
        record = txn.lists.find(vf)
        if record is None:
            continue
        txn.lists.drop(vf)
        (report.orphaned if record.owner is not None else report.pruned).append(record)
        if record.owner is not None:
            log.warning("forced: %s's VF %s vanished under %s", pf, vf, record.owner)
    if stub is not None and count:
        # After the records of the vanished VFs are dropped: a new VF may have
        # the address of one.
        report.detached = _park(txn, report.vfs, stub)
        if autoprobe:
            binding.set_vf_autoprobe(sysfs, pf, True)
    return report


def _park(txn: Transaction, vfs: list[PciAddress], stub: str) -> list[NodeResult]:
    """Move the new VFs onto ``stub`` (or, for AUTO, each onto its vfio variant driver
    or vfio-pci) and track them inactive; the VFs' undo runs before the count's."""
    parked = []
    devices = [read_device(txn.sysfs, vf) for vf in vfs]
    txn.declare_new(devices)
    for dev in devices:
        vf = dev.address
        chosen = choose_stub(txn.sysfs, vf) if stub == AUTO else stub
        require_stub_loaded(txn, chosen, dev)
        detach_to_stub(txn, dev, stub=chosen, managed=False)
        parked.append(NodeResult(address=vf, driver=chosen, action=f"created on {chosen}"))
    return parked


def restore_count(txn: Transaction, pf: PciAddress, count: int) -> None:
    """Set the VF count to ``count`` (through 0) unless it already is."""
    current = int(txn.sysfs.read_text(txn.sysfs.device_path(pf, "sriov_numvfs"), pf))
    if current == count:
        return
    if current:
        dev = read_device(txn.sysfs, pf)
        for vf in dev.sriov.vfs if dev.sriov is not None else ():
            driver = binding.current_driver(txn.sysfs, vf)
            if driver is not None:
                txn.guard(vf, driver)  # the VFs vanish: never under a VFIO user
        binding.set_num_vfs(txn.sysfs, pf, 0)
    if count:
        binding.set_num_vfs(txn.sysfs, pf, count)
