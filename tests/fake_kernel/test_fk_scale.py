"""A host of 4,096 functions builds quickly and stays consistent."""

from __future__ import annotations

import os
import time

import pytest

from hostdev.testing import FakeKernel, FakeKernelSetupError

from .hostlib import Sys


def test_explicit_group_taken_by_a_vf_is_refused(kernel: FakeKernel, sysfs: Sys) -> None:
    kernel.add_driver("i40e", ids=[(0x8086, 0x1572)], sriov=True)
    kernel.add_device("0000:01:00.0", 0x8086, 0x1572, 0x020000, iommu_group=0,
                      sriov_totalvfs=2, sriov_numvfs=1)
    assert sysfs.link(sysfs.dev("0000:01:00.1", "iommu_group")).endswith("/1")
    with pytest.raises(FakeKernelSetupError, match="group 1"):
        kernel.add_device("0000:02:00.0", 0x8086, 0x1572, 0x020000, iommu_group=1)
    kernel.add_device("0000:02:00.1", 0x8086, 0x1572, 0x020000, iommu_group=0)  # joins


def test_4096_functions(kernel: FakeKernel, sysfs: Sys) -> None:
    start = time.perf_counter()
    kernel.add_driver("i40e", ids=[(0x8086, 0x1572)], sriov=True)
    kernel.add_driver("iavf", ids=[(0x8086, 0x154C)])
    kernel.add_driver("vfio-pci")
    pfs = [f"0000:{i + 1:02x}:00.0" for i in range(64)]
    for i, pf in enumerate(pfs):
        kernel.add_device(pf, 0x8086, 0x1572, 0x020000, iommu_group=i,
                          sriov_totalvfs=63, vf_device=0x154C, sriov_offset=8)
    for pf in pfs:
        sysfs.write(sysfs.dev(pf, "sriov_numvfs"), "63")
    elapsed = time.perf_counter() - start
    assert len(os.listdir("/sys/bus/pci/devices")) == 4096
    assert len(os.listdir("/sys/kernel/iommu_groups")) == 4096
    assert len(os.listdir("/sys/bus/pci/drivers/iavf")) == 4 + 64 * 63
    assert elapsed < 60, f"building took {elapsed:.1f}s"
    # VF 62: routing id 0x4000 + 8 + 62 = 0x4046 -> slot 8, function 6
    assert sysfs.link(sysfs.dev("0000:40:00.0", "virtfn62")) == "../0000:40:08.6"
    assert not sysfs.exists(sysfs.dev("0000:40:08.7"))
    assert sysfs.driver("0000:40:08.6") == "iavf"
    sysfs.write(sysfs.dev("0000:40:00.0", "sriov_numvfs"), "0")
    assert len(os.listdir("/sys/bus/pci/devices")) == 4096 - 63
