"""The fake kernel's state: devices, drivers, IOMMU groups, all in dicts.

Plain data and small helpers only; behaviour lives in the modules that act on
it (tree, drivers, sriov, hotplug, vfio_users). Every lookup a write needs is a
dict access keyed by address, name or group, so no write scans all devices.
"""

from __future__ import annotations

import enum
import heapq
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyfakefs.fake_file import FakeDirectory, FakeFile
from pyfakefs.fake_filesystem import FakeFilesystem

from hostdev.address import PciAddress
from hostdev.testing.children import HostState
from hostdev.testing.events import WouldBlockEvent, WriteRecord
from hostdev.testing.faults import FaultInjector
from hostdev.testing.hostspec import DeviceSpec
from hostdev.testing.vfs import Vfs

if TYPE_CHECKING:
    from hostdev.linux.uevents import Uevent
    from hostdev.testing.blocking import FakeHelperWrite
    from hostdev.testing.uevents import FakeMonitor
    from hostdev.testing.vfio_users import VfioHolder, VfioProcess

#: driver_managed_dma drivers other than the vfio family (they never block VFIO use).
MANAGED_DMA_DRIVERS = frozenset({"pci-stub", "pcieport"})
#: Drivers whose static table matches nothing by itself (bind only by override/new_id).
OVERRIDE_ONLY_DRIVERS = frozenset({"pci-stub"})
#: PF drivers whose remove leaves SR-IOV enabled (seen on a real 6.1 kernel for nvme).
LEAVES_VFS_DRIVERS = frozenset({"nvme"})


def is_vfio_driver_name(name: str) -> bool:
    """vfio-pci and its variant drivers, by name: ``vfio-pci``, ``*-vfio-pci`` and
    ``*_vfio_pci`` (``mlx5_vfio_pci``, ``hisi_acc_vfio_pci``, ``pds_vfio_pci``)."""
    return (name in ("vfio-pci", "vfio_pci") or name.endswith("-vfio-pci")
            or name.endswith("_vfio_pci"))


@dataclass(eq=False)
class SriovState:
    """SR-IOV state of a physical function."""

    drivers_autoprobe: bool = True
    vfs: list[Device] = field(default_factory=list)
    #: Each VF's network settings as the PF driver keeps them, by VF index.
    vf_net: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass(eq=False)
class Device:
    """A PCI function present in the fake kernel."""

    #: The facts it was added with, which do not change while it exists (a VF's are
    #: derived from its PF's); ``iommu_group`` and ``driver`` there are only how it
    #: was first added, the fields below say where it is now.
    t: DeviceSpec
    name: str
    path: str
    dir: FakeDirectory
    parent_dir: FakeDirectory
    parent_dev: Device | None
    files: dict[str, FakeFile] = field(default_factory=dict)
    iommu_group: int | None = None
    group_origin: object = None
    driver: Driver | None = None
    override: str | None = None
    numa_node: int = -1
    reset_methods: tuple[str, ...] = ()
    user_enable: int = 0
    reset_count: int = 0
    sriov: SriovState | None = None
    physfn: Device | None = None
    vf_index: int | None = None
    children: dict[PciAddress, Device] = field(default_factory=dict)
    vfio_index: int | None = None
    holders: list[VfioHolder] = field(default_factory=list)
    #: current_state is no longer PCI_UNKNOWN: a driver or a user enabled it, or vfio-pci
    #: set a power state (``power_state`` reads ``unknown`` until then).
    power_known: bool = False
    alive: bool = True

    @property
    def address(self) -> PciAddress:
        """The function's address."""
        return self.t.address

    @property
    def is_vf(self) -> bool:
        """A virtual function (made by its PF's ``sriov_numvfs``)."""
        return self.physfn is not None

    @property
    def alias(self) -> str:
        """The ``/sys/bus/pci/devices/<addr>`` path of this device."""
        return "/sys/bus/pci/devices/" + self.name


@dataclass(frozen=True)
class DynId:
    """A dynamic id added through ``new_id`` (0xffffffff is PCI_ANY_ID)."""

    vendor: int
    device: int
    subvendor: int = 0xFFFFFFFF
    subdevice: int = 0xFFFFFFFF
    class_code: int = 0
    class_mask: int = 0
    driver_data: int = 0

    def matches(self, t: DeviceSpec) -> bool:
        """``pci_match_one_device`` for this id."""
        return (
            self.vendor in (0xFFFFFFFF, t.vendor)
            and self.device in (0xFFFFFFFF, t.device)
            and self.subvendor in (0xFFFFFFFF, t.subsystem_vendor)
            and self.subdevice in (0xFFFFFFFF, t.subsystem_device)
            and not ((self.class_code ^ t.class_code) & self.class_mask)
        )


