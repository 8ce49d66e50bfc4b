"""The JSON documents the commands print, as pydantic models: one place for their
fields and their JSON Schemas (``hostdev list --schema``).

A device's members are the facts :data:`hostdev.linux.device.FIELDS` declares;
:class:`DeviceDocument` gives each its schema type (a test holds the two to the
same fields, order and types). ``hostdev list --json`` is written from the field
declaration without pydantic (see :mod:`hostdev.cli.listing`, the fast path);
``hostdev show --json`` validates :meth:`~hostdev.linux.device.PciDevice.to_dict`
into these models. The schema ids are in :mod:`.schema_ids`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hostdev.address import PciAddress
from hostdev.cli.schema_ids import LIST_SCHEMA_ID, SHOW_SCHEMA_ID
from hostdev.ids import Hex16, Hex24
from hostdev.linux.device import PciDevice
from hostdev.linux.hostuse import HostUse
from hostdev.linux.vfio import Holder
from hostdev.state.records import Owner

Membership = Literal["active", "inactive", "host", "unknown"]


class SriovInfo(BaseModel):
    """SR-IOV facts of a physical function."""

    model_config = ConfigDict(frozen=True)

    totalvfs: int
    numvfs: int
    #: VF addresses from ``virtfn0``, ``virtfn1``... in index order.
    vfs: list[PciAddress]


class VfInfo(BaseModel):
    """What a virtual function knows of its parent."""

    model_config = ConfigDict(frozen=True)

    pf: PciAddress
    #: Position in the PF's ``virtfnN`` links; None if the PF no longer lists it.
    index: int | None


class DeviceDocument(BaseModel):
    """One PCI function as sysfs showed it when read."""

    # A PciDevice in JSON: one member per field of hostdev.linux.device.FIELDS, in
    # its order (tests/inventory/test_device_model.py holds the two together).

    model_config = ConfigDict(frozen=True, title="PciDevice")

    address: PciAddress
    vendor: Hex16
    device: Hex16
    subsystem_vendor: Hex16 | None = None
    subsystem_device: Hex16 | None = None
    class_code: Hex24
    driver: str | None = None
    driver_override: str | None = None
    #: Network interfaces the function carries (the names under its ``net/``), sorted.
    netdevs: list[str] = []
    iommu_group: int | None = None
    #: Every function of the IOMMU group, this one included, sorted.
    iommu_group_members: list[PciAddress] = []
    numa_node: int | None = None
    is_bridge: bool = False
    sriov: SriovInfo | None = None
    vf: VfInfo | None = None
    #: Enabled reset methods in priority order; None when the device has no ``reset``.
    reset_methods: list[str] | None = None
    #: A ``vfio-dev/`` directory exists (bound to vfio-pci or a vfio variant driver).
    vfio_dev: bool = False

    @classmethod
    def of(cls, dev: PciDevice) -> DeviceDocument:
        """The document of ``dev``."""
        return cls.model_validate(dev.to_dict())


class ListedDevice(DeviceDocument):
    """A device with where the manager has it: ``list`` and ``owner``."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, title="ListedDevice")

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
    group_members: list[DeviceDocument]
    vfs: list[DeviceDocument]
    #: None when the device has no ``vpd`` attribute (most devices).
    vpd: VpdOutput | None = None
    #: Links of the device that could not be read (one line each).
    warnings: list[str] = []
