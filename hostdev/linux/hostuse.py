"""What the host itself uses through a PCI function: devices it cannot lose.

Unbinding a function from its driver takes away everything the driver made:
its disks (and the partitions, device-mapper and md devices stacked on them),
its network interfaces, its virtio 9p/virtiofs channels. When the host uses one
of those, the unbind pulls a mounted file system, swap or a routed interface
from under it (on a VM, detaching the 9p function behind ``/`` hangs everything
that touches the root file system). This module finds such uses, through the
function's children in sysfs and the tables in ``/proc`` (our own mount
namespace's ``self/mountinfo``, ``swaps``, ``net/route``, ``net/ipv6_route``,
``net/if_inet6``), all read through :class:`~hostdev.linux.sysfs.Sysfs` under the root.

A network interface counts as used when it is up and has a route or an address
beyond link-local (as ``dpdk-devbind`` calls an interface "Active"; an IPv4
address shows through the subnet route the kernel adds for it). An interface
enslaved to an upper device (bond, bridge, VLAN) carries that device's use.

``/proc`` cannot name the interface of an IPv4 address: the only per-interface
IPv4 table there is ``net/route``, which shows the main routing table alone, so
an address that adds no main-table route (a /32, ``noprefixroute``, one in a
VRF) does not show there. For an up interface that shows nothing else, the
IPv4 addresses are asked of netlink (``RTM_GETADDR``, through
:mod:`hostdev.linux.netlink`); link-local ones (169.254/16) do not count. Netlink
serves the host's own interfaces only: under another ``--root`` (no fake
kernel) that question goes unanswered and only ``/proc`` counts.
"""

from __future__ import annotations

import logging
import re
import socket
import struct
import sys
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from hostdev.address import PciAddress
from hostdev.errors import DeviceUsedByHost
from hostdev.linux.sysfs import Sysfs, printable

log = logging.getLogger("hostdev")

#: ``IFF_UP`` in a network interface's ``flags``.
IFF_UP = 0x1
#: if_inet6 scopes that say nothing about the host using the interface (link, host).
_LOCAL_SCOPES = frozenset({0x10, 0x20})
_NVME_CONTROLLER = re.compile(r"nvme\d+")
_VIRTIO = re.compile(r"virtio\d+")
_PCI_NAME = re.compile(r"(^|/)[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7](/|$)")
_OCTAL = re.compile(r"\\([0-7]{3})")
#: How deep upper devices (VLAN on bond on NIC...) are followed.
_MAX_UPPER_DEPTH = 4

UseKind = Literal["block", "net", "mount-tag"]


