"""What watch mode does with a batch of uevents: prune, and report drift.

A burst (a VF count change on several PFs sends thousands of messages) is
coalesced first: the messages are grouped by address, and each address is
looked at once per batch, only if hostdev tracks it. A tracked device that a
``remove`` or ``add`` concerned is checked with the same rule as
:func:`hostdev.ops.recovery.prune` (gone, or re-created at its address); one
that a ``bind`` or ``unbind`` concerned is compared with its record.

Telling our own bindings from someone else's: the batch is judged under the
state lock, after the queue was drained there until empty (drain after drain, a
bounded number: past it the batch counts as lost and the host is reconciled), so
every event of a transaction of ours that finished is in it, and the lists already say where
that transaction left the device. A tracked device off the driver its record
names has drifted, whoever moved it. A tracked device that was unbound or bound
but sits where its record says has drifted only if no transaction of ours
wrote to the host since the last batch (``ours`` False): someone took it off
and put it back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from hostdev.address import PciAddress
from hostdev.errors import HostdevError
from hostdev.linux import binding
from hostdev.linux.uevents import Uevent
from hostdev.ops.recovery import prune
from hostdev.ops.transaction import Transaction
from hostdev.reports import PersistentReport, ReconcileReport, WatchEvent
from hostdev.state.records import DeviceRecord

log = logging.getLogger("hostdev")

#: The flag on a log record of watch mode, which the command shows at its
#: default verbosity (as it shows the release-wait messages).
EVENT_LOG_FLAG = "hostdev_event"

_BINDING = frozenset({"bind", "unbind"})

#: Why a batch gave way to a reconcile of the whole host.
LOST = "the kernel dropped uevents (its socket buffer overflowed)"
BEHIND = "a batch was not handled (the state lock was busy)"


def coalesce(events: Iterable[Uevent]) -> dict[PciAddress, list[str]]:
    """The actions of each address, oldest first, a repeat of the previous one left out."""
    seen: dict[PciAddress, list[str]] = {}
    for event in events:
        actions = seen.setdefault(event.address, [])
        if not actions or actions[-1] != event.action:
            actions.append(event.action)
    return seen


def settle(txn: Transaction, seen: dict[PciAddress, list[str]], *,
           ours: bool) -> list[WatchEvent]:
    """Act on what the kernel said about the addresses in ``seen``.

    ``ours``: a transaction of ours wrote to the host since the previous batch.
    Returns what was done, in address order; drops records, writes nothing.
    """
    tracked = [a for a in sorted(seen) if txn.lists.find(a) is not None]
    vanished, recreated = prune(txn, only=tracked)
    done = [_dropped("pruned", r, seen[r.address]) for r in vanished]
    done += [_dropped("stale", r, seen[r.address]) for r in recreated]
    for addr in tracked:
        record = txn.lists.find(addr)
        actions = seen[addr]
        if record is None or addr in txn.sysfs.fenced or not _BINDING.intersection(actions):
            continue  # pruned above, or mid-unbind by a write of ours
        try:
            found = binding.current_driver(txn.sysfs, addr)
        except HostdevError:
            continue  # vanished since the prune: the remove is in the next batch
        if found != record.stub_driver:
            message = (f"{addr}: drift: on {found or 'no driver'}, not on {record.stub_driver}"
                       f" as recorded{_held(record)} (uevents: {', '.join(actions)}); left as"
                       " it is")
        elif not ours:
            message = (f"{addr}: drift: rebound behind hostdev's back{_held(record)}"
                       f" (uevents: {', '.join(actions)}); on {found} as recorded")
        else:
            continue
        done.append(WatchEvent(kind="drift", address=addr, owner=record.owner,
                               uevents=actions, expected=record.stub_driver, found=found,
                               message=message))
    done.sort(key=lambda e: str(e.address))
    for event in done:
        _log(event)
    return done


def from_reconcile(report: ReconcileReport, *, resync: str | None = None) -> list[WatchEvent]:
    """What a reconcile (at start, or in place of a batch: ``resync`` says why) acted on."""
    done: list[WatchEvent] = []
    if resync is not None:
        done.append(WatchEvent(kind="resync", message=f"{resync}: reconciled the whole host"))
    done += [_dropped("pruned", r, []) for r in report.pruned]
    done += [_dropped("stale", r, []) for r in report.stale]
    for change in report.driver_changed:
        done.append(WatchEvent(
            kind="drift", address=change.address, expected=change.expected,
            found=change.found,
            message=f"{change.address}: drift: on {change.found or 'no driver'}, not on"
                    f" {change.expected} as recorded (changed while no watch ran)"))
    for event in done:
        _log(event)
    return done


def added_in(seen: dict[PciAddress, list[str]]) -> set[PciAddress]:
    """The addresses ``seen`` says were added (maybe removed again since)."""
    return {a for a, actions in seen.items() if "add" in actions}


def present_after(present: set[PciAddress],
                  seen: dict[PciAddress, list[str]]) -> set[PciAddress]:
    """The addresses on the host after ``seen``, from those before: each address's
    last ``add`` or ``remove`` says whether it is there."""
    after = set(present)
    for addr, actions in seen.items():
        last = next((a for a in reversed(actions) if a in ("add", "remove")), None)
        if last == "add":
            after.add(addr)
        elif last == "remove":
            after.discard(addr)
    return after


def wished(txn: Transaction, added: Iterable[PciAddress]) -> list[PciAddress]:
    """Of the devices ``added``, those still there and not tracked, in address order:
    those a persistent wish may concern."""
    return [a for a in sorted(set(added)) if txn.lists.find(a) is None
            and txn.sysfs.device_exists(a)]


def _dropped(kind: str, record: DeviceRecord, actions: list[str]) -> WatchEvent:
    addr = record.address
    what = "gone" if kind == "pruned" else "re-created (another device at its address)"
    how = f" (uevents: {', '.join(actions)})" if actions else ""
    message = f"{addr}: {what}{how}; dropped its record ({_owner(record)})"
    return WatchEvent(kind="pruned" if kind == "pruned" else "stale", address=addr,
                      owner=record.owner, uevents=actions, expected=record.stub_driver,
                      message=message)


def _held(record: DeviceRecord) -> str:
    return f", held by {record.owner}" if record.owner is not None else ""


def _owner(record: DeviceRecord) -> str:
    return f"active, held by {record.owner}" if record.owner is not None else "inactive"


def from_wishes(report: PersistentReport) -> list[WatchEvent]:
    """The ``wish`` events of an added device's persistent wishes (applied or failed).

    Wishes the host already matched say nothing; a device that vanished again
    before its wish could be applied is not news either.
    """
    events = []
    for outcome, verb in ((report.done, "applied"), (report.failed, "could not be applied")):
        for wish in outcome:
            event = WatchEvent(kind="wish", address=wish.address,
                               message=f"{wish.address}: added; persistent wish ({wish.wish})"
                                       f" {verb}: {wish.detail}")
            _log(event)
            events.append(event)
    return events


def _log(event: WatchEvent) -> None:
    level = logging.WARNING if event.kind in ("drift", "resync") else logging.INFO
    log.log(level, "%s", event.message, extra={EVENT_LOG_FLAG: True})
