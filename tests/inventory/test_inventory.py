"""Inventory on every fixture host: what the listing says matches what was built."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same module, before it joined the standard library
    import tomli as tomllib

import pytest

from hostdev.address import PciAddress
from hostdev.errors import DeviceNotFound, NotASysfsTree
from hostdev.linux.scan import list_devices, read_device
from hostdev.linux.sysfs import DeviceFiles, Sysfs
from hostdev.testing import FakeKernel
from hostdev.testing.hostspec import HostSpec

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sysfs"
NAMES = sorted(p.stem for p in FIXTURES.glob("*.toml"))
# Read now: inside a test the filesystem is pyfakefs's.
_SPECS = {n: HostSpec.model_validate(tomllib.loads((FIXTURES / f"{n}.toml").read_text()))
          for n in NAMES}


def _spec(name: str) -> HostSpec:
    return _SPECS[name]


def test_there_are_fixtures() -> None:
    assert {"two-socket-server", "qemu-guest", "libvirt-mock"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_listing_matches_fixture(fake_kernel: FakeKernel, name: str) -> None:
    spec = _spec(name)
    fake_kernel.load_fixture(name)
    sysfs = Sysfs("/")
    sysfs.stats.trace = []
    devices = {d.address: d for d in list_devices(sysfs)}
    expected_vfs = sum(d.sriov.numvfs for d in spec.devices if d.sriov)
    assert len(devices) == len(spec.devices) + expected_vfs
    repeated = [p for p, n in Counter(sysfs.stats.trace).items() if n > 1]
    assert repeated == [], "a listing must read each file once"
    for want in spec.devices:
        got = devices[want.address]
        assert (got.vendor, got.device, got.class_code) == (want.vendor, want.device,
                                                            want.class_code)
        assert got.subsystem_vendor == want.subsystem_vendor
        assert got.numa_node == want.numa_node
        assert got.iommu_group == want.iommu_group
        assert got.address in got.iommu_group_members
        assert got.is_bridge == ((want.class_code >> 8) == 0x0604)
        if want.driver is not None:
            assert got.driver == want.driver
        assert got.reset_methods == (want.reset_methods or None)
        if want.sriov is not None:
            assert got.sriov is not None
            assert (got.sriov.totalvfs, got.sriov.numvfs) == (want.sriov.totalvfs,
                                                              want.sriov.numvfs)
            assert len(got.sriov.vfs) == want.sriov.numvfs
            for index, vf in enumerate(got.sriov.vfs):
                rid = want.address.pf_bus_devfn + want.sriov.offset + want.sriov.stride * index
                assert vf == PciAddress.from_routing_id(want.address.domain, rid)
                vf_dev = devices[vf]
                assert vf_dev.vf is not None and (vf_dev.vf.pf, vf_dev.vf.index) == (
                    want.address, index)
                assert vf_dev.device == want.sriov.vf_device
                assert vf_dev.iommu_group_members == [vf], "each VF gets a group of its own"
    groups: dict[int, set[PciAddress]] = {}
    for dev in devices.values():
        if dev.iommu_group is not None:
            groups.setdefault(dev.iommu_group, set()).add(dev.address)
    for dev in devices.values():
        if dev.iommu_group is not None:
            assert set(dev.iommu_group_members) == groups[dev.iommu_group]


@pytest.mark.parametrize("name", NAMES)
def test_single_read_agrees_with_listing(fake_kernel: FakeKernel, name: str) -> None:
    fake_kernel.load_fixture(name)
    sysfs = Sysfs("/")
    for dev in list_devices(sysfs):
        before = sysfs.stats.reads
        alone = read_device(sysfs, dev.address)
        assert alone == dev
        cost = sysfs.stats.reads - before
        vfs = len(dev.sriov.vfs) if dev.sriov else 0
        index_cost = 1 + (dev.vf.index + 1 if dev.vf and dev.vf.index is not None else 0)
        assert cost <= 16 + vfs + index_cost, f"{dev.address} took {cost} reads"


def test_gpu_and_audio_share_a_group(fake_kernel: FakeKernel) -> None:
    fake_kernel.load_fixture("two-socket-server")
    gpu = read_device(Sysfs("/"), "0000:5e:00.0")
    assert PciAddress.parse("0000:5e:00.1") in gpu.iommu_group_members
    assert gpu.driver == "nvidia"


def test_vf_links_read_in_numeric_order(fake_kernel: FakeKernel) -> None:
    fake_kernel.add_driver("ice", ids=[(0x8086, 0x1593)], sriov=True)
    fake_kernel.add_device("0000:3b:00.0", vendor=0x8086, device=0x1593, class_code=0x020000,
                           iommu_group=3, sriov_totalvfs=16, vf_device=0x1889)
    sysfs = Sysfs("/")
    sysfs.write(sysfs.device_path(PciAddress.parse("0000:3b:00.0"), "sriov_numvfs"), "12\n")
    pf = read_device(sysfs, "0000:3b:00.0")
    assert pf.sriov is not None
    assert pf.sriov.vfs == sorted(pf.sriov.vfs)
    assert len(pf.sriov.vfs) == 12
    vf11 = read_device(sysfs, pf.sriov.vfs[11])
    assert vf11.vf is not None and vf11.vf.index == 11


def test_missing_device_and_bad_root(fake_kernel: FakeKernel) -> None:
    with pytest.raises(DeviceNotFound, match="0000:07:00.0 not found"):
        read_device(Sysfs("/"), "0000:07:00.0")
    with pytest.raises(NotASysfsTree, match="not a sysfs tree"):
        list_devices(Sysfs("/nonexistent"))


def test_device_vanishing_mid_listing_is_skipped(fake_kernel: FakeKernel,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake_kernel.load_fixture("qemu-guest")
    sysfs = Sysfs("/")
    victim = PciAddress.parse("0000:01:00.0")
    original = DeviceFiles.read

    def read(self: DeviceFiles, name: str) -> str | None:
        # Gone after its directory was opened: every later read finds nothing.
        if self.address == victim and name == "uevent":
            fake_kernel.remove_device(victim)
        return original(self, name)

    monkeypatch.setattr(DeviceFiles, "read", read)
    addresses = [d.address for d in list_devices(sysfs)]
    assert victim not in addresses and len(addresses) == 7
