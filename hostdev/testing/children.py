"""What drivers make under a PCI function, and how the host uses it.

A driver's probe makes class devices under its function: an NVMe driver its
disks and their partitions (``.../nvme/nvme0/nvme0n1/nvme0n1p1``), a NIC driver
its interfaces (``.../net/eth0``), virtio-pci a ``virtioN`` device whose 9p
driver shows a ``mount_tag`` (virtiofs: ``/sys/fs/virtiofs/N/tag``). They are
linked from ``/sys/block``, ``/sys/class/block`` and ``/sys/class/net``, and they
vanish when the driver unbinds (its remove tears them down), to come back when
the same driver binds again. Device-mapper and md devices stacked on a disk
live under ``/sys/devices/virtual/block`` and show in the disk's ``holders/``.

The host's use of them shows in ``/proc``: ``self/mountinfo``, ``swaps``,
``net/route`` (IPv4 main table, host byte order hex), ``net/ipv6_route`` and
``net/if_inet6``. An interface's routes go when it goes down (the kernel
flushes them), and with it when it is unregistered; an up interface always has
its IPv6 link-local address and routes, as on a real host.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import struct
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyfakefs.fake_file import FakeDirectory, FakeFile

from hostdev.testing.events import FakeKernelSetupError
from hostdev.testing.vfs import ReadError, relpath, set_contents

if TYPE_CHECKING:
    from hostdev.testing.model import Device, KernelState

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Block majors: disks with extended minors (NVMe), device-mapper, md.
BLKEXT_MAJOR = 259
DM_MAJOR = 254
MD_MAJOR = 9
_FLAGS_DOWN = 0x1002  # IFF_BROADCAST | IFF_MULTICAST
_IFF_UP = 0x1
_MOUNTINFO_HEAD = (
    (22, 1, "0:21", "/", "/sys", "rw,nosuid,nodev,noexec,relatime", "shared:7", "sysfs",
     "sysfs", "rw"),
    (23, 1, "0:22", "/", "/proc", "rw,nosuid,nodev,noexec,relatime", "shared:12", "proc",
     "proc", "rw"),
    (24, 1, "0:5", "/", "/dev", "rw,nosuid,relatime", "shared:2", "devtmpfs", "udev",
     "rw,size=8118000k,mode=755"),
    (25, 1, "0:23", "/", "/run", "rw,nosuid,nodev,noexec,relatime", "shared:5", "tmpfs",
     "tmpfs", "rw,mode=755"),
)


@dataclass(eq=False)
class BlockSpec:
    """A disk a driver makes at probe, with its partitions (numbers fixed at creation)."""

    name: str
    under: str
    partitions: list[str]
    numbers: dict[str, str]


@dataclass(eq=False)
class NetSpec:
    """An interface a driver makes at probe."""

    ifname: str
    ifindex: int
    mac: str
    #: What ``phys_port_name`` reads (None: the read fails with EOPNOTSUPP, as for a
    #: netdev with no devlink port): ``p0`` for a switchdev uplink, ``pf0vf3`` for
    #: a VF's representor (docs/kernel-model.md §10).
    phys_port_name: str | None = None
    #: ``dev_port``: which port of a multi-port function (0 for the first).
    dev_port: int = 0


@dataclass(eq=False)
class VirtioSpec:
    """A virtio device with a 9p or virtiofs mount tag."""

    index: int
    tag: str
    fs: str


ChildSpec = BlockSpec | NetSpec | VirtioSpec


@dataclass(eq=False)
class BlockNode:
    """A block device present in sysfs."""

    name: str
    path: str
    dir: FakeDirectory
    number: str
    dm_name: str | None = None
    stacked_over: list[str] = field(default_factory=list)


@dataclass(eq=False)
class Netdev:
    """A network interface present in sysfs, with its link state, addresses and routes."""

    ifname: str
    path: str
    dir: FakeDirectory
    ifindex: int
    up: bool = False
    addresses: list[IPInterface] = field(default_factory=list)
    #: Routes added explicitly: (destination, gateway).
    routes: list[tuple[IPNetwork, IPAddress | None]] = field(default_factory=list)
    uppers: list[str] = field(default_factory=list)
    lowers: list[str] = field(default_factory=list)
    virtual: bool = False


@dataclass(frozen=True)
class Mount:
    """One line of ``/proc/self/mountinfo``."""

    mount_id: int
    number: str
    target: str
    fstype: str
    source: str


@dataclass(eq=False)
class _Owned:
    """Children declared for one device, and the driver that makes them."""

    driver: str
    specs: list[ChildSpec] = field(default_factory=list)


class HostState:
    """Children of every device, and the /proc tables of the host's use of them."""

    def __init__(self) -> None:
        self.owned: dict[Device, _Owned] = {}
        self.blocks: dict[str, BlockNode] = {}
        self.netdevs: dict[str, Netdev] = {}
        self.mounts: list[Mount] = []
        self.swaps: list[str] = []
        self.next_minor: dict[int, int] = {}
        self.next_ifindex = 2
        self.next_virtio = 0
        self.next_virtiofs = 0
        self.next_mount_id = 30
        self.next_anon = 40
        self.files: dict[str, FakeFile] = {}
        self.virtiofs: dict[int, str] = {}
        #: Interfaces NIC VFs get from a host driver (see :mod:`hostdev.testing.vfconfig`).
        self.vf_netdevs: dict[Device, NetSpec] = {}


