"""FakeKernel: the facade tests use to build a host and inject trouble.

The kernel itself reacts to plain file writes under ``/sys`` (see dispatch);
this class only builds the starting host (drivers, devices, fixtures), arms
faults, adds fake VFIO users, and offers read-only views for assertions.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Sequence

from pydantic import ValidationError
from pyfakefs.fake_filesystem import FakeFilesystem

from hostdev.address import AddressLike, PciAddress
from hostdev.linux.uevents import Uevent
from hostdev.testing import (
    attrs,
    blocking,
    children,
    drivers,
    hotplug,
    opens,
    registry,
    sriov,
    uevents,
    vfconfig,
)
from hostdev.testing.dispatch import BusNode
from hostdev.testing.events import FakeKernelSetupError, WouldBlockEvent, WriteRecord
from hostdev.testing.faults import ProbeFault, WriteFault, WriteHook, WriteWatch
from hostdev.testing.fixtures import read_host_spec
from hostdev.testing.hostspec import (
    RESET_METHODS,
    DeviceSpec,
    HostSpec,
    ModuleSpec,
    SriovSpec,
    VpdSpec,
)
from hostdev.testing.model import Change, Device, KernelState, Options
from hostdev.testing.tree import create_device, join_group, refresh
from hostdev.testing.vfio_users import VfioHolder, hold, init_proc
from hostdev.testing.views import DeviceState, device_state

#: ``add_device``'s flat SR-IOV keywords, to the :class:`SriovSpec` field each sets.
_FLAT_SRIOV = {name if name.startswith("vf_") else "sriov_" + name: name
               for name in SriovSpec.model_fields}

#: What the fake kernel's ``/proc/sys/kernel/osrelease`` reads (``uname -r``).
FAKE_RELEASE = "6.1.0-fake"


def _install_handlers(state: KernelState) -> None:
    state.attributes = registry.DEVICE_ATTRIBUTES
    state.driver_attributes = registry.DRIVER_ATTRIBUTES
    state.bus_attributes = registry.BUS_ATTRIBUTES


class FakeKernel:
    """A Linux PCI/VFIO kernel behind a pyfakefs filesystem; starts as an empty host."""

    def __init__(
        self,
        fs: FakeFilesystem,
        *,
        vfio_fdinfo_syspath: bool = False,
        vfio_enable_sriov: bool = False,
        vfio_device_cdev: bool = True,
        iommu: bool = True,
    ) -> None:
        """Lay out an empty host in ``fs``.

        ``iommu``: False boots the host without an IOMMU: no device gets an IOMMU
        group (``iommu_group`` arguments are ignored), so vfio drivers refuse them.

        ``vfio_fdinfo_syspath``: fdinfo of VFIO device fds names the device (>= 6.18).
        ``vfio_enable_sriov``: vfio-pci's ``enable_sriov=1`` module parameter.
        ``vfio_device_cdev``: CONFIG_VFIO_DEVICE_CDEV (>= 6.6): /dev/vfio/devices/vfioX
        nodes; without it (6.1, as the real-kernel tier's Debian guest) only the
        ``vfio-dev/vfioX`` sysfs entries appear, with no ``dev`` file.
        """
        self.fs = fs
        opens.register(fs)
        state = self.state = KernelState(
            fs, Options(vfio_fdinfo_syspath=vfio_fdinfo_syspath,
                        vfio_enable_sriov=vfio_enable_sriov,
                        vfio_device_cdev=vfio_device_cdev, iommu=iommu)
        )
        #: Modules on disk that ``modprobe`` can load, by module name (``_`` spelling).
        self.modules: dict[str, ModuleSpec] = {}
        _install_handlers(state)
        blocking.register(state)
        vfconfig.register(state)
        uevents.register()
        vfs = state.vfs
        bus = vfs.ensure_dir("/sys/bus/pci")
        for attr in state.bus_attributes.values():
            vfs.file(bus, attr.name, attr.read(state), attr.mode, BusNode(state, attr))
        vfs.chardev(state.dev_vfio, "vfio", 0o666)
        dev_dir = vfs.ensure_dir("/dev")
        for node in ("iommu", "kmsg"):  # pyfakefs emulates /dev/null itself
            if node not in dev_dir.entries:
                vfs.chardev(dev_dir, node, 0o666)
        init_proc(state)
        kernel_dir = vfs.ensure_dir("/proc/sys/kernel")
        if "osrelease" not in kernel_dir.entries:
            vfs.file(kernel_dir, "osrelease", FAKE_RELEASE + "\n", 0o444)
        children.init(state)

    # ------------------------------------------------------------------ records

    @property
    def writes(self) -> list[WriteRecord]:
        """Every write that reached the kernel, in order (path, value, errno, blocked)."""
        return self.state.writes

    @property
    def blocked_writes(self) -> list[blocking.FakeHelperWrite]:
        """Writes made the bounded way that are still blocked until a VFIO user lets go.

        Each has a helper process in ``/proc`` (``pid``) until it completes.
        """
        return list(self.state.parked)

    @property
    def would_block_events(self) -> list[WouldBlockEvent]:
        """Every write that raised VfioWouldBlock, even if the caller caught it."""
        return self.state.would_block_events

    @property
    def uevents(self) -> list[Uevent]:
        """Every uevent sent (add, remove, bind, unbind...), oldest first."""
        return self.state.uevents

    def limit_uevents(self, count: int | None) -> None:
        """Let each uevent monitor queue at most ``count`` events (None: no limit); past
        it they are dropped and the monitor's next batch says events were lost, as a
        netlink socket whose buffer overflowed does."""
        if count is not None and count < 0:
            raise ValueError("count must be >= 0 or None")
        self.state.uevent_capacity = count

    def send_uevent(self, action: str, address: AddressLike, driver: str | None = None) -> None:
        """Send a uevent that no change of the fake kernel makes (``change``, or a
        message about a device that is not there) to every open monitor."""
        with self.state.lock:
            uevents.emit(self.state, action, PciAddress.parse(address), driver)

    # ------------------------------------------------------------------ building

    def add_driver(
        self,
        name: str,
        ids: Iterable[Sequence[int]] = (),
        sriov: bool = False,
        *,
        leaves_vfs_on_remove: bool | None = None,
        vfio: bool | None = None,
    ) -> None:
        """Register (load) a driver with a (vendor, device) id table.

        ``sriov``: it implements sriov_configure. ``leaves_vfs_on_remove``: its
        remove does not disable SR-IOV, so VFs survive an unbind of the PF
        (None: True for nvme, as observed on a real kernel; False otherwise).
        ``vfio``: it registers its devices with vfio (None: known by its name,
        ``vfio-pci``, ``*-vfio-pci``, ``*_vfio_pci``).
        Unbound matching devices are probed if ``drivers_autoprobe`` is 1.
        """
        pairs = [(int(pair[0]), int(pair[1])) for pair in ids]
        drivers.register_driver(self.state, name, pairs, sriov=sriov,
                                leaves_vfs_on_remove=leaves_vfs_on_remove, vfio=vfio)

    def add_module(self, name: str, *, driver: str | None = None,
                   ids: Iterable[Sequence[int]] = (), sriov: bool = False,
                   aliases: Iterable[str] = (), vfio: bool | None = None) -> None:
        """Install a driver module on disk without loading it (``modprobe`` loads it).

        ``aliases`` are written to ``/lib/modules/<release>/modules.alias`` (the
        release is what ``/proc/sys/kernel/osrelease`` reads).
        """
        spec = ModuleSpec(name=name, driver=driver, ids=[(int(p[0]), int(p[1])) for p in ids],
                          sriov=sriov, aliases=list(aliases), vfio=vfio)
        self.modules[name.replace("-", "_")] = spec
        self._write_aliases()

    def _write_aliases(self) -> None:
        lines = [f"alias {alias} {spec.name}"
                 for spec in self.modules.values() for alias in spec.aliases]
        path = f"/lib/modules/{FAKE_RELEASE}/modules.alias"
        contents = "".join(line + "\n" for line in lines)
        if self.fs.exists(path):
            self.fs.remove_object(path)
        self.fs.create_file(path, contents=contents)

    def modprobe(self, name: str) -> None:
        """Load a module by module or driver name, as ``modprobe`` does (``-`` and ``_``
        are the same); loading a loaded module does nothing. Raises the library's
        ModuleLoadFailed, worded as modprobe's error, for an unknown module.
        """
        from hostdev.errors import ModuleLoadFailed

        key = name.replace("-", "_")
        spec = self.modules.get(key)
        if spec is None:
            spec = next((m for m in self.modules.values()
                         if (m.driver or m.name).replace("-", "_") == key), None)
        if spec is None:
            raise ModuleLoadFailed(
                f"cannot load module {name}: modprobe failed: modprobe: FATAL: Module {key}"
                f" not found in directory /lib/modules/{FAKE_RELEASE}"
            )
        drv = self.state.drivers.get(spec.driver or spec.name)
        if drv is not None and not drv.placeholder:
            return
        drivers.register_driver(self.state, spec.driver or spec.name, spec.ids,
                                sriov=spec.sriov, vfio=spec.vfio)

    def add_device(
        self, address: AddressLike, vendor: int, device: int, class_code: int,
        **fields: object,
    ) -> PciAddress:
        """Hot-add a PCI function (probed normally unless ``driver`` forces a binding).

        ``fields`` are the other facts of a :class:`DeviceSpec`, by name
        (``iommu_group``, ``driver``, ``parent``, ``numa_node``, ``reset_methods``,
        ``vpd``, ``disks``...); the SR-IOV capability may also be given flat, as
        ``sriov_`` + a :class:`SriovSpec` field (``sriov_totalvfs``, ``sriov_numvfs``...;
        ``vf_device`` as is, default: ``device``), and ``vpd`` as raw bytes.
        ``sriov_numvfs``: enable that many VFs right away (needs an SR-IOV PF driver).
        A fact that is unknown or out of range raises FakeKernelSetupError.
        """
        addr = PciAddress.parse(address)
        values: dict[str, object] = {"address": addr, "vendor": vendor, "device": device,
                                     "class_code": class_code, **fields}
        flat = {key: values.pop(key) for key in _FLAT_SRIOV if key in values}
        totalvfs = flat.get("sriov_totalvfs") or 0
        if flat and "sriov" in values:
            raise FakeKernelSetupError(f"device {addr}: give sriov or its flat keywords, not both")
        if totalvfs:
            facts = {_FLAT_SRIOV[key]: value for key, value in flat.items() if value is not None}
            facts.setdefault("vf_device", device)
            values["sriov"] = facts
        elif flat.get("sriov_numvfs"):
            raise FakeKernelSetupError(f"{addr}: sriov_numvfs needs sriov_totalvfs > 0")
        vpd = values.get("vpd")
        if isinstance(vpd, bytes):
            values["vpd"] = VpdSpec(raw_hex=vpd.hex())
        try:
            spec = DeviceSpec.model_validate(values)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            raise FakeKernelSetupError(f"device {addr}: {where}: {error['msg']}") from None
        return self.add_spec(spec)

    def add_spec(self, spec: DeviceSpec, *, enable_vfs: bool = True,
                 host_use: bool = True) -> PciAddress:
        """Hot-add one device from its description (probed normally unless its ``driver``
        forces a binding); ``enable_vfs``: enable its ``sriov.numvfs`` VFs;
        ``host_use``: give it its disks, network interfaces and mount tags."""
        state = self.state
        addr = spec.address
        iommu_group = spec.iommu_group if state.options.iommu else None  # no IOMMU: no group
        if addr in state.devices:
            raise FakeKernelSetupError(f"device {addr} already exists")
        parent_addr = spec.parent
        if parent_addr is not None and parent_addr not in state.devices:
            raise FakeKernelSetupError(f"parent {parent_addr} of {addr} does not exist")
        unknown = [m for m in spec.reset_methods if m not in RESET_METHODS]
        if unknown:
            raise FakeKernelSetupError(f"unknown reset methods {unknown} for {addr}")
        t = spec.model_copy(update={"reset_methods": list(attrs.sort_methods(spec.reset_methods))})
        origin = ("spec", iommu_group)
        if iommu_group in state.groups and state.origin_group.get(origin) != iommu_group:
            raise FakeKernelSetupError(
                f"{addr}: IOMMU group {iommu_group} was already handed out by the kernel"
                " (to a VF or a rescanned device); add fixed-group devices before enabling VFs"
            )
        state.removed.pop(addr, None)
        dev = create_device(state, t)
        if iommu_group is not None:
            join_group(state, dev, iommu_group, origin)
        if dev.sriov is not None and spec.sriov is not None and not spec.sriov.drivers_autoprobe:
            dev.sriov.drivers_autoprobe = False
            refresh(state, dev, Change.VF_AUTOPROBE)
        if spec.driver is None:
            drivers.device_attach(state, dev)
        else:
            self._force_bind(dev, spec.driver)
        if enable_vfs and spec.sriov is not None and spec.sriov.numvfs:
            self._enable_vfs(dev, spec.sriov.numvfs)
        if host_use:
            self._add_children(spec)
        return addr

    def _enable_vfs(self, dev: Device, count: int) -> None:
        if dev.sriov is None:
            raise FakeKernelSetupError(f"{dev.name}: sriov_numvfs needs sriov_totalvfs > 0")
        try:
            sriov.configure(self.state, dev, count, dev.alias + "/sriov_numvfs")
        except OSError as exc:
            raise FakeKernelSetupError(
                f"{dev.name}: cannot enable {count} VFs ({exc.strerror}); the PF"
                " needs a driver registered with sriov=True"
            ) from exc

    def _force_bind(self, dev: Device, name: str) -> None:
        state = self.state
        drv = state.drivers.get(name)
        if drv is None:
            drv = drivers.register_driver(state, name, placeholder=True)
        if drv.vfio:
            refused = drivers.vfio_probe_error(dev)
            if refused:
                raise FakeKernelSetupError(
                    f"{dev.name} cannot be bound to {name}: {os.strerror(refused)}"
                    " (bridge, denylisted, or no IOMMU group)"
                )
        drivers.attach_now(state, dev, drv)

    def load_spec(self, spec: HostSpec) -> None:
        """Build a whole host: drivers, then devices in order, then VFs (as at boot).

        VFs come last so their dynamically numbered IOMMU groups never take a
        number the fixture gives to a later device. ``iommu = false`` boots the
        host without an IOMMU (only on an empty host).
        """
        if not spec.iommu:
            if self.state.devices:
                raise FakeKernelSetupError("iommu = false needs an empty host")
            self.state.options = dataclasses.replace(self.state.options, iommu=False)
        for module in spec.modules:
            self.add_module(module.name, driver=module.driver, ids=module.ids,
                            sriov=module.sriov, aliases=module.aliases, vfio=module.vfio)
        for drv in spec.drivers:
            self.add_driver(drv.name, drv.ids, drv.sriov)
        for dev in spec.devices:
            self.add_spec(dev, enable_vfs=False, host_use=False)
        for dev in spec.devices:
            if dev.sriov is not None and dev.sriov.numvfs:
                self._enable_vfs(self.state.devices[dev.address], dev.sriov.numvfs)
        self._load_host_use(spec)

    def _add_children(self, dev: DeviceSpec) -> None:
        """The disks, network interfaces and mount tags the device's driver makes."""
        for disk in dev.disks:
            self.add_block(dev.address, disk.name, disk.partitions, under=disk.under)
        for ifname in dev.netdevs:
            self.add_netdev(dev.address, ifname)
        for tag in dev.mount_tags:
            self.add_mount_tag(dev.address, tag.tag, tag.fs)

    def _load_host_use(self, spec: HostSpec) -> None:
        """The devices' disks, interfaces and tags, then how the host uses them."""
        for dev in spec.devices:
            self._add_children(dev)
        for stacked in spec.stacked:
            self.add_stacked(stacked.name, stacked.over, dm_name=stacked.dm_name)
        for iface in spec.interfaces:
            self.set_link_up(iface.name, iface.up)
            for address in iface.addresses:
                self.add_address(iface.name, address)
            for route in iface.routes:
                dest, _, via = route.partition(" via ")
                self.add_route(iface.name, dest.strip(), via.strip() or None)
        for mount in spec.mounts:
            self.add_mount(mount.source, mount.target, mount.fstype)
        for swap in spec.swaps:
            self.add_swap(swap)

    def load_fixture(self, name_or_path: str | os.PathLike[str]) -> HostSpec:
        """Load a fixture host by name (``"two-socket-server"``) or TOML path."""
        spec = read_host_spec(name_or_path, self.fs)
        self.load_spec(spec)
        return spec

    # ------------------------------------------------------------------ trouble

    def fail_write(self, path_glob: str, errno: int, times: int | None = 1) -> WriteFault:
        """Make writes to files matching ``path_glob`` fail with ``errno`` before any effect.

        The glob (fnmatch, ``*`` crosses ``/``) is tried against the canonical path
        and the ``/sys/bus/pci/devices/<addr>/<attr>`` form. ``times=None``: always.
        """
        return self.state.faults.add_write_fault(path_glob, errno, times)

    def watch_writes(self, hook: WriteHook | None = None, *, at: int | None = None,
                     match: str | None = None) -> WriteWatch:
        """Watch the writes that reach the kernel from now on (``watch.seen``), and run
        ``hook(path, address)`` just before the ``at``-th of them (1-based) or the first
        whose path matches the glob ``match`` (as for :meth:`fail_write`), before it
        takes effect: the hook may arm a :meth:`fail_write` fault for that very write,
        remove its device or open it from a VFIO user. Writes the hook makes are not
        watched. Use it as a context manager to disarm it on exit.
        """
        return self.state.faults.add_watch(hook, at, match)

    def count_writes(self, action: Callable[[], object]) -> int:
        """How many writes reach the kernel while ``action`` runs."""
        with self.watch_writes() as watch:
            action()
        return len(watch.seen)

    def fail_probe(self, driver: str, errno: int, times: int | None = None) -> ProbeFault:
        """Make ``driver``'s probe return ``-errno`` (bind fails; autoprobe leaves it unbound)."""
        return self.state.faults.add_probe_fault(driver, errno, times)

    def fail_netlink(self, ifname: str = "*", index: int | None = None, field: str = "*",
                     errno: int = 5, times: int | None = 1) -> WriteFault:
        """Make netlink writes of VF settings through ``ifname`` (VF ``index``, setting
        ``field``: mac, vlan, spoofchk, trust, link_state) fail with ``errno`` (EIO by
        default) before any effect; the same as ``fail_write("netlink:IF/vfN/FIELD")``."""
        vf = "*" if index is None else str(int(index))
        return self.fail_write(f"netlink:{ifname}/vf{vf}/{field}", errno, times)

    def crash_after_writes(self, n: int) -> None:
        """Raise SimulatedCrash right after the n-th successful write from now takes effect."""
        if n < 1:
            raise ValueError("n must be >= 1")
        self.state.faults.crash_countdown = n

    def hold_vfio(
        self,
        address: AddressLike,
        *,
        pid: int | None = None,
        comm: str = "qemu-system-x86",
        via: str = "group",
        visible: bool = True,
    ) -> VfioHolder:
        """Open a vfio-bound device from a fake process; returns a handle to release it.

        ``via="group"``: fds to /dev/vfio/vfio, /dev/vfio/<group> and an
        ``anon_inode:[vfio-device]``; ``via="cdev"``: /dev/iommu and
        /dev/vfio/devices/vfioX; ``via="mmap"``: as ``group``, then maps the
        device's BAR0 (a ``/proc/PID/maps`` line naming ``anon_inode:[vfio-device]``)
        and closes every fd. ``visible=False``: the process is in another PID
        namespace, with no ``/proc/PID`` here. Whatever the way, while held the
        device reads ``enable`` 1 and ``power/runtime_usage`` 1 (0 and 0 once the
        last holder is gone). The same ``pid`` again adds to that process.
        Raises FakeKernelSetupError unless the device is on a vfio driver and its
        group is viable (no member on a DMA-using host driver).
        """
        with self.state.lock:
            return hold(self.state, self._device(address), pid, comm, via, visible)

    def enter_pid_namespace(self, inode: int = 4026532500) -> None:
        """From now on the caller runs in another PID namespace (a new pod sharing the
        host's sysfs and state directory): ``/proc/self/ns/pid`` names ``inode``, and
        every process started so far (helpers of the previous pod included) is no
        longer in ``/proc``; the kernel still counts their opens and finishes their
        writes."""
        with self.state.lock:
            ns = self.state.vfs.ensure_dir("/proc/self/ns")
            self.state.vfs.remove(ns, "pid")
            self.state.vfs.link(ns, "pid", f"pid:[{inode}]")
            for process in list(self.state.processes.values()):
                if process.dir is not None:
                    self.state.vfs.remove(self.state.proc, str(process.pid))
                    process.dir = process.fd_dir = process.fdinfo_dir = None
                    process.maps_file = None
                    process.visible = False

    # ------------------------------------------------------------ host use

    def add_block(self, address: AddressLike, name: str, partitions: int | Sequence[str] = 0,
                  *, under: str | None = None) -> list[str]:
        """Give the device's (host) driver a disk ``name`` with ``partitions`` (a count,
        named ``name`` + ``p1``... after a digit, else ``name`` + ``1``..., or names).

        It appears now and whenever that driver binds again, and vanishes at unbind.
        ``under``: path inside the function (default ``nvme/nvmeX`` for ``nvmeXnY``,
        else ``block``). Returns the disk's and partitions' names.
        """
        dev = self._device(address)
        parts = partitions if isinstance(partitions, int) else list(partitions)
        spec = children.new_block_spec(self.state, name, parts, under)
        children.declare(self.state, dev, spec)
        return [spec.name, *spec.partitions]

    def add_stacked(self, name: str, over: Sequence[str], *, dm_name: str | None = None) -> str:
        """A device-mapper (``dm-N``, e.g. LVM) or md (``mdN``) device over present block
        devices; they list it in ``holders/``. Returns its ``MAJ:MIN``."""
        return children.add_stacked(self.state, name, list(over), dm_name)

    def add_netdev(self, address: AddressLike, ifname: str, *,
                   phys_port_name: str | None = None, dev_port: int = 0) -> None:
        """Give the device's (host) driver a network interface ``ifname`` (down, no
        address); it vanishes at unbind with its addresses and routes. On an SR-IOV
        PF, its VFs on a host driver get interfaces too (``<ifname>vN``, see
        docs/kernel-model.md §10).

        ``phys_port_name``: what that file reads (default: none, the read fails with
        EOPNOTSUPP): ``p0`` for a switchdev uplink, ``pf0vf3`` (``c1pf0vf3``,
        ``pf0sf1``, ``pf0``) for a representor, which netlink answers as one (no VF
        list, no VF settings). ``dev_port``: which port of the function."""
        dev = self._device(address)
        with self.state.lock:
            spec = children.new_net_spec(self.state, ifname, phys_port_name, dev_port)
            children.declare(self.state, dev, spec)
            for vf in dev.sriov.vfs if dev.sriov is not None else []:
                vfconfig.on_bind(self.state, vf)  # their drivers see a NIC VF now

    def add_virtual_netdev(self, ifname: str) -> None:
        """A bond, bridge or VLAN interface under ``/sys/devices/virtual/net``."""
        children.add_virtual_netdev(self.state, ifname)

    def set_upper(self, lower: str, upper: str) -> None:
        """Enslave ``lower`` to ``upper`` (``upper_*`` / ``lower_*`` links)."""
        children.set_upper(self.state, lower, upper)

    def set_link_up(self, ifname: str, up: bool = True) -> None:
        """``ip link set IF up`` (or down, which flushes its routes)."""
        children.set_link_up(self.state, ifname, up)

    def add_address(self, ifname: str, address: str) -> None:
        """``ip addr add ADDRESS/PLEN dev IF`` (IPv4 or IPv6)."""
        children.add_address(self.state, ifname, address)

    def add_route(self, ifname: str, destination: str, via: str | None = None) -> None:
        """``ip route add DEST [via GW] dev IF`` (``default`` for 0.0.0.0/0); the link
        must be up."""
        children.add_route(self.state, ifname, destination, via)

    def add_mount_tag(self, address: AddressLike, tag: str, fs: str = "9p") -> None:
        """Give the device (virtio-pci) a virtio child carrying a 9p or virtiofs mount tag."""
        dev = self._device(address)
        children.declare(self.state, dev, children.new_virtio_spec(self.state, tag, fs))

    def add_mount(self, source: str, target: str, fstype: str = "ext4") -> None:
        """Mount ``source``: a block device name, a ``MAJ:MIN``, or a mount tag or pseudo
        source (``hostroot`` with fstype ``9p``); shows in ``/proc/self/mountinfo``."""
        children.add_mount(self.state, source, target, fstype)

    def remove_mount(self, target: str) -> None:
        """Unmount the last mount at ``target``."""
        children.remove_mount(self.state, target)

    def add_swap(self, name_or_path: str) -> None:
        """``swapon`` a block device by name, or a swap file by absolute path."""
        children.add_swap(self.state, name_or_path)

    def remove_swap(self, name_or_path: str) -> None:
        """``swapoff``."""
        children.remove_swap(self.state, name_or_path)

    def remove_device(self, address: AddressLike) -> None:
        """Hot-unplug a device as a write of 1 to its ``remove`` would."""
        dev = self._device(address)
        if dev.is_vf:
            raise FakeKernelSetupError(f"{dev.name} is a VF: change sriov_numvfs instead")
        hotplug.remove(self.state, dev, dev.alias + "/remove")

    def rescan(self) -> list[PciAddress]:
        """Bring back every removed device, as ``/sys/bus/pci/rescan`` would."""
        return [dev.address for dev in hotplug.rescan(self.state)]

    def vf_net(self, pf: AddressLike, index: int) -> dict[str, object]:
        """VF ``index``'s network settings as PF ``pf`` keeps them: ``mac``, ``vlan``,
        ``qos``, ``spoofchk``, ``trust``, ``link_state``."""
        dev = self._vf_pf(pf, index)
        return dict(vfconfig.config(dev, index))

    def set_vf_net(self, pf: AddressLike, index: int, **values: object) -> None:
        """Set VF settings through the PF as an administrator would (``ip link set PF
        vf N mac ...``); refused values raise FakeKernelSetupError."""
        dev = self._vf_pf(pf, index)
        with self.state.lock:
            vfconfig.admin_set(self.state, dev, index, dict(values))

    def _vf_pf(self, pf: AddressLike, index: int) -> Device:
        dev = self._device(pf)
        if dev.sriov is None or not 0 <= index < len(dev.sriov.vfs):
            raise FakeKernelSetupError(f"{dev.name} has no VF {index}")
        return dev

    # ------------------------------------------------------------------ views

    def _device(self, address: AddressLike) -> Device:
        addr = PciAddress.parse(address)
        dev = self.state.devices.get(addr)
        if dev is None:
            raise FakeKernelSetupError(f"no device {addr} in the fake kernel")
        return dev

    def has_device(self, address: AddressLike) -> bool:
        """Whether the device is present."""
        return PciAddress.parse(address) in self.state.devices

    def device_state(self, address: AddressLike) -> DeviceState:
        """A snapshot of one present device."""
        return device_state(self._device(address))

    def addresses(self) -> list[PciAddress]:
        """Addresses of all present devices, sorted."""
        return sorted(self.state.devices)

    def holders(self, address: AddressLike | None = None) -> list[VfioHolder]:
        """Active VFIO holders (of one device, or all)."""
        if address is not None:
            return list(self._device(address).holders)
        return [h for process in self.state.processes.values() for h in process.holds]
