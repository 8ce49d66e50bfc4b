"""Reattach: take an owner's devices back (libvirt's virHostdevReAttachPCIDevices, fixed).

Best effort: one failing device does not stop the others, and a device that
vanished is pruned and reported, never an exception. A managed device still
held by a VFIO user is not unbound: it stays active, reported as failed, so a
later call finishes the job. A managed device whose host driver does not take
it back is reported as failed and stays tracked inactive: naming it again (any
owner may: it is free) or a node reattach finishes the job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from hostdev.address import PciAddress
from hostdev.errors import DeviceBusy, DeviceNotFound, HostdevError
from hostdev.linux import binding
from hostdev.linux.drivers import is_vfio_driver
from hostdev.ops import vf_net
from hostdev.ops.identity import Presence, check_identity
from hostdev.ops.transaction import Transaction
from hostdev.reports import ReattachFailure, ReattachReport
from hostdev.state.records import DeviceRecord, Owner

#: Waits until none of the addresses is held; returns the ones still held, with the error.
ReleaseWait = Callable[[list[PciAddress]], dict[PciAddress, DeviceBusy]]

log = logging.getLogger("hostdev")


def reattach(txn: Transaction, owner: Owner, addresses: Sequence[PciAddress],
             wait_released: ReleaseWait) -> ReattachReport:
    """Run a reattach inside ``txn``; never raises for a device-level failure."""
    report = ReattachReport()
    mine: list[DeviceRecord] = []
    #: Named devices whose give-back failed earlier (tracked inactive): finished now.
    unfinished: set[PciAddress] = set()
    for addr in dict.fromkeys(addresses):
        record = txn.lists.active.get(addr)
        if record is None:
            record = txn.lists.inactive.get(addr)
            if record is not None and check_identity(txn.sysfs, record) is not Presence.PRESENT:
                # As libvirt: a named device that vanished leaves both lists.
                txn.lists.drop(addr)
                report.pruned.append(record)
            elif record is not None and _give_back_pending(record):
                mine.append(record)
                unfinished.add(addr)
            else:
                report.warnings.append(f"{addr} is not active; left alone")
            continue
        if record.owner != owner:
            report.warnings.append(f"{addr} is owned by {record.owner}; left alone")
            continue
        if addr in txn.sysfs.fenced:  # a write of ours to it is still blocked in the kernel
            report.failed.append(ReattachFailure(
                address=addr, reason=f"PCI device {addr} is not touched:"
                                     f" {txn.sysfs.fenced[addr]}"))
            continue
        if check_identity(txn.sysfs, record) is not Presence.PRESENT:
            txn.lists.drop(addr)
            report.pruned.append(record)
            continue
        mine.append(record)
    # VFs go back before their PF (the PF was taken before them).
    batch_pfs = {r.address for r in mine}
    mine.sort(key=lambda r: r.pf is None or r.pf not in batch_pfs)
    to_unbind = [r.address for r in mine if _leaves_stub(r)
                 and is_vfio_driver(_driver_or_none(txn, r.address))]
    busy = wait_released(to_unbind) if to_unbind else {}
    for record in mine:
        if record.address in busy:
            report.failed.append(ReattachFailure(address=record.address,
                                                 reason=str(busy[record.address])))
            continue
        if record.address in unfinished:
            continue  # already inactive
        del txn.lists.active[record.address]
        txn.lists.inactive[record.address] = record.model_copy(update={"owner": None})
    released = [r for r in mine if r.address not in busy]
    txn.declare("reattach", [r.address for r in released],
                vf_nets=[j for r in released if (j := vf_net.journaled(r)) is not None])
    for record in released:
        if record.address not in unfinished:
            _reset_quietly(txn, record, report)
    for record in released:
        if _restore_net(txn, record, report):
            _give_back(txn, record, report)
    return report


def _restore_net(txn: Transaction, record: DeviceRecord, report: ReattachReport) -> bool:
    """Give a VF its network settings back before it leaves the stub (its own driver
    then starts with them); False when that failed: it stays tracked, settings saved,
    and naming it again in a reattach finishes the job."""
    if record.net_saved is None:
        return True
    try:
        vf_net.restore(txn, record)
    except HostdevError as exc:
        log.error("failed to restore the network settings of VF %s: %s", record.address, exc)
        report.failed.append(ReattachFailure(
            address=record.address,
            reason=f"could not set its network settings back ({exc}); it stays on its stub,"
                   " tracked: naming it again in a reattach finishes the job"))
        return False
    cleared = record.model_copy(update={"net": None, "net_saved": None})
    if record.address in txn.lists.inactive:
        txn.lists.inactive[record.address] = cleared.model_copy(update={"owner": None})
    return True


def _guest_settings_again(txn: Transaction, record: DeviceRecord) -> str:
    """The guest keeps its VF after all: it gets its network settings back (they were
    just given back to the host); what to add to the failure's reason."""
    if record.net is None or record.net_saved is None:
        return ""
    try:
        vf_net.reapply(txn, record)
    except HostdevError as exc:
        log.error("VF %s stays with its guest, but its network settings could not be set"
                  " back to the guest's: %s", record.address, exc)
        return (f"; its network settings are the host's again and could not be set back to"
                f" the guest's ({exc}): 'hostdev reconcile' shows the drift")
    return "; its network settings stay the guest's"


