"""``hostdev list`` and ``hostdev show``: read-only inventory commands."""

from __future__ import annotations

import argparse
import sys

from hostdev.address import PciAddress
from hostdev.cli import listing
from hostdev.cli.documents import (
    DeviceDocument,
    ListedDevice,
    ShowOutput,
    VfNetOutput,
    VpdOutput,
)
from hostdev.cli.tables import device_details
from hostdev.errors import HostdevError
from hostdev.linux.device import PciDevice
from hostdev.linux.drivers import is_vfio_driver
from hostdev.linux.hostuse import host_uses
from hostdev.linux.scan import read_device
from hostdev.linux.sysfs import Sysfs
from hostdev.linux.vfio import holders
from hostdev.state.lists import Lists


def _listed(dev: PciDevice, lists: Lists | None) -> ListedDevice:
    membership, owner = listing.placement(dev.address, lists)
    return ListedDevice.model_validate({**dev.to_dict(), "list": membership, "owner": owner})


def cmd_show(args: argparse.Namespace) -> int:
    """Print one device with its IOMMU group members and VFs."""
    address = PciAddress.parse(args.address)
    sysfs = Sysfs(args.root)
    sysfs.check_tree()
    listing.fence_blocked(sysfs, args)  # DeviceBusy rather than a read that waits
    warnings: list[str] = []
    dev = read_device(sysfs, address, warnings)
    vpd = read_vpd(sysfs, address)
    lists, note = listing.peek_state(args)
    listed = _listed(dev, lists)  # validated here: a fact the schema lacks fails loudly
    found_holders = holders(sysfs, address) if dev.vfio_dev or is_vfio_driver(dev.driver) else []
    members = [_maybe(sysfs, m) for m in dev.iommu_group_members if m != dev.address]
    vfs = [_maybe(sysfs, v) for v in (dev.sriov.vfs if dev.sriov else [])]
    uses = host_uses(sysfs, address)
    found_members = [m for m in members if m is not None]
    found_vfs = [v for v in vfs if v is not None]
    net = read_vf_net(sysfs, dev)
    if args.json:
        out = ShowOutput(device=listed, holders=found_holders, host_use=uses,
                         group_members=[DeviceDocument.of(m) for m in found_members],
                         vfs=[DeviceDocument.of(v) for v in found_vfs], vpd=vpd,
                         vf_net=net, warnings=warnings)
        sys.stdout.write(out.model_dump_json(by_alias=True, indent=2) + "\n")
    else:
        for line in [] if getattr(args, "quiet", False) else warnings:
            print(f"hostdev: warning: {line}", file=sys.stderr)
        from hostdev.linux.pciids import load_pci_ids

        name = load_pci_ids(args.root).name(dev.vendor, dev.device)
        extra = [("name", name)] if name is not None else []
        extra.append(("list", note or listed.membership))
        if listed.owner is not None:
            extra.append(("owner", f"{listed.owner.driver}/{listed.owner.domain}"))
        if found_holders:
            extra.append(("held by", "; ".join(str(h) for h in found_holders)))
        if uses:
            extra.append(("host uses", "; ".join(str(u) for u in uses)))
        extra.extend(_vpd_facts(vpd))
        extra.extend(_net_facts(net))
        sys.stdout.write(device_details(dev, found_members, found_vfs, extra))
    return 0


def read_vpd(sysfs: Sysfs, address: PciAddress) -> VpdOutput | None:
    """The device's VPD, parsed; None when it has no ``vpd`` attribute.

    Malformed or unreadable VPD (non-root, a device that does not answer) is
    returned with ``error`` set: it is shown as such, never raised.
    """
    from hostdev.linux.vpd import MalformedVpd, parse_vpd

    path = sysfs.device_path(address, "vpd")
    if not sysfs.exists(path):
        return None
    try:
        raw = sysfs.read_binary(path, address)
    except HostdevError as exc:
        return VpdOutput(error=f"not readable: {exc}")
    if raw is None:
        return None
    try:
        parsed = parse_vpd(raw)
    except MalformedVpd as exc:
        return VpdOutput(error=f"malformed: {exc}")
    return VpdOutput(name=parsed.name, part_number=parsed.part_number,
                     serial_number=parsed.serial_number, read_only=parsed.read_only,
                     read_write=parsed.read_write, checksum_ok=parsed.checksum_ok)


def read_vf_net(sysfs: Sysfs, dev: PciDevice) -> VfNetOutput | None:
    """A VF's network settings as its PF reports them; None when ``dev`` is not a VF
    of a PF with an interface, or netlink cannot serve this root."""
    import errno

    from hostdev.errors import KernelRefused
    from hostdev.linux import netlink

    if dev.vf is None or dev.vf.index is None:
        return None
    ifname = netlink.pf_interface(sysfs, dev.vf.pf)
    if ifname is None:
        return None
    try:
        values = netlink.read_vf(sysfs, ifname, dev.vf.index, dev.address)
    except KernelRefused as exc:
        if exc.errno == errno.EOPNOTSUPP and exc.path == "netlink":
            return None  # a --root tree: its interfaces are not the kernel's
        return VfNetOutput(interface=ifname, vf_index=dev.vf.index, error=str(exc))
    return VfNetOutput(interface=ifname, vf_index=dev.vf.index, **values)


def _net_facts(net: VfNetOutput | None) -> list[tuple[str, str]]:
    if net is None:
        return []
    where = f"VF {net.vf_index} of {net.interface}"
    if net.error is not None:
        return [("vf network", f"{where}: {net.error}")]
    onoff: dict[bool | None, str] = {True: "on", False: "off", None: "?"}
    return [("vf network", f"{where}: mac {net.mac}, vlan {net.vlan}, qos {net.qos},"
                           f" spoofchk {onoff[net.spoofchk]},"
                           f" trust {onoff[net.trust]}, link-state {net.link_state}")]


def _vpd_facts(vpd: VpdOutput | None) -> list[tuple[str, str]]:
    if vpd is None:
        return []
    if vpd.error is not None:
        return [("vpd", vpd.error)]
    facts = [("product name", vpd.name or "-"), ("part number", vpd.part_number or "-"),
             ("serial number", vpd.serial_number or "-")]
    if vpd.checksum_ok is False:
        facts.append(("vpd", "checksum is wrong (the values may be corrupt)"))
    return facts


def _maybe(sysfs: Sysfs, address: PciAddress) -> PciDevice | None:
    from hostdev.errors import DeviceNotFound

    try:
        return read_device(sysfs, address)
    except DeviceNotFound:
        return None
