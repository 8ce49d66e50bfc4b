"""Who holds a device through VFIO, and waiting until they let go.

A process holds a device when it has its group node ``/dev/vfio/N``, its
per-device node ``/dev/vfio/devices/vfioX``, or a device fd
(``anon_inode:[vfio-device]``) open, or when it keeps a mapping of a device
region after closing its fds (a ``/proc/PID/maps`` line naming the device fd's
file). Kernels from 6.18 name the device of such an fd in ``/proc/PID/fdinfo``
(``vfio-device-syspath``); on older ones an anonymous device fd or mapping is
counted against the group it sits beside, or against every device when the
process has no group open (we cannot tell which).

``/proc`` shows only the processes of our PID namespace. The kernel's own counts
do not depend on it: a vfio-bound function reads ``enable`` 0 and
``power/runtime_usage`` 0 while nobody has it open, and both go up while a user
holds its device fd or a mapping of it. A device the kernel reports open with no
holder in view is held by a VFIO user outside this process's view.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict

from hostdev.address import PciAddress
from hostdev.errors import BadInput, DeviceBusy, DeviceNotFound, HostdevError
from hostdev.linux.drivers import is_vfio_driver
from hostdev.linux.sysfs import Sysfs, printable

_ANON_DEVICE = "anon_inode:[vfio-device]"
_CDEV_DIR = "/dev/vfio/devices/"
_SYSPATH = "vfio-device-syspath:"
#: What a holder outside our PID namespace is called (it has no pid or command we can see).
OUTSIDE_VIEW = "a VFIO user outside this process's view"
#: Set on the log records of the release wait, so a front end can show only those at INFO.
WAIT_LOG_FLAG = "hostdev_wait"
#: Seconds between two "still waiting" messages.
REPORT_EVERY = 5.0

log = logging.getLogger("hostdev")


class Holder(BaseModel):
    """A VFIO user holding a device.

    ``pid`` is None for a user outside this process's view (another PID
    namespace): then ``comm`` is :data:`OUTSIDE_VIEW` and ``via`` says what the
    kernel reported.
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    pid: int | None
    comm: str
    #: What it has open: ``group 12``, ``cdev vfio3``, ``device fd``, ``mapping``;
    #: for a user outside our view, the kernel's counts (``enable=1, runtime_usage=1``).
    via: list[str]

    @property
    def visible(self) -> bool:
        """Whether this process can see the holder in ``/proc``."""
        return self.pid is not None

    def __str__(self) -> str:
        if self.pid is None:
            return f"{self.comm} (the kernel reports {', '.join(self.via)})"
        return f"{printable(self.comm)} (pid {self.pid}, {', '.join(self.via)})"


class _Nodes:
    """The device nodes through which one PCI function can be held."""

    __slots__ = ("cdevs", "group")

    def __init__(self, sysfs: Sysfs, address: PciAddress) -> None:
        name = sysfs.read_link_name(sysfs.device_path(address, "iommu_group"), address)
        self.group = f"/dev/vfio/{name}" if name and name.isdigit() else None
        self.cdevs = {f"{_CDEV_DIR}{c}"
                      for c in sysfs.list_dir(sysfs.device_path(address, "vfio-dev"), address)}


class KernelCount:
    """The kernel's count of users of a vfio-bound function."""

    __slots__ = ("enable", "runtime_usage")

    def __init__(self, enable: int | None, runtime_usage: int | None) -> None:
        self.enable = enable
        self.runtime_usage = runtime_usage

    @property
    def open(self) -> bool:
        """Whether the kernel reports the device open by a VFIO user.

        vfio-pci enables the function (``enable`` +1) and takes a runtime PM
        reference (``runtime_usage`` +1) on the first open and drops both after
        the last user (fd or mapping) is gone. Either alone can be raised for
        another reason (an ``enable`` write before the bind; vfio-pci's
        ``disable_idle_d3`` or ``power/control`` = ``on``), so both must agree;
        kernels without ``runtime_usage`` (no CONFIG_PM_ADVANCED_DEBUG) rely on
        ``enable`` alone. An unreadable ``enable`` counts as open: we cannot
        tell, and unbinding a held device blocks.
        """
        if self.enable is None:
            return True
        return self.enable > 0 and (self.runtime_usage is None or self.runtime_usage > 0)

    def __str__(self) -> str:
        def show(value: int | None) -> str:
            return "unreadable" if value is None else str(value)
        return f"enable={show(self.enable)}, runtime_usage={show(self.runtime_usage)}"


