"""Watch mode's loop: batches of uevents, one transaction each, and what one batch
leaves for the next.

:meth:`hostdev.manager.HostdevManager.watch` builds a :class:`WatchLoop` and lends
it what only the manager has: a way to run an action in one transaction
(``run``), the reconcile (``reconciler``, which reports what recovery did on the
way) and the persistent wishes of added devices (``wishes``, each wish its own
transaction). What a batch means (prune, drift, which devices a wish may
concern) is :mod:`hostdev.ops.watch`; this module is the order of things: look
at the whole host once, then take batches until told to stop, and remember what
one batch leaves for the next.

Added devices get their persistent wishes, and only they: a device that was
there all along keeps the driver it is on (a plain ``reattach`` of a wished
device lasts until the next boot). Two kinds of batch cannot say at once which
devices were added, and the whole host is reconciled in their place:

- a batch whose transaction found the state busy (another process held the
  lock past the timeout): its uevents were read, so the devices they added are
  owed their wishes, given with the next batch that runs;
- a batch the kernel dropped uevents from: which devices appeared is not in the
  uevents, so the loop keeps the set of addresses on the host (listed at start,
  then followed through each batch's ``add`` and ``remove``) and lists the bus
  again: an address that is there and was not is added. A device removed and
  re-created at its address while both uevents were lost cannot be told from
  one that stayed, and gets no wish.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from hostdev.address import PciAddress
from hostdev.errors import BadInput, HostdevError, StateBusy
from hostdev.linux import scan, uevents, vfio
from hostdev.linux.sysfs import Sysfs
from hostdev.ops import watch as watching
from hostdev.ops.transaction import Transaction
from hostdev.reports import PersistentReport, ReconcileReport, WatchEvent

if TYPE_CHECKING:
    from hostdev.linux.uevents import Batch, EventSource

T = TypeVar("T")

#: Where the watch hands what it did (the caller's callback), or None.
Callback = Callable[[WatchEvent], object] | None


class Runner(Protocol):
    """Runs ``action`` in one transaction of the manager and returns its result
    (:class:`~hostdev.errors.StateBusy` when the state lock is not had in time)."""

    def __call__(self, action: Callable[[Transaction], T], /) -> T:
        """See the class."""


class WatchLoop:
    """One watch: the start, then a batch at a time until ``stop``.

    ``stop``: a :class:`threading.Event` or a callable returning True, asked
    between batches, at least every ``poll_interval`` seconds; None runs until
    interrupted. Both are checked here, before anything is opened.
    """

    def __init__(self, sysfs: Sysfs, run: Runner,
                 reconciler: Callable[[], Callable[[Transaction], ReconcileReport]],
                 wishes: Callable[[list[PciAddress]], list[WatchEvent]],
                 callback: Callback = None,
                 stop: threading.Event | Callable[[], bool] | None = None,
                 poll_interval: float = 0.5) -> None:
        self.stopped = stop_check(stop)
        interval = vfio.check_timeout(poll_interval, "poll interval")
        if interval == 0:
            raise BadInput("poll interval must be a finite number of seconds above 0, not 0")
        self.interval = interval
        self.sysfs = sysfs
        self.run_action = run
        self.reconciler = reconciler
        self.wishes = wishes
        self.callback = callback
        #: The uevents, open while :meth:`run` runs.
        self.source: EventSource | None = None
        #: The lists' last transaction at the previous batch (another one since
        #: means a transaction of ours wrote to the host in between).
        self.last: str | None = None
        #: Why the next batch reconciles the whole host (uevents were lost, or a
        #: batch was not handled), or None.
        self.resync: str | None = None
        #: The addresses on the host as far as the uevents handled say.
        self.present: set[PciAddress] = set()
        #: Devices added in batches that were not handled: their wishes are owed.
        self.owed: set[PciAddress] = set()

    def run(self, handle: Callable[[Batch], None] | None = None) -> None:
        """Open the uevents, look at the whole host, then take batches until stopped.

        ``handle`` acts on one batch (:meth:`batch` when None; the manager passes
        its own way there). What the callback raises ends the watch; the uevents
        are closed whatever the end.
        """
        # Opened before the first look, so that nothing after it is missed.
        source = self.source = uevents.open_events(self.sysfs)
        try:
            self.start()
            act = handle if handle is not None else self.batch
            while not self.stopped():
                batch = uevents.gather(source, self.interval)
                if not (batch.events or batch.lost or self.resync):
                    continue
                try:
                    act(batch)
                except StateBusy as exc:
                    # Another process's transaction outlasted the lock timeout: the
                    # batch is not lost, it is made up for by a reconcile next time.
                    watching.log.warning("%s; the whole host is reconciled at the next try",
                                         exc, extra={watching.EVENT_LOG_FLAG: True})
                    self.missed(batch)
        finally:
            self.source = None
            source.close()

    def start(self) -> None:
        """Reconcile the whole host once, in one transaction."""
        reconcile = self.reconciler()

        def act(txn: Transaction) -> tuple[list[WatchEvent], str | None, set[PciAddress]]:
            done = watching.from_reconcile(reconcile(txn))
            watching.log.info("watching PCI uevents; %d devices tracked",
                              len(txn.lists.active) + len(txn.lists.inactive),
                              extra={watching.EVENT_LOG_FLAG: True})
            return done, txn.lists.last_transaction, scan.present(txn.sysfs)

        done, self.last, self.present = self.run_action(act)
        self.hand_over(done)

    def batch(self, batch: Batch) -> None:
        """Act on one batch in one transaction, then give added devices their wishes
        (and those owed since a batch that was not handled).

        A reconcile of the whole host takes the batch's place when the kernel
        dropped uevents or an earlier batch was not handled; the bus is then
        listed again, and what appeared since the last look counts as added.
        """
        source = self.source
        assert source is not None, "a batch comes while the loop runs"
        reconcile = self.reconciler()
        last, resync, owed, before = self.last, self.resync, self.owed, self.present

        def act(txn: Transaction) -> tuple[list[WatchEvent], list[PciAddress], str | None,
                                           set[PciAddress]]:
            # Drained again under the lock: every event of a transaction of ours
            # that finished before it is in this batch (see hostdev.ops.watch).
            more = drain_queued(source)
            seen = watching.coalesce(batch.events + more.events)
            added = owed | watching.added_in(seen)
            present = watching.present_after(before, seen)
            why = watching.LOST if batch.lost or more.lost else resync
            if why is None:
                done = watching.settle(txn, seen, ours=txn.lists.last_transaction != last)
            else:
                done = watching.from_reconcile(reconcile(txn), resync=why)
                # Listed after the drain: an address there that the uevents did not
                # bring (lost, or still queued) appeared since the last look.
                now = scan.present(txn.sysfs)
                added |= now - present
                present = now
            return done, watching.wished(txn, added), txn.lists.last_transaction, present

        done, added, self.last, self.present = self.run_action(act)
        self.resync, self.owed = None, set()  # owed wishes are given now, once
        self.hand_over(done)
        if added:
            self.hand_over(self.wishes(added))

    def missed(self, batch: Batch) -> None:
        """``batch`` was taken from the uevents but not handled (the state was busy):
        the next batch reconciles the whole host and gives the devices it added
        their wishes."""
        seen = watching.coalesce(batch.events)
        self.owed |= watching.added_in(seen)
        self.present = watching.present_after(self.present, seen)
        if batch.lost:
            self.resync = watching.LOST  # says more than BEHIND, which is true too
        elif self.resync is None:
            self.resync = watching.BEHIND

    def hand_over(self, events: list[WatchEvent]) -> None:
        """Give ``events`` to the callback, in order (after their transaction ended)."""
        if self.callback is not None:
            for event in events:
                self.callback(event)


#: Full drains taken under the lock before giving up on emptying the queue (a
#: stream that outruns them): the batch is then treated as lost, and reconciled.
QUEUED_DRAINS = 16


def drain_queued(source: uevents.EventSource) -> Batch:
    """Everything queued now, without waiting: drain after drain while each comes
    back full, since one drain takes at most :data:`~hostdev.linux.uevents.BATCH_LIMIT`
    and the tail of a long transaction of ours must not be left for the next batch
    (which would take it for someone else's doing). After :data:`QUEUED_DRAINS` full
    drains the rest is left and the batch is marked lost, so that it is reconciled."""
    limit = uevents.BATCH_LIMIT
    events: list[uevents.Uevent] = []
    for _ in range(QUEUED_DRAINS):
        got = source.drain(0, limit)
        events += got.events
        if got.lost or len(got.events) < limit:
            return uevents.Batch(events, got.lost)
    return uevents.Batch(events, True)


def apply_wishes(apply: Callable[[list[PciAddress]], PersistentReport],
                 addresses: list[PciAddress]) -> list[WatchEvent]:
    """Give the devices the watch saw added their persistent wishes, if they have any
    (``apply`` reads the wishes file once and runs each wish in its own transaction).

    Returns what was done (or could not be), as ``wish`` events. A wishes file
    that cannot be read is logged, not raised: the watch goes on pruning.
    """
    try:
        report = apply(addresses)
    except HostdevError as exc:
        watching.log.warning("persistent wishes of %s not applied: %s",
                             ", ".join(map(str, addresses)), exc,
                             extra={watching.EVENT_LOG_FLAG: True})
        return []
    return watching.from_wishes(report)


def stop_check(stop: threading.Event | Callable[[], bool] | None) -> Callable[[], bool]:
    """``stop`` as a question asked between batches."""
    if stop is None:
        return lambda: False
    if isinstance(stop, threading.Event):
        return stop.is_set
    if callable(stop):
        return lambda: bool(stop())
    raise BadInput(f"stop must be a threading.Event or a callable, not {type(stop).__name__}")
