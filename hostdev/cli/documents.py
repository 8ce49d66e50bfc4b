"""The JSON documents the commands print, as pydantic models: one place for their
fields and their JSON Schemas (``hostdev list --schema``).

A device's members are the facts :data:`hostdev.linux.device.FIELDS` declares;
:class:`DeviceDocument` gives each its schema type (a test holds the two to the
same fields, order and types). ``hostdev list --json`` is written from the field
declaration without pydantic (see :mod:`hostdev.cli.listing`, the fast path);
``hostdev show --json`` validates :meth:`~hostdev.linux.device.PciDevice.to_dict`
into these models. The schema ids are in :mod:`.schema_ids`.

Every document carries its schema id as its first member, ``schema``; the report
of a command that changes the host is the library's report (:mod:`hostdev.reports`)
with that member added. :data:`DOCUMENTS` names them all for ``hostdev schema NAME``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hostdev.address import PciAddress
from hostdev.cli.schema_ids import (
    ALLOCATE_SCHEMA_ID,
    ASSIGN_SCHEMA_ID,
    BOOT_SCHEMA_ID,
    ERROR_SCHEMA_ID,
    LIST_SCHEMA_ID,
    NODE_SCHEMA_ID,
    PRUNE_SCHEMA_ID,
    RECONCILE_SCHEMA_ID,
    RELEASE_SCHEMA_ID,
    SCHEMAS_SCHEMA_ID,
    SHOW_SCHEMA_ID,
    SRIOV_SCHEMA_ID,
    UNITS_SCHEMA_ID,
    WATCH_SCHEMA_ID,
    WISHES_SCHEMA_ID,
)
from hostdev.ids import Hex16, Hex24
from hostdev.linux.device import PciDevice
from hostdev.linux.hostuse import HostUse
from hostdev.linux.vfio import Holder
from hostdev.reports import (
    AllocationReport,
    NodeResult,
    PersistentReport,
    PrepareReport,
    ReattachReport,
    ReconcileReport,
    SriovReport,
    WatchEvent,
)
from hostdev.state.audit import AUDIT_SCHEMA_ID
from hostdev.state.records import DeviceRecord, Owner
from hostdev.state.wishes import Wishes

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


class VfNetOutput(BaseModel):
    """A NIC VF's settings as its PF reports them (``ip -d link show PF``)."""

    #: The PF's network interface they were read through.
    interface: str
    vf_index: int
    mac: str | None = None
    vlan: int | None = None
    qos: int | None = None
    spoofchk: bool | None = None
    trust: bool | None = None
    link_state: str | None = None
    #: Set when the PF would not tell; the other fields are then None.
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
    #: A NIC VF's network settings (None: not a VF, or its PF carries no interface).
    vf_net: VfNetOutput | None = None
    #: Links of the device that could not be read (one line each).
    warnings: list[str] = []


class _Stamped(BaseModel):
    """Base of the documents that extend a library report: listed last among the
    bases, so that ``schema`` comes first in the JSON."""

    model_config = ConfigDict(populate_by_name=True)

    schema_id: str = Field(alias="schema")


class NodeOutput(_Stamped):
    """What ``hostdev detach``, ``reattach`` and ``reset`` print with ``--json``."""

    schema_id: Literal["hostdev.node/1"] = Field(default=NODE_SCHEMA_ID, alias="schema")
    #: One result per device named, in the order named.
    results: list[NodeResult]


class AssignOutput(PrepareReport, _Stamped):
    """What ``hostdev assign --json`` prints."""

    schema_id: Literal["hostdev.assign/1"] = Field(default=ASSIGN_SCHEMA_ID, alias="schema")


class AllocateOutput(AllocationReport, _Stamped):
    """What ``hostdev assign --count N --json`` prints."""

    schema_id: Literal["hostdev.allocate/1"] = Field(default=ALLOCATE_SCHEMA_ID,
                                                     alias="schema")


class ReleaseOutput(ReattachReport, _Stamped):
    """What ``hostdev release --json`` prints."""

    schema_id: Literal["hostdev.release/1"] = Field(default=RELEASE_SCHEMA_ID, alias="schema")


class PruneOutput(_Stamped):
    """What ``hostdev prune --json`` prints."""

    schema_id: Literal["hostdev.prune/1"] = Field(default=PRUNE_SCHEMA_ID, alias="schema")
    #: Records dropped (device vanished or re-created), sorted by address.
    pruned: list[DeviceRecord]


class SriovOutput(SriovReport, _Stamped):
    """What ``hostdev sriov --json`` prints."""

    schema_id: Literal["hostdev.sriov/1"] = Field(default=SRIOV_SCHEMA_ID, alias="schema")


