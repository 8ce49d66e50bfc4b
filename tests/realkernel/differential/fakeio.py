"""The inner suite's sysfs helpers (tests/realkernel/inner/guest.py), re-done for the fake.

The replays call the same helpers with the same results encoding as the inner tests
(``"ok"``, ``"EBUSY"``, ``"!ENOENT"``, ``"open:EACCES"``...), so a replay reads like
the inner test it mirrors. Every access goes through the patched ``os`` of pyfakefs;
each write first checks a marker file that exists only in the fake file system, so
nothing here can ever reach a real ``/sys``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from pyfakefs.fake_filesystem import FakeFilesystem

from hostdev.testing import FakeKernel

from .. import rawio

#: Created in the fake file system by the test fixture; never exists on a real host.
MARKER = "/.hostdev-differential-pyfakefs-only"

#: The fake kernel built as the guest's Debian 6.1 kernel is: no vfio device cdev
#: (CONFIG_VFIO_DEVICE_CDEV came with 6.6), no vfio-device-syspath in fdinfo (6.18),
#: vfio-pci loaded without enable_sriov.
GUEST_KERNEL: dict[str, bool] = {
    "vfio_device_cdev": False,
    "vfio_fdinfo_syspath": False,
    "vfio_enable_sriov": False,
}


def guest_kernel(fs: FakeFilesystem, **options: bool) -> FakeKernel:
    """A FakeKernel on ``fs`` with the guest kernel's options (``options`` override them)."""
    return FakeKernel(fs, **{**GUEST_KERNEL, **options})

PF = "0000:01:00.0"
ROOT_PORT = "0000:00:03.0"
HOST_BRIDGE = "0000:00:00.0"
UNKNOWN = "0000:99:1f.7"
PCI = "/sys/bus/pci"
DEVICES = f"{PCI}/devices"
DRIVERS = f"{PCI}/drivers"
GROUPS = "/sys/kernel/iommu_groups"
DEV_VFIO = "/dev/vfio"


errname = rawio.errname


def normalise(value: Any) -> Any:
    """A value as it reads back from the observed JSON (tuples are lists, keys sorted)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


class Recorder:
    """Stands in for the inner suite's Observer: keeps what the fake did, by record name."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def check(self, name: str, observed: Any, expected: Any, claim: str) -> bool:
        """Keep ``observed`` (the real kernel's value is the expectation, not ``expected``)."""
        self.values[name] = normalise(observed)
        return True

    def record(self, name: str, observed: Any, note: str = "") -> None:
        """Keep ``observed``."""
        self.values[name] = normalise(observed)


