"""The intent journal: what a transaction is about to change, written before it does.

A transaction that will write to sysfs first records each device it may touch
(with the driver, override and kernel identity it had, and for a NIC VF the
network settings it will change through the PF) in ``intent.json``, then
acts, then saves the state file stamped with its id, then deletes the journal.
A manager that finds a journal whose id is not the state file's last
transaction knows the process died mid-way, and puts those devices back as
they were before anything else happens.

A write that can block in the kernel (an unbind or a VF removal waiting for a
VFIO user) is journaled with its helper process. A caller that stopped waiting
for it leaves the journal in place (with only such writes) after its
transaction: while the helper runs, those devices are left alone; once it has
exited, the next manager records where they ended up.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hostdev.address import PciAddress
from hostdev.errors import StateCorrupt
from hostdev.state import files as statedir
from hostdev.state.records import (
    IDENTITY_KEYS,
    KernelDriverName,
    OverrideValue,
    PrintableText,
    VfNetValues,
)

INTENT_NAME = "intent.json"
#: A VF count or index: SR-IOV counts VFs in 16 bits (a journal holding more is damaged).
VfCount = Annotated[int, Field(ge=0, le=0xFFFF)]


class DeviceBefore(BaseModel):
    """A device as it was before the transaction touched it."""

    model_config = ConfigDict(defer_build=True)

    address: PciAddress
    driver: KernelDriverName | None
    override: OverrideValue | None
    identity: int | None = Field(validation_alias=IDENTITY_KEYS)


class VfCountBefore(BaseModel):
    """A PF's VF count before the transaction changed it."""

    model_config = ConfigDict(defer_build=True)

    pf: PciAddress
    count: VfCount
    target: VfCount
    #: The PF's ``sriov_drivers_autoprobe`` before the transaction turned it off (to
    #: create VFs straight onto a stub); None: not touched.
    autoprobe: bool | None = None


class VfNetBefore(BaseModel):
    """A VF's network settings before the transaction changed them through its PF."""

    model_config = ConfigDict(defer_build=True)

    address: PciAddress
    pf: PciAddress
    index: VfCount
    #: Kernel identity of the VF when recorded: a re-created VF starts from the defaults.
    identity: int | None = Field(validation_alias=IDENTITY_KEYS)
    values: VfNetValues


class PendingWrite(BaseModel):
    """A write made by a helper process that may still be blocked in the kernel.

    Journaled as soon as the helper runs, so that even a caller killed while
    waiting leaves it behind. While ``pid`` (started at ``start``) runs, the
    kernel holds the lock of ``devices``: nobody may touch them. ``gave_up``:
    the caller stopped waiting, so the next manager records where the devices
    ended up instead of undoing anything. ``pidns``: the PID namespace of
    ``pid`` (a process in another one cannot tell from /proc whether it runs).
    """

    model_config = ConfigDict(defer_build=True)

    path: PrintableText
    value: str
    devices: list[PciAddress] = Field(min_length=1)
    pid: int
    start: int | None
    pidns: PrintableText | None = None
    gave_up: bool = False


class Intent(BaseModel):
    """One unfinished transaction."""

    model_config = ConfigDict(defer_build=True)

    format: Literal["hostdev-intent"] = "hostdev-intent"
    version: Literal[1] = 1
    transaction: PrintableText = Field(default_factory=lambda: uuid.uuid4().hex)
    operation: Annotated[PrintableText, Field(min_length=1, max_length=64)]
    pid: int = Field(default_factory=os.getpid)
    devices: list[DeviceBefore] = Field(default_factory=list)
    vf_counts: list[VfCountBefore] = Field(default_factory=list)
    vf_nets: list[VfNetBefore] = Field(default_factory=list)
    pending: list[PendingWrite] = Field(default_factory=list)


class Journal:
    """``intent.json`` in the state directory."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / INTENT_NAME

    def write(self, intent: Intent) -> None:
        """Atomically replace the journal with ``intent`` (fsynced, directory
        too); StateWriteFailed, with no journal written, when the disk refuses."""
        statedir.replace_file(self.path, intent.model_dump_json().encode(), "intent journal")

    def read(self) -> Intent | None:
        """The unfinished intent, if any (the same checks as the state file's)."""
        found = statedir.read_file(self.path, "intent journal")
        if found is None:
            return None
        doc = statedir.parse_json(found[0], self.path, "intent journal")
        try:
            return Intent.model_validate(doc)
        except ValidationError as exc:
            raise StateCorrupt(
                f"intent journal {self.path} is damaged {statedir.damage(exc.errors())}; it"
                " was left as it is: check the devices it names by hand, then move it aside"
            ) from None

    def clear(self) -> None:
        """Delete the journal (the transaction is complete or undone).

        A failure is logged, not raised: a journal left behind whose transaction
        is the state file's last one is removed by the next transaction, and one
        of an undone transaction names devices that are already back, which
        recovery leaves alone.
        """
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            import logging

            logging.getLogger("hostdev").warning("cannot remove intent journal %s: %s",
                                                 self.path, exc.strerror)