def kernel_count(sysfs: Sysfs, address: PciAddress) -> KernelCount | None:
    """The kernel's user count of ``address``; None unless it is bound to a vfio driver.

    (On a host driver the counts include the driver's own, and a device held
    through VFIO cannot be on one.)
    """
    driver = sysfs.read_link_name(sysfs.device_path(address, "driver"), address)
    if not is_vfio_driver(driver, sysfs.exists(sysfs.device_path(address, "vfio-dev"))):
        return None
    return KernelCount(read_count(sysfs, sysfs.device_path(address, "enable"), address),
                       read_count(sysfs, sysfs.device_path(address, "power/runtime_usage"),
                                   address))


def read_count(sysfs: Sysfs, path: str, address: PciAddress) -> int | None:
    """A count attribute (``enable``, ``power/runtime_usage``); None when absent or
    unreadable; DeviceNotFound when the device is gone."""
    try:
        text = sysfs.read_optional(path, address)
    except DeviceNotFound:
        raise  # gone: no count at all, as for its other attributes
    except HostdevError:
        return None
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


#: What one process has open: link targets, and for anonymous VFIO device fds the
#: device named by fdinfo (None when the kernel does not say).
_OpenFiles = list[tuple[str, str | None]]


def holders(sysfs: Sysfs, address: PciAddress) -> list[Holder]:
    """VFIO users that hold ``address`` (empty when none)."""
    return holders_of(sysfs, [address])[address]


def holders_of(sysfs: Sysfs, addresses: list[PciAddress]) -> dict[PciAddress, list[Holder]]:
    """Holders of each of ``addresses``, from one pass over ``/proc``.

    Mappings are looked for (one read of ``/proc/PID/maps`` per process) only
    when the kernel reports one of the devices open: a mapping keeps the device
    open, so with every count at 0 there is none to find.
    """
    nodes: dict[PciAddress, _Nodes] = {}
    counts: dict[PciAddress, KernelCount | None] = {}
    for addr in addresses:
        try:
            nodes[addr] = _Nodes(sysfs, addr)
            counts[addr] = kernel_count(sysfs, addr)
        except DeviceNotFound:
            # Gone meanwhile: nobody holds it; the caller finds it gone on its own.
            nodes.pop(addr, None)
    #: Devices a mapping may belong to: vfio-bound and reported open by the kernel.
    mappable = {addr for addr, count in counts.items() if count is not None and count.open}
    found: dict[PciAddress, list[Holder]] = {addr: [] for addr in addresses}
    for pid in sorted((p for p in sysfs.list_dir(sysfs.proc) if p.isdigit()), key=int):
        files = _open_files(sysfs, pid)
        maps = _mappings(sysfs, pid) if mappable else []
        if not files and not maps:
            continue
        comm: str | None = None
        for addr, node in nodes.items():
            via = _via(files, addr, node)
            if addr in mappable and _maps_device(files, maps, addr, node):
                via.append("mapping")
            if via:
                if comm is None:
                    comm = (_read_quiet(sysfs, f"{sysfs.proc}/{pid}/comm") or "?").strip()
                found[addr].append(Holder(pid=int(pid), comm=comm, via=via))
    for addr, count in counts.items():
        # A holder in view raises the same counts: report it, not a second, unseen one.
        if count is not None and count.open and not found[addr]:
            found[addr].append(Holder(pid=None, comm=OUTSIDE_VIEW, via=[str(count)]))
    if log.isEnabledFor(logging.DEBUG):  # what --verbose shows
        for addr, held in found.items():
            for holder in held:
                log.debug("holder found: %s holds %s", holder, addr)
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


