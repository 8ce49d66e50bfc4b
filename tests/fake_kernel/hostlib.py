"""Helpers for the fake-kernel tests: plain os-level I/O and a small host.

Tests drive the fake only as a user program would: ``os.open``/``os.write`` and
reads under /sys, /dev and /proc.
"""

from __future__ import annotations

import os

import pytest

from hostdev.testing import FakeKernel

DEVICES = "/sys/bus/pci/devices"
DRIVERS = "/sys/bus/pci/drivers"

ROOT_PORT = "0000:00:01.0"
PF = "0000:03:00.0"  # ixgbe PF, 8 VFs possible, offset 128 stride 2
GPU = "0000:04:00.0"  # shares IOMMU group 4 with GPU_AUDIO
GPU_AUDIO = "0000:04:00.1"
ROOT_PORT2 = "0000:00:02.0"
NIC = "0000:00:19.0"  # e1000e on the root bus
NOGROUP = "0000:00:1f.3"  # no IOMMU, no driver
NVME = "0000:06:00.0"


class Sys:
    """Reads and writes the way the library (or a shell) does."""

    def write(self, path: str, data: str | bytes) -> int:
        """One write() on a fresh O_TRUNC fd; returns the byte count."""
        raw = data.encode() if isinstance(data, str) else data
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            return os.write(fd, raw)
        finally:
            os.close(fd)

    def errno(self, path: str, data: str | bytes) -> int:
        """The errno the write fails with (the test fails if it succeeds)."""
        with pytest.raises(OSError) as info:
            self.write(path, data)
        assert info.value.errno is not None
        return info.value.errno

    def read(self, path: str) -> str:
        """Whole file as text."""
        with open(path) as handle:
            return handle.read()

    def link(self, path: str) -> str:
        """Symlink target as stored."""
        return os.readlink(path)

    def ls(self, path: str) -> list[str]:
        """Sorted directory listing."""
        return sorted(os.listdir(path))

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists (no link following at the end)."""
        return os.path.lexists(path)

    def driver(self, address: str) -> str | None:
        """Name of the driver ``address`` is bound to (from the ``driver`` link)."""
        link = f"{DEVICES}/{address}/driver"
        return os.path.basename(os.readlink(link)) if os.path.lexists(link) else None

    def dev(self, address: str, attr: str = "") -> str:
        """``/sys/bus/pci/devices/<address>[/<attr>]``."""
        return f"{DEVICES}/{address}" + (f"/{attr}" if attr else "")

    def drv(self, driver: str, attr: str) -> str:
        """``/sys/bus/pci/drivers/<driver>/<attr>``."""
        return f"{DRIVERS}/{driver}/{attr}"


def build_host(k: FakeKernel) -> FakeKernel:
    """A small host: root ports, an SR-IOV NIC, a GPU with audio, a NIC, a no-IOMMU device."""
    k.add_driver("pcieport", ids=[(0x8086, 0x2030)])
    k.add_driver("ixgbe", ids=[(0x8086, 0x10FB)], sriov=True)
    k.add_driver("ixgbevf", ids=[(0x8086, 0x10ED)])
    k.add_driver("nouveau", ids=[(0x10DE, 0x1EB8)])
    k.add_driver("snd_hda_intel", ids=[(0x10DE, 0x10F0)])
    k.add_driver("e1000e", ids=[(0x8086, 0x10D3)])
    k.add_driver("nvme", ids=[(0x144D, 0xA808)], sriov=True)
    k.add_driver("vfio-pci")
    k.add_driver("pci-stub")
    k.add_device(ROOT_PORT, 0x8086, 0x2030, 0x060400, iommu_group=1)
    k.add_device(PF, 0x8086, 0x10FB, 0x020000, iommu_group=2, parent=ROOT_PORT,
                 sriov_totalvfs=8, vf_device=0x10ED, numa_node=0,
                 sriov_offset=128, sriov_stride=2, subsystem_vendor=0x8086,
                 subsystem_device=0x000C, revision=1)
    k.add_device(ROOT_PORT2, 0x8086, 0x2030, 0x060400, iommu_group=3)
    k.add_device(GPU, 0x10DE, 0x1EB8, 0x030000, iommu_group=4, parent=ROOT_PORT2)
    k.add_device(GPU_AUDIO, 0x10DE, 0x10F0, 0x040300, iommu_group=4, parent=ROOT_PORT2)
    k.add_device(NIC, 0x8086, 0x10D3, 0x020000, iommu_group=5, numa_node=1)
    k.add_device(NOGROUP, 0x8086, 0xA170, 0x040300, driver=None, reset_methods=())
    k.add_device(NVME, 0x144D, 0xA808, 0x010802, iommu_group=6, sriov_totalvfs=4,
                 vf_device=0xA824)
    return k


def vf_addresses(count: int) -> list[str]:
    """Addresses of the PF's first ``count`` VFs (offset 128, stride 2)."""
    out = []
    for i in range(count):
        rid = 0x0300 + 128 + 2 * i
        out.append(f"0000:{rid >> 8:02x}:{(rid >> 3) & 0x1F:02x}.{rid & 7}")
    return out
