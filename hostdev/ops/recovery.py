"""Putting the host back after a process died mid-transaction, and reconcile().

The journal names every device the dead transaction may have touched, with
the driver and override it had. Each one still present (same kernel object)
is put back; one that cannot be put back but sits on a stub, or lost its
driver, is tracked inactive (with the driver it had), so nothing we moved is
left untracked. VF counts go back to what
they were. The lists were not saved by the dead transaction, so once the host
is back they describe it again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from hostdev.address import PciAddress
from hostdev.errors import HostdevError
from hostdev.linux import binding
from hostdev.linux.drivers import is_stub_driver
from hostdev.linux.scan import read_device
from hostdev.ops import vf_net
from hostdev.ops.identity import Presence, check_identity
from hostdev.ops.transaction import Transaction
from hostdev.ops.vf_count import restore_count
from hostdev.reports import DriverChange, ReconcileReport
from hostdev.state.journal import Intent, PendingWrite, VfNetBefore
from hostdev.state.records import DeviceRecord

log = logging.getLogger("hostdev")


def recover(txn: Transaction, intent: Intent, *, complete: bool = False,
            waiting: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Undo what the dead transaction ``intent`` may have done.

    Returns (what was done, what could not be done). A device that cannot be
    put back stays tracked inactive when it is on a stub or lost its driver.

    Writes of ``intent.pending`` still blocked in the kernel (their helper runs,
    or, made from another PID namespace, the kernel still reports a VFIO user of
    their devices: see :func:`binding.pending_write`) fence their devices,
    which are left alone (said in ``waiting``); the entries stay, marked given
    up. Those whose caller gave up and whose helper has exited leave
    ``intent.pending``, and where their devices ended up is recorded.
    ``complete``: the transaction itself finished; only its pending writes are
    looked at.
    """
    done: list[str] = []
    failed: list[str] = []
    handled: set[PciAddress] = set()
    for entry in list(intent.pending):
        what = f"{entry.value.strip()!r} to {entry.path}"
        state = binding.pending_write(txn.sysfs, entry.pid, entry.start, entry.pidns,
                                      entry.devices)
        if state == binding.WRITE_RUNNING:
            entry.gave_up = True  # whoever waited for it is gone
            handled.update(entry.devices)
            txn.sysfs.fence(entry.devices, f"a write of {what} made by hostdev is still"
                            f" blocked in the kernel (helper pid {entry.pid}) until the VFIO"
                            " user releases the device")
            if waiting is not None:
                waiting.append(f"{entry.devices[0]}: the write of {what} is still blocked in the"
                               f" kernel (helper pid {entry.pid}); left alone until the VFIO"
                               " user releases the device")
            continue
        if state == binding.WRITE_UNSEEN:
            # Made from another PID namespace (a previous pod sharing the state
            # directory): its helper cannot be seen, so the kernel decides.
            entry.gave_up = True
            handled.update(entry.devices)
            txn.sysfs.fence(entry.devices, f"a write of {what} made by hostdev in another PID"
                            f" namespace ({entry.pidns}, helper pid {entry.pid} there) may"
                            " still be blocked in the kernel: the kernel reports the device"
                            " open by a VFIO user")
            if waiting is not None:
                waiting.append(f"{entry.devices[0]}: uncertain: the write of {what} was made in"
                               f" another PID namespace ({entry.pidns}; helper pid {entry.pid}"
                               " there, not visible from here) and the kernel still reports"
                               " the device open by a VFIO user, so it may still be blocked;"
                               " left alone until the kernel reports it released")
            continue
        intent.pending.remove(entry)
        if entry.gave_up:
            handled.update(entry.devices)
            line, ok = _finished(txn, intent, entry, what)
            (done if ok else failed).append(line)
    if complete:
        return done, failed
    for count in intent.vf_counts:
        # Before the counts, so that VFs a count brings back get their host driver;
        # even for a PF whose write is still blocked (the flag takes no lock).
        if count.autoprobe is not None:
            _restore_autoprobe(txn, count.pf, count.autoprobe, done, failed)
    for count in intent.vf_counts:
        if count.pf in handled:
            continue
        try:
            restore_count(txn, count.pf, count.count)
            done.append(f"{count.pf}: VF count back to {count.count}")
        except HostdevError as exc:
            failed.append(f"{count.pf}: could not set the VF count back to {count.count}: {exc}")
    for saved in reversed(intent.vf_nets):
        # Set last, so undone first (before the VF leaves its stub, as a reattach does).
        addr = saved.address
        if addr in handled:
            continue
        if not txn.sysfs.device_exists(addr) or txn.sysfs.identity(addr) != saved.identity:
            done.append(f"{addr}: gone or re-created; its network settings are the PF's"
                        " defaults again")
            continue
        try:
            changed = vf_net.put_back(txn, saved)
        except HostdevError as exc:
            log.error("recovery: cannot set the network settings of %s back: %s", addr, exc)
            line = (f"{addr}: could not set its network settings back"
                    f" ({' '.join(f'{k} {v}' for k, v in saved.values.fields().items())}):"
                    f" {exc}")
            if _keep_for_settings(txn, intent, saved):
                # Not given back to the host with the settings it has now: it stays
                # on its stub, tracked with what to give back.
                handled.add(addr)
                line += "; kept on its stub, tracked: 'hostdev reattach' finishes"
            failed.append(line)
            continue
        if changed:
            done.append(f"{addr}: network settings back to {', '.join(changed)}")
    for before in reversed(intent.devices):
        addr = before.address
        if addr in handled:
            continue
        if not txn.sysfs.device_exists(addr) or txn.sysfs.identity(addr) != before.identity:
            done.append(f"{addr}: gone or re-created; nothing to put back")
            continue
        try:
            now = binding.current_driver(txn.sysfs, addr)
            override = txn.sysfs.read_override(addr)
            if (now, override) == (before.driver, before.override):
                continue
            now = binding.give_back(txn.sysfs, addr, before.driver, before.override, txn.guard)
            # The driver that bound, read after the probe (the kernel may pick another).
            done.append(f"{addr}: back on {now or 'no driver'}" if now == before.driver else
                        f"{addr}: back on {now}, not on {before.driver or 'no driver'}")
        except HostdevError as exc:
            log.error("recovery: cannot put %s back: %s", addr, exc)
            tracked = _track(txn, addr, before.driver, before.override)
            failed.append(f"{addr}: could not put back on {before.driver or 'no driver'}:"
                          f" {exc}" + ("; tracked inactive, 'hostdev reattach' finishes"
                                       if tracked else ""))
    return done, failed


