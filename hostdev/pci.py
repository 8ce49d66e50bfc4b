"""Snapshots of PCI functions as sysfs shows them, and the host-wide listing.

A :class:`PciDevice` is a frozen view taken at one moment; nothing here changes
the host. Reading one device costs one directory listing plus one read per
attribute present (a PF adds one ``readlink`` per VF). A listing shares the
IOMMU-group directory reads and takes VF indexes from the PFs' ``virtfnN``
links, so no file is read twice.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema

from hostdev.address import PciAddress
from hostdev.errors import DeviceNotFound, UnexpectedContent
from hostdev.sysfs import Sysfs


def _hex_in(value: Any) -> Any:
    if isinstance(value, str):
        return int(value, 16)
    return value


def _hex4(value: int) -> str:
    return f"{value:04x}"


def _hex6(value: int) -> str:
    return f"{value:06x}"


#: A 16-bit id (vendor, device): an int in Python, ``"8086"`` in JSON.
Hex16 = Annotated[
    int,
    BeforeValidator(_hex_in),
    PlainSerializer(_hex4, return_type=str),
    WithJsonSchema({"type": "string", "pattern": "^[0-9a-f]{4}$"}),
]
#: A 24-bit class code: an int in Python, ``"020000"`` in JSON.
Hex24 = Annotated[
    int,
    BeforeValidator(_hex_in),
    PlainSerializer(_hex6, return_type=str),
    WithJsonSchema({"type": "string", "pattern": "^[0-9a-f]{6}$"}),
]

_VIRTFN = re.compile(r"^virtfn(\d+)$")
#: Class codes (class << 8 | subclass) whose header is not an endpoint's.
_BRIDGE_CLASSES = frozenset({0x0604, 0x0607, 0x0609})


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


class PciDevice(BaseModel):
    """One PCI function as sysfs showed it when read."""

    model_config = ConfigDict(frozen=True)

    address: PciAddress
    vendor: Hex16
    device: Hex16
    subsystem_vendor: Hex16 | None = None
    subsystem_device: Hex16 | None = None
    class_code: Hex24
    driver: str | None = None
    driver_override: str | None = None
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

    @property
    def ids(self) -> str:
        """``vvvv:dddd`` in lower-case hex."""
        return f"{self.vendor:04x}:{self.device:04x}"

    @property
    def is_pf(self) -> bool:
        """The function has SR-IOV capability."""
        return self.sriov is not None

    @property
    def is_vf(self) -> bool:
        """The function is an SR-IOV virtual function."""
        return self.vf is not None


class _GroupCache:
    def __init__(self, sysfs: Sysfs) -> None:
        self.sysfs = sysfs
        self.members: dict[int, list[PciAddress]] = {}

    def get(self, group: int) -> list[PciAddress]:
        found = self.members.get(group)
        if found is None:
            names = self.sysfs.list_dir(self.sysfs.group_devices_dir(group))
            found = sorted(_parse_names(names))
            self.members[group] = found
        return found


def read_device(sysfs: Sysfs, address: PciAddress | str) -> PciDevice:
    """Snapshot one function; DeviceNotFound if it is not on the host."""
    addr = PciAddress.parse(address)
    if not sysfs.device_exists(addr):
        raise DeviceNotFound(
            f"PCI device {addr} not found: it is not on this host;"
            " check the address with 'hostdev list'",
            address=addr,
        )
    dev = _read(sysfs, addr, _GroupCache(sysfs))
    if dev.vf is not None and dev.vf.index is None:
        dev = dev.model_copy(update={"vf": VfInfo(pf=dev.vf.pf, index=_vf_index(sysfs, dev))})
    return dev


def list_devices(sysfs: Sysfs) -> list[PciDevice]:
    """Snapshot every function on the host, sorted by address.

    A device that vanishes while the listing runs is left out.
    """
    sysfs.check_tree()
    groups = _GroupCache(sysfs)
    found: dict[PciAddress, PciDevice] = {}
    for addr in sorted(_parse_names(sysfs.list_dir(sysfs.pci_devices))):
        try:
            found[addr] = _read(sysfs, addr, groups)
        except DeviceNotFound:
            continue
    index_of: dict[PciAddress, int] = {}
    for dev in found.values():
        if dev.sriov is not None:
            for i, vf in enumerate(dev.sriov.vfs):
                index_of[vf] = i
    for addr, dev in found.items():
        if dev.vf is not None:
            info = VfInfo(pf=dev.vf.pf, index=index_of.get(addr))
            found[addr] = dev.model_copy(update={"vf": info})
    return list(found.values())


def _parse_names(names: list[str]) -> list[PciAddress]:
    out = []
    for name in names:
        try:
            out.append(PciAddress.parse(name))
        except ValueError:
            continue  # host bridges and other non-function entries
    return out


def _read(sysfs: Sysfs, addr: PciAddress, groups: _GroupCache) -> PciDevice:
    base = sysfs.device_dir(addr)
    entries = set(sysfs.list_dir(base, addr))
    if not entries:
        raise DeviceNotFound(f"PCI device {addr} vanished while being read", address=addr)

    def path(attr: str) -> str:
        return f"{base}/{attr}"

    def hex_or_none(attr: str) -> int | None:
        return sysfs.read_hex(path(attr), addr) if attr in entries else None

    class_code = sysfs.read_hex(path("class"), addr)
    group = None
    if "iommu_group" in entries:
        name = sysfs.read_link_name(path("iommu_group"), addr)
        group = _to_int(name, addr, "iommu_group")
    numa = sysfs.read_int(path("numa_node"), addr) if "numa_node" in entries else None
    reset_methods = None
    if "reset" in entries:
        reset_methods = []
        if "reset_method" in entries:
            text = sysfs.read_optional(path("reset_method"), addr) or ""
            reset_methods = text.split()
    sriov = None
    if "sriov_totalvfs" in entries:
        sriov = SriovInfo(
            totalvfs=sysfs.read_int(path("sriov_totalvfs"), addr),
            numvfs=sysfs.read_int(path("sriov_numvfs"), addr),
            vfs=_read_vfs(sysfs, addr, entries),
        )
    vf = None
    if "physfn" in entries:
        pf_name = sysfs.read_link_name(path("physfn"), addr)
        if pf_name is not None:
            vf = VfInfo(pf=PciAddress.parse(pf_name), index=None)
    return PciDevice(
        address=addr,
        vendor=sysfs.read_hex(path("vendor"), addr),
        device=sysfs.read_hex(path("device"), addr),
        subsystem_vendor=hex_or_none("subsystem_vendor"),
        subsystem_device=hex_or_none("subsystem_device"),
        class_code=class_code,
        driver=sysfs.read_link_name(path("driver"), addr) if "driver" in entries else None,
        driver_override=sysfs.read_override(addr) if "driver_override" in entries else None,
        iommu_group=group,
        iommu_group_members=groups.get(group) if group is not None else [addr],
        numa_node=numa,
        is_bridge=(class_code >> 8) in _BRIDGE_CLASSES,
        sriov=sriov,
        vf=vf,
        reset_methods=reset_methods,
        vfio_dev="vfio-dev" in entries,
    )


def _read_vfs(sysfs: Sysfs, addr: PciAddress, entries: set[str]) -> list[PciAddress]:
    indexes = sorted(int(m[1]) for e in entries if (m := _VIRTFN.match(e)))
    vfs: list[PciAddress] = []
    # Numeric order up to the first gap: directory order is not index order.
    for expected, index in enumerate(indexes):
        if index != expected:
            break
        name = sysfs.read_link_name(f"{sysfs.device_dir(addr)}/virtfn{index}", addr)
        if name is None:
            break
        vfs.append(PciAddress.parse(name))
    return vfs


def _vf_index(sysfs: Sysfs, dev: PciDevice) -> int | None:
    """The VF's index, computed from the PF's offset and stride and confirmed by
    the PF's ``virtfnN`` link (three reads, whatever the number of VFs)."""
    assert dev.vf is not None
    pf = dev.vf.pf
    base = sysfs.device_dir(pf)
    try:
        offset = sysfs.read_optional(f"{base}/sriov_offset", pf)
        stride = sysfs.read_optional(f"{base}/sriov_stride", pf)
        if offset is None or stride is None or int(stride) <= 0:
            return None
        distance = dev.address.pf_bus_devfn - pf.pf_bus_devfn - int(offset)
        if dev.address.domain != pf.domain or distance < 0 or distance % int(stride):
            return None
        index = distance // int(stride)
        name = sysfs.read_link_name(f"{base}/virtfn{index}", pf)
    except (DeviceNotFound, ValueError):
        return None
    return index if name == str(dev.address) else None


def _to_int(name: str | None, addr: PciAddress, what: str) -> int | None:
    if name is None:
        return None
    try:
        return int(name, 10)
    except ValueError:
        raise UnexpectedContent(
            f"PCI device {addr}: {what} link points at {name!r}, not a number", address=addr
        ) from None
