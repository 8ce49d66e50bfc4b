"""HostdevManager: the active and inactive lists and every transaction on them.

Each public method is one transaction: take the state lock, load the lists,
check, act on the host with an undo log, save once, release the lock. The
lists live in a state file, so they survive restarts and are shared by every
process using the same state directory.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from hostdev.address import AddressLike, PciAddress, validate_driver_name
from hostdev.errors import (
    BadInput,
    DeviceBusy,
    DeviceNotFound,
    HostdevError,
    StateWriteFailed,
)
from hostdev.linux import vfio
from hostdev.linux.binding import Guard
from hostdev.linux.drivers import is_vfio_driver
from hostdev.linux.hostuse import HostUse, host_uses
from hostdev.linux.modules import AUTO, MODPROBE_TIMEOUT, ModuleLoader, choose_stub, is_real_root
from hostdev.linux.modules import modprobe as run_modprobe
from hostdev.linux.sysfs import DEFAULT_WRITE_TIMEOUT, HelperWrite, Sysfs
from hostdev.ops.node import node_detach, node_reattach, node_reset
from hostdev.ops.prepare import prepare
from hostdev.ops.reattach import reattach
from hostdev.ops.recovery import prune as prune_records
from hostdev.ops.recovery import reconcile as reconcile_lists
from hostdev.ops.recovery import recover
from hostdev.ops.transaction import Transaction
from hostdev.ops.update import update_active
from hostdev.ops.vf_count import set_num_vfs as change_num_vfs
from hostdev.reports import (
    AllocationReport,
    NodeResult,
    PersistentReport,
    PrepareReport,
    ReattachReport,
    ReconcileReport,
    SriovReport,
    UpdateReport,
    WatchEvent,
    WishOutcome,
)
from hostdev.state.audit import AuditLog
from hostdev.state.journal import DeviceBefore, Intent, Journal, PendingWrite
from hostdev.state.lists import Lists
from hostdev.state.records import DeviceRecord, HostdevSpec, Owner, VfNetConfig
from hostdev.state.store import StateStore, default_state_dir
from hostdev.state.wishes import DetachWish, Wish, Wishes, WishStore, default_config_dir

if TYPE_CHECKING:
    from hostdev.linux.uevents import Batch
    from hostdev.ops.watch_loop import WatchLoop

T = TypeVar("T")
#: A transaction of an audited call, and the addresses whose records it changed.
_Seen = tuple[Transaction, "set[PciAddress]"]
SpecLike = HostdevSpec | AddressLike


class HostdevManager:
    """Manage PCI devices for VFIO passthrough on one host.

    ``root`` is the directory holding ``sys/``, ``dev/`` and ``proc/`` (``/`` on a
    real host). ``state_dir`` defaults to ``/run/hostdev`` as root, else
    ``$XDG_RUNTIME_DIR/hostdev`` (under ``root`` when ``root`` is not ``/``).
    ``lock_timeout`` bounds the wait for another process's transaction;
    ``release_timeout`` bounds the wait for a VFIO user to let go of a device.
    ``load_modules``: load a stub driver that is not loaded with ``modprobe``
    (bounded by ``modprobe_timeout``), on the real root only; under another
    ``root`` a missing stub is refused. ``module_loader`` replaces modprobe (a
    fake kernel's loader in tests); it is used whatever the root.
    ``write_timeout`` bounds each write that the kernel may block until a VFIO
    user lets go (unbind, removing VFs), even one that appeared after every
    check: past it the call raises (or reports) :class:`WriteBlocked`, and the
    write is left to a helper process that exits once it returns.
    ``config_dir`` holds the persistent wishes (``wishes.json``): ``/etc/hostdev``
    on the real root, ``<root>/etc/hostdev`` otherwise; it is read only by the
    calls that use it (``persistent=True``, :meth:`apply_persistent`, :meth:`wishes`).
    """

    def __init__(self, root: str | os.PathLike[str] = "/",
                 state_dir: str | os.PathLike[str] | None = None, *,
                 lock_timeout: float = 10.0, release_timeout: float = 10.0,
                 load_modules: bool = True, modprobe_timeout: float = MODPROBE_TIMEOUT,
                 module_loader: ModuleLoader | None = None,
                 write_timeout: float = DEFAULT_WRITE_TIMEOUT,
                 config_dir: str | os.PathLike[str] | None = None) -> None:
        # Every bound on a wait is checked first: nan or inf would wait forever.
        release_timeout = vfio.check_timeout(release_timeout)
        lock_timeout = vfio.check_timeout(lock_timeout, "lock timeout")
        modprobe_timeout = vfio.check_timeout(modprobe_timeout, "modprobe timeout")
        if vfio.check_timeout(write_timeout, "write timeout") == 0:
            raise BadInput("write timeout must be a finite number of seconds above 0, not 0")
        self.sysfs = Sysfs(root)
        self.sysfs.write_timeout = float(write_timeout)
        self.module_loader: ModuleLoader | None = None
        if load_modules and module_loader is not None:
            self.module_loader = module_loader
        elif load_modules and is_real_root(self.sysfs):
            self.module_loader = lambda name: run_modprobe(name, modprobe_timeout)
        self.store = StateStore(state_dir if state_dir is not None else default_state_dir(root),
                                lock_timeout)
        self.release_timeout = release_timeout
        self.journal = Journal(self.store.dir)
        self.wish_store = WishStore(config_dir if config_dir is not None
                                    else default_config_dir(root))
        #: Run after a transaction's lists are saved, inside it: a failure there
        #: undoes the transaction as a failed save would (a wish is recorded only
        #: with the change it describes).
        self._on_commit: list[Callable[[], None]] = []
        #: One line per transaction (:mod:`hostdev.state.audit`).
        self.audit = AuditLog(self.store.dir)
        #: What recovery of unfinished transactions did, oldest first.
        self.recovered: list[str] = []
        #: What recovery could not put back, oldest first.
        self.recovery_failed: list[str] = []
        #: Writes of ours still blocked in the kernel, as the last transaction found them.
        self.blocked: list[str] = []
        #: What the journal holds during a transaction (helpers are added to it).
        self._intent: Intent | None = None
        #: Still-blocked writes found at the start of this transaction, and the state
        #: their devices had before the transaction that made them.
        self._carried: list[PendingWrite] = []
        self._carried_befores: list[DeviceBefore] = []

    # ------------------------------------------------------------ transactions
    @contextmanager
    def _transaction(self, release_timeout: float | None = None, *,
                     verb: str | None = None) -> Iterator[Transaction]:
        """One transaction under the state lock, audited when it ends, before the lock
        is released (see :meth:`_audited`); a state directory that cannot be locked
        (busy, or refused as unsafe) gets no audit line."""
        named = _call_site(self)
        with self._locked_transaction(release_timeout, verb or named[0], named[1]) as txn:
            yield txn

    @contextmanager
    def _audited(self, verb: str, named: list[PciAddress]) -> Iterator[list[_Seen]]:
        """Write the audit line of the transaction run inside, whatever its end.

        The devices are those the call named, those its intent journaled, those
        whose records it changed, and the one its error names.
        """
        seen: list[_Seen] = []
        error: BaseException | None = None
        try:
            yield seen
        except BaseException as exc:
            error = exc
            raise
        finally:
            devices = set(named)
            for txn, changed in seen:
                if txn.intent is not None:
                    devices.update(d.address for d in txn.intent.devices)
                    devices.update(v.pf for v in txn.intent.vf_counts)
                if error is None:
                    devices.update(changed)
            address = getattr(error, "address", None)
            if isinstance(address, PciAddress):
                devices.add(address)
            self.audit.record(verb, devices, error)

    @contextmanager
    def _locked_transaction(self, release_timeout: float | None, verb: str,
                            named: list[PciAddress]) -> Iterator[Transaction]:
        timeout = self._timeout(release_timeout)

        def guard(address: PciAddress, driver: str) -> None:
            if is_vfio_driver(driver) or self.sysfs.exists(
                    self.sysfs.device_path(address, "vfio-dev")):
                vfio.wait_released(self.sysfs, address, timeout)

        with self.store.locked(), self._audited(verb, named) as seen:
            self.sysfs.forget_checked_paths()  # check the tree's links anew each transaction
            self.sysfs.fenced.clear()  # recovery fences again what is still blocked
            self.sysfs.helpers.clear()
            self._intent, self._carried, self._carried_befores = None, [], []
            self._on_commit = []
            original = self._recover_if_needed(guard)
            txn = Transaction(self.sysfs, original.copy(), guard, self._record_intent,
                              module_loader=self.module_loader)
            seen.append((txn, set()))  # lists left as they were: no record changed
            self.sysfs.on_helper = self._journal_helper
            saving = saved = False
            try:
                yield txn
                # Saving is part of the transaction: if the state file cannot be
                # written (disk full, quota, I/O error), what the transaction did
                # on the host is undone below, as for any other failure.
                if txn.intent is not None:
                    txn.lists.last_transaction = txn.intent.transaction
                if not txn.lists.same_as(original):
                    # Taken before the save, which makes the lists their own origin
                    # (after it, telling what changed would compare every record).
                    seen[-1] = (txn, _changed(original, txn.lists))
                    saving = True
                    self.store.save(txn.lists)
                    saved = True
                for commit in self._on_commit:
                    saving = True
                    commit()
            except (Exception, KeyboardInterrupt) as exc:
                self._roll_back(txn, original, exc, unsaved=saving, saved=saved)
                raise
            finally:
                self.sysfs.on_helper = None
            self._close_journal()

    def _record_intent(self, intent: Intent) -> None:
        """Journal a transaction's intent, keeping the writes still blocked from before."""
        intent.pending[:0] = self._carried
        known = {d.address for d in intent.devices}
        intent.devices.extend(d for d in self._carried_befores if d.address not in known)
        self._intent = intent
        self.journal.write(intent)

    def _journal_helper(self, helper: HelperWrite) -> None:
        """A possibly-blocking write started (or was given up on): journal its helper."""
        entry = PendingWrite(path=helper.path, value=helper.value, devices=helper.devices,
                             pid=helper.pid, start=helper.start, gave_up=helper.gave_up,
                             pidns=helper.pidns)
        intent = self._intent
        if intent is None:
            intent = self._intent = Intent(operation="pending writes",
                                           pending=list(self._carried),
                                           devices=list(self._carried_befores))
        intent.pending = [p for p in intent.pending if p.pid != entry.pid] + [entry]
        self.journal.write(intent)

    def _close_journal(self) -> None:
        """End of a transaction: keep only the writes given up on, or clear the journal."""
        intent = self._intent
        self._intent = None
        keep = [p for p in intent.pending if p.gave_up] if intent is not None else []
        if not keep:
            if intent is not None:
                self.journal.clear()
            return
        assert intent is not None
        addresses = {a for p in keep for a in p.devices}
        devices = [d for d in intent.devices if d.address in addresses]
        self.journal.write(Intent(operation="pending writes", pending=keep, devices=devices))

    def _roll_back(self, txn: Transaction, original: Lists, exc: BaseException, *,
                   unsaved: bool = False, saved: bool = False) -> None:
        """Undo ``txn`` after ``exc``; save the lists if an undo failed.

        If that save fails too, the intent journal is kept: it names every
        device the transaction touched, with how it was, so the next transaction
        (or ``reconcile``) puts them back first. Otherwise the journal is closed:
        removed, or left holding only the writes still blocked in the kernel.

        ``unsaved``: the transaction ran to its end and only its final save
        failed. Steps without an undo (a reattach's give-backs, a VF count
        change) are then undone from the journal, as recovery would (unless an
        undo step already failed: that device is tracked or journaled), so that
        the lists that stay (the old ones) describe the host; what cannot be put
        back keeps the journal for the next command.

        ``saved``: the new lists were saved before a commit step (a wish) failed;
        the lists as restored are saved over them whatever they are.
        """
        restored, failures = txn.rollback(original)
        kept = False
        if unsaved and txn.intent is not None and not failures:
            undone, undo_failed = self._undo_by_journal(txn, restored)
            if undone and isinstance(exc, HostdevError):
                exc.message += "; what it changed on the host was put back: " + "; ".join(undone)
            if undo_failed:
                failures.extend(undo_failed)
                kept = True
        if saved or not restored.same_as(original):
            try:
                self.store.save(restored)
            except StateWriteFailed as save_error:
                kept = txn.intent is not None
                failures.append(f"saving the lists: {save_error}")
        if kept:
            self._intent = None  # the whole intent stays journaled for the next command
        else:
            self._close_journal()  # keeps only writes still blocked in the kernel
        if isinstance(exc, HostdevError):
            if failures:
                exc.message += "; rollback incomplete: " + "; ".join(failures)
            if kept:
                exc.message += (f"; the intent journal {self.journal.path} was kept: the next"
                                " hostdev command puts those devices back first")

    def _undo_by_journal(self, txn: Transaction,
                         restored: Lists) -> tuple[list[str], list[str]]:
        """Put every device ``txn`` journaled back as it was: (done, not done)."""
        assert txn.intent is not None
        # Writes still blocked in the kernel are not undone (their devices are fenced).
        intent = txn.intent.model_copy(update={"pending": []}, deep=True)
        undo = Transaction(self.sysfs, restored, txn.guard)
        try:
            return recover(undo, intent)
        except HostdevError as exc:
            return [], [f"putting the devices back: {exc}"]

    def _recover_if_needed(self, guard: Guard) -> Lists:
        """Load the lists; first undo a transaction a dead process left unfinished.

        Writes still blocked in the kernel stay journaled (their devices fenced for
        this transaction); those that finished since are recorded.
        """
        lists = self.store.load()
        self.blocked = []
        intent = self.journal.read()
        if intent is None:
            return lists
        complete = intent.transaction == lists.last_transaction
        if complete and not any(p.gave_up for p in intent.pending):
            self.journal.clear()  # it completed; only the clean-up was lost
            return lists
        txn = Transaction(self.sysfs, lists.copy(), guard)
        self._intent = intent
        self.sysfs.on_helper = self._journal_helper
        try:
            done, failed = recover(txn, intent, complete=complete, waiting=self.blocked)
        finally:
            self.sysfs.on_helper = None
        self.recovered.extend(f"{intent.operation} by pid {intent.pid}: {line}" for line in done)
        self.recovery_failed.extend(f"{intent.operation} by pid {intent.pid}: {line}"
                                    for line in failed)
        if not txn.lists.same_as(lists):
            self.store.save(txn.lists)
        current = self._intent
        self._close_journal()
        self._carried = [p for p in current.pending if p.gave_up]
        addresses = {a for p in self._carried for a in p.devices}
        self._carried_befores = [d for d in current.devices if d.address in addresses]
        return txn.lists

    def _run(self, action: Callable[[Transaction], T], release_timeout: float | None = None) -> T:
        with self._transaction(release_timeout) as txn:
            return action(txn)

    # ------------------------------------------------------------- guest side
    def prepare(self, owner: Owner, specs: Sequence[SpecLike], *,
                force: bool = False) -> PrepareReport:
        """Give devices to ``owner``: check, detach to the stub, reset, mark active.

        All or nothing: on any failure every device is left on the driver and
        with the override it had, and the lists are unchanged. A spec whose
        ``stub_driver`` is ``"auto"`` gets the device's vfio variant driver, else
        vfio-pci (see :func:`hostdev.linux.modules.choose_stub`); its record stores that name.
        A managed device that carries something the host uses (a mounted disk,
        swap, a routed interface, a mounted 9p/virtiofs tag) is refused with
        :class:`~hostdev.errors.DeviceUsedByHost` unless ``force``.
        """
        owner = _owner(owner)
        parsed = _specs(specs)
        if not parsed:
            return PrepareReport()
        return self._run(lambda txn: prepare(txn, owner, _resolve_auto(txn, parsed),
                                             force=force))

    def allocate(self, owner: Owner, count: int, *, pf: AddressLike | None = None,
                 numa_node: int | None = None, vendor_device: str | None = None,
                 stub_driver: str = "vfio-pci", net: VfNetConfig | None = None,
                 ) -> AllocationReport:
        """Give ``owner`` ``count`` free VFs, chosen here, prepared in one transaction.

        ``pf`` (only VFs of that PF) and ``vendor_device`` (``"VVVV:DDDD"``, only
        VFs with that id) are filters; ``numa_node`` is a preference: VFs on it
        come first, others make up the count (``off_node`` in the report). A VF
        is free when it is in neither list, its IOMMU group is viable, no VFIO
        user holds it, the host uses nothing it carries and it is not on a uio
        driver (a DPDK program may be using it); free VFs are taken
        by NUMA preference, then PF address, then VF index
        (:mod:`hostdev.ops.allocate`). All or nothing, as :meth:`prepare`: with
        fewer free VFs than ``count``, :class:`~hostdev.errors.NotEnoughFreeVfs`
        says how many of how many candidates were free and why the others were
        not, and nothing is changed. ``net``: the network settings every chosen VF
        gets (as ``HostdevSpec.net``); only VFs of a PF that carries a network
        interface are then candidates, and a MAC can be given to one VF only.
        """
        from hostdev.ops.allocate import VfRequest, choose

        owner = _owner(owner)
        request = VfRequest.parse(count, pf=pf, numa_node=numa_node,
                                  vendor_device=vendor_device)
        stub = validate_driver_name(stub_driver)
        if net is not None and not isinstance(net, VfNetConfig):
            raise BadInput(f"net must be a VfNetConfig, not {type(net).__name__}")
        if net is not None and net.mac is not None and request.count > 1:
            raise BadInput(f"a MAC address names one VF, and {request.count} were asked for:"
                           " allocate one VF with a MAC, or leave the MAC out")

        def run(txn: Transaction) -> AllocationReport:
            selection = choose(txn, owner, request, stub, needs_interface=net is not None)
            specs = [HostdevSpec(address=address, stub_driver=stub, net=net)
                     for address in selection.chosen]
            done = prepare(txn, owner, _resolve_auto(txn, specs))
            return AllocationReport(prepared=done.prepared, pruned=done.pruned,
                                    chosen=selection.chosen,
                                    candidates=selection.candidates,
                                    free=len(selection.free), off_node=selection.off_node)

        return self._run(run)

    def reattach(self, owner: Owner, specs: Sequence[SpecLike], *,
                 release_timeout: float | None = None) -> ReattachReport:
        """Take ``owner``'s devices back; best effort, never raises for one device."""
        owner = _owner(owner)
        addresses = [s.address for s in _specs(specs)]
        timeout = self._timeout(release_timeout)

        def wait(addrs: list[PciAddress]) -> dict[PciAddress, DeviceBusy]:
            return self._wait_all(addrs, timeout)

        return self._run(lambda txn: reattach(txn, owner, addresses, wait), release_timeout)

    def update_active(self, owner: Owner, specs: Sequence[SpecLike]) -> UpdateReport:
        """Rebuild ``owner``'s active entries (after the caller restarted)."""
        owner = _owner(owner)
        parsed = _specs(specs)
        return self._run(lambda txn: update_active(txn, owner, parsed))

    # -------------------------------------------------------------- node side
    def node_detach(self, address: AddressLike, stub_driver: str = "vfio-pci", *,
                    force: bool = False, persistent: bool = False) -> NodeResult:
        """Move a free device onto ``stub_driver`` and track it inactive.

        ``"auto"``: the device's vfio variant driver if one claims it, else vfio-pci.
        Refuses (:class:`~hostdev.errors.DeviceUsedByHost`) a device that carries
        something the host uses, unless ``force``.
        ``persistent``: also record the wish (the device, named by address, ids and
        serial number, on the driver it ended up on) in the configuration
        directory, for :meth:`apply_persistent` at the next boot. The wish is
        recorded only if the detach succeeded; if it cannot be written, the
        detach is undone.
        """
        addr = PciAddress.parse(address)
        stub = validate_driver_name(stub_driver)

        def run(txn: Transaction) -> NodeResult:
            wishes = self.wish_store.load(for_update=True) if persistent else None
            chosen = choose_stub(txn.sysfs, addr) if stub == AUTO and \
                txn.sysfs.device_exists(addr) else stub
            result = node_detach(txn, addr, chosen, force=force)
            if wishes is not None:
                from hostdev.ops.persistent import identity_of

                wishes.set_detach(DetachWish(device=identity_of(txn.sysfs, addr),
                                             stub_driver=chosen))
                self._save_wishes(wishes)
            return result

        return self._run(run)

    def node_reattach(self, address: AddressLike, *, release_timeout: float | None = None,
                      persistent: bool = False) -> NodeResult:
        """Give a free device back to the host (works for untracked devices too).

        A tracked device its original driver does not take back goes back on its
        stub, still tracked, and ``RestoreFailed`` says so.
        ``persistent``: also drop the device's persistent detach wish, once it is
        back (or at once when the device is not on the host: a wish for a card
        that was removed can always be dropped).
        """
        addr = PciAddress.parse(address)
        self._timeout(release_timeout)  # bad input fails before the lock is taken

        def run(txn: Transaction) -> NodeResult:
            if not persistent:
                return node_reattach(txn, addr)
            wishes = self.wish_store.load(for_update=True)
            if not txn.sysfs.device_exists(addr) and addr not in txn.lists.inactive:
                if not wishes.forget_detach(addr):
                    raise DeviceNotFound(
                        f"PCI device {addr} not found and has no persistent detach; check the"
                        " address with 'hostdev list' or 'hostdev wishes'", address=addr)
                self._save_wishes(wishes)
                return NodeResult(address=addr, driver=None,
                                  action="not on this host; its persistent detach was removed")
            result = node_reattach(txn, addr)
            if wishes.forget_detach(addr):
                self._save_wishes(wishes)
            return result

        return self._run(run, release_timeout)

    def node_reset(self, address: AddressLike) -> NodeResult:
        """Reset a device no owner holds (skipped on a vfio driver, which resets it itself)."""
        addr = PciAddress.parse(address)
        return self._run(lambda txn: node_reset(txn, addr))

    def set_num_vfs(self, pf: AddressLike, count: int, *, force: bool = False,
                    release_timeout: float | None = None,
                    persistent: bool = False, stub_driver: str | None = None) -> SriovReport:
        """Set a PF's VF count; refuses while a VF that would vanish is assigned, or
        the host uses something a vanishing VF carries (both unless
        ``force``), or a VF is held by a VFIO user. Reconciles the lists after.

        ``stub_driver`` (``"vfio-pci"``, ``"auto"``...): the VFs this creates go
        straight onto it, tracked inactive (as :meth:`node_detach` leaves them),
        without being bound to the host's VF driver first; the report names them
        in ``detached``. VFs that exist already are left where they are.
        ``persistent``: also record ``count`` as the PF's wished VF count, once it
        is set (a count of 0 drops the wish: 0 VFs is what a PF has after boot;
        for a PF that is not on the host, 0 only drops the wish); with a stub
        driver, each VF created is also wished detached, as
        ``node_detach(persistent=True)`` does.
        """
        addr = PciAddress.parse(pf)
        if isinstance(count, bool) or not isinstance(count, int):
            raise BadInput(f"VF count must be an integer, not {count!r}")
        stub = None if stub_driver is None else validate_driver_name(stub_driver)
        self._timeout(release_timeout)

        def run(txn: Transaction) -> SriovReport:
            if not persistent:
                return change_num_vfs(txn, addr, count, force=force, stub=stub)
            wishes = self.wish_store.load(for_update=True)
            if count == 0 and not txn.sysfs.device_exists(addr):
                known = any(w.device.address == addr for w in wishes.sriov)
                if not known:
                    raise DeviceNotFound(
                        f"PCI device {addr} not found and has no persistent VF count; check"
                        " the address with 'hostdev list' or 'hostdev wishes'",
                        address=addr)
                wishes.sriov = [w for w in wishes.sriov if w.device.address != addr]
                self._save_wishes(wishes)
                return SriovReport(pf=addr, before=0, after=0)
            report = change_num_vfs(txn, addr, count, force=force, stub=stub)
            from hostdev.ops.persistent import identity_of

            wishes.set_vf_count(identity_of(txn.sysfs, addr), count)
            for vf in report.detached:
                assert vf.driver is not None
                wishes.set_detach(DetachWish(device=identity_of(txn.sysfs, vf.address),
                                             stub_driver=vf.driver))
            self._save_wishes(wishes)
            return report

        return self._run(run, release_timeout)

    # -------------------------------------------------------------- persistent
    def wishes(self) -> Wishes:
        """The persistent wishes of the configuration directory (none when it is absent).

        A user may read root's: the file and its directory must be owned by root
        or by the caller, and writable by no one else.
        """
        return self.wish_store.load()

    def apply_persistent(self, only: Iterable[AddressLike] | AddressLike | None = None, *,
                         vf_counts_only: bool = False) -> PersistentReport:
        """Make the host match the persistent wishes; never forces anything.

        VF counts first (so that the VFs exist), then detaches, each device
        tracked inactive exactly as after :meth:`node_detach`. Each wish is its
        own transaction: one that cannot be applied (another device at the
        address, a device the host uses, a VFIO holder, a kernel refusal) is
        reported in ``failed`` and leaves the others be. A device that is not on
        the host is reported in ``missing``. Running it again changes nothing.
        ``only``: apply only the wishes of these addresses (a device that just
        appeared). ``vf_counts_only``: leave the detach wishes (a PF's driver just
        bound: a device an operator reattached by hand stays on its driver). A
        wishes file that cannot be trusted raises before anything is done. Each
        wish is read again in its transaction: one that another hostdev changed
        since the start is applied as it is now, one it dropped not at all (and
        not reported); one it added is left to it.
        """
        if only is None:
            chosen = None
        elif isinstance(only, str | PciAddress):
            chosen = {PciAddress.parse(only)}
        else:
            chosen = {PciAddress.parse(a) for a in only}
        wishes = self.wish_store.load()
        report = PersistentReport()
        in_order: list[Wish] = [*wishes.sriov, *([] if vf_counts_only else wishes.detach)]
        for wish in in_order:  # VF counts first: the VFs a detach names must exist
            if chosen is None or wish.device.address in chosen:
                self._apply_wish(report, wish)
        return report

    def _apply_wish(self, report: PersistentReport, wish: Wish) -> None:
        """Apply ``wish`` in its own transaction, as the wishes file holds it then."""
        from hostdev.ops.persistent import Outcome, apply_wish, describe

        applied = [wish]

        def action(txn: Transaction) -> tuple[Outcome, str] | None:
            # Read again under the lock, which every change of the wishes holds: a
            # long boot must not undo what another hostdev did meanwhile (a
            # ``reattach --persistent`` detached again by the wish it dropped).
            # A wish changed since is applied as it is now, one dropped not at all.
            now = self.wish_store.load().now_of(wish)
            if now is None:
                return None
            applied[0] = now
            return apply_wish(txn, now)

        try:
            result = self._run(action)
        except DeviceNotFound as exc:  # vanished between the look and the act
            result = Outcome.MISSING, str(exc)
        except HostdevError as exc:
            result = Outcome.FAILED, str(exc)
        if result is None:
            return  # no longer a wish
        outcome, detail = result
        getattr(report, outcome.value).append(WishOutcome(
            address=wish.device.address, wish=describe(applied[0]), detail=detail))

    def _save_wishes(self, wishes: Wishes) -> None:
        """Write ``wishes`` once the running transaction's change is saved."""
        self._on_commit.append(lambda: self.wish_store.save(wishes))

    def reconcile(self) -> ReconcileReport:
        """Bring the lists in line with the host: finish recovery of a crashed
        transaction (what it could not put back is in ``failed``), prune vanished
        and re-created devices, report driver changes and unfinished give-backs."""
        return self._run(self._reconciler())

    def _reconciler(self) -> Callable[[Transaction], ReconcileReport]:
        """A reconcile to run in a transaction (what recovery does on the way is reported)."""
        seen, seen_failed = len(self.recovered), len(self.recovery_failed)

        def run(txn: Transaction) -> ReconcileReport:
            report = ReconcileReport(recovered=self.recovered[seen:],
                                     failed=self.recovery_failed[seen_failed:],
                                     blocked=list(self.blocked))
            return reconcile_lists(txn, report)

        return run

    # ------------------------------------------------------------------- watch
    def watch(self, callback: Callable[[WatchEvent], object] | None = None,
              stop: threading.Event | Callable[[], bool] | None = None, *,
              poll_interval: float = 0.5) -> None:
        """Follow the kernel's PCI uevents and keep the lists in line as they come.

        Reconciles once at start, then, for each batch of uevents: prunes the
        record of a tracked function that vanished or was re-created (naming its
        owner), reports a tracked device whose driver changed behind hostdev's
        back as drift, and gives an added device its persistent wish. Each thing
        done is logged (logger ``hostdev``, one line) and handed to ``callback``
        as a :class:`~hostdev.reports.WatchEvent`, after its transaction ended
        (the callback may call the manager; what it raises ends the watch).

        Runs until ``stop`` (a :class:`threading.Event`, or a callable returning
        True) is set, which is looked at least every ``poll_interval`` seconds;
        with None, until interrupted. A burst is taken in batches (see
        :mod:`hostdev.ops.watch`), one transaction each, never a rescan per
        event; when the kernel dropped uevents the whole host is reconciled, and
        the functions that appeared since the last look (the bus listed again)
        get their wishes. A batch that cannot take the state lock in time
        (``StateBusy``) is logged and made up for by a full reconcile at the
        next look, which also gives the functions the batch added their wishes.
        A function that was there before is never given its wish (see
        :mod:`hostdev.ops.watch_loop`). Raises
        :class:`~hostdev.errors.UeventsUnavailable` when uevents cannot be
        followed here.
        """
        from hostdev.ops.watch_loop import WatchLoop

        loop = WatchLoop(self.sysfs, self._run, self._reconciler, self._wishes_for_added,
                         callback, stop, poll_interval)
        loop.run(partial(self._watch_batch, loop))

    def _watch_batch(self, loop: WatchLoop, batch: Batch) -> None:
        """One batch of :meth:`watch`, in one transaction (``StateBusy`` when the lock is
        not had in time). Kept as a method of the manager: the one place a batch's
        failure can be injected."""
        loop.batch(batch)

    def _wishes_for_added(self, addresses: list[PciAddress]) -> list[WatchEvent]:
        """Give the devices the watch saw added their persistent wishes, as ``wish``
        events (see :func:`hostdev.ops.watch_loop.apply_wishes`; the wishes file is
        read for the batch, then each wish again in its own transaction)."""
        from hostdev.ops.watch_loop import apply_wishes

        return apply_wishes(self.apply_persistent, addresses)

    # ----------------------------------------------------------------- queries
    def used_by(self, address: AddressLike) -> Owner | None:
        """The owner of an active device, or None."""
        addr = PciAddress.parse(address)
        record = self._lists().active.get(addr)
        return None if record is None else record.owner

    def active(self) -> list[DeviceRecord]:
        """Active records, sorted by address."""
        lists = self._lists()
        return [lists.active[a] for a in sorted(lists.active)]

    def inactive(self) -> list[DeviceRecord]:
        """Inactive records, sorted by address."""
        lists = self._lists()
        return [lists.inactive[a] for a in sorted(lists.inactive)]

    def lists(self) -> Lists:
        """Both lists as one consistent snapshot."""
        return self._lists()

    def holders(self, address: AddressLike) -> list[vfio.Holder]:
        """Processes holding the device through VFIO."""
        return vfio.holders(self.sysfs, PciAddress.parse(address))

    def host_uses(self, address: AddressLike) -> list[HostUse]:
        """What the host uses through the device (mounted disks, swap, routed
        interfaces, mounted 9p/virtiofs tags); empty when nothing."""
        return host_uses(self.sysfs, PciAddress.parse(address))

    def wait_released(self, address: AddressLike, timeout: float | None = None) -> None:
        """Wait until no VFIO user holds the device; DeviceBusy after ``timeout``."""
        wait = self._timeout(timeout)
        vfio.wait_released(self.sysfs, PciAddress.parse(address), wait)

    def prune_missing(self) -> list[DeviceRecord]:
        """Drop records of devices that vanished or were re-created; return them."""
        def run(txn: Transaction) -> list[DeviceRecord]:
            vanished, recreated = prune_records(txn)
            return sorted(vanished + recreated, key=lambda r: r.address)

        return self._run(run)

    # ----------------------------------------------------------------- helpers
    def _timeout(self, release_timeout: object) -> float:
        """The release timeout of one call (the manager's own when None); BadInput unless
        a finite number >= 0."""
        if release_timeout is None:
            return self.release_timeout
        return vfio.check_timeout(release_timeout)

    def _lists(self) -> Lists:
        with self.store.locked():
            return self.store.load()

    def _wait_all(self, addresses: Iterable[PciAddress],
                  timeout: float) -> dict[PciAddress, DeviceBusy]:
        """Wait for all devices together (one deadline); return those still held."""
        return vfio.wait_all_released(self.sysfs, list(addresses), timeout)


def _call_site(mgr: HostdevManager) -> tuple[str, list[PciAddress]]:
    """The public method of ``mgr`` that opened a transaction, and the devices its
    arguments name (PciAddress and HostdevSpec values, alone or in lists).

    Read from the call stack, so that every method that runs a transaction is
    audited under its own name without declaring anything.
    """
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_name
        if (not name.startswith("_") and frame.f_locals.get("self") is mgr
                and callable(getattr(type(mgr), name, None))):
            return name, _named_devices(frame.f_locals.values())
        frame = frame.f_back  # type: ignore[assignment]
    return "transaction", []


def _named_devices(values: Iterable[object]) -> list[PciAddress]:
    found: list[PciAddress] = []
    for value in values:
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, PciAddress):
                found.append(item)
            elif isinstance(item, HostdevSpec):
                found.append(item.address)
    return found