class FakeGuest:
    """guest.py's helpers over the fake kernel (inside pyfakefs only)."""

    def __init__(self, kernel: FakeKernel, *, truncate: bool = True) -> None:
        """``truncate``: open files for writing with O_TRUNC, as the library (and a shell's
        ``>``) does. The inner tests open with O_WRONLY only; the real kernel does not
        care, the fake does (see the differential tests)."""
        self.kernel = kernel
        self.flags = os.O_WRONLY | (os.O_TRUNC if truncate else 0)

    # ------------------------------------------------------------------ paths
    @staticmethod
    def dev(addr: str, attr: str = "") -> str:
        """``/sys/bus/pci/devices/<addr>[/<attr>]``."""
        return f"{DEVICES}/{addr}" + (f"/{attr}" if attr else "")

    @staticmethod
    def drv(driver: str, attr: str) -> str:
        """``/sys/bus/pci/drivers/<driver>/<attr>``."""
        return f"{DRIVERS}/{driver}/{attr}"

    # ------------------------------------------------------------------ safety
    @staticmethod
    def _only_in_fake() -> None:
        if not os.path.exists(MARKER):
            raise RuntimeError("refusing to write: pyfakefs is not active (no marker file)")

    # ------------------------------------------------------------------ writes
    def open_w(self, path: str) -> int:
        """An fd for writing, as the inner helpers open one."""
        self._only_in_fake()
        return os.open(path, self.flags)

    def write(self, path: str, data: str | bytes) -> str:
        """One write: ``"ok"``, ``"short:N"`` or the errno name."""
        self._only_in_fake()
        return rawio.write(path, data, self.flags)

    def write_detail(self, path: str, data: str | bytes) -> str:
        """Like write, saying which call failed (``"open:EACCES"``)."""
        self._only_in_fake()
        return rawio.write_detail(path, data, self.flags)

    def timed_write(self, path: str, data: str) -> tuple[str, float]:
        """write with a duration (the fake takes no time; durations are never compared)."""
        return self.write(path, data), 0.0

    def must(self, path: str, data: str | bytes) -> None:
        """Set-up write that has to succeed."""
        result = self.write(path, data)
        if result != "ok":
            raise AssertionError(f"set-up write {data!r} to {path} failed with {result}")

    # ------------------------------------------------------------------ reads
    read = staticmethod(rawio.read)
    read_detail = staticmethod(rawio.read_detail)

    @staticmethod
    def readlink(path: str) -> str | None:
        """Symlink target or None."""
        try:
            return os.readlink(path)
        except OSError:
            return None

    def driver_of(self, addr: str) -> str | None:
        """Bound driver name, or None."""
        target = self.readlink(self.dev(addr, "driver"))
        return target.rsplit("/", 1)[-1] if target else None

    def group_of(self, addr: str) -> str | None:
        """IOMMU group number as text, or None."""
        target = self.readlink(self.dev(addr, "iommu_group"))
        return target.rsplit("/", 1)[-1] if target else None

    @staticmethod
    def exists(path: str) -> bool:
        """lexists."""
        return os.path.lexists(path)

    @staticmethod
    def listdir(path: str) -> list[str]:
        """Sorted listing."""
        return sorted(os.listdir(path))

    @staticmethod
    def kmsg_lines() -> list[str]:
        """The fake kernel keeps no log."""
        return []

    # ------------------------------------------------------------------ SR-IOV
    def vf_addresses(self, pf: str, count: int) -> list[str]:
        """VF addresses from the PF's offset and stride."""
        domain, bus, slotfn = pf.split(":")
        slot, fn = slotfn.split(".")
        routing = (int(bus, 16) << 8) | (int(slot, 16) << 3) | int(fn)
        offset = int(self.read(self.dev(pf, "sriov_offset")))
        stride = int(self.read(self.dev(pf, "sriov_stride")))
        out = []
        for i in range(count):
            rid = routing + offset + stride * i
            out.append(f"{domain}:{rid >> 8:02x}:{(rid & 0xFF) >> 3:02x}.{rid & 7}")
        return out

    def enable_vfs(self, count: int, *, autoprobe: bool) -> list[str]:
        """sriov_drivers_autoprobe then sriov_numvfs, as guest.enable_vfs."""
        self.must(self.dev(PF, "sriov_drivers_autoprobe"), "1" if autoprobe else "0")
        self.must(self.dev(PF, "sriov_numvfs"), str(count))
        vfs = self.vf_addresses(PF, count)
        for vf in vfs:
            if not self.exists(self.dev(vf)):
                raise AssertionError(f"VF {vf} (from offset/stride) does not exist")
        return vfs

    def nvme_gives_up(self, vfs: list[str]) -> bool:
        """Stand-in for the QEMU NVMe controller: nvme's probe of an unprovisioned VF
        fails asynchronously and the driver lets go of it (~0.5 s on the real guest).
        That is device behaviour, not kernel behaviour, so the replay plays it out with
        an unbind; returns what guest.wait_unbound would."""
        for vf in vfs:
            if self.driver_of(vf) == "nvme":
                self.must(self.drv("nvme", "unbind"), vf)
        return all(self.driver_of(vf) is None for vf in vfs)