@dataclass(eq=False)
class Driver:
    """A registered PCI driver."""

    name: str
    ids: frozenset[tuple[int, int]]
    sriov: bool
    dir: FakeDirectory
    path: str
    leaves_vfs_on_remove: bool = False
    placeholder: bool = False
    dynids: list[DynId] = field(default_factory=list)
    bound: dict[PciAddress, Device] = field(default_factory=dict)
    #: The driver registers its devices with vfio (None: decided by its name).
    registers_vfio: bool | None = None

    @property
    def vfio(self) -> bool:
        """A vfio driver: creates /dev/vfio nodes and ``vfio-dev`` at bind."""
        if self.registers_vfio is not None:
            return self.registers_vfio
        return is_vfio_driver_name(self.name)

    @property
    def managed_dma(self) -> bool:
        """``driver_managed_dma``: binding it never conflicts with a VFIO user."""
        return self.vfio or self.name in MANAGED_DMA_DRIVERS

    @property
    def has_id_table(self) -> bool:
        """Whether ``new_id`` checks driver_data against a static table (all entries 0)."""
        return self.vfio or (bool(self.ids) and self.name not in OVERRIDE_ONLY_DRIVERS)

    @property
    def enables_device(self) -> bool:
        """Host drivers call pci_enable_device in probe; vfio and pci-stub do not."""
        return not self.vfio and self.name != "pci-stub"


class LowestFree:
    """Hands out the lowest unused non-negative number (like the kernel's IDA)."""

    def __init__(self) -> None:
        self.taken: set[int] = set()
        self._free: list[int] = []
        self._high = 0

    def take(self, number: int) -> None:
        """Mark ``number`` as used."""
        if number >= self._high:
            for unused in range(self._high, number):
                heapq.heappush(self._free, unused)
            self._high = number + 1
        self.taken.add(number)

    def alloc(self) -> int:
        """Take and return the lowest free number."""
        while self._free and self._free[0] in self.taken:
            heapq.heappop(self._free)
        number = heapq.heappop(self._free) if self._free else self._high
        self.take(number)
        return number

    def free(self, number: int) -> None:
        """Give ``number`` back."""
        if number in self.taken:
            self.taken.discard(number)
            heapq.heappush(self._free, number)


@dataclass(frozen=True)
class RemovedDevice:
    """A device taken away by ``remove``, brought back by ``rescan``."""

    template: DeviceSpec
    group_origin: object
    iommu_group: int | None


@dataclass(frozen=True)
class Options:
    """Kernel build and module options the fake honours."""

    vfio_fdinfo_syspath: bool = False
    vfio_enable_sriov: bool = False
    vfio_device_cdev: bool = True
    #: The kernel runs with an IOMMU: devices get IOMMU groups (False: booted without).
    iommu: bool = True


DeviceHandler = Callable[["KernelState", Device, bytes, str], None]
DriverHandler = Callable[["KernelState", Driver, bytes, str], None]
BusHandler = Callable[["KernelState", bytes, str], None]


class Change(enum.Enum):
    """A change of a device's state after which some of its attribute files read anew.

    The file a write went to always reads anew after that write; these name what
    changes *other* files (see :data:`hostdev.testing.registry.DEVICE_ATTRIBUTES`).
    """

    #: The bound driver or the VFIO users changed.
    BINDING = "binding"
    #: A write to ``enable`` changed the enable count or the power state.
    ENABLE = "enable"
    #: The kernel set ``driver_override`` itself (the VFs of a vfio-bound PF).
    OVERRIDE = "override"
    #: VFs were enabled or disabled.
    NUMVFS = "numvfs"
    #: The PF's ``sriov_drivers_autoprobe`` changed.
    VF_AUTOPROBE = "vf_autoprobe"


def _always(dev: Device) -> bool:
    return True


@dataclass(frozen=True)
class Attr:
    """One device attribute file, declared once: where and how it appears, what it
    reads as, what a write to it does, and which changes make it read anew."""

    #: Path inside the device directory (``power/runtime_status`` is in ``power/``).
    name: str
    #: Permission bits, as pci-sysfs makes the file.
    mode: int
    #: What it reads as (None: write-only; opening it for reading fails with EACCES).
    show: Callable[[Device], str | bytes] | None = None
    #: The kernel's store handler (None: opening it for writing fails with EACCES).
    store: DeviceHandler | None = None
    #: Changes after which the file reads anew (besides a write to the file itself).
    refresh_on: frozenset[Change] = frozenset()
    #: Whether the device has the file (asked once, when its directory is made).
    present: Callable[[Device], bool] = _always

    def read(self, dev: Device) -> str | bytes:
        """The file's content for ``dev`` now ("" for a write-only file)."""
        return self.show(dev) if self.show is not None else ""