class HostUse(BaseModel):
    """One thing a PCI function carries that the host is using."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    #: The PCI function that carries it.
    address: PciAddress
    kind: UseKind
    #: Kernel name: ``nvme0n1p2``, ``dm-0``, ``eno1``, or the mount tag.
    name: str
    #: What it is, in words: ``block device nvme0n1p2``, ``network interface eno1``.
    carries: str
    #: How the host uses it: ``mounted at /``, ``used as swap``, ``up with route 10.0.0.0/24``.
    use: str

    def __str__(self) -> str:
        return printable(f"{self.carries} {self.use}")


class _Block:
    __slots__ = ("dev", "dm_name", "label", "name")

    def __init__(self, name: str, dev: str | None, dm_name: str | None, label: str) -> None:
        self.name, self.dev, self.dm_name, self.label = name, dev, dm_name, label


class _Mount:
    __slots__ = ("dev", "fstype", "source", "target")

    def __init__(self, dev: str, target: str, fstype: str, source: str) -> None:
        self.dev, self.target, self.fstype, self.source = dev, target, fstype, source


class HostUseScan:
    """Host uses of any number of functions; each table is read once per scan."""

    def __init__(self, sysfs: Sysfs) -> None:
        self.sysfs = sysfs
        self._block_links: dict[str, str] | None = None
        self._net_links: dict[str, str] | None = None
        self._mounts: list[_Mount] | None = None
        self._swaps: list[str] | None = None
        self._routes: dict[str, list[str]] | None = None
        self._addresses: dict[str, list[str]] | None = None
        self._ipv4: dict[str, list[str]] | None = None

    def of(self, address: PciAddress) -> list[HostUse]:
        """What the host uses through ``address`` (empty when nothing)."""
        sysfs = self.sysfs
        if not sysfs.device_exists(address):
            return []
        path = sysfs.resolve(sysfs.device_dir(address)) + "/"
        uses: list[HostUse] = []
        uses += self._block_uses(address, path)
        uses += self._net_uses(address, path)
        uses += self._tag_uses(address, path)
        return uses

    # ------------------------------------------------------------------ block

    def _class_links(self, directory: str) -> dict[str, str]:
        sysfs = self.sysfs
        return {name: sysfs.resolve(f"{directory}/{name}")
                for name in sorted(sysfs.list_dir(directory)) if _plain(name)}

    def _blocks(self) -> dict[str, str]:
        if self._block_links is None:
            self._block_links = self._class_links(self.sysfs.class_block)
        return self._block_links

    def _block_carried(self, path: str) -> list[str]:
        """Block devices (disks and partitions) made by the function at ``path``."""
        carried = []
        for name, target in self._blocks().items():
            if _made_by(target, path) or self._nvme_head_of(target, path):
                carried.append(name)
        return carried

    def _nvme_head_of(self, target: str, path: str) -> bool:
        """An NVMe multipath namespace (``/sys/devices/virtual/nvme-subsystem/S/nvmeXnY``)
        lives outside the PCI tree; its subsystem links to the controllers behind it."""
        marker = "/devices/virtual/nvme-subsystem/"
        at = target.find(marker)
        if at < 0:
            return False
        rest = target[at + len(marker):].split("/", 1)[0]
        subsystem = target[:at + len(marker)] + rest
        sysfs = self.sysfs
        for entry in sysfs.list_dir(subsystem):
            if _NVME_CONTROLLER.fullmatch(entry) and \
                    _made_by(sysfs.resolve(f"{subsystem}/{entry}"), path):
                return True
        return False

    def _block_tree(self, names: Iterable[str]) -> list[_Block]:
        """The carried block devices and every device stacked on them (holders)."""
        sysfs, links = self.sysfs, self._blocks()
        out: list[_Block] = []
        seen: set[str] = set()
        queue: list[tuple[str, str]] = [(name, "") for name in names]
        while queue:
            name, below = queue.pop(0)
            if name in seen or name not in links:
                continue
            seen.add(name)
            target = links[name]
            dev = sysfs.read_optional(f"{target}/dev")
            dm_name = sysfs.read_optional(f"{target}/dm/name")
            label = name + (f" ({dm_name})" if dm_name else "")
            out.append(_Block(name, dev.strip() if dev else None, dm_name,
                              label + (f" on {below}" if below else "")))
            for holder in sorted(sysfs.list_dir(f"{target}/holders")):
                if _plain(holder):
                    queue.append((holder, label))
        return out

    def _block_uses(self, address: PciAddress, path: str) -> list[HostUse]:
        carried = self._block_carried(path)
        if not carried:
            return []
        uses: list[HostUse] = []
        for block in self._block_tree(carried):
            how: list[str] = []
            for mount in self._mount_table():
                if mount.dev == block.dev or self._names_block(mount.source, block):
                    how.append(f"mounted at {mount.target}")
            if any(self._names_block(swap, block) for swap in self._swap_table()):
                how.append("used as swap")
            carries = f"block device {block.label}"
            uses.extend(HostUse(address=address, kind="block", name=block.name,
                                carries=carries, use=h) for h in how)
        return uses

    def _names_block(self, source: str, block: _Block) -> bool:
        """Whether a device path from mountinfo or /proc/swaps is ``block``."""
        if not source.startswith("/dev/"):
            return False
        number = self.sysfs.block_node_number(source)
        if number is not None:
            return block.dev == f"{number[0]}:{number[1]}"
        # No node to look at (a chroot without /dev, or a test tree): go by name.
        tail = source[len("/dev/"):]
        return tail == block.name or (block.dm_name is not None
                                      and tail == f"mapper/{block.dm_name}")

    def _mount_table(self) -> list[_Mount]:
        if self._mounts is None:
            self._mounts = _parse_mountinfo(
                self.sysfs.read_table(f"{self.sysfs.proc}/self/mountinfo") or "")
        return self._mounts

    def _swap_table(self) -> list[str]:
        if self._swaps is None:
            text = self.sysfs.read_table(f"{self.sysfs.proc}/swaps") or ""
            self._swaps = [_unescape(line.split()[0]) for line in text.splitlines()[1:]
                           if line.strip()]
        return self._swaps

    # -------------------------------------------------------------------- net

    def _nets(self) -> dict[str, str]:
        if self._net_links is None:
            self._net_links = self._class_links(self.sysfs.class_net)
        return self._net_links

    def _net_uses(self, address: PciAddress, path: str) -> list[HostUse]:
        uses = []
        for name, target in self._nets().items():
            if not _made_by(target, path):
                continue
            how = self._interface_use(name, _MAX_UPPER_DEPTH)
            if how is not None:
                uses.append(HostUse(address=address, kind="net", name=name,
                                    carries=f"network interface {name}", use=how))
        return uses

    def _interface_use(self, name: str, depth: int) -> str | None:
        """How the host uses interface ``name`` (or an upper device of it), or None."""
        target = self._nets().get(name)
        if target is None:
            return None
        sysfs = self.sysfs
        flags = sysfs.read_optional(f"{target}/flags")
        try:
            up = flags is not None and bool(int(flags, 16) & IFF_UP)
        except ValueError:
            up = False
        if up:
            addresses = self._address_table().get(name, [])
            routes = self._route_table().get(name, [])
            parts = []
            if addresses:
                parts.append(f"address {', '.join(addresses)}")
            if routes:
                parts.append(f"route {', '.join(routes)}")
            if parts:
                return "up with " + " and ".join(parts)
            # /proc names no interface for an IPv4 address that adds no main-table
            # route (a /32, noprefixroute, a VRF): netlink does.
            v4 = [a for a in self._ipv4_table().get(name, []) if not _link_local_v4(a)]
            if v4:
                return f"up with address {', '.join(v4)}"
        if depth <= 0:
            return None
        for entry in sorted(sysfs.list_dir(target)):
            if entry.startswith("upper_") and _plain(entry):
                upper = entry[len("upper_"):]
                how = self._interface_use(upper, depth - 1)
                if how is not None:
                    return f"under {upper}, which is {how}"
        return None

    def _route_table(self) -> dict[str, list[str]]:
        if self._routes is None:
            proc = self.sysfs.proc
            self._routes = {}
            _ipv4_routes(self.sysfs.read_table(f"{proc}/net/route") or "", self._routes)
            _ipv6_routes(self.sysfs.read_table(f"{proc}/net/ipv6_route") or "", self._routes)
        return self._routes

    def _ipv4_table(self) -> dict[str, list[str]]:
        if self._ipv4 is None:
            from hostdev.linux import netlink

            self._ipv4 = netlink.ipv4_addresses(self.sysfs) or {}
        return self._ipv4

    def _address_table(self) -> dict[str, list[str]]:
        if self._addresses is None:
            self._addresses = {}
            text = self.sysfs.read_table(f"{self.sysfs.proc}/net/if_inet6") or ""
            for line in text.splitlines():
                fields = line.split()
                if len(fields) < 6:
                    continue
                try:
                    scope, plen = int(fields[3], 16), int(fields[2], 16)
                    addr = _ipv6(fields[0])
                except ValueError:
                    continue
                if scope not in _LOCAL_SCOPES:
                    self._addresses.setdefault(fields[5], []).append(f"{addr}/{plen}")
        return self._addresses

    # ------------------------------------------------------------- mount tags

    def _tag_uses(self, address: PciAddress, path: str) -> list[HostUse]:
        sysfs = self.sysfs
        tags: list[tuple[str, str]] = []  # (fstype, tag)
        for entry in sorted(sysfs.list_dir(path.rstrip("/"))):
            if _VIRTIO.fullmatch(entry):
                tag = sysfs.read_optional(f"{path}{entry}/mount_tag")
                if tag is not None:
                    # 9pnet_virtio prints the tag with its terminating NUL.
                    tags.append(("9p", tag.rstrip("\0\n")))
        virtiofs = f"{sysfs.sys}/fs/virtiofs"
        for entry in sorted(sysfs.list_dir(virtiofs)):
            if _plain(entry) and _made_by(sysfs.resolve(f"{virtiofs}/{entry}/device"), path):
                tag = sysfs.read_optional(f"{virtiofs}/{entry}/tag")
                if tag is not None:
                    tags.append(("virtiofs", tag.rstrip("\0\n")))
        uses = []
        for fstype, tag in tags:
            for mount in self._mount_table():
                if mount.fstype == fstype and mount.source == tag:
                    uses.append(HostUse(address=address, kind="mount-tag", name=tag,
                                        carries=f"{fstype} mount tag {tag}",
                                        use=f"mounted at {mount.target}"))
        return uses


def host_uses(sysfs: Sysfs, address: PciAddress) -> list[HostUse]:
    """What the host uses through one function (empty when nothing)."""
    return HostUseScan(sysfs).of(address)


def check_host_use(sysfs: Sysfs, addresses: Sequence[PciAddress], *, verb: str,
                   force: bool, subject: PciAddress | None = None) -> list[HostUse]:
    """Refuse (:class:`DeviceUsedByHost`) to take functions the host uses, naming each
    use; with ``force``, log a warning naming what is overridden and go on.

    The message reads "cannot VERB PCI device SUBJECT" (SUBJECT: the first function
    in use unless given, e.g. the PF whose VF count changes)."""
    scan = HostUseScan(sysfs)
    uses = [use for address in addresses for use in scan.of(address)]
    if not uses:
        return []
    target = subject if subject is not None else uses[0].address
    if force:
        for use in uses:
            log.warning("forced: %s PCI device %s although %s carries %s", verb, target,
                        use.address, use)
        return uses
    by_address: dict[PciAddress, list[HostUse]] = {}
    for use in uses:
        by_address.setdefault(use.address, []).append(use)
    what = "; ".join(f"{addr} carries {', '.join(str(u) for u in found)}"
                     for addr, found in by_address.items())
    raise DeviceUsedByHost(
        f"cannot {verb} PCI device {target}: the host is using it ({what}); stop that use"
        " first, or pass --force (force=True) to go ahead anyway",
        address=target, uses=uses,
    )


# ---------------------------------------------------------------------- parsing


def _link_local_v4(address: str) -> bool:
    return address.startswith("169.254.")


def _made_by(target: str, path: str) -> bool:
    """Whether the class device at ``target`` belongs to the function at ``path`` itself,
    not to a function behind it (a bridge's path prefixes everything below it)."""
    return target.startswith(path) and _PCI_NAME.search(target[len(path):]) is None


def _plain(name: str) -> bool:
    """A directory entry usable as one path component."""
    return bool(name) and "/" not in name and name not in (".", "..")


def _unescape(text: str) -> str:
    """Undo the kernel's octal escapes of spaces, tabs, newlines and backslashes."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), text)


def _parse_mountinfo(text: str) -> list[_Mount]:
    """``ID PARENT MAJ:MIN ROOT TARGET OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER``."""
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 3:
            continue
        mounts.append(_Mount(fields[2], _unescape(fields[4]), fields[sep + 1],
                             _unescape(fields[sep + 2])))
    return mounts


def _ipv4(hex_text: str) -> str:
    """An address of /proc/net/route (host byte order hex) as dotted quad."""
    value = int(hex_text, 16)
    return socket.inet_ntoa(struct.pack("<I" if sys.byteorder == "little" else ">I", value))


def _ipv6(hex_text: str) -> str:
    return socket.inet_ntop(socket.AF_INET6, bytes.fromhex(hex_text))


def _ipv4_routes(text: str, out: dict[str, list[str]]) -> None:
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            dest, gateway, mask = _ipv4(fields[1]), _ipv4(fields[2]), _ipv4(fields[7])
        except (ValueError, struct.error):
            continue
        if dest.startswith("169.254."):
            continue  # link-local, added by zeroconf helpers on any up interface
        plen = bin(struct.unpack(">I", socket.inet_aton(mask))[0]).count("1")
        text_route = "default" if dest == "0.0.0.0" and plen == 0 else f"{dest}/{plen}"
        if gateway != "0.0.0.0":
            text_route += f" via {gateway}"
        out.setdefault(fields[0], []).append(text_route)


def _ipv6_routes(text: str, out: dict[str, list[str]]) -> None:
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            dest, plen = _ipv6(fields[0]), int(fields[1], 16)
            first = int(fields[0][:4], 16)
        except ValueError:
            continue
        # Link-local, multicast and the interface's own addresses' local routes come
        # with any up interface; only other routes say the host routes through it.
        if first & 0xFFC0 == 0xFE80 or first & 0xFF00 == 0xFF00 or fields[9] == "lo":
            continue
        if plen == 128:
            continue  # a local-table host route: an address, counted from if_inet6
        out.setdefault(fields[9], []).append("default" if plen == 0 else f"{dest}/{plen}")