def _mappings(sysfs: Sysfs, pid: str) -> list[str]:
    """The files of a process's VFIO device mappings (``anon_inode:[vfio-device]`` or a cdev)."""
    try:
        lines = sysfs.read_lines_with(f"{sysfs.proc}/{pid}/maps", "vfio")
    except HostdevError:
        return []  # gone, or not ours to look at (maps needs ptrace access)
    out = []
    for line in lines or ():
        # address perms offset dev inode pathname: the name is the sixth field.
        fields = line.split(None, 5)
        if len(fields) == 6:
            name = fields[5].strip()
            if name == _ANON_DEVICE or name.startswith(_CDEV_DIR):
                out.append(name)
    return out


def _maps_device(files: _OpenFiles, maps: list[str], address: PciAddress,
                 node: _Nodes) -> bool:
    """Whether one of a process's mappings may be of ``address``.

    A mapping of a cdev names its device; an anonymous one (the group's device
    fd, 6.1) does not, so it counts like an unnamed device fd: against the group
    the process has open, or against every device when it has none.
    """
    if any(name in node.cdevs for name in maps):
        return True
    if _ANON_DEVICE not in maps:
        return False
    groups = [target for target, _ in files if target[10:].isdigit()]
    return not groups or node.group in groups


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


def check_timeout(value: object, what: str = "release timeout") -> float:
    """``value`` as a number of seconds: finite and >= 0, else BadInput."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadInput(f"{what} must be a number of seconds, not {value!r}")
    try:
        seconds = float(value)
    except OverflowError:  # an int too large for a float
        seconds = math.inf
    if not math.isfinite(seconds) or seconds < 0:
        raise BadInput(f"{what} must be a finite number of seconds >= 0, not {value!r}")
    return seconds


def wait_released(sysfs: Sysfs, address: PciAddress, timeout: float, *,
                  sleep: Callable[[float], None] = time.sleep,
                  clock: Callable[[], float] = time.monotonic) -> None:
    """Return once no VFIO user holds ``address``; DeviceBusy after ``timeout`` seconds."""
    busy = wait_all_released(sysfs, [address], timeout, sleep=sleep, clock=clock)
    if busy:
        raise busy[address]


def wait_all_released(sysfs: Sysfs, addresses: list[PciAddress], timeout: float, *,
                      sleep: Callable[[float], None] = time.sleep,
                      clock: Callable[[], float] = time.monotonic,
                      ) -> dict[PciAddress, DeviceBusy]:
    """Wait, with one deadline for all, until no VFIO user holds any of ``addresses``.

    Polls with back-off (50 ms doubling to 1 s); returns a DeviceBusy for each
    device still held after ``timeout`` seconds (empty when all were released).
    Says at INFO whom it waits for (once per holder), then every few seconds
    how long is left.
    """
    timeout = check_timeout(timeout)
    start = clock()
    deadline = start + timeout
    next_report = start + REPORT_EVERY
    announced: set[tuple[PciAddress, int | None, str]] = set()
    delay = 0.05
    pending = list(addresses)
    while True:
        held = {a: found for a, found in holders_of(sysfs, pending).items() if found}
        now = clock()
        left = deadline - now
        if not held or left <= 0:
            return {addr: _busy(addr, found) for addr, found in held.items()}
        for addr, found in held.items():
            for holder in found:
                key = (addr, holder.pid, holder.comm)
                if key not in announced:
                    announced.add(key)
                    log.info("waiting up to %g s for %s to release %s", timeout, holder, addr,
                             extra={WAIT_LOG_FLAG: True})
        if now >= next_report:
            next_report = now + REPORT_EVERY
            for addr, found in held.items():
                log.info("still waiting for %s to release %s: %.0f s left",
                         "; ".join(str(h) for h in found), addr, left,
                         extra={WAIT_LOG_FLAG: True})
        pending = list(held)
        sleep(min(delay, left))
        delay = min(delay * 2, 1.0)


def _busy(address: PciAddress, found: list[Holder]) -> DeviceBusy:
    if all(not h.visible for h in found):
        who = "; ".join(f"{OUTSIDE_VIEW} (another PID namespace: no process here has it"
                        f" open, but the kernel reports {', '.join(h.via)})" for h in found)
    else:
        who = "a VFIO user: " + "; ".join(str(h) for h in found)
    return DeviceBusy(
        f"PCI device {address} is still held by {who}; not unbinding"
        f" it (the kernel would block). Stop the holder or wait, then retry",
        address=address, holders=found,
    )