def _give_back_pending(record: DeviceRecord) -> bool:
    """An ownerless managed record we moved onto a stub, or whose VF network
    settings are still to be given back: only a give-back that failed (reattach,
    a rollback or a recovery) leaves one behind."""
    return record.owner is None and (_leaves_stub(record) or record.net_saved is not None)


def _leaves_stub(record: DeviceRecord) -> bool:
    return record.managed and record.unbind_from_stub


def _driver_or_none(txn: Transaction, addr: PciAddress) -> str | None:
    try:
        return binding.current_driver(txn.sysfs, addr)
    except DeviceNotFound:
        return None


def _reset_quietly(txn: Transaction, record: DeviceRecord, report: ReattachReport) -> None:
    driver = _driver_or_none(txn, record.address)
    if driver is None or is_vfio_driver(driver):
        return
    try:
        binding.reset(txn.sysfs, record.address)
    except HostdevError as exc:
        report.warnings.append(f"failed to reset PCI device {record.address}: {exc}")


def _give_back(txn: Transaction, record: DeviceRecord, report: ReattachReport) -> None:
    addr = record.address
    if not _leaves_stub(record):
        report.kept_on_stub.append(addr)
        return
    try:
        now = binding.give_back(txn.sysfs, addr, record.original_driver,
                                record.original_override, txn.guard)
    except DeviceNotFound:
        txn.lists.drop(addr)
        report.pruned.append(record)
        return
    except DeviceBusy as exc:
        # A VFIO user showed up after the first look: the device stays as it was
        # (active, or inactive for an earlier unfinished give-back).
        reason = str(exc)
        if record.owner is not None:
            txn.lists.inactive.pop(addr, None)
            txn.lists.active[addr] = record
            reason += _guest_settings_again(txn, record)
        report.failed.append(ReattachFailure(address=addr, reason=reason))
        return
    except HostdevError as exc:
        # Still tracked inactive with how to restore it (nothing bound, or a stub
        # did): naming it again in reattach, or a node reattach, finishes the job.
        log.error("failed to re-attach PCI device %s: %s", addr, exc)
        report.failed.append(ReattachFailure(address=addr, reason=str(exc)))
        return
    txn.lists.inactive.pop(addr, None)
    report.reattached.append(addr)
    report.drivers[addr] = now
    if record.original_driver is not None and now != record.original_driver:
        # Another host driver took it (give_back refuses none or a stub).
        report.warnings.append(
            f"PCI device {addr} came back on {now}, not on its original driver"
            f" {record.original_driver}"
        )
