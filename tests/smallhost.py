"""The small host of the manager, safety and fake-kernel tests: one topology, one name
per device, built through the fake kernel's public API.

The names are :class:`PciAddress` values here (the manager tests' ``host`` fixture);
``tests/fake_kernel/hostlib.py`` gives the same names as text for tests that drive
the fake kernel with plain ``os`` calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from hostdev.address import PciAddress
from hostdev.linux.binding import current_driver
from hostdev.manager import HostdevManager
from hostdev.state.records import Owner
from hostdev.testing import FakeKernel

ROOT_PORT = PciAddress.parse("0000:00:01.0")
PF = PciAddress.parse("0000:03:00.0")  # ixgbe PF behind ROOT_PORT: 8 VFs, offset 128 stride 2
ROOT_PORT2 = PciAddress.parse("0000:00:02.0")
GPU = PciAddress.parse("0000:04:00.0")  # behind ROOT_PORT2, IOMMU group 4 with GPU_AUDIO
GPU_AUDIO = PciAddress.parse("0000:04:00.1")
NIC = PciAddress.parse("0000:00:19.0")  # e1000e on the root bus
NOGROUP = PciAddress.parse("0000:00:1f.3")  # no IOMMU group, no driver
NVME = PciAddress.parse("0000:06:00.0")
VM1 = Owner(driver="qemu", domain="vm1")
VM2 = Owner(driver="qemu", domain="vm2")
#: The PF's SR-IOV "First VF Offset" and "VF Stride".
VF_OFFSET = 128
VF_STRIDE = 2


def vf_addresses(count: int) -> list[PciAddress]:
    """Addresses of the PF's first ``count`` VFs."""
    first = (PF.bus << 8 | PF.slot << 3 | PF.function) + VF_OFFSET
    rids = [first + VF_STRIDE * i for i in range(count)]
    return [PciAddress(PF.domain, rid >> 8, (rid >> 3) & 0x1F, rid & 7) for rid in rids]


@dataclass
class Host:
    """The fake kernel and a manager over it."""

    kernel: FakeKernel
    mgr: HostdevManager

    def driver(self, address: PciAddress) -> str | None:
        return current_driver(self.mgr.sysfs, address)

    def override(self, address: PciAddress) -> str | None:
        return self.mgr.sysfs.read_override(address)

    def where(self, *addresses: PciAddress) -> dict[PciAddress, tuple[str | None, str | None]]:
        """Driver and override of each device: what must survive a failed transaction."""
        return {a: (self.driver(a), self.override(a)) for a in addresses}

    def vfs_now(self) -> list[PciAddress]:
        """The PF's current VFs."""
        sysfs = self.mgr.sysfs
        count = int(sysfs.read_text(sysfs.device_path(PF, "sriov_numvfs")))
        return [PciAddress.parse(sysfs.read_link_name(sysfs.device_path(PF, f"virtfn{i}"))
                                 or "") for i in range(count)]

    def vfs(self, n: int) -> list[PciAddress]:
        """Enable ``n`` VFs on the PF (through 0) and return their addresses."""
        sysfs = self.mgr.sysfs
        path = sysfs.device_path(PF, "sriov_numvfs")
        if int(sysfs.read_text(path)) and n:
            sysfs.write(path, "0\n")
        sysfs.write(path, f"{n}\n")
        return [PciAddress.parse(sysfs.read_link_name(sysfs.device_path(PF, f"virtfn{i}")) or "")
                for i in range(n)]


def build_host(k: FakeKernel) -> FakeKernel:
    """Root ports, an SR-IOV NIC PF, a GPU with audio in one group, a NIC, an NVMe and a
    device with no IOMMU group."""
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
                 sriov_offset=VF_OFFSET, sriov_stride=VF_STRIDE, subsystem_vendor=0x8086,
                 subsystem_device=0x000C, revision=1)
    k.add_device(ROOT_PORT2, 0x8086, 0x2030, 0x060400, iommu_group=3)
    k.add_device(GPU, 0x10DE, 0x1EB8, 0x030000, iommu_group=4, parent=ROOT_PORT2)
    k.add_device(GPU_AUDIO, 0x10DE, 0x10F0, 0x040300, iommu_group=4, parent=ROOT_PORT2)
    k.add_device(NIC, 0x8086, 0x10D3, 0x020000, iommu_group=5, numa_node=1)
    k.add_device(NOGROUP, 0x8086, 0xA170, 0x040300, driver=None, reset_methods=())
    k.add_device(NVME, 0x144D, 0xA808, 0x010802, iommu_group=6)
    return k


@pytest.fixture
def host(fake_kernel: FakeKernel) -> Host:
    build_host(fake_kernel)
    # The fake kernel's modprobe: never this machine's.
    mgr = HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0.0,
                         lock_timeout=1.0, module_loader=fake_kernel.modprobe)
    return Host(fake_kernel, mgr)