class ReconcileOutput(ReconcileReport, _Stamped):
    """What ``hostdev reconcile --json`` prints."""

    schema_id: Literal["hostdev.reconcile/1"] = Field(default=RECONCILE_SCHEMA_ID,
                                                      alias="schema")


class BootOutput(PersistentReport, _Stamped):
    """What ``hostdev boot --json`` prints."""

    schema_id: Literal["hostdev.boot/1"] = Field(default=BOOT_SCHEMA_ID, alias="schema")


class WishesOutput(Wishes, _Stamped):
    """What ``hostdev wishes --json`` prints: the wishes file's content."""

    schema_id: Literal["hostdev.wishes/1"] = Field(default=WISHES_SCHEMA_ID, alias="schema")


class WatchOutput(WatchEvent, _Stamped):
    """One line of ``hostdev watch --json``: an event acted on."""

    schema_id: Literal["hostdev.watch/1"] = Field(default=WATCH_SCHEMA_ID, alias="schema")


class UnitsOutput(BaseModel):
    """What ``hostdev install-units --json`` prints."""

    model_config = ConfigDict(populate_by_name=True)

    schema_id: Literal["hostdev.units/1"] = Field(default=UNITS_SCHEMA_ID, alias="schema")
    #: The files written (the systemd unit, the udev rule), absolute paths.
    written: list[str]
    #: The command to run on the system the files are for.
    next_step: str


class SchemasOutput(BaseModel):
    """What ``hostdev schema --json`` prints: each document name and its schema id."""

    model_config = ConfigDict(populate_by_name=True)

    schema_id: Literal["hostdev.schemas/1"] = Field(default=SCHEMAS_SCHEMA_ID, alias="schema")
    documents: dict[str, str]


class ErrorInfo(BaseModel):
    """Why a command failed."""

    #: The error's class (:mod:`hostdev.errors`), ``UsageError`` for a command line
    #: that does not parse, ``Interrupted`` for ^C.
    type: str
    #: The one-line message also printed on stderr.
    message: str
    #: The command's exit code (2: bad input, 1: any other error).
    exit_code: int
    #: The PCI device the error concerns, when there is one.
    device: PciAddress | None = None


class ErrorOutput(BaseModel):
    """What any command prints on stdout with ``--json`` when it fails (written
    without pydantic by :mod:`hostdev.cli.main`; a test holds the two together)."""

    model_config = ConfigDict(populate_by_name=True)

    schema_id: Literal["hostdev.error/1"] = Field(default=ERROR_SCHEMA_ID, alias="schema")
    error: ErrorInfo
    #: What a command acting on several devices in turn (``detach A B``) did before
    #: the error, as the document it prints on success (``hostdev.node/1``); else None.
    done: dict[str, Any] | None = None


class AuditError(BaseModel):
    """Why an audited transaction failed."""

    type: str
    message: str


class AuditEntry(BaseModel):
    """One line of the audit log (written without pydantic by :mod:`hostdev.state.audit`)."""

    model_config = ConfigDict(populate_by_name=True)

    schema_id: Literal["hostdev.audit/1"] = Field(default=AUDIT_SCHEMA_ID, alias="schema")
    #: When the transaction ended (UTC, ISO 8601).
    time: str
    pid: int
    uid: int
    #: The user name of ``uid``, None when it has none.
    user: str | None
    #: The manager method (``node_detach``, ``prepare``, ``set_num_vfs``...).
    verb: str
    #: Devices the call named or changed, sorted.
    devices: list[PciAddress]
    result: Literal["ok", "error"]
    #: Set when ``result`` is ``error``.
    error: AuditError | None = None


#: Every document, by the name ``hostdev schema NAME`` takes.
DOCUMENTS: dict[str, type[BaseModel]] = {
    "list": ListOutput,
    "show": ShowOutput,
    "node": NodeOutput,
    "assign": AssignOutput,
    "allocate": AllocateOutput,
    "release": ReleaseOutput,
    "prune": PruneOutput,
    "sriov": SriovOutput,
    "reconcile": ReconcileOutput,
    "boot": BootOutput,
    "wishes": WishesOutput,
    "watch": WatchOutput,
    "units": UnitsOutput,
    "schemas": SchemasOutput,
    "error": ErrorOutput,
    "audit": AuditEntry,
}


def schema_id_of(model: type[BaseModel]) -> str:
    """The schema id a document model stamps on what it prints."""
    default = model.model_fields["schema_id"].default
    assert isinstance(default, str)
    return default


def json_schema(name: str) -> dict[str, object]:
    """The JSON Schema of document ``name`` (a key of :data:`DOCUMENTS`)."""
    return DOCUMENTS[name].model_json_schema(by_alias=True)
