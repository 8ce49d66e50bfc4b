"""Changing a PF's VF count without orphaning assigned VFs, then reconciling the lists.

Any change of a nonzero count goes through 0 (the kernel refuses nonzero to
nonzero), so every current VF vanishes: the change is refused while one of
them is active, or while the host uses something a vanishing VF carries (a
mounted disk, a routed interface; both unless forced), or while a VF
is held by a VFIO user (never: the kernel would block). Afterwards records of
vanished VFs are pruned, and records whose address now holds a new VF are
dropped as stale.
"""

from __future__ import annotations

import logging

from hostdev.address import PciAddress
from hostdev.errors import BadInput, DeviceInUse, NotAssignable
from hostdev.linux import binding
from hostdev.linux.hostuse import check_host_use
from hostdev.linux.scan import read_device
from hostdev.ops.common import in_use_message, snapshot
from hostdev.ops.identity import Presence, check_identity
from hostdev.ops.transaction import Transaction, UndoStep
from hostdev.reports import SriovReport

log = logging.getLogger("hostdev")


def set_num_vfs(txn: Transaction, pf: PciAddress, count: int, *, force: bool) -> SriovReport:
    """Set ``pf``'s VF count to ``count`` inside ``txn``."""
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
    txn.declare("set_num_vfs", [], [(pf, before, count)])
    txn.push(UndoStep(what=f"set {pf}'s VF count back to {before}",
                      run=lambda: restore_count(txn, pf, before), address=pf))
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
    return report


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
