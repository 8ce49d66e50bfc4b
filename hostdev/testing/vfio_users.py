"""VFIO: device nodes of vfio-bound devices, and the processes that hold them.

Binding a vfio driver registers the device (docs/kernel-model.md §4.1): ``/dev/vfio/<group>``
while at least one device of the group is on a vfio driver, plus the
``vfio-dev/vfioX`` class device and, with CONFIG_VFIO_DEVICE_CDEV (the
``vfio_device_cdev`` option, 6.6+), the per-device cdev ``/dev/vfio/devices/vfioX``.

A :class:`VfioHolder` is a fake user space process (QEMU, say) with the device
open, shown in ``/proc/PID/{comm,fd,fdinfo,maps}`` as a real kernel shows it (4.3),
or not shown at all when it runs in another PID namespace; either way the
device's ``enable`` and ``power/runtime_usage`` count the open.
While held, operations that would block on a real kernel raise
:class:`~hostdev.testing.events.VfioWouldBlock` instead (4.4), unless the library
made them the bounded way (a helper process on a real host): those are parked
until the holder releases (see :mod:`hostdev.testing.blocking`). The device's
IOMMU group counts as claimed (host driver binds fail with EBUSY, 4.2).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pyfakefs.fake_file import FakeDirectory, FakeFile

from hostdev.testing.events import (
    FakeKernelSetupError,
    VfioWouldBlock,
    WouldBlockEvent,
    WriteParked,
)
from hostdev.testing.model import Change, Device, KernelState
from hostdev.testing.tree import refresh
from hostdev.testing.vfs import relpath, set_contents

VFIO_CDEV_MAJOR = 511
_FIRST_PID = 4000


# --------------------------------------------------------------------------- nodes


def register(state: KernelState, dev: Device) -> None:
    """``vfio_register_group_dev``: create the group node (first device) and the cdev."""
    vfs = state.vfs
    group = dev.iommu_group
    assert group is not None, "vfio probe refuses devices without an IOMMU group"
    count = state.vfio_group_count.get(group, 0)
    if count == 0:
        vfs.chardev(state.dev_vfio, str(group))
    state.vfio_group_count[group] = count + 1
    index = state.vfio_ids.alloc()
    dev.vfio_index = index
    name = f"vfio{index}"
    class_dir = vfs.mkdir(vfs.mkdir(dev.dir, "vfio-dev"), name)
    class_path = f"{dev.path}/vfio-dev/{name}"
    cdev = state.options.vfio_device_cdev
    if cdev:  # device_add makes ``dev`` (and the uevent's numbers) only for a device number
        vfs.file(class_dir, "dev", f"{VFIO_CDEV_MAJOR}:{index}\n", 0o444)
    vfs.file(class_dir, "uevent",
             f"MAJOR={VFIO_CDEV_MAJOR}\nMINOR={index}\nDEVNAME=vfio/devices/{name}\n"
             if cdev else "", 0o644)
    vfs.link(class_dir, "device", relpath(dev.path, class_path))
    vfs.link(state.class_vfio, name, relpath(class_path, "/sys/class/vfio-dev"))
    if cdev:
        devices = state.dev_vfio.entries.get("devices")
        if not isinstance(devices, FakeDirectory):
            devices = vfs.mkdir(state.dev_vfio, "devices")
        vfs.chardev(devices, name)


def unregister(state: KernelState, dev: Device) -> None:
    """Undo :func:`register` (the group node goes with the group's last vfio device)."""
    vfs = state.vfs
    index = dev.vfio_index
    if index is not None:
        name = f"vfio{index}"
        vfs.remove(dev.dir, "vfio-dev")
        vfs.remove(state.class_vfio, name)
        devices = state.dev_vfio.entries.get("devices")
        if isinstance(devices, FakeDirectory):
            vfs.remove(devices, name)
            if not devices.entries:
                vfs.remove(state.dev_vfio, "devices")
        state.vfio_ids.free(index)
        dev.vfio_index = None
    group = dev.iommu_group
    if group is not None:
        count = state.vfio_group_count.get(group, 0) - 1
        if count <= 0:
            state.vfio_group_count.pop(group, None)
            vfs.remove(state.dev_vfio, str(group))
        else:
            state.vfio_group_count[group] = count


# --------------------------------------------------------------------------- users


def group_claimed(state: KernelState, group: int | None) -> bool:
    """Whether a VFIO user owns the group's DMA (container set or iommufd bound)."""
    return group is not None and state.group_claims.get(group, 0) > 0


def ensure_not_blocking(
    state: KernelState, devices: Iterable[Device], operation: str, path: str
) -> None:
    """Raise VfioWouldBlock (and log it) if any of ``devices`` is held by a VFIO user.

    A write made through the library's bounded path (a helper process on a real
    host) is parked instead (WriteParked): it completes when the holders let go.
    """
    held = [dev for dev in devices if dev.holders]
    if not held:
        return
    addresses = [dev.name for dev in held]
    if state.bounded is not None:
        raise WriteParked(addresses)
    pids = sorted({holder.pid for dev in held for holder in dev.holders})
    state.would_block_events.append(
        WouldBlockEvent(operation, path, tuple(addresses), tuple(pids))
    )
    raise VfioWouldBlock(operation, path, addresses, pids)


class VfioProcess:
    """A fake user-space process under ``/proc/PID`` (or, not ``visible``, in another PID
    namespace: the kernel counts its opens but this ``/proc`` does not show it)."""

    def __init__(self, state: KernelState, pid: int, comm: str, visible: bool = True) -> None:
        vfs = state.vfs
        self.state = state
        self.pid = pid
        self.comm = comm
        self.visible = visible
        self.dir: FakeDirectory | None = None
        self.fd_dir: FakeDirectory | None = None
        self.fdinfo_dir: FakeDirectory | None = None
        self.maps_file: FakeFile | None = None
        if visible:
            self.dir = vfs.mkdir(state.proc, str(pid))
            vfs.file(self.dir, "comm", comm + "\n", 0o644)
            vfs.file(self.dir, "cmdline", comm + "\0", 0o444)
            self.fd_dir = vfs.mkdir(self.dir, "fd")
            self.fdinfo_dir = vfs.mkdir(self.dir, "fdinfo")
            self.maps_file = vfs.file(self.dir, "maps", "", 0o444)
        self.next_fd = 0
        self.holds: list[VfioHolder] = []
        self.shared_fds: dict[str, int] = {}
        self.shared_refs: dict[str, int] = {}
        #: Device mappings: (start address, file name as maps shows it).
        self.mappings: list[tuple[int, str]] = []
        self._next_map = 0x7F0000000000
        self._render_maps()
        for _ in range(3):
            self.open("/dev/null")

    def open(self, target: str, extra_info: str = "") -> int:
        """Add fd link ``N -> target`` and its fdinfo; return N."""
        fd = self.next_fd
        self.next_fd += 1
        if self.fd_dir is not None and self.fdinfo_dir is not None:
            self.state.vfs.link(self.fd_dir, str(fd), target)
            info = f"pos:\t0\nflags:\t02100002\nmnt_id:\t25\nino:\t{1000 + fd}\n{extra_info}"
            self.state.vfs.file(self.fdinfo_dir, str(fd), info, 0o444)
        return fd

    def close(self, fd: int) -> None:
        """Close fd N."""
        if self.fd_dir is not None and self.fdinfo_dir is not None:
            self.state.vfs.remove(self.fd_dir, str(fd))
            self.state.vfs.remove(self.fdinfo_dir, str(fd))

    def map(self, name: str) -> int:
        """Map 16 KiB of ``name`` (a device region); return the mapping's start address."""
        start = self._next_map
        self._next_map += 0x10000
        self.mappings.append((start, name))
        self._render_maps()
        return start

    def unmap(self, start: int) -> None:
        """Remove the mapping that starts at ``start``."""
        self.mappings = [m for m in self.mappings if m[0] != start]
        self._render_maps()

    def _render_maps(self) -> None:
        """``/proc/PID/maps``: the program, heap and stack, and each device mapping."""
        if self.maps_file is None:
            return
        lines = [f"55d4c0a00000-55d4c0c00000 r-xp 00000000 fd:01 1311 /usr/bin/{self.comm}",
                 "55d4c2000000-55d4c2400000 rw-p 00000000 00:00 0 [heap]"]
        for start, name in self.mappings:
            # vfio-pci regions: the offset is the region index << 40 (BAR0: 0).
            lines.append(f"{start:x}-{start + 0x4000:x} rw-s 00000000 00:0e 1060 {name}")
        lines.append("7ffc8e400000-7ffc8e421000 rw-p 00000000 00:00 0 [stack]")
        set_contents(self.maps_file, "\n".join(lines) + "\n")

    def acquire_shared(self, target: str) -> int:
        """An fd to ``target`` shared by several holds (container, group, iommufd)."""
        fd = self.shared_fds.get(target)
        if fd is None:
            fd = self.shared_fds[target] = self.open(target)
        self.shared_refs[target] = self.shared_refs.get(target, 0) + 1
        return fd

    def release_shared(self, target: str) -> None:
        """Drop one reference to a shared fd, closing it with the last."""
        refs = self.shared_refs[target] - 1
        if refs:
            self.shared_refs[target] = refs
            return
        del self.shared_refs[target]
        self.close(self.shared_fds.pop(target))

    def exit(self) -> None:
        """The process ends: ``/proc/PID`` disappears."""
        if self.dir is not None:
            self.state.vfs.remove(self.state.proc, str(self.pid))
        self.state.processes.pop(self.pid, None)


#: How :meth:`FakeKernel.hold_vfio` opens a device.
HOLD_VIA = ("group", "cdev", "mmap")


class VfioHolder:
    """One device held open by a fake process; :meth:`release` closes it.

    ``via="mmap"``: the process opened the device through its group, mapped a
    region (BAR0) of the device fd and closed every fd; the mapping alone keeps
    the device open, as on a real kernel.
    """

    def __init__(self, process: VfioProcess, dev: Device,
                 via: Literal["group", "cdev", "mmap"]) -> None:
        self.process = process
        self.device = dev
        self.via = via
        self.address = dev.name
        self.group = dev.iommu_group
        self.released = False
        self.mapping: int | None = None
        state = process.state
        if via in ("group", "mmap"):
            self._shared = ["/dev/vfio/vfio", f"/dev/vfio/{self.group}"]
            target = "anon_inode:[vfio-device]"
        else:
            self._shared = ["/dev/iommu"]
            target = f"/dev/vfio/devices/vfio{dev.vfio_index}"
        self.fds = [process.acquire_shared(path) for path in self._shared]
        syspath = f"vfio-device-syspath: {dev.path}\n" if state.options.vfio_fdinfo_syspath else ""
        self.device_fd: int | None = process.open(target, syspath)
        self.fds.append(self.device_fd)
        if via == "mmap":
            self.mapping = process.map(target)
            self._close_fds()

    @property
    def pid(self) -> int:
        """The holder's process id (in its own PID namespace when not visible)."""
        return self.process.pid

    @property
    def visible(self) -> bool:
        """Whether the holder's process shows in this ``/proc``."""
        return self.process.visible

    def release(self) -> None:
        """Close the device (and, with its last hold, the process exits). Idempotent."""
        with self.process.state.lock:
            if not self.released:
                self._close()

    def _close_fds(self) -> None:
        process = self.process
        if self.device_fd is not None:
            process.close(self.device_fd)
            self.device_fd = None
            for path in reversed(self._shared):
                process.release_shared(path)
        self.fds = []

    def _close(self) -> None:
        self.released = True
        process = self.process
        state = process.state
        self._close_fds()
        if self.mapping is not None:
            process.unmap(self.mapping)
            self.mapping = None
        process.holds.remove(self)
        if not process.holds:
            process.exit()
        self.device.holders.remove(self)
        if self.group is not None:
            state.group_claims[self.group] -= 1
            if not state.group_claims[self.group]:
                del state.group_claims[self.group]
        refresh(state, self.device, Change.BINDING)
        for handle in list(state.parked):  # writes parked on this user may complete now
            handle.resume()

    def __enter__(self) -> VfioHolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self.released else "holding"
        seen = "" if self.visible else ", not visible"
        return (f"VfioHolder(pid={self.pid}, address={self.address!r}, via={self.via!r}"
                f"{seen}, {state})")


def hold(
    state: KernelState, dev: Device, pid: int | None, comm: str, via: str,
    visible: bool = True,
) -> VfioHolder:
    """Open ``dev`` from a fake process (see :meth:`FakeKernel.hold_vfio`)."""
    if via not in HOLD_VIA:
        raise FakeKernelSetupError(
            f"hold_vfio via must be 'group', 'cdev' or 'mmap', not {via!r}")
    if via == "cdev" and not state.options.vfio_device_cdev:
        raise FakeKernelSetupError("hold_vfio via='cdev' needs FakeKernel(vfio_device_cdev=True)")
    if dev.driver is None or not dev.driver.vfio:
        bound = dev.driver.name if dev.driver else "no driver"
        raise FakeKernelSetupError(
            f"hold_vfio({dev.name}): the device is bound to {bound}, not a vfio driver;"
            " bind it to vfio-pci first"
        )
    members = state.groups.get(dev.iommu_group, {}) if dev.iommu_group is not None else {}
    blockers = [
        f"{other.name} ({other.driver.name})"
        for other in members.values()
        if other.driver is not None and not other.driver.managed_dma
    ]
    if blockers:
        raise FakeKernelSetupError(
            f"hold_vfio({dev.name}): IOMMU group {dev.iommu_group} is not viable, a real"
            f" VFIO user could not open it: {', '.join(blockers)} on host drivers"
        )
    if pid is None:
        pid = _FIRST_PID
        while pid in state.processes:
            pid += 1
    process = state.processes.get(pid)
    if process is None:
        process = state.processes[pid] = VfioProcess(state, pid, comm, visible)
    elif process.visible != visible:
        raise FakeKernelSetupError(
            f"hold_vfio(pid={pid}): that process is {'' if process.visible else 'not '}visible;"
            f" visible={visible} contradicts it")
    holder = VfioHolder(process, dev, via)  # type: ignore[arg-type]  # checked above
    process.holds.append(holder)
    dev.holders.append(holder)
    if holder.group is not None:
        state.group_claims[holder.group] = state.group_claims.get(holder.group, 0) + 1
    refresh(state, dev, Change.BINDING)
    return holder


def init_proc(state: KernelState) -> None:
    """``/proc/1``: an init process with ordinary fds, so scans meet non-VFIO entries."""
    if "1" in state.proc.entries:
        return
    init = state.processes[1] = VfioProcess(state, 1, "systemd")
    init.open("socket:[12345]")
    init.open("/dev/kmsg")
