"""A small host for manager and safety tests, built through the fake kernel's public API."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from hostdev.address import PciAddress
from hostdev.linux.binding import current_driver
from hostdev.manager import HostdevManager
from hostdev.state.records import Owner
from hostdev.testing import FakeKernel

ROOT_PORT = PciAddress.parse("0000:00:01.0")
PF = PciAddress.parse("0000:01:00.0")
GPU = PciAddress.parse("0000:02:00.0")
AUDIO = PciAddress.parse("0000:02:00.1")
NVME = PciAddress.parse("0000:03:00.0")
NIC = PciAddress.parse("0000:04:00.0")
VM1 = Owner(driver="qemu", domain="vm1")
VM2 = Owner(driver="qemu", domain="vm2")


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


def build_host(kernel: FakeKernel) -> None:
    """Root port, an SR-IOV NIC PF, a GPU with audio in one group, an NVMe, a plain NIC."""
    kernel.add_driver("pcieport", ids=[(0x8086, 0x2030)])
    kernel.add_driver("i40e", ids=[(0x8086, 0x1572)], sriov=True)
    kernel.add_driver("iavf", ids=[(0x8086, 0x154C)])
    kernel.add_driver("nvidia", ids=[(0x10DE, 0x1EB8)])
    kernel.add_driver("snd_hda_intel", ids=[(0x10DE, 0x10F8)])
    kernel.add_driver("nvme", ids=[(0x144D, 0xA808)])
    kernel.add_driver("e1000e", ids=[(0x8086, 0x10D3)])
    kernel.add_driver("vfio-pci")
    kernel.add_driver("pci-stub")
    kernel.add_device(ROOT_PORT, vendor=0x8086, device=0x2030, class_code=0x060400,
                      iommu_group=1)
    kernel.add_device(PF, vendor=0x8086, device=0x1572, class_code=0x020000, iommu_group=10,
                      sriov_totalvfs=8, vf_device=0x154C, parent=ROOT_PORT, numa_node=0)
    kernel.add_device(GPU, vendor=0x10DE, device=0x1EB8, class_code=0x030000, iommu_group=20)
    kernel.add_device(AUDIO, vendor=0x10DE, device=0x10F8, class_code=0x040300,
                      iommu_group=20)
    kernel.add_device(NVME, vendor=0x144D, device=0xA808, class_code=0x010802, iommu_group=30)
    kernel.add_device(NIC, vendor=0x8086, device=0x10D3, class_code=0x020000, iommu_group=40)


@pytest.fixture
def host(fake_kernel: FakeKernel) -> Host:
    build_host(fake_kernel)
    # The fake kernel's modprobe: never this machine's.
    mgr = HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0.0,
                         lock_timeout=1.0, module_loader=fake_kernel.modprobe)
    return Host(fake_kernel, mgr)
