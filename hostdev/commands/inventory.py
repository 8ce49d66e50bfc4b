"""``hostdev list`` and ``hostdev show``: read-only inventory commands."""

from __future__ import annotations

import argparse
import sys
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from hostdev.address import PciAddress
from hostdev.commands import listing
from hostdev.lists import Lists
from hostdev.pci import PciDevice, read_device
from hostdev.records import Owner
from hostdev.render import device_details
from hostdev.stubs import is_vfio_driver
from hostdev.sysfs import Sysfs
from hostdev.vfio import Holder, holders

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
    """Print the host's functions as a grouped table or JSON (see :mod:`.listing`)."""
    return listing.cmd_list(args)


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
    listing.fence_blocked(sysfs, args)  # DeviceBusy rather than a read that waits
    dev = read_device(sysfs, address)
    lists, note = listing.peek_state(args)
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
