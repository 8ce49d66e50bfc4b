"""Plain sysfs access for the inner real-kernel tests (runs only inside the QEMU guest).

Every write goes through :func:`write`, which refuses to touch anything unless
:func:`in_guest` is true, so these helpers can never change the host's real ``/sys``.
Outcomes are reported the way the tests compare them with docs/kernel-model.md: ``"ok"`` for a
write that returned its full length, otherwise the errno name (``"EBUSY"``...).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TypeVar

import pytest

from .. import rawio
from ..rawio import errname as errname  # re-exported: part of the guest API
from ..rawio import read as read
from ..rawio import read_detail as read_detail

T = TypeVar("T")

#: The NVMe physical function of the guest (QEMU ``nvme`` behind ``pcie-root-port``).
PF = "0000:01:00.0"
#: The PCIe root port above it (a bridge: no SR-IOV files).
ROOT_PORT = "0000:00:03.0"
#: The q35 host bridge (no reset method, so no ``reset`` file).
HOST_BRIDGE = "0000:00:00.0"
#: A well-formed address that no device has.
UNKNOWN = "0000:99:1f.7"

SYS = Path("/sys")
PCI = SYS / "bus/pci"
DEVICES = PCI / "devices"
DRIVERS = PCI / "drivers"
GROUPS = SYS / "kernel/iommu_groups"
DEV_VFIO = Path("/dev/vfio")

#: Reset method names the kernel knows (docs/kernel-model.md §5).
RESET_METHOD_NAMES = frozenset(
    {"device_specific", "acpi", "flr", "af_flr", "pm", "bus", "cxl_bus", "cxl_reset", "d3cold"}
)


def _cmdline() -> str:
    try:
        return Path("/proc/cmdline").read_text()
    except OSError:
        return ""


def in_guest() -> bool:
    """Tell whether this process runs in the hostdev QEMU guest (never on a real host).

    All three must hold: ``HOSTDEV_IN_GUEST=1`` (set by the guest's /init), the marker
    ``hostdev_guest=1`` on the kernel command line, and the QEMU NVMe PF (1b36:0010)
    at 0000:01:00.0.
    """
    if os.environ.get("HOSTDEV_IN_GUEST") != "1":
        return False
    if "hostdev_guest=1" not in _cmdline().split():
        return False
    try:
        vendor = (DEVICES / PF / "vendor").read_text().strip()
        device = (DEVICES / PF / "device").read_text().strip()
    except OSError:
        # The PF may have been removed by a test (remove/rescan); the bus is still ours.
        return (DRIVERS / "nvme").is_dir() and (DEVICES / ROOT_PORT).exists()
    return (vendor, device) == ("0x1b36", "0x0010")


def not_in_guest_reason() -> str | None:
    """Return why the inner tests must not run here, or None inside the guest."""
    if os.environ.get("HOSTDEV_IN_GUEST") != "1":
        return "inner real-kernel test: runs only inside the QEMU guest (HOSTDEV_IN_GUEST unset)"
    if not in_guest():
        return "inner real-kernel test: HOSTDEV_IN_GUEST=1 but this is not the hostdev guest"
    return None


def dev(addr: str) -> Path:
    """Return ``/sys/bus/pci/devices/<addr>``."""
    return DEVICES / addr




def readlink(path: Path | str) -> str | None:
    """Return a symlink's target text, or None if there is no link."""
    try:
        return os.readlink(path)
    except OSError:
        return None


def driver_of(addr: str) -> str | None:
    """Return the name of the driver bound to ``addr`` (None if unbound or absent)."""
    target = readlink(dev(addr) / "driver")
    return target.rsplit("/", 1)[-1] if target else None


def group_of(addr: str) -> str | None:
    """Return the IOMMU group number of ``addr`` as text (None if none)."""
    target = readlink(dev(addr) / "iommu_group")
    return target.rsplit("/", 1)[-1] if target else None


def write(path: Path | str, data: str | bytes) -> str:
    """Write ``data`` with one ``os.write`` and return ``"ok"`` or the errno name.

    A short write is reported as ``"short:N"``. Raises RuntimeError outside the guest:
    nothing here may ever write to a real host's sysfs.
    """
    if not in_guest():
        raise RuntimeError("refusing to write to sysfs outside the hostdev QEMU guest")
    return rawio.write(path, data)


def write_detail(path: Path | str, data: str | bytes) -> str:
    """Like :func:`write`, but say which call failed: ``"open:EACCES"``, ``"write:EIO"``."""
    if not in_guest():
        raise RuntimeError("refusing to write to sysfs outside the hostdev QEMU guest")
    return rawio.write_detail(path, data)


def timed_write(path: Path | str, data: str | bytes) -> tuple[str, float]:
    """Like :func:`write`, also returning the seconds the write took."""
    started = time.monotonic()
    result = write(path, data)
    return result, time.monotonic() - started


def must(path: Path | str, data: str | bytes) -> None:
    """Write and raise AssertionError unless the write succeeded (for test set-up)."""
    result = write(path, data)
    if result != "ok":
        raise AssertionError(f"set-up write {data!r} to {path} failed with {result}")


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0,
               interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def vf_addresses(pf: str, count: int) -> list[str]:
    """Compute VF addresses from the PF's ``sriov_offset`` and ``sriov_stride``.

    docs/kernel-model.md §3.2.
    """
    domain, bus, slotfn = pf.split(":")
    slot, fn = slotfn.split(".")
    routing = (int(bus, 16) << 8) | (int(slot, 16) << 3) | int(fn)
    offset = int(read(dev(pf) / "sriov_offset"))
    stride = int(read(dev(pf) / "sriov_stride"))
    out = []
    for i in range(count):
        rid = routing + offset + stride * i
        out.append(f"{domain}:{rid >> 8:02x}:{(rid & 0xFF) >> 3:02x}.{rid & 7}")
    return out


def kmsg_lines() -> list[str]:
    """Return the kernel log lines currently in the ring buffer (``/dev/kmsg``)."""
    lines: list[str] = []
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return lines
    try:
        while True:
            try:
                record = os.read(fd, 8192)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten records: go on
                    continue
                break
            if not record:
                break
            text = record.decode("utf-8", "replace")
            lines.append(text.split(";", 1)[-1].split("\n", 1)[0])
    finally:
        os.close(fd)
    return lines


def ensure_pf_present() -> None:
    """Bring the PF back with a bus rescan if a test removed it."""
    if not dev(PF).exists():
        must(PCI / "rescan", "1")
        wait_until(lambda: dev(PF).exists(), 10.0)


def bind_to(addr: str, driver: str) -> str:
    """Unbind ``addr`` from its current driver (if another) and bind it to ``driver``."""
    current = driver_of(addr)
    if current == driver:
        return "ok"
    if current is not None:
        must(DRIVERS / current / "unbind", addr)
    return write(DRIVERS / driver / "bind", addr)


def reset_pf_state() -> None:
    """Put the PF back to its boot state: nvme-bound, no VFs, no override, autoprobe 1."""
    ensure_pf_present()
    pf = dev(PF)
    if driver_of(PF) != "nvme" and read(pf / "sriov_numvfs").strip() not in ("0", ""):
        must(pf / "driver_override", "\n")
        current = driver_of(PF)
        if current is not None:
            must(DRIVERS / current / "unbind", PF)
        must(DRIVERS / "nvme" / "bind", PF)
    if read(pf / "sriov_numvfs").strip() != "0":
        must(pf / "sriov_numvfs", "0")
    must(pf / "driver_override", "\n")
    if driver_of(PF) != "nvme":
        result = bind_to(PF, "nvme")
        if result != "ok":
            raise AssertionError(f"cannot rebind the PF to nvme: {result}")
    must(pf / "sriov_drivers_autoprobe", "1")
    must(PCI / "drivers_autoprobe", "1")


def enable_vfs(count: int, *, autoprobe: bool) -> list[str]:
    """Set ``sriov_drivers_autoprobe`` then ``sriov_numvfs``; return the VF addresses."""
    pf = dev(PF)
    must(pf / "sriov_drivers_autoprobe", "1" if autoprobe else "0")
    must(pf / "sriov_numvfs", str(count))
    vfs = vf_addresses(PF, count)
    for vf in vfs:
        if not dev(vf).exists():
            raise AssertionError(f"VF {vf} (from offset/stride) does not exist")
    return vfs


def wait_unbound(addrs: list[str], timeout: float = 15.0) -> bool:
    """Wait until none of ``addrs`` has a driver (nvme gives up on unprovisioned VFs)."""
    return wait_until(lambda: all(driver_of(a) is None for a in addrs), timeout)


class LineReader:
    """Read lines from a child's stdout pipe with a time limit (never blocks forever)."""

    def __init__(self, stream: IO[bytes] | IO[str] | int) -> None:
        """Read from ``stream`` (a pipe opened by subprocess, or a file descriptor)."""
        self.fd = stream if isinstance(stream, int) else stream.fileno()
        self.buffer = b""

    def readline(self, timeout: float) -> str | None:
        """Return the next line (without newline); None on timeout or end of file."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.fd, 4096)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode("utf-8", "replace")


def override_of(addr: str) -> str:
    """Return the ``driver_override`` text of ``addr`` without its newline."""
    return read(dev(addr) / "driver_override").rstrip("\n")


def within(seconds: float, call: Callable[[], T], on_hang: Callable[[], object] | None = None,
           what: str = "call") -> T:
    """Run ``call`` in a thread; fail the test if it has not returned after ``seconds``.

    A library call that blocks in the kernel cannot be interrupted: ``on_hang``
    (which must unblock it, e.g. release a VFIO holder) runs first, then the
    test fails, so a regression fails instead of hanging the guest.
    """
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        if on_hang is not None:
            on_hang()
            worker.join(30.0)
        pytest.fail(f"{what} did not return within {seconds:g} s (blocked in the kernel?)")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


@contextlib.contextmanager
def hard_limit(seconds: int) -> Iterator[None]:
    """Fail with TimeoutError if the block runs longer than ``seconds`` (SIGALRM), so a
    regression fails the test instead of hanging the guest."""
    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"test ran past its hard limit of {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def release_holder(proc: subprocess.Popen[str]) -> None:
    """Tell a ``vfio_holder.py`` process to let go, and wait for it (killed after 30 s)."""
    with contextlib.suppress(OSError):
        assert proc.stdin is not None
        proc.stdin.write("close\n")
        proc.stdin.flush()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