def _finished(txn: Transaction, intent: Intent, entry: PendingWrite,
              what: str) -> tuple[str, bool]:
    """A write the caller gave up on has returned: record where its device ended up.

    The caller had set the override it wanted before the unbind, so what is left
    of the move is a probe. The device is then tracked if it sits on a stub, and
    its record dropped if the host has it back. If no driver took it although it
    had a host driver, it stays tracked (inactive, with that driver) and the line
    is a failure (False): a later reattach finishes the job.
    """
    addr = entry.devices[0]
    head = f"{addr}: the write of {what} that was blocked in the kernel has finished"
    befores = {d.address: d for d in intent.devices}
    before = befores.get(addr)
    if entry.path.endswith("/sriov_numvfs"):
        vanished, recreated = prune(txn)
        try:
            count = txn.sysfs.read_text(txn.sysfs.device_path(addr, "sriov_numvfs"), addr)
        except HostdevError as exc:
            return f"{head}; cannot read its VF count: {exc}", False
        dropped = len(vanished) + len(recreated)
        return f"{head}; {count} VFs now" + (f"; {dropped} records of VFs dropped"
                                               if dropped else ""), True
    if not txn.sysfs.device_exists(addr) or (
            before is not None and txn.sysfs.identity(addr) != before.identity):
        record = txn.lists.find(addr)
        if record is not None:
            txn.lists.drop(addr)
        return f"{head}; the device is gone" + ("; its record dropped" if record else ""), True
    try:
        now = binding.current_driver(txn.sysfs, addr)
        if now is None:
            binding.probe(txn.sysfs, addr)
            now = binding.current_driver(txn.sysfs, addr)
    except HostdevError as exc:
        log.error("recovery: %s: probe after the blocked unbind failed: %s", addr, exc)
        now = None
    record = txn.lists.find(addr)
    if now is not None and is_stub_driver(now):
        if record is None:
            _track(txn, addr, before.driver if before else None,
                   before.override if before else None)
            return f"{head}; now on {now}, tracked inactive", True
        return f"{head}; now on {now}", True
    host_driver = record.original_driver if record is not None else \
        before.driver if before is not None else None
    if now is None and host_driver is not None and not is_stub_driver(host_driver):
        # Off the stub, and its own driver did not take it: never dropped in silence.
        if record is not None:
            txn.lists.drop(addr)
            txn.lists.inactive[addr] = record.model_copy(update={"owner": None})
        else:
            _track(txn, addr, host_driver, before.override if before else None)
        return (f"{head}, but no driver took the device ({host_driver} did not): tracked"
                f" inactive; 'hostdev reattach {addr}' finishes"), False
    if record is not None:
        txn.lists.drop(addr)
    return f"{head}; now on {now or 'no driver'}" + (
        "; its record dropped" if record else ""), True


