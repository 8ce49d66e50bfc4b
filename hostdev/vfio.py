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


def _device_nodes(sysfs: Sysfs, address: PciAddress) -> tuple[int | None, set[str]]:
    group_name = sysfs.read_link_name(sysfs.device_path(address, "iommu_group"), address)
    group = int(group_name) if group_name and group_name.isdigit() else None
    cdevs = set(sysfs.list_dir(sysfs.device_path(address, "vfio-dev"), address))
    return group, cdevs


def holders(sysfs: Sysfs, address: PciAddress) -> list[Holder]:
    """Processes that hold ``address`` through VFIO (empty when none)."""
    group, cdevs = _device_nodes(sysfs, address)
    group_node = f"/dev/vfio/{group}" if group is not None else None
    cdev_nodes = {f"/dev/vfio/devices/{c}" for c in cdevs}
    found: list[Holder] = []
    for pid_name in sysfs.list_dir(sysfs.proc):
        if not pid_name.isdigit():
            continue
        via = _scan_process(sysfs, pid_name, address, group_node, cdev_nodes)
        if via:
            comm = _read_quiet(sysfs, f"{sysfs.proc}/{pid_name}/comm") or "?"
            found.append(Holder(pid=int(pid_name), comm=comm.strip(), via=via))
    return sorted(found, key=lambda h: h.pid)


def _scan_process(sysfs: Sysfs, pid: str, address: PciAddress, group_node: str | None,
                  cdev_nodes: set[str]) -> list[str]:
    fd_dir = f"{sysfs.proc}/{pid}/fd"
    try:
        fds = sysfs.list_dir(fd_dir)
    except HostdevError:
        return []  # gone, or not ours to look at
    via: list[str] = []
    has_any_group = False
    anonymous = 0
    for fd in fds:
        try:
            target = sysfs.read_link(f"{fd_dir}/{fd}")
        except HostdevError:
            continue
        if target is None:
            continue
        if target == group_node:
            via.append(f"group {group_node.rsplit('/', 1)[-1]}")
            has_any_group = True
        elif target.startswith("/dev/vfio/") and target[10:].isdigit():
            has_any_group = True
        elif target in cdev_nodes:
            via.append(f"cdev {target.rsplit('/', 1)[-1]}")
        elif target == _ANON_DEVICE:
            syspath = _fdinfo_syspath(sysfs, f"{sysfs.proc}/{pid}/fdinfo/{fd}")
            if syspath is None:
                anonymous += 1
            elif syspath.rstrip("/").rsplit("/", 1)[-1] == str(address):
                via.append("device fd")
    ours = group_node is not None and f"group {group_node[10:]}" in via
    if anonymous and (ours or not has_any_group):
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
    """Return once no process holds ``address``; DeviceBusy after ``timeout`` seconds.

    Polls with back-off (50 ms doubling to 1 s).
    """
    deadline = clock() + max(0.0, timeout)
    delay = 0.05
    while True:
        found = holders(sysfs, address)
        if not found:
            return
        left = deadline - clock()
        if left <= 0:
            names = "; ".join(str(h) for h in found)
            raise DeviceBusy(
                f"PCI device {address} is still held by a VFIO user: {names}; not unbinding"
                f" it (the kernel would block). Stop the holder or wait, then retry",
                address=address, holders=found,
            )
        sleep(min(delay, left))
        delay = min(delay * 2, 1.0)
