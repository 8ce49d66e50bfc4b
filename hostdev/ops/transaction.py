"""One manager transaction: a working copy of the lists and an undo log.

Every step that changes the host first pushes how to undo it. On failure the
undo log runs backwards; the lists are then saved as they were, plus a record
for every device whose undo failed, so nothing we bound to a stub is left
untracked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hostdev.address import PciAddress
from hostdev.linux.binding import Guard, current_driver
from hostdev.linux.device import PciDevice
from hostdev.linux.sysfs import Sysfs
from hostdev.state.journal import DeviceBefore, Intent, VfCountBefore, VfNetBefore
from hostdev.state.lists import Lists
from hostdev.state.records import DeviceRecord

log = logging.getLogger("hostdev")


@dataclass
class UndoStep:
    """How to take back one change to the host."""

    what: str
    run: Callable[[], object]
    #: Tracked (inactive) if the undo fails, so a later call can finish the job.
    keep_if_failed: DeviceRecord | None = None
    #: The device the undo acts on: skipped while a write of ours to it is still
    #: blocked in the kernel (touching it would block too; recovery finishes it).
    address: PciAddress | None = None


@dataclass
class Transaction:
    """State of one transaction while it runs."""

    sysfs: Sysfs
    lists: Lists
    guard: Guard
    #: Writes the intent journal (set by the manager).
    record_intent: Callable[[Intent], None] = lambda intent: None
    undo: list[UndoStep] = field(default_factory=list)
    intent: Intent | None = None
    #: Loads a missing stub driver's module (None: refuse instead; set by the manager).
    module_loader: Callable[[str], None] | None = None

    def declare(self, operation: str, devices: Sequence[PciDevice | PciAddress],
                vf_counts: Sequence[VfCountBefore] = (),
                vf_nets: Sequence[VfNetBefore] = ()) -> None:
        """Journal the devices this transaction may change, before changing any.

        Called once per transaction, after its checks and before its first
        sysfs write, so a crash leaves enough behind to put the host back. A
        device given by address alone has its driver and override read here.
        ``vf_counts``: PF VF counts (and autoprobe settings) the transaction will
        change, as they are; ``vf_nets``: VF network settings, as they are.
        """
        if not devices and not vf_counts and not vf_nets:
            return
        self.intent = Intent(
            operation=operation,
            devices=[self._before(d) for d in devices],
            vf_counts=list(vf_counts),
            vf_nets=list(vf_nets),
        )
        self.record_intent(self.intent)

    def declare_new(self, devices: Sequence[PciDevice]) -> None:
        """Journal devices the transaction created after it declared (the VFs of a
        count it set) before changing them further, so that recovery puts them
        back or tracks them like the devices declared first."""
        assert self.intent is not None, "declare() comes first"
        self.intent.devices.extend(self._before(d) for d in devices)
        self.record_intent(self.intent)

    def _before(self, device: PciDevice | PciAddress) -> DeviceBefore:
        if isinstance(device, PciAddress):
            return DeviceBefore(address=device, driver=current_driver(self.sysfs, device),
                                override=self.sysfs.read_override(device),
                                identity=self.sysfs.identity(device))
        return DeviceBefore(address=device.address, driver=device.driver,
                            override=device.driver_override,
                            identity=self.sysfs.identity(device.address))

    def push(self, step: UndoStep) -> None:
        """Remember how to undo the change about to be made."""
        self.undo.append(step)

    def rollback(self, original: Lists) -> tuple[Lists, list[str]]:
        """Undo every step in reverse; return the lists to save and what failed.

        When a step that keeps its device tracked fails, the device's earlier steps
        are not tried: the record kept says where it is, and moving it further (say,
        off its stub with a guest's network settings still on it) would lose that.
        """
        lists = original.copy()
        failures: list[str] = []
        kept: set[PciAddress] = set()
        for step in reversed(self.undo):
            if step.address is not None and step.address in kept:
                log.warning("rollback: not trying to %s: an undo of the device failed"
                            " before, it stays tracked as it is", step.what)
                continue
            try:
                if step.address is not None and step.address in self.sysfs.fenced:
                    log.warning("rollback: not trying to %s: %s", step.what,
                                self.sysfs.fenced[step.address])
                    record = step.keep_if_failed
                else:
                    step.run()
                    continue
            except Exception as exc:  # keep undoing the rest whatever happened
                failures.append(f"{step.what}: {exc}")
                log.error("rollback: could not %s: %s", step.what, exc)
                record = step.keep_if_failed
            if record is not None and record.address not in lists.active:
                lists.inactive[record.address] = record
                kept.add(record.address)
        self.undo.clear()
        return lists, failures