def _keep_for_settings(txn: Transaction, intent: Intent, saved: VfNetBefore) -> bool:
    """A VF whose network settings could not be put back: if it sits on a stub, track
    it (inactive, with the settings to give back) so that it does not go back to the
    host with a guest's settings; True if it is tracked so."""
    addr = saved.address
    try:
        dev = read_device(txn.sysfs, addr)
    except HostdevError:
        return False
    if dev.driver is None or not is_stub_driver(dev.driver, dev.vfio_dev):
        return False
    before = next((d for d in intent.devices if d.address == addr), None)
    if txn.lists.find(addr) is None and (
            before is None or not _track(txn, addr, before.driver, before.override)):
        return False
    record = txn.lists.inactive.get(addr)
    if record is not None and record.net_saved is None:
        txn.lists.inactive[addr] = record.model_copy(update={"net_saved": saved.values})
    return True


def _track(txn: Transaction, addr: PciAddress, driver: str | None,
           override: str | None) -> bool:
    """Track a device recovery could not put back, if it sits on a stub or lost
    its driver; True if it is tracked (now or already)."""
    from hostdev.ops.stub import new_record

    try:
        dev = read_device(txn.sysfs, addr)
    except HostdevError:
        return txn.lists.find(addr) is not None
    known = txn.lists.find(addr)
    if known is not None:
        if check_identity(txn.sysfs, known, dev) is Presence.PRESENT:
            return True
        # The record of an earlier device at this address (a VF the crashed
        # transaction removed and re-created): it does not track this one.
        log.warning("recovery: dropping the record of the earlier %s (owner %s): the"
                    " device there now is another one", addr, known.owner or "none")
        txn.lists.drop(addr)
    on_stub = dev.driver is not None and is_stub_driver(dev.driver, dev.vfio_dev)
    if not on_stub and not (dev.driver is None and driver is not None):
        return False  # on a host driver: not lost, nothing of ours to undo
    stub = dev.driver if dev.driver is not None else \
        driver if driver is not None and is_stub_driver(driver) else "vfio-pci"
    if dev.driver is None and is_stub_driver(driver):
        # It was on a stub untracked (a node reattach died) and lost it: its host
        # driver is not known, and finishing means letting the kernel choose one.
        driver = None
        override = None if is_stub_driver(override) else override
    txn.lists.inactive[addr] = new_record(
        txn, dev, stub=stub, managed=True, original_driver=driver,
        original_override=override, unbind_from_stub=driver != dev.driver)
    return True


def prune(txn: Transaction, only: Iterable[PciAddress] | None = None,
          ) -> tuple[list[DeviceRecord], list[DeviceRecord]]:
    """Drop every record whose device vanished, or was re-created at its address.

    ``only``: look at these addresses alone (those the kernel said something
    about), not at every record. Returns (vanished, re-created), each in address
    order.
    """
    vanished: list[DeviceRecord] = []
    recreated: list[DeviceRecord] = []
    tracked = set(txn.lists.active) | set(txn.lists.inactive)
    for addr in sorted(tracked if only is None else tracked.intersection(only)):
        record = txn.lists.find(addr)
        assert record is not None
        presence = check_identity(txn.sysfs, record)
        if presence is not Presence.PRESENT:
            txn.lists.drop(addr)
            (vanished if presence is Presence.MISSING else recreated).append(record)
    return vanished, recreated


def reconcile(txn: Transaction, report: ReconcileReport) -> ReconcileReport:
    """Compare every record with the host; prune what vanished or was re-created."""
    vanished, recreated = prune(txn)
    report.pruned.extend(vanished)
    report.stale.extend(recreated)
    for addr in sorted(set(txn.lists.active) | set(txn.lists.inactive)):
        record = txn.lists.find(addr)
        assert record is not None
        if addr in txn.sysfs.fenced:
            continue  # mid-unbind in the kernel: reported under ``blocked``
        try:
            driver = binding.current_driver(txn.sysfs, addr)
        except HostdevError:
            txn.lists.drop(addr)
            report.pruned.append(record)
            continue
        if driver is None and record.unbind_from_stub and record.owner is None and \
                record.original_driver is not None:
            report.unfinished.append(record)
        elif driver != record.stub_driver:
            report.driver_changed.append(
                DriverChange(address=addr, expected=record.stub_driver, found=driver))
        try:
            differences = vf_net.drift(txn, record)
        except HostdevError as exc:
            differences = [f"cannot be read ({exc})"]
        if differences:
            report.net_drift.append(f"{addr}: network settings {'; '.join(differences)}"
                                    " (as the record says)")
    return report


def _restore_autoprobe(txn: Transaction, pf: PciAddress, value: bool,
                       done: list[str], failed: list[str]) -> None:
    """Put a PF's VF driver autoprobe back to ``value`` (a transaction creating VFs
    onto a stub turned it off)."""
    try:
        if not txn.sysfs.device_exists(pf) or binding.vf_autoprobe(txn.sysfs, pf) == value:
            return
        binding.set_vf_autoprobe(txn.sysfs, pf, value)
    except HostdevError as exc:
        failed.append(f"{pf}: could not turn its VF driver autoprobe back"
                      f" {'on' if value else 'off'}: {exc}")
        return
    done.append(f"{pf}: VF driver autoprobe back {'on' if value else 'off'}")