# --------------------------------------------------------------------------- setup


def init(state: KernelState) -> None:
    """Lay out the class directories, ``lo`` and the /proc tables of an idle host."""
    vfs = state.vfs
    for path in ("/sys/block", "/sys/class/block", "/sys/class/net", "/sys/devices/virtual/block",
                 "/sys/devices/virtual/net", "/sys/bus/virtio/devices"):
        vfs.ensure_dir(path)
    host = state.host
    self_dir = vfs.mkdir(state.proc, "self")
    # The PID namespace this process runs in (FakeKernel.enter_pid_namespace changes it).
    vfs.link(vfs.mkdir(self_dir, "ns"), "pid", "pid:[4026531836]")
    net_dir = vfs.mkdir(state.proc, "net")
    host.files["mountinfo"] = vfs.file(self_dir, "mountinfo", "", 0o444)
    host.files["swaps"] = vfs.file(state.proc, "swaps", "", 0o444)
    for name in ("route", "ipv6_route", "if_inet6"):
        host.files[name] = vfs.file(net_dir, name, "", 0o444)
    lo = _make_netdev(state, "lo", "/sys/devices/virtual/net", 1, "00:00:00:00:00:00",
                      virtual=True)
    lo.up = True
    _render_netdev(lo)
    render_proc(state)


def _dir_at(state: KernelState, path: str) -> FakeDirectory:
    return state.vfs.ensure_dir(path)


def _subdir(state: KernelState, parent: FakeDirectory, name: str) -> FakeDirectory:
    entry = parent.entries.get(name)
    if isinstance(entry, FakeDirectory):
        return entry
    return state.vfs.mkdir(parent, name)


def _alloc_number(host: HostState, major: int) -> str:
    minor = host.next_minor.get(major, 0)
    host.next_minor[major] = minor + 1
    return f"{major}:{minor}"


def declare(state: KernelState, dev: Device, spec: ChildSpec) -> None:
    """Give ``dev``'s current driver a child it makes at probe (made now, it is bound)."""
    if dev.driver is None or dev.driver.vfio:
        raise FakeKernelSetupError(
            f"{dev.name} has {'no driver' if dev.driver is None else 'a vfio driver'}:"
            " bind it to a host driver before giving it disks, interfaces or mount tags"
        )
    owned = state.host.owned.get(dev)
    if owned is None or owned.driver != dev.driver.name:
        owned = state.host.owned[dev] = _Owned(dev.driver.name)
    owned.specs.append(spec)
    _make(state, dev, spec)
    render_proc(state)


