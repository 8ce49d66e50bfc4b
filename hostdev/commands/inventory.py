"""``hostdev list`` and ``hostdev show``: read-only inventory commands."""

from __future__ import annotations

import argparse
import json
import sys

from pydantic import BaseModel, ConfigDict, Field

from hostdev.address import PciAddress
from hostdev.pci import PciDevice, list_devices, read_device
from hostdev.render import device_details, status_table
from hostdev.sysfs import Sysfs

LIST_SCHEMA_ID = "hostdev.list/1"
SHOW_SCHEMA_ID = "hostdev.show/1"


class ListOutput(BaseModel):
    """What ``hostdev list --json`` prints."""

    model_config = ConfigDict(populate_by_name=True)

    schema_id: str = Field(default=LIST_SCHEMA_ID, alias="schema")
    root: str
    devices: list[PciDevice]


class ShowOutput(BaseModel):
    """What ``hostdev show --json`` prints."""

    model_config = ConfigDict(populate_by_name=True)

    schema_id: str = Field(default=SHOW_SCHEMA_ID, alias="schema")
    device: PciDevice
    group_members: list[PciDevice]
    vfs: list[PciDevice]


def cmd_list(args: argparse.Namespace) -> int:
    """Print the host's functions as a grouped table or JSON."""
    if args.schema:
        print(json.dumps(ListOutput.model_json_schema(by_alias=True), indent=2))
        return 0
    sysfs = Sysfs(args.root)
    devices = list_devices(sysfs)
    if args.json:
        out = ListOutput(root=str(args.root), devices=devices)
        sys.stdout.write(out.model_dump_json(by_alias=True, indent=2) + "\n")
    else:
        sys.stdout.write(status_table(devices))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print one device with its IOMMU group members and VFs."""
    address = PciAddress.parse(args.address)
    sysfs = Sysfs(args.root)
    sysfs.check_tree()
    dev = read_device(sysfs, address)
    members = [_maybe(sysfs, m) for m in dev.iommu_group_members if m != dev.address]
    vfs = [_maybe(sysfs, v) for v in (dev.sriov.vfs if dev.sriov else [])]
    found_members = [m for m in members if m is not None]
    found_vfs = [v for v in vfs if v is not None]
    if args.json:
        out = ShowOutput(device=dev, group_members=found_members, vfs=found_vfs)
        sys.stdout.write(out.model_dump_json(by_alias=True, indent=2) + "\n")
    else:
        sys.stdout.write(device_details(dev, found_members, found_vfs))
    return 0


def _maybe(sysfs: Sysfs, address: PciAddress) -> PciDevice | None:
    from hostdev.errors import DeviceNotFound

    try:
        return read_device(sysfs, address)
    except DeviceNotFound:
        return None
