"""``hostdev list`` and ``hostdev show``: read-only inventory commands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from hostdev.address import PciAddress
from hostdev.errors import HostdevError
from hostdev.pci import PciDevice, list_devices, read_device
from hostdev.records import Owner
from hostdev.render import BASE_COLUMNS, Column, device_details, status_table
from hostdev.state import Lists, StateStore, default_state_dir
from hostdev.stubs import is_vfio_driver
from hostdev.sysfs import Sysfs
from hostdev.vfio import Holder, holders


def _owner_text(dev: PciDevice) -> str:
    owner = getattr(dev, "owner", None)
    return "-" if owner is None else f"{owner.driver}/{owner.domain}"


LIST_COLUMNS: list[Column] = [
    ("LIST", lambda d: str(getattr(d, "membership", "host"))),
    ("OWNER", _owner_text),
]

LIST_SCHEMA_ID: Final = "hostdev.list/1"
SHOW_SCHEMA_ID: Final = "hostdev.show/1"


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
    devices: list[ListedDevice]


class ShowOutput(BaseModel):
    """What ``hostdev show --json`` prints."""

    model_config = ConfigDict(populate_by_name=True)

    schema_id: Literal["hostdev.show/1"] = Field(default=SHOW_SCHEMA_ID, alias="schema")
    device: ListedDevice
    holders: list[Holder] = []
    group_members: list[PciDevice]
    vfs: list[PciDevice]


def cmd_list(args: argparse.Namespace) -> int:
    """Print the host's functions as a grouped table or JSON."""
    if args.schema:
        print(json.dumps(ListOutput.model_json_schema(by_alias=True), indent=2))
        return 0
    sysfs = Sysfs(args.root)
    devices = list_devices(sysfs)
    lists, note = _peek_state(args)
    listed = [_listed(d, lists) for d in devices]
    if note:
        print(f"hostdev: note: {note}", file=sys.stderr)
    if args.json:
        out = ListOutput(root=str(args.root), state_note=note, devices=listed)
        sys.stdout.write(out.model_dump_json(by_alias=True, indent=2) + "\n")
    else:
        sys.stdout.write(status_table(listed, [*BASE_COLUMNS, *LIST_COLUMNS]))
    return 0


def _peek_state(args: argparse.Namespace) -> tuple[Lists | None, str | None]:
    """The lists if they can be read without writing anything, else a note why not."""
    try:
        directory = args.state_dir or default_state_dir(args.root)
        return StateStore(directory).peek(), None
    except HostdevError as exc:
        return None, f"lists not shown: {exc}"
    except OSError as exc:
        return None, f"lists not shown: cannot read the state: {exc.strerror}"


def _listed(dev: PciDevice, lists: Lists | None) -> ListedDevice:
    membership: Membership = "host"
    owner = None
    if lists is None:
        membership = "unknown"
    elif (record := lists.active.get(dev.address)) is not None:
        membership, owner = "active", record.owner
    elif dev.address in lists.inactive:
        membership = "inactive"
    return ListedDevice(**dict(dev), membership=membership, owner=owner)


def cmd_show(args: argparse.Namespace) -> int:
    """Print one device with its IOMMU group members and VFs."""
    address = PciAddress.parse(args.address)
    sysfs = Sysfs(args.root)
    sysfs.check_tree()
    dev = read_device(sysfs, address)
    lists, note = _peek_state(args)
    listed = _listed(dev, lists)
    found_holders = holders(sysfs, address) if dev.vfio_dev or is_vfio_driver(dev.driver) else []
    members = [_maybe(sysfs, m) for m in dev.iommu_group_members if m != dev.address]
    vfs = [_maybe(sysfs, v) for v in (dev.sriov.vfs if dev.sriov else [])]
    found_members = [m for m in members if m is not None]
    found_vfs = [v for v in vfs if v is not None]
    if args.json:
        out = ShowOutput(device=listed, holders=found_holders, group_members=found_members,
                         vfs=found_vfs)
        sys.stdout.write(out.model_dump_json(by_alias=True, indent=2) + "\n")
    else:
        extra = [("list", note or listed.membership)]
        if listed.owner is not None:
            extra.append(("owner", f"{listed.owner.driver}/{listed.owner.domain}"))
        if found_holders:
            extra.append(("held by", "; ".join(str(h) for h in found_holders)))
        sys.stdout.write(device_details(dev, found_members, found_vfs, extra))
    return 0


def _maybe(sysfs: Sysfs, address: PciAddress) -> PciDevice | None:
    from hostdev.errors import DeviceNotFound

    try:
        return read_device(sysfs, address)
    except DeviceNotFound:
        return None