@dataclass(frozen=True)
class DriverAttr:
    """A file of every driver's directory (``bind``, ``unbind``...), declared once."""

    name: str
    mode: int
    #: The kernel's store handler.
    store: DriverHandler


@dataclass(frozen=True)
class BusAttr:
    """A file of ``/sys/bus/pci`` (``drivers_probe``, ``rescan``...), declared once."""

    name: str
    mode: int
    #: The kernel's store handler.
    store: BusHandler
    #: What it reads as (None: write-only); read anew after each write to it.
    show: Callable[[KernelState], str] | None = None

    def read(self, state: KernelState) -> str:
        """The file's content now ("" for a write-only file)."""
        return self.show(state) if self.show is not None else ""


class KernelState:
    """Everything the fake kernel knows, shared by its modules."""

    def __init__(self, fs: FakeFilesystem, options: Options) -> None:
        self.fs = fs
        self.vfs = Vfs(fs)
        self.options = options
        self.lock = threading.RLock()
        self.devices: dict[PciAddress, Device] = {}
        self.by_name: dict[str, Device] = {}
        self.by_ids: dict[tuple[int, int], dict[PciAddress, Device]] = {}
        self.drivers: dict[str, Driver] = {}
        self.groups: dict[int, dict[PciAddress, Device]] = {}
        self.group_dirs: dict[int, FakeDirectory] = {}
        self.group_ids = LowestFree()
        self.origin_group: dict[object, int] = {}
        self.vfio_ids = LowestFree()
        self.vfio_group_count: dict[int, int] = {}
        self.group_claims: dict[int, int] = {}
        self.removed: dict[PciAddress, RemovedDevice] = {}
        self.drivers_autoprobe = True
        self.online_nodes: set[int] = {0}
        self.processes: dict[int, VfioProcess] = {}
        self.faults = FaultInjector()
        self.writes: list[WriteRecord] = []
        self.would_block_events: list[WouldBlockEvent] = []
        #: The bounded write being made now (its blocking parks it instead of raising).
        self.bounded: FakeHelperWrite | None = None
        #: Bounded writes blocked until a VFIO user releases a device, oldest first.
        self.parked: list[FakeHelperWrite] = []
        #: Every device, driver and bus attribute file, by name (the fake kernel
        #: installs its registry, :mod:`hostdev.testing.registry`).
        self.attributes: Mapping[str, Attr] = {}
        self.driver_attributes: Mapping[str, DriverAttr] = {}
        self.bus_attributes: Mapping[str, BusAttr] = {}
        vfs = self.vfs
        self.sys_devices = vfs.ensure_dir("/sys/devices")
        self.bus_devices = vfs.ensure_dir("/sys/bus/pci/devices")
        self.bus_drivers = vfs.ensure_dir("/sys/bus/pci/drivers")
        self.groups_dir = vfs.ensure_dir("/sys/kernel/iommu_groups")
        self.class_vfio = vfs.ensure_dir("/sys/class/vfio-dev")
        self.dev_vfio = vfs.ensure_dir("/dev/vfio")
        self.proc = vfs.ensure_dir("/proc")
        self.root_buses: dict[str, FakeDirectory] = {}
        #: Disks, interfaces and mount tags drivers make, and the host's use of them.
        self.host = HostState()
        #: Every uevent sent, oldest first, and the monitors open now (see testing.uevents).
        self.uevents: list[Uevent] = []
        self.monitors: list[FakeMonitor] = []
        #: How many uevents a monitor queues before it drops more (None: no limit).
        self.uevent_capacity: int | None = None

    def index_ids(self, dev: Device) -> None:
        """Add ``dev`` to the (vendor, device) index."""
        key = (dev.t.vendor, dev.t.device)
        self.by_ids.setdefault(key, {})[dev.address] = dev

    def unindex_ids(self, dev: Device) -> None:
        """Drop ``dev`` from the (vendor, device) index."""
        bucket = self.by_ids.get((dev.t.vendor, dev.t.device))
        if bucket is not None:
            bucket.pop(dev.address, None)
