"""Loading fixture hosts from TOML, and the ``fake_kernel`` pytest fixture."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem
from pyfakefs.fake_filesystem_unittest import Patcher

from hostdev.testing import FakeKernel, FakeKernelSetupError, fixture_names

from .hostlib import Sys

MINI = """
name = "mini"

[[drivers]]
name = "i40e"
ids = [[0x8086, 0x1572]]
sriov = true

[[drivers]]
name = "iavf"
ids = [[0x8086, 0x154c]]

[[drivers]]
name = "vfio-pci"

[[devices]]
address = "0000:3a:00.0"
vendor = 0x8086
device = 0x2030
class_code = 0x060400
iommu_group = 10
driver = "pcieport"

[[devices]]
address = "0000:3b:00.0"
vendor = 0x8086
device = 0x1572
class_code = 0x020000
iommu_group = 11
parent = "0000:3a:00.0"
numa_node = 0
sriov = { totalvfs = 4, vf_device = 0x154c, offset = 16, stride = 1, numvfs = 2 }

[[devices]]
address = "0000:3b:00.1"
vendor = 0x8086
device = 0x1572
class_code = 0x020000
iommu_group = 12
parent = "0000:3a:00.0"
reset_methods = []
"""


def _check_mini(kernel: FakeKernel, sysfs: Sys) -> None:
    assert sysfs.driver("0000:3a:00.0") == "pcieport"  # forced: no id table entry
    assert sysfs.driver("0000:3b:00.0") == "i40e"  # autoprobed
    assert sysfs.read(sysfs.dev("0000:3b:00.0", "sriov_numvfs")) == "2\n"
    assert sysfs.link(sysfs.dev("0000:3b:00.0", "virtfn1")) == "../0000:3b:02.1"
    assert sysfs.driver("0000:3b:02.0") == "iavf"
    assert not sysfs.exists(sysfs.dev("0000:3b:00.1", "reset"))
    assert os.path.realpath(sysfs.dev("0000:3b:00.1")) == (
        "/sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.1")
    assert len(kernel.addresses()) == 5


def test_load_fixture_from_fake_fs_path(fs: FakeFilesystem, sysfs: Sys) -> None:
    fs.create_file("/tmp/hosts/mini.toml", contents=MINI)
    kernel = FakeKernel(fs)
    spec = kernel.load_fixture("/tmp/hosts/mini.toml")
    assert spec.name == "mini"
    _check_mini(kernel, sysfs)


def test_load_fixture_from_real_disk(tmp_path: Path) -> None:
    path = tmp_path / "mini.toml"
    path.write_text(MINI)
    with Patcher() as patcher:
        assert patcher.fs is not None
        kernel = FakeKernel(patcher.fs)
        kernel.load_fixture(path)
        _check_mini(kernel, Sys())


def test_unknown_fixture_name(kernel: FakeKernel) -> None:
    with pytest.raises(FakeKernelSetupError, match="no-such-host"):
        kernel.load_fixture("no-such-host")


def test_bad_fixture_is_reported(fs: FakeFilesystem) -> None:
    fs.create_file("/tmp/bad.toml", contents="name = [")
    with pytest.raises(FakeKernelSetupError, match="not valid TOML"):
        FakeKernel(fs).load_fixture("/tmp/bad.toml")


def test_plugin_fixture_gives_an_empty_host(fake_kernel: FakeKernel) -> None:
    assert isinstance(fake_kernel, FakeKernel)
    assert os.listdir("/sys/bus/pci/devices") == []


@pytest.mark.parametrize("name", fixture_names())
def test_shipped_fixture_hosts_load(fake_kernel: FakeKernel, sysfs: Sys, name: str) -> None:
    spec = fake_kernel.load_fixture(name)
    for dev in spec.devices:
        address = str(dev.address)
        assert sysfs.exists(sysfs.dev(address)), address
        if dev.driver is not None:
            assert sysfs.driver(address) == dev.driver, address
        if dev.iommu_group is not None:
            group = os.path.basename(sysfs.link(sysfs.dev(address, "iommu_group")))
            assert group == str(dev.iommu_group)
        if dev.sriov is not None:
            numvfs = sysfs.read(sysfs.dev(address, "sriov_numvfs"))
            assert numvfs == f"{dev.sriov.numvfs}\n"
            for index in range(dev.sriov.numvfs):
                assert sysfs.exists(sysfs.dev(address, f"virtfn{index}"))
