"""Disks, interfaces and mount tags a driver makes, and the /proc tables of their use."""

from __future__ import annotations

import os

import pytest

from hostdev.testing import FakeKernel, FakeKernelSetupError

from .hostlib import Sys

NVME = "0000:03:00.0"
NIC = "0000:04:00.0"
VIRTIO = "0000:00:03.0"


@pytest.fixture
def k(kernel: FakeKernel) -> FakeKernel:
    kernel.add_driver("nvme", ids=[(0x144D, 0xA808)])
    kernel.add_driver("e1000e", ids=[(0x8086, 0x10D3)])
    kernel.add_driver("virtio-pci", ids=[(0x1AF4, 0x1009)])
    kernel.add_driver("vfio-pci")
    kernel.add_device(NVME, 0x144D, 0xA808, 0x010802, iommu_group=30)
    kernel.add_device(NIC, 0x8086, 0x10D3, 0x020000, iommu_group=40)
    kernel.add_device(VIRTIO, 0x1AF4, 0x1009, 0x000200, iommu_group=3)
    return kernel


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def test_disk_layout_as_the_kernel_shows_it(k: FakeKernel) -> None:
    assert k.add_block(NVME, "nvme0n1", 2) == ["nvme0n1", "nvme0n1p1", "nvme0n1p2"]
    disk = f"/sys/devices/pci0000:03/{NVME}/nvme/nvme0/nvme0n1"
    assert os.readlink("/sys/block/nvme0n1") == f"../devices/pci0000:03/{NVME}/nvme/nvme0/nvme0n1"
    assert os.path.realpath("/sys/class/block/nvme0n1p2") == disk + "/nvme0n1p2"
    assert _read(disk + "/nvme0n1p2/partition") == "2\n"
    assert not os.path.exists(disk + "/partition")
    majmin = [_read(f"/sys/class/block/{n}/dev").strip() for n in ("nvme0n1", "nvme0n1p1")]
    assert majmin[0] != majmin[1] and all(m.startswith("259:") for m in majmin)
    assert "nvme0n1p1" not in os.listdir("/sys/block"), "partitions are only in class/block"


def test_stacked_devices_show_in_holders_and_slaves(k: FakeKernel) -> None:
    k.add_block(NVME, "nvme0n1", 2)
    number = k.add_stacked("dm-0", ["nvme0n1p2"], dm_name="vg-root")
    assert number.startswith("254:")
    assert os.listdir("/sys/class/block/nvme0n1p2/holders") == ["dm-0"]
    assert os.path.realpath("/sys/class/block/nvme0n1p2/holders/dm-0") == \
        "/sys/devices/virtual/block/dm-0"
    assert _read("/sys/block/dm-0/dm/name") == "vg-root\n"
    assert os.listdir("/sys/block/dm-0/slaves") == ["nvme0n1p2"]
    with pytest.raises(FakeKernelSetupError, match="no block devices"):
        k.add_stacked("dm-1", ["sdz"])


def test_unbind_takes_children_away_and_the_same_driver_brings_them_back(
        k: FakeKernel, sysfs: Sys) -> None:
    k.add_block(NVME, "nvme0n1", 1)
    k.add_stacked("md0", ["nvme0n1p1"])
    k.add_netdev(NIC, "eno1")
    k.set_link_up("eno1")
    k.add_address("eno1", "10.0.0.2/24")
    assert "eno1" in _read("/proc/net/route")
    sysfs.write("/sys/bus/pci/drivers/nvme/unbind", NVME)
    sysfs.write("/sys/bus/pci/drivers/e1000e/unbind", NIC)
    assert sorted(os.listdir("/sys/class/block")) == ["md0"]
    assert os.listdir("/sys/block/md0/slaves") == [], "the stacked device lost its slave"
    assert not os.path.exists(f"/sys/bus/pci/devices/{NVME}/nvme")
    assert os.listdir("/sys/class/net") == ["lo"]
    assert "eno1" not in _read("/proc/net/route") + _read("/proc/net/if_inet6")
    sysfs.write("/sys/bus/pci/drivers/nvme/bind", NVME)
    assert sorted(os.listdir("/sys/class/block")) == ["md0", "nvme0n1", "nvme0n1p1"]
    # vfio-pci is not the driver that made the interface: nothing comes back with it.
    sysfs.write(f"/sys/bus/pci/devices/{NIC}/driver_override", "vfio-pci")
    sysfs.write("/sys/bus/pci/drivers_probe", NIC)
    assert os.listdir("/sys/class/net") == ["lo"]