def new_block_spec(state: KernelState, name: str, partitions: int | list[str],
                   under: str | None) -> BlockSpec:
    """A disk ``name`` with ``partitions`` (a count: ``name`` + ``p1``...; or names)."""
    host = state.host
    if isinstance(partitions, int):
        sep = "p" if name[-1].isdigit() else ""
        parts = [f"{name}{sep}{i}" for i in range(1, partitions + 1)]
    else:
        parts = list(partitions)
    for n in (name, *parts):
        if n in host.blocks or any(n in (s.name, *s.partitions) for o in host.owned.values()
                                   for s in o.specs if isinstance(s, BlockSpec)):
            raise FakeKernelSetupError(f"block device {n} already exists")
    if under is None:
        nvme = re.fullmatch(r"(nvme\d+)n\d+", name)
        under = f"nvme/{nvme.group(1)}" if nvme else "block"
    numbers = {n: _alloc_number(host, BLKEXT_MAJOR) for n in (name, *parts)}
    return BlockSpec(name, under, parts, numbers)


def new_net_spec(state: KernelState, ifname: str, phys_port_name: str | None = None,
                 dev_port: int = 0) -> NetSpec:
    """An interface ``ifname`` with the next interface index."""
    host = state.host
    if ifname in host.netdevs or "/" in ifname or not ifname:
        raise FakeKernelSetupError(f"network interface {ifname!r} already exists or is bad")
    if phys_port_name is not None and not _PORT_NAME.fullmatch(phys_port_name):
        raise FakeKernelSetupError(f"phys_port_name {phys_port_name!r} is not one the kernel"
                                   " makes (p0, p0s1, pf0, pf0vf3, c1pf0sf2...)")
    if dev_port < 0:
        raise FakeKernelSetupError(f"dev_port must be >= 0, not {dev_port}")
    index = host.next_ifindex
    host.next_ifindex += 1
    return NetSpec(ifname, index, f"52:54:00:00:{index >> 8 & 0xff:02x}:{index & 0xff:02x}",
                   phys_port_name, dev_port)


#: The names net/devlink/port.c gives a port (__devlink_port_phys_port_name_get):
#: physical ``[l<L>]p<N>[s<S>]``, and ``[c<C>]pf<P>[vf<V>|sf<S>]`` for the
#: representors of a PF, a VF or a subfunction.
_PORT_NAME = re.compile(r"(?:l\d+)?p\d+(?:s\d+)?|(?:c\d+)?pf\d+(?:(?:vf|sf)\d+)?")
#: The representors among them (a PCI_PF, PCI_VF or PCI_SF port): their netdevs have
#: no ndo_set_vf_* and report no VF list.
_REPRESENTOR = re.compile(r"(?:c\d+)?pf\d+(?:(?:vf|sf)\d+)?")


def is_representor(spec: NetSpec) -> bool:
    """Whether ``spec`` is a switchdev representor (by its ``phys_port_name``)."""
    return spec.phys_port_name is not None and _REPRESENTOR.fullmatch(spec.phys_port_name) \
        is not None


def new_virtio_spec(state: KernelState, tag: str, fs: str) -> VirtioSpec:
    """A virtio device carrying mount tag ``tag`` (``fs``: 9p or virtiofs)."""
    if fs not in ("9p", "virtiofs"):
        raise FakeKernelSetupError(f"mount tag file system must be 9p or virtiofs, not {fs}")
    index = state.host.next_virtio
    state.host.next_virtio += 1
    return VirtioSpec(index, tag, fs)


# --------------------------------------------------------------------------- bind / unbind