def _changed(before: Lists, after: Lists) -> set[PciAddress]:
    """Addresses whose record differs between ``before`` and ``after``."""
    if after.same_as(before):
        return set()
    changed: set[PciAddress] = set()
    for old, new in ((before.active, after.active), (before.inactive, after.inactive)):
        # Copies of one map know which addresses they changed: only those are
        # looked at (a transaction touches a few records of thousands). And a record
        # left alone is the very same object in both (the copy is shallow).
        keys = old.dirty | new.dirty if new.origin is old.origin else old.keys() | new.keys()
        changed.update(a for a in keys
                       if (was := old.get(a)) is not (now := new.get(a)) and was != now)
    return changed


def _resolve_auto(txn: Transaction, specs: list[HostdevSpec]) -> list[HostdevSpec]:
    """Specs with ``stub_driver="auto"`` turned into the driver chosen for each device."""
    out = []
    for spec in specs:
        if spec.stub_driver == AUTO and spec.managed and txn.sysfs.device_exists(spec.address):
            spec = spec.model_copy(update={"stub_driver": choose_stub(txn.sysfs, spec.address)})
        out.append(spec)
    return out


def _owner(owner: object) -> Owner:
    """``owner`` if it is an :class:`Owner`, else BadInput: the records keep it as it is,
    and anything else there (``"qemu/vm1"``, None) made a state file no later call could
    read."""
    if not isinstance(owner, Owner):
        raise BadInput(f"owner must be an Owner, not {type(owner).__name__} {owner!r:.60}:"
                       " give Owner(driver='qemu', domain='vm1') or Owner.parse('qemu/vm1')")
    return owner


def _specs(specs: Sequence[SpecLike]) -> list[HostdevSpec]:
    if isinstance(specs, str | PciAddress | HostdevSpec) or not isinstance(specs, Iterable):
        # A lone address would be taken one character at a time ("invalid PCI address '0'").
        raise BadInput(f"the devices must be a list of addresses or HostdevSpecs, not"
                       f" {type(specs).__name__} {specs!r:.60}: e.g. ['0000:01:00.0']")
    out = []
    for spec in specs:
        if isinstance(spec, HostdevSpec):
            out.append(spec)
        else:
            out.append(HostdevSpec(address=PciAddress.parse(spec)))
    return out
