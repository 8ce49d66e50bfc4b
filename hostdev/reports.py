"""What each manager call returns: one home for every report.

Plain pydantic models, so that a caller can keep them, compare them, or dump
them as JSON (``report.model_dump_json()``). Each is built on first use
(``defer_build``): a command pays only for the reports it returns.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hostdev.address import PciAddress
from hostdev.state.records import DeviceRecord, Owner


class ReattachFailure(BaseModel):
    """A device reattach could not finish, and why."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    address: PciAddress
    reason: str


class ReattachReport(BaseModel):
    """Outcome of :meth:`HostdevManager.reattach`."""

    model_config = ConfigDict(defer_build=True)

    #: Managed devices given back to the host (off the stub).
    reattached: list[PciAddress] = Field(default_factory=list)
    #: The driver each reattached device is bound to now, read after the probe.
    drivers: dict[PciAddress, str | None] = Field(default_factory=dict)
    #: Devices that stay on the stub in the inactive list (unmanaged, or on the
    #: stub before we took them).
    kept_on_stub: list[PciAddress] = Field(default_factory=list)
    #: Records dropped because their device vanished or was re-created.
    pruned: list[DeviceRecord] = Field(default_factory=list)
    failed: list[ReattachFailure] = Field(default_factory=list)
    #: Things worth a look that did not fail the device (e.g. a different driver came back).
    warnings: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing failed."""
        return not self.failed


class PrepareReport(BaseModel):
    """Outcome of :meth:`HostdevManager.prepare`."""

    model_config = ConfigDict(defer_build=True)

    prepared: list[DeviceRecord] = Field(default_factory=list)
    #: Stale records (device re-created at the same address) dropped on the way.
    pruned: list[DeviceRecord] = Field(default_factory=list)


class AllocationReport(PrepareReport):
    """Outcome of :meth:`HostdevManager.allocate`: the VFs chosen, prepared as
    :class:`PrepareReport` says."""

    #: The VFs chosen, in preference order (``prepared`` holds their records).
    chosen: list[PciAddress] = Field(default_factory=list)
    #: How many VFs matched the filters, and how many of them were free.
    candidates: int = 0
    free: int = 0
    #: Chosen VFs that are not on the NUMA node asked for (too few free there).
    off_node: list[PciAddress] = Field(default_factory=list)


class UpdateReport(BaseModel):
    """Outcome of :meth:`HostdevManager.update_active`."""

    model_config = ConfigDict(defer_build=True)

    active: list[DeviceRecord] = Field(default_factory=list)
    pruned: list[DeviceRecord] = Field(default_factory=list)


class NodeResult(BaseModel):
    """Outcome of a node-level verb."""

    model_config = ConfigDict(defer_build=True)

    address: PciAddress
    #: The driver bound when the verb finished.
    driver: str | None
    #: What happened, in a few words (``detached to vfio-pci``, ``already on i40e``...).
    action: str
    pruned: list[DeviceRecord] = []


class SriovReport(BaseModel):
    """Outcome of :meth:`HostdevManager.set_num_vfs`."""

    model_config = ConfigDict(defer_build=True)

    pf: PciAddress
    before: int
    after: int
    #: VFs that exist after the change, in index order.
    vfs: list[PciAddress] = Field(default_factory=list)
    #: Records dropped because their VF vanished or was re-created.
    pruned: list[DeviceRecord] = Field(default_factory=list)
    #: Active records dropped only because ``force`` was given: guests lost these VFs.
    orphaned: list[DeviceRecord] = Field(default_factory=list)
    went_through_zero: bool = False
    #: New VFs created straight onto a stub driver and tracked inactive.
    detached: list[NodeResult] = Field(default_factory=list)


class DriverChange(BaseModel):
    """A tracked device found on another driver than its record says."""

    model_config = ConfigDict(defer_build=True)

    address: PciAddress
    expected: str | None
    found: str | None


class ReconcileReport(BaseModel):
    """Outcome of :meth:`HostdevManager.reconcile`."""

    model_config = ConfigDict(defer_build=True)

    #: What an unfinished transaction left, and what was done about it.
    recovered: list[str] = Field(default_factory=list)
    #: What recovery could not put back (the command exits 1).
    failed: list[str] = Field(default_factory=list)
    #: Records dropped because the device vanished.
    pruned: list[DeviceRecord] = Field(default_factory=list)
    #: Records dropped because a new device sits at the address (re-created VF).
    stale: list[DeviceRecord] = Field(default_factory=list)
    #: Tracked devices whose driver changed behind our back (reported, not changed).
    driver_changed: list[DriverChange] = Field(default_factory=list)
    #: Tracked devices an earlier give-back left with no driver (their host
    #: driver did not take them); a node reattach finishes the job.
    unfinished: list[DeviceRecord] = Field(default_factory=list)
    #: Writes of ours still blocked in the kernel until a VFIO user lets go; their
    #: devices are left alone, and recorded by the first call after they finish.
    blocked: list[str] = Field(default_factory=list)
    #: Tracked VFs whose network settings (MAC, VLAN...) are not what their record
    #: says: changed behind our back (reported, not changed).
    net_drift: list[str] = Field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Anything was fixed (a second reconcile should report False)."""
        return bool(self.recovered or self.failed or self.pruned or self.stale)


class WatchEvent(BaseModel):
    """One thing :meth:`HostdevManager.watch` acted on (each is one line of its log)."""

    model_config = ConfigDict(frozen=True)

    #: ``pruned``: the device vanished, its record was dropped; ``stale``: another
    #: device sits at the address now, the record was dropped; ``drift``: a tracked
    #: device's driver changed behind hostdev's back (reported, not changed);
    #: ``wish``: an added device was given its persistent wish; ``resync``: the
    #: kernel dropped uevents (or a batch could not take the state lock), so the
    #: whole host was reconciled.
    kind: Literal["pruned", "stale", "drift", "wish", "resync"]
    address: PciAddress | None = None
    #: Who held the device (an active record's owner; None for an inactive one).
    owner: Owner | None = None
    #: What the kernel said about the address since the last look, oldest first
    #: (``add``, ``remove``, ``bind``, ``unbind``, ``change``); empty when found by
    #: the reconcile at start or after lost events.
    uevents: list[str] = Field(default_factory=list)
    #: The driver the record expects, and the one bound now (``drift``).
    expected: str | None = None
    found: str | None = None
    #: The log line.
    message: str

class WishOutcome(BaseModel):
    """What became of one persistent wish."""

    address: PciAddress
    #: The wish, in a few words (``8 VFs``, ``on vfio-pci``).
    wish: str
    #: What was done, found, or what stood in the way.
    detail: str


class PersistentReport(BaseModel):
    """Outcome of :meth:`HostdevManager.apply_persistent`: every wish in one list."""

    #: Wishes applied now.
    done: list[WishOutcome] = Field(default_factory=list)
    #: Wishes the host already matched (nothing written).
    already: list[WishOutcome] = Field(default_factory=list)
    #: Wishes whose device is not on the host (yet): applied when it appears.
    missing: list[WishOutcome] = Field(default_factory=list)
    #: Wishes that could not be applied (another device at the address, a device
    #: the host uses, a VFIO holder, a kernel refusal...): nothing is forced.
    failed: list[WishOutcome] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing failed (a missing device is not a failure: it gets its wish later)."""
        return not self.failed

    @property
    def changed(self) -> bool:
        """Something was applied (a second run right after reports False)."""
        return bool(self.done)