def on_bind(state: KernelState, dev: Device) -> None:
    """The driver's probe made its children again (only the driver that made them)."""
    owned = state.host.owned.get(dev)
    if owned is None or dev.driver is None or dev.driver.name != owned.driver:
        return
    for spec in owned.specs:
        _make(state, dev, spec)
    render_proc(state)


def on_unbind(state: KernelState, dev: Device) -> None:
    """The driver's remove took its children away (links, directories, routes)."""
    owned = state.host.owned.get(dev)
    if owned is None:
        return
    for spec in owned.specs:
        _unmake(state, dev, spec)
    render_proc(state)


def make_netdev(state: KernelState, dev: Device, spec: NetSpec, mac: str | None = None) -> None:
    """Make ``dev``'s interface ``spec`` (with ``mac`` instead of its own, if given)."""
    _subdir(state, dev.dir, "net")
    _make_netdev(state, spec.ifname, f"{dev.path}/net", spec.ifindex, mac or spec.mac,
                 port_name=spec.phys_port_name, dev_port=spec.dev_port)
    render_proc(state)


def unmake_netdev(state: KernelState, dev: Device, spec: NetSpec) -> None:
    """Take ``dev``'s interface ``spec`` away."""
    _unmake(state, dev, spec)
    render_proc(state)


def _make(state: KernelState, dev: Device, spec: ChildSpec) -> None:
    if isinstance(spec, BlockSpec):
        _make_block(state, dev, spec)
    elif isinstance(spec, NetSpec):
        _subdir(state, dev.dir, "net")
        _make_netdev(state, spec.ifname, f"{dev.path}/net", spec.ifindex, spec.mac,
                     port_name=spec.phys_port_name, dev_port=spec.dev_port)
    else:
        _make_virtio(state, dev, spec)


def _unmake(state: KernelState, dev: Device, spec: ChildSpec) -> None:
    vfs, host = state.vfs, state.host
    if isinstance(spec, BlockSpec):
        for name in (*spec.partitions, spec.name):
            node = host.blocks.pop(name, None)
            if node is None:
                continue
            vfs.remove(_dir_at(state, "/sys/class/block"), name)
            for other in host.blocks.values():  # stacked devices lose the slave link
                if name in other.stacked_over:
                    slaves = other.dir.entries.get("slaves")
                    if isinstance(slaves, FakeDirectory):
                        vfs.remove(slaves, name)
        vfs.remove(_dir_at(state, "/sys/block"), spec.name)
        vfs.remove(dev.dir, spec.under.split("/")[0])
    elif isinstance(spec, NetSpec):
        netdev = host.netdevs.pop(spec.ifname, None)
        if netdev is not None:
            vfs.remove(_dir_at(state, "/sys/class/net"), spec.ifname)
            for upper in netdev.uppers:
                peer = host.netdevs.get(upper)
                if peer is not None:
                    peer.lowers.remove(spec.ifname)
                    vfs.remove(peer.dir, f"lower_{spec.ifname}")
            for lower in netdev.lowers:
                peer = host.netdevs.get(lower)
                if peer is not None:
                    peer.uppers.remove(spec.ifname)
                    vfs.remove(peer.dir, f"upper_{spec.ifname}")
        net = dev.dir.entries.get("net")
        if isinstance(net, FakeDirectory):
            vfs.remove(net, spec.ifname)
            if not net.entries:
                vfs.remove(dev.dir, "net")
    else:
        name = f"virtio{spec.index}"
        vfs.remove(dev.dir, name)
        vfs.remove(_dir_at(state, "/sys/bus/virtio/devices"), name)
        for key, vname in list(host.virtiofs.items()):
            if vname == name:
                vfs.remove(_dir_at(state, "/sys/fs/virtiofs"), str(key))
                del host.virtiofs[key]


def _block_files(state: KernelState, directory: FakeDirectory, number: str) -> None:
    vfs = state.vfs
    vfs.file(directory, "dev", number + "\n", 0o444)
    vfs.file(directory, "size", "2097152\n", 0o444)
    vfs.mkdir(directory, "holders")