def test_interface_state_routes_and_addresses(k: FakeKernel) -> None:
    k.add_netdev(NIC, "eno1")
    iface = f"/sys/devices/pci0000:04/{NIC}/net/eno1"
    assert os.path.realpath("/sys/class/net/eno1") == iface
    assert (_read(iface + "/flags"), _read(iface + "/operstate")) == ("0x1002\n", "down\n")
    with pytest.raises(FakeKernelSetupError, match="down"):
        k.add_route("eno1", "default", via="10.0.0.1")
    k.add_address("eno1", "10.0.0.2/24")
    assert "eno1" not in _read("/proc/net/route"), "no route while the link is down"
    k.set_link_up("eno1")
    assert (_read(iface + "/flags"), _read(iface + "/operstate")) == ("0x1003\n", "up\n")
    k.add_route("eno1", "default", via="10.0.0.1")
    k.add_address("eno1", "2001:db8::2/64")
    lines = _read("/proc/net/route").splitlines()
    assert lines[0].startswith("Iface\tDestination\tGateway")
    # host byte order (x86): 10.0.0.0 is 0000000A, gateway 10.0.0.1 is 0100000A
    assert "eno1\t0000000A\t00000000\t0001" in lines[1]
    assert "eno1\t00000000\t0100000A\t0003" in lines[2]
    inet6 = _read("/proc/net/if_inet6")
    assert "20010db8000000000000000000000002 02 40 00 80     eno1" in inet6
    assert " 02 40 20 80     eno1" in inet6, "a link-local address comes with an up link"
    v6 = _read("/proc/net/ipv6_route")
    assert v6.count("eno1") >= 4 and "ff000000000000000000000000000000 08" in v6
    k.set_link_up("eno1", False)
    assert "eno1" not in _read("/proc/net/route") + _read("/proc/net/ipv6_route")
    k.set_link_up("eno1")
    assert "0100000A" not in _read("/proc/net/route"), "going down flushed the static route"
    assert "0000000A" in _read("/proc/net/route"), "the address's subnet route is back"


def test_mountinfo_and_swaps(k: FakeKernel) -> None:
    k.add_block(NVME, "nvme0n1", 2)
    k.add_stacked("dm-0", ["nvme0n1p2"], dm_name="vg-root")
    k.add_mount("dm-0", "/", "ext4")
    k.add_mount("nvme0n1p1", "/boot efi", "vfat")
    k.add_swap("nvme0n1p1")
    info = _read("/proc/self/mountinfo").splitlines()
    assert info[-2].split(" ")[2:5] == ["254:0", "/", "/"]
    assert info[-2].endswith(" - ext4 /dev/mapper/vg-root rw")
    assert "/boot\\040efi" in info[-1]
    swaps = _read("/proc/swaps").splitlines()
    assert swaps[0].startswith("Filename") and swaps[1].split()[:2] == ["/dev/nvme0n1p1",
                                                                        "partition"]
    k.remove_swap("nvme0n1p1")
    k.remove_mount("/boot efi")
    assert len(_read("/proc/swaps").splitlines()) == 1
    assert "/boot" not in _read("/proc/self/mountinfo")


def test_mount_tags(k: FakeKernel, sysfs: Sys) -> None:
    k.add_mount_tag(VIRTIO, "hostroot")
    tag = f"/sys/devices/pci0000:00/{VIRTIO}/virtio0/mount_tag"
    with open(tag, "rb") as f:
        assert f.read() == b"hostroot\0", "9pnet_virtio prints the NUL, no newline"
    assert os.path.realpath("/sys/bus/virtio/devices/virtio0") == os.path.dirname(tag)
    k.add_mount_tag(VIRTIO, "shared", fs="virtiofs")
    assert _read("/sys/fs/virtiofs/0/tag") == "shared\n"
    assert os.path.realpath("/sys/fs/virtiofs/0/device").endswith(f"{VIRTIO}/virtio1")
    k.add_mount("hostroot", "/", "9p")
    assert _read("/proc/self/mountinfo").splitlines()[-1].endswith(" - 9p hostroot rw")
    sysfs.write("/sys/bus/pci/drivers/virtio-pci/unbind", VIRTIO)
    assert os.listdir("/sys/bus/virtio/devices") == []
    assert os.listdir("/sys/fs/virtiofs") == []


def test_children_need_a_host_driver(k: FakeKernel, sysfs: Sys) -> None:
    sysfs.write("/sys/bus/pci/drivers/nvme/unbind", NVME)
    with pytest.raises(FakeKernelSetupError, match="no driver"):
        k.add_block(NVME, "nvme0n1")
    with pytest.raises(FakeKernelSetupError, match="no network interface"):
        k.set_link_up("eth9")
    k.add_netdev(NIC, "eno1")
    with pytest.raises(FakeKernelSetupError, match="already exists"):
        k.add_netdev(NIC, "eno1")
