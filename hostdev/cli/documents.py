"""The JSON documents the commands print, as pydantic models: one place for their
fields and their JSON Schemas (``hostdev list --schema``).

``hostdev list --json`` itself is written without pydantic (see
:mod:`hostdev.cli.listing`, the fast path); a test checks it matches
:class:`ListOutput` field for field. The schema ids are in :mod:`.schema_ids`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hostdev.cli.schema_ids import LIST_SCHEMA_ID, SHOW_SCHEMA_ID
from hostdev.linux.device import PciDevice
from hostdev.linux.hostuse import HostUse
from hostdev.linux.vfio import Holder
from hostdev.state.records import Owner

Membership = Literal["active", "inactive", "host", "unknown"]


class ListedDevice(PciDevice):
    """A device with where the manager has it: ``list`` and ``owner``."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    membership: Membership = Field(default="host", alias="list")
    owner: Owner | None = None


class ListOutput(BaseModel):
    """What ``hostdev list --json`` prints."""

    model_config = ConfigDict(populate_by_name=True)

    schema_id: Literal["hostdev.list/1"] = Field(default=LIST_SCHEMA_ID, alias="schema")
    root: str
    #: Why ``list`` is ``unknown`` (state not readable), else None.
    state_note: str | None = None
    #: False when the host has PCI devices but no IOMMU group (IOMMU off).
    iommu_enabled: bool = True
    #: Entries that could not be read as they should (one line each): a name in
    #: /sys/bus/pci/devices that is not a PCI address, a broken physfn/virtfn link.
    warnings: list[str] = []
    devices: list[ListedDevice]


class VpdOutput(BaseModel):
    """The device's Vital Product Data, or why it could not be shown."""

    #: The identifier string (product name).
    name: str | None = None
    part_number: str | None = None
    serial_number: str | None = None
    #: Every VPD-R keyword (``PN``, ``EC``, ``SN``, ``V0``...), checksum left out.
    read_only: dict[str, str] = {}
    #: Every VPD-W keyword.
    read_write: dict[str, str] = {}
    #: The VPD checksum was right (None: the VPD has none).
    checksum_ok: bool | None = None
    #: Set when the VPD is malformed or cannot be read; the other fields are then empty.
    error: str | None = None


class ShowOutput(BaseModel):
    """What ``hostdev show --json`` prints."""

    model_config = ConfigDict(populate_by_name=True)

    schema_id: Literal["hostdev.show/1"] = Field(default=SHOW_SCHEMA_ID, alias="schema")
    device: ListedDevice
    holders: list[Holder] = []
    #: What the host uses through the device (detaching it needs ``--force``).
    host_use: list[HostUse] = []
    group_members: list[PciDevice]
    vfs: list[PciDevice]
    #: None when the device has no ``vpd`` attribute (most devices).
    vpd: VpdOutput | None = None
    #: Links of the device that could not be read (one line each).
    warnings: list[str] = []