def _make_block(state: KernelState, dev: Device, spec: BlockSpec) -> None:
    vfs, host = state.vfs, state.host
    parent, path = dev.dir, dev.path
    for part in spec.under.split("/"):
        parent = _subdir(state, parent, part)
        path += "/" + part
    disk_path = f"{path}/{spec.name}"
    disk = vfs.mkdir(parent, spec.name)
    _block_files(state, disk, spec.numbers[spec.name])
    vfs.mkdir(disk, "slaves")
    vfs.file(disk, "removable", "0\n", 0o444)
    host.blocks[spec.name] = BlockNode(spec.name, disk_path, disk, spec.numbers[spec.name])
    vfs.link(_dir_at(state, "/sys/block"), spec.name, relpath(disk_path, "/sys/block"))
    vfs.link(_dir_at(state, "/sys/class/block"), spec.name,
             relpath(disk_path, "/sys/class/block"))
    for number, part in enumerate(spec.partitions, 1):
        part_dir = vfs.mkdir(disk, part)
        _block_files(state, part_dir, spec.numbers[part])
        vfs.file(part_dir, "partition", f"{number}\n", 0o444)
        part_path = f"{disk_path}/{part}"
        host.blocks[part] = BlockNode(part, part_path, part_dir, spec.numbers[part])
        vfs.link(_dir_at(state, "/sys/class/block"), part, relpath(part_path, "/sys/class/block"))


def add_stacked(state: KernelState, name: str, over: list[str], dm_name: str | None) -> str:
    """A dm or md device over present block devices (``holders/`` links on each)."""
    vfs, host = state.vfs, state.host
    if name in host.blocks:
        raise FakeKernelSetupError(f"block device {name} already exists")
    if not (name.startswith("dm-") or name.startswith("md")):
        raise FakeKernelSetupError(f"stacked device {name!r} must be named dm-N or mdN")
    missing = [n for n in over if n not in host.blocks]
    if missing or not over:
        raise FakeKernelSetupError(f"{name}: no block devices {missing or over} to stack on")
    major = DM_MAJOR if name.startswith("dm-") else MD_MAJOR
    number = _alloc_number(host, major)
    path = f"/sys/devices/virtual/block/{name}"
    directory = vfs.mkdir(_dir_at(state, "/sys/devices/virtual/block"), name)
    _block_files(state, directory, number)
    slaves = vfs.mkdir(directory, "slaves")
    if major == DM_MAJOR:
        vfs.file(vfs.mkdir(directory, "dm"), "name", (dm_name or name) + "\n", 0o444)
    else:
        vfs.mkdir(directory, "md")
    for lower in over:
        node = host.blocks[lower]
        vfs.link(slaves, lower, relpath(node.path, path + "/slaves"))
        holders = node.dir.entries["holders"]
        assert isinstance(holders, FakeDirectory)
        vfs.link(holders, name, relpath(path, node.path + "/holders"))
    host.blocks[name] = BlockNode(name, path, directory, number,
                                  dm_name=(dm_name or name) if major == DM_MAJOR else None,
                                  stacked_over=list(over))
    vfs.link(_dir_at(state, "/sys/block"), name, relpath(path, "/sys/block"))
    vfs.link(_dir_at(state, "/sys/class/block"), name, relpath(path, "/sys/class/block"))
    return number


