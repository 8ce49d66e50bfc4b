"""Who holds a device through VFIO, and waiting until they let go.

A process holds a device when it has its group node ``/dev/vfio/N``, its
per-device node ``/dev/vfio/devices/vfioX``, or a device fd
(``anon_inode:[vfio-device]``) open. Kernels from 6.18 name the device of such
an fd in ``/proc/PID/fdinfo`` (``vfio-device-syspath``); on older ones an
anonymous device fd is counted against the group it sits beside, or against
every device when the process has no group open (we cannot tell which).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict

from hostdev.address import PciAddress
from hostdev.errors import DeviceBusy, HostdevError
from hostdev.sysfs import Sysfs

_ANON_DEVICE = "anon_inode:[vfio-device]"
_SYSPATH = "vfio-device-syspath:"


class Holder(BaseModel):
    """A process holding a VFIO device."""

    model_config = ConfigDict(frozen=True)

    pid: int
    comm: str
    #: What it has open: ``group 12``, ``cdev vfio3``, ``device fd``.
    via: list[str]

    def __str__(self) -> str:
        return f"{self.comm} (pid {self.pid}, {', '.join(self.via)})"


class _Nodes:
    """The device nodes through which one PCI function can be held."""

    __slots__ = ("cdevs", "group")

    def __init__(self, sysfs: Sysfs, address: PciAddress) -> None:
        name = sysfs.read_link_name(sysfs.device_path(address, "iommu_group"), address)
        self.group = f"/dev/vfio/{name}" if name and name.isdigit() else None
        self.cdevs = {f"/dev/vfio/devices/{c}"
                      for c in sysfs.list_dir(sysfs.device_path(address, "vfio-dev"), address)}


#: What one process has open: link targets, and for anonymous VFIO device fds the
#: device named by fdinfo (None when the kernel does not say).
_OpenFiles = list[tuple[str, str | None]]


def holders(sysfs: Sysfs, address: PciAddress) -> list[Holder]:
    """Processes that hold ``address`` through VFIO (empty when none)."""
    return holders_of(sysfs, [address])[address]


def holders_of(sysfs: Sysfs, addresses: list[PciAddress]) -> dict[PciAddress, list[Holder]]:
    """Holders of each of ``addresses``, from one pass over ``/proc``."""
    nodes = {addr: _Nodes(sysfs, addr) for addr in addresses}
    found: dict[PciAddress, list[Holder]] = {addr: [] for addr in addresses}
    for pid in sorted((p for p in sysfs.list_dir(sysfs.proc) if p.isdigit()), key=int):
        files = _open_files(sysfs, pid)
        if not files:
            continue
        comm: str | None = None
        for addr, node in nodes.items():
            via = _via(files, addr, node)
            if via:
                if comm is None:
                    comm = (_read_quiet(sysfs, f"{sysfs.proc}/{pid}/comm") or "?").strip()
                found[addr].append(Holder(pid=int(pid), comm=comm, via=via))
    return found


def _open_files(sysfs: Sysfs, pid: str) -> _OpenFiles:
    """The VFIO files a process has open (nothing else is kept)."""
    fd_dir = f"{sysfs.proc}/{pid}/fd"
    try:
        fds = sysfs.list_dir(fd_dir)
    except HostdevError:
        return []  # gone, or not ours to look at
    files: _OpenFiles = []
    for fd in fds:
        try:
            target = sysfs.read_link(f"{fd_dir}/{fd}")
        except HostdevError:
            continue
        if target == _ANON_DEVICE:
            files.append((target, _fdinfo_syspath(sysfs, f"{sysfs.proc}/{pid}/fdinfo/{fd}")))
        elif target is not None and target.startswith("/dev/vfio/"):
            files.append((target, None))
    return files


def _via(files: _OpenFiles, address: PciAddress, node: _Nodes) -> list[str]:
    """How a process with ``files`` open holds ``address`` (empty: it does not)."""
    via: list[str] = []
    has_any_group = holds_group = False
    anonymous = 0
    for target, syspath in files:
        if target == node.group:
            via.append(f"group {target.rsplit('/', 1)[-1]}")
            has_any_group = holds_group = True
        elif target[10:].isdigit():
            has_any_group = True
        elif target in node.cdevs:
            via.append(f"cdev {target.rsplit('/', 1)[-1]}")
        elif target == _ANON_DEVICE:
            if syspath is None:
                anonymous += 1
            elif syspath.rstrip("/").rsplit("/", 1)[-1] == str(address):
                via.append("device fd")
    if anonymous and (holds_group or not has_any_group):
        via.append("device fd (unnamed)")
    return via


def _fdinfo_syspath(sysfs: Sysfs, path: str) -> str | None:
    text = _read_quiet(sysfs, path)
    if not text:
        return None
    for line in text.splitlines():
        if line.startswith(_SYSPATH):
            return line[len(_SYSPATH):].strip()
    return None


def _read_quiet(sysfs: Sysfs, path: str) -> str | None:
    try:
        return sysfs.read_optional(path)
    except HostdevError:
        return None


def wait_released(sysfs: Sysfs, address: PciAddress, timeout: float, *,
                  sleep: Callable[[float], None] = time.sleep,
                  clock: Callable[[], float] = time.monotonic) -> None:
    """Return once no process holds ``address``; DeviceBusy after ``timeout`` seconds."""
    busy = wait_all_released(sysfs, [address], timeout, sleep=sleep, clock=clock)
    if busy:
        raise busy[address]


def wait_all_released(sysfs: Sysfs, addresses: list[PciAddress], timeout: float, *,
                      sleep: Callable[[float], None] = time.sleep,
                      clock: Callable[[], float] = time.monotonic,
                      ) -> dict[PciAddress, DeviceBusy]:
    """Wait, with one deadline for all, until no process holds any of ``addresses``.

    Polls with back-off (50 ms doubling to 1 s); returns a DeviceBusy for each
    device still held after ``timeout`` seconds (empty when all were released).
    """
    deadline = clock() + max(0.0, timeout)
    delay = 0.05
    pending = list(addresses)
    while True:
        held = {a: found for a, found in holders_of(sysfs, pending).items() if found}
        left = deadline - clock()
        if not held or left <= 0:
            return {addr: _busy(addr, found) for addr, found in held.items()}
        pending = list(held)
        sleep(min(delay, left))
        delay = min(delay * 2, 1.0)


def _busy(address: PciAddress, found: list[Holder]) -> DeviceBusy:
    names = "; ".join(str(h) for h in found)
    return DeviceBusy(
        f"PCI device {address} is still held by a VFIO user: {names}; not unbinding"
        f" it (the kernel would block). Stop the holder or wait, then retry",
        address=address, holders=found,
    )