def _make_netdev(state: KernelState, ifname: str, parent_path: str, ifindex: int, mac: str,
                 *, virtual: bool = False, port_name: str | None = None,
                 dev_port: int = 0) -> Netdev:
    vfs = state.vfs
    parent = vfs.ensure_dir(parent_path)
    directory = vfs.mkdir(parent, ifname)
    path = f"{parent_path}/{ifname}"
    netdev = Netdev(ifname, path, directory, ifindex, virtual=virtual)
    for attr, text in (("ifindex", f"{ifindex}\n"), ("address", mac + "\n"),
                       ("flags", ""), ("operstate", ""), ("dev_port", f"{dev_port}\n")):
        vfs.file(directory, attr, text, 0o444)
    # Every netdev has the file; without a devlink port or ndo_get_phys_port_name,
    # its show returns -EOPNOTSUPP (net/core/net-sysfs.c, dev_get_phys_port_name).
    if port_name is None:
        vfs.file(directory, "phys_port_name", "", 0o444, ReadError(errno.EOPNOTSUPP))
    else:
        vfs.file(directory, "phys_port_name", port_name + "\n", 0o444)
    _render_netdev(netdev)
    vfs.link(_dir_at(state, "/sys/class/net"), ifname, relpath(path, "/sys/class/net"))
    state.host.netdevs[ifname] = netdev
    return netdev


def add_virtual_netdev(state: KernelState, ifname: str) -> None:
    """A bond, bridge or VLAN interface (``/sys/devices/virtual/net``)."""
    new_net_spec(state, ifname)  # name check
    host = state.host
    _make_netdev(state, ifname, "/sys/devices/virtual/net", host.next_ifindex - 1,
                 "52:54:00:ff:00:01", virtual=True)
    render_proc(state)


def set_upper(state: KernelState, lower: str, upper: str) -> None:
    """Put ``lower`` under ``upper`` (``upper_X`` / ``lower_Y`` links)."""
    low, up = netdev(state, lower), netdev(state, upper)
    vfs = state.vfs
    vfs.link(low.dir, f"upper_{upper}", relpath(up.path, low.path))
    vfs.link(up.dir, f"lower_{lower}", relpath(low.path, up.path))
    low.uppers.append(upper)
    up.lowers.append(lower)


def _render_netdev(dev: Netdev) -> None:
    flags = _FLAGS_DOWN | (_IFF_UP if dev.up else 0)
    if dev.ifname == "lo":
        flags = 0x9 if dev.up else 0x8  # IFF_LOOPBACK
    for attr, text in (("flags", f"{flags:#x}\n"),
                       ("operstate", ("unknown" if dev.ifname == "lo" else "up")
                        if dev.up else "down")):
        entry = dev.dir.entries[attr]
        assert isinstance(entry, FakeFile)
        set_contents(entry, text + ("" if text.endswith("\n") else "\n"))


def netdev(state: KernelState, ifname: str) -> Netdev:
    """A present interface (FakeKernelSetupError otherwise)."""
    found = state.host.netdevs.get(ifname)
    if found is None:
        raise FakeKernelSetupError(f"no network interface {ifname} in the fake kernel")
    return found


def set_link_up(state: KernelState, ifname: str, up: bool) -> None:
    """``ip link set IF up/down``; going down flushes its explicit routes."""
    dev = netdev(state, ifname)
    dev.up = up
    if not up:
        dev.routes.clear()
    _render_netdev(dev)
    render_proc(state)


def add_address(state: KernelState, ifname: str, address: str) -> None:
    """``ip addr add ADDRESS/PLEN dev IF`` (its subnet route shows while the link is up)."""
    dev = netdev(state, ifname)
    try:
        iface = ipaddress.ip_interface(address)
    except ValueError as exc:
        raise FakeKernelSetupError(f"bad address {address!r}: {exc}") from None
    dev.addresses.append(iface)
    render_proc(state)


def add_route(state: KernelState, ifname: str, destination: str, via: str | None) -> None:
    """``ip route add DEST [via GW] dev IF``: refused (ENETDOWN) while the link is down."""
    dev = netdev(state, ifname)
    if not dev.up:
        raise FakeKernelSetupError(f"cannot add a route on {ifname}: it is down (ENETDOWN)")
    try:
        network = ipaddress.ip_network("0.0.0.0/0" if destination == "default" else destination)
        gateway = ipaddress.ip_address(via) if via is not None else None
    except ValueError as exc:
        raise FakeKernelSetupError(f"bad route {destination!r} via {via!r}: {exc}") from None
    dev.routes.append((network, gateway))
    render_proc(state)


def _make_virtio(state: KernelState, dev: Device, spec: VirtioSpec) -> None:
    vfs, host = state.vfs, state.host
    name = f"virtio{spec.index}"
    directory = vfs.mkdir(dev.dir, name)
    path = f"{dev.path}/{name}"
    vfs.file(directory, "device", "0x0009\n" if spec.fs == "9p" else "0x001a\n", 0o444)
    vfs.link(_dir_at(state, "/sys/bus/virtio/devices"), name,
             relpath(path, "/sys/bus/virtio/devices"))
    if spec.fs == "9p":
        # 9pnet_virtio prints the tag with its terminating NUL and no newline.
        vfs.file(directory, "mount_tag", spec.tag + "\0", 0o444)
    else:
        key = host.next_virtiofs
        host.next_virtiofs += 1
        entry = vfs.mkdir(_dir_at(state, "/sys/fs/virtiofs"), str(key))
        vfs.file(entry, "tag", spec.tag + "\n", 0o444)
        vfs.link(entry, "device", relpath(path, f"/sys/fs/virtiofs/{key}"))
        host.virtiofs[key] = name


# --------------------------------------------------------------------------- /proc tables


def add_mount(state: KernelState, source: str, target: str, fstype: str) -> Mount:
    """Mount ``source`` (a block device name, ``MAJ:MIN``, or a mount tag / pseudo source)."""
    host = state.host
    node = host.blocks.get(source)
    if node is not None:
        number = node.number
        src = f"/dev/mapper/{node.dm_name}" if node.dm_name else f"/dev/{node.name}"
    elif _is_number(source):
        number, src = source, f"/dev/block/{source}"
    else:
        number, src = f"0:{host.next_anon}", source
        host.next_anon += 1
    mount = Mount(host.next_mount_id, number, target, fstype, src)
    host.next_mount_id += 1
    host.mounts.append(mount)
    render_proc(state)
    return mount


def remove_mount(state: KernelState, target: str) -> None:
    """Unmount the last mount at ``target``."""
    host = state.host
    for mount in reversed(host.mounts):
        if mount.target == target:
            host.mounts.remove(mount)
            render_proc(state)
            return
    raise FakeKernelSetupError(f"nothing is mounted at {target}")


def add_swap(state: KernelState, name_or_path: str) -> None:
    """``swapon`` a block device by name (or a swap file by path)."""
    node = state.host.blocks.get(name_or_path)
    if node is not None:
        path = f"/dev/mapper/{node.dm_name}" if node.dm_name else f"/dev/{node.name}"
    elif name_or_path.startswith("/"):
        path = name_or_path
    else:
        raise FakeKernelSetupError(f"no block device {name_or_path} to swap on")
    state.host.swaps.append(path)
    render_proc(state)


def remove_swap(state: KernelState, name_or_path: str) -> None:
    """``swapoff``."""
    swaps = state.host.swaps
    for path in list(swaps):
        if path == name_or_path or path.rsplit("/", 1)[-1] == name_or_path:
            swaps.remove(path)
            render_proc(state)
            return
    raise FakeKernelSetupError(f"{name_or_path} is not used as swap")


def _is_number(text: str) -> bool:
    major, sep, minor = text.partition(":")
    return bool(sep) and major.isdigit() and minor.isdigit()


def _escape(path: str) -> str:
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


def _hex4(address: IPAddress) -> str:
    value = int(address)
    packed = struct.pack(">I", value)
    return f"{struct.unpack('<I' if sys.byteorder == 'little' else '>I', packed)[0]:08X}"


def render_proc(state: KernelState) -> None:
    """Re-render every /proc table from the model."""
    host = state.host
    if "mountinfo" not in host.files:
        return
    lines = [" ".join(str(f) for f in (*row[:7], "-", *row[7:])) for row in _MOUNTINFO_HEAD]
    for m in host.mounts:
        lines.append(f"{m.mount_id} 1 {m.number} / {_escape(m.target)} rw,relatime shared:1"
                     f" - {m.fstype} {_escape(m.source)} rw")
    set_contents(host.files["mountinfo"], "".join(line + "\n" for line in lines))
    swaps = ["Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority"]
    swaps += [f"{_escape(p):<40}partition\t1048572\t\t0\t\t-2" for p in host.swaps]
    set_contents(host.files["swaps"], "".join(line + "\n" for line in swaps))
    route = ["Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT"]
    v6: list[str] = []
    inet6: list[str] = []
    for dev in sorted(host.netdevs.values(), key=lambda d: d.ifindex):
        if not dev.up:
            continue
        v4_routes: list[tuple[IPNetwork, IPAddress | None]] = []
        v6_routes: list[tuple[IPNetwork, IPAddress | None]] = []
        for iface in dev.addresses:
            if iface.version == 4 and dev.ifname != "lo" and iface.network.prefixlen < 32:
                v4_routes.append((iface.network, None))
            elif iface.version == 6:
                scope = 0x10 if iface.ip.is_loopback else 0x20 if iface.ip.is_link_local else 0
                inet6.append(f"{iface.ip.exploded.replace(':', '')} {dev.ifindex:02x}"
                             f" {iface.network.prefixlen:02x} {scope:02x} 80 {dev.ifname:>8}")
                v6_routes.append((ipaddress.ip_network(f"{iface.ip}/128"), None))
                if not iface.ip.is_loopback:
                    v6_routes.append((iface.network, None))
        if dev.ifname != "lo":
            link_local = ipaddress.ip_interface(f"fe80::5054:ff:fe00:{dev.ifindex:x}/64")
            inet6.append(f"{link_local.ip.exploded.replace(':', '')} {dev.ifindex:02x} 40 20 80"
                         f" {dev.ifname:>8}")
            v6_routes += [(link_local.network, None),
                          (ipaddress.ip_network(f"{link_local.ip}/128"), None),
                          (ipaddress.ip_network("ff00::/8"), None)]
        else:
            inet6.append(f"{'0' * 31}1 01 80 10 80 {'lo':>8}")
            v6_routes.append((ipaddress.ip_network("::1/128"), None))
        for network, gateway in dev.routes:
            (v4_routes if network.version == 4 else v6_routes).append((network, gateway))
        for network, gateway in v4_routes:
            assert isinstance(network, ipaddress.IPv4Network)
            flags = 0x1 | (0x2 if gateway is not None else 0)
            gw = gateway if isinstance(gateway, ipaddress.IPv4Address) \
                else ipaddress.IPv4Address(0)
            route.append(f"{dev.ifname}\t{_hex4(network.network_address)}\t{_hex4(gw)}\t"
                         f"{flags:04X}\t0\t0\t100\t{_hex4(network.netmask)}\t0\t0\t0")
        for network, gateway in v6_routes:
            gw6 = gateway if isinstance(gateway, ipaddress.IPv6Address) \
                else ipaddress.IPv6Address(0)
            v6.append(f"{network.network_address.exploded.replace(':', '')}"
                      f" {network.prefixlen:02x} {'0' * 32} 00 {gw6.exploded.replace(':', '')}"
                      f" 00000100 00000001 00000000 00000001 {dev.ifname:>8}")
    set_contents(host.files["route"], "".join(line + "\n" for line in route))
    set_contents(host.files["ipv6_route"], "".join(line + "\n" for line in v6))
    set_contents(host.files["if_inet6"], "".join(line + "\n" for line in inet6))
