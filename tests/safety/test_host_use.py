"""Devices the host cannot lose: detach, prepare and VF count changes refuse functions
that carry a mounted disk, swap, a routed interface or a mounted 9p/virtiofs tag."""

from __future__ import annotations

import errno
import logging
import os

import pytest

from hostdev.address import PciAddress
from hostdev.errors import DeviceUsedByHost, HostdevError
from hostdev.linux.hostuse import HostUse
from hostdev.manager import HostdevManager
from hostdev.state.records import HostdevSpec
from hostdev.testing import FakeKernel
from tests.smallhost import GPU, GPU_AUDIO, NIC, NVME, PF, ROOT_PORT, VM1, Host

VIRTIO = PciAddress.parse("0000:00:03.0")


def _refused(host: Host, call: object, *devices: PciAddress) -> DeviceUsedByHost:
    """Run ``call``; it must raise DeviceUsedByHost and leave host and lists untouched."""
    assert callable(call)
    before = host.where(*devices)
    writes = len(host.kernel.writes)
    active, inactive = host.mgr.active(), host.mgr.inactive()
    with pytest.raises(DeviceUsedByHost) as info:
        call()
    assert host.kernel.writes[writes:] == [], "nothing may be written on refusal"
    assert host.where(*devices) == before
    assert (host.mgr.active(), host.mgr.inactive()) == (active, inactive)
    message = str(info.value)
    assert "\n" not in message and "--force" in message
    return info.value


def _disk(host: Host, partitions: int = 2) -> None:
    host.kernel.add_block(NVME, "nvme0n1", partitions)


def test_mounted_partition_refuses_detach_naming_it(host: Host) -> None:
    _disk(host)
    host.kernel.add_mount("nvme0n1p2", "/", "ext4")
    err = _refused(host, lambda: host.mgr.node_detach(NVME), NVME)
    assert str(err) == (
        f"cannot detach PCI device {NVME}: the host is using it ({NVME} carries block device"
        " nvme0n1p2 mounted at /); stop that use first, or pass --force (force=True) to go"
        " ahead anyway")
    assert err.address == NVME
    assert err.uses == [HostUse(address=NVME, kind="block", name="nvme0n1p2",
                                carries="block device nvme0n1p2", use="mounted at /")]


def test_whole_disk_mount_and_swap(host: Host) -> None:
    _disk(host, partitions=0)
    host.kernel.add_mount("nvme0n1", "/srv", "xfs")
    err = _refused(host, lambda: host.mgr.node_detach(NVME), NVME)
    assert [str(u) for u in err.uses] == ["block device nvme0n1 mounted at /srv"]
    host.kernel.remove_mount("/srv")
    host.kernel.add_swap("nvme0n1")
    err = _refused(host, lambda: host.mgr.node_detach(NVME), NVME)
    assert [str(u) for u in err.uses] == ["block device nvme0n1 used as swap"]


def test_stacked_lvm_and_md_devices_count(host: Host) -> None:
    _disk(host, partitions=3)
    host.kernel.add_stacked("dm-0", ["nvme0n1p2"], dm_name="vg-pool")
    host.kernel.add_stacked("dm-1", ["dm-0"], dm_name="vg-root")
    host.kernel.add_stacked("md0", ["nvme0n1p1"])
    host.kernel.add_stacked("dm-2", ["nvme0n1p3"], dm_name="vg-swap")
    host.kernel.add_mount("dm-1", "/", "ext4")
    host.kernel.add_mount("md0", "/boot", "ext4")
    host.kernel.add_swap("dm-2")
    err = _refused(host, lambda: host.mgr.node_detach(NVME), NVME)
    assert sorted(str(u) for u in err.uses) == [
        "block device dm-1 (vg-root) on dm-0 (vg-pool) mounted at /",
        "block device dm-2 (vg-swap) on nvme0n1p3 used as swap",
        "block device md0 on nvme0n1p1 mounted at /boot",
    ]


def test_mount_by_source_when_the_number_is_anonymous(host: Host) -> None:
    """btrfs shows an anonymous 0:N in mountinfo: the source names the device."""
    _disk(host)
    host.kernel.add_mount("0:45", "/data", "btrfs")  # some other file system
    assert host.mgr.host_uses(NVME) == []
    with open("/proc/self/mountinfo", "a") as f:  # append a btrfs line by hand
        f.write("60 1 0:46 / /home rw,relatime shared:9 - btrfs /dev/nvme0n1p1 rw\n")
    assert [str(u) for u in host.mgr.host_uses(NVME)] == ["block device nvme0n1p1 mounted at /home"]


def test_nvme_multipath_namespace_outside_the_pci_tree(host: Host) -> None:
    """With native NVMe multipath the namespace lives under the subsystem, which links to
    its controllers; the controller's own path device (nvme0c0n1) is hidden."""
    host.kernel.add_block(NVME, "nvme0c0n1", 0, under="nvme/nvme0")
    subsys = "/sys/devices/virtual/nvme-subsystem/nvme-subsys0"
    os.makedirs(f"{subsys}/nvme0n1/nvme0n1p1")
    with open(f"{subsys}/nvme0n1/dev", "w") as f:
        f.write("259:7\n")
    with open(f"{subsys}/nvme0n1/nvme0n1p1/dev", "w") as f:
        f.write("259:8\n")
    controller = os.path.realpath(f"/sys/bus/pci/devices/{NVME}/nvme/nvme0")
    os.symlink(os.path.relpath(controller, subsys), f"{subsys}/nvme0")
    os.symlink("../../devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1/nvme0n1p1",
               "/sys/class/block/nvme0n1p1")
    host.kernel.add_mount("259:8", "/", "ext4")
    err = _refused(host, lambda: host.mgr.node_detach(NVME), NVME)
    assert [str(u) for u in err.uses] == ["block device nvme0n1p1 mounted at /"]
    assert host.mgr.host_uses(GPU) == []


def test_unused_disk_is_detached_and_its_children_go(host: Host) -> None:
    _disk(host)
    host.kernel.add_stacked("dm-0", ["nvme0n1p1"])  # stacked but neither mounted nor swap
    host.kernel.add_mount("tmpfs", "/tmp", "tmpfs")
    assert host.mgr.host_uses(NVME) == []
    assert host.mgr.node_detach(NVME).driver == "vfio-pci"
    assert sorted(os.listdir("/sys/class/block")) == ["dm-0"]


def test_unmounting_lifts_the_refusal(host: Host) -> None:
    _disk(host)
    host.kernel.add_mount("nvme0n1p1", "/mnt", "ext4")
    _refused(host, lambda: host.mgr.node_detach(NVME), NVME)
    host.kernel.remove_mount("/mnt")
    assert host.mgr.node_detach(NVME).action == "detached to vfio-pci"


def test_force_goes_ahead_and_warns_naming_the_use(host: Host,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    _disk(host)
    host.kernel.add_mount("nvme0n1p2", "/", "ext4")
    with caplog.at_level(logging.WARNING, logger="hostdev"):
        result = host.mgr.node_detach(NVME, force=True)
    assert result.driver == "vfio-pci" and host.driver(NVME) == "vfio-pci"
    assert [r.message for r in caplog.records if r.levelno == logging.WARNING] == [
        f"forced: detach PCI device {NVME} although {NVME} carries block device nvme0n1p2"
        " mounted at /"]
    assert "nvme0n1" not in os.listdir("/sys/class/block")


# ---------------------------------------------------------------------- network


def _nic(host: Host, up: bool = True) -> None:
    host.kernel.add_netdev(NIC, "eno1")
    if up:
        host.kernel.set_link_up("eno1")


def test_up_interface_with_an_address_is_refused(host: Host) -> None:
    _nic(host)
    host.kernel.add_address("eno1", "192.168.1.10/24")
    host.kernel.add_route("eno1", "default", via="192.168.1.1")
    err = _refused(host, lambda: host.mgr.node_detach(NIC), NIC)
    assert [str(u) for u in err.uses] == [
        "network interface eno1 up with route 192.168.1.0/24, default via 192.168.1.1"]


def test_ipv6_global_address_and_route(host: Host) -> None:
    _nic(host)
    host.kernel.add_address("eno1", "2001:db8::5/64")
    err = _refused(host, lambda: host.mgr.node_detach(NIC), NIC)
    assert [str(u) for u in err.uses] == [
        "network interface eno1 up with address 2001:db8::5/64 and route 2001:db8::/64"]


def test_route_without_an_address_is_refused(host: Host) -> None:
    _nic(host)
    host.kernel.add_route("eno1", "10.8.0.0/16")
    err = _refused(host, lambda: host.mgr.node_detach(NIC), NIC)
    assert err.uses[0].use == "up with route 10.8.0.0/16"


@pytest.mark.parametrize("case", ["down with address", "up, link-local only",
                                  "up, zeroconf route only"])
def test_interfaces_the_host_does_not_route_through(host: Host, case: str) -> None:
    _nic(host, up=case != "down with address")
    if case == "down with address":
        host.kernel.add_address("eno1", "10.0.0.2/24")
    if case == "up, zeroconf route only":
        host.kernel.add_route("eno1", "169.254.0.0/16")
    assert host.mgr.host_uses(NIC) == []
    assert host.mgr.node_detach(NIC).driver == "vfio-pci"
    assert os.listdir("/sys/class/net") == ["lo"]


def test_interface_under_a_used_bond(host: Host) -> None:
    _nic(host)
    host.kernel.add_virtual_netdev("bond0")
    host.kernel.set_upper("eno1", "bond0")
    assert host.mgr.host_uses(NIC) == [], "the bond is down"
    host.kernel.set_link_up("bond0")
    host.kernel.add_address("bond0", "10.1.0.2/24")
    err = _refused(host, lambda: host.mgr.node_detach(NIC), NIC)
    assert [str(u) for u in err.uses] == [
        "network interface eno1 under bond0, which is up with route 10.1.0.0/24"]


# ---------------------------------------------------------------------- mount tags


def _virtio(host: Host) -> None:
    host.kernel.add_driver("virtio-pci", ids=[(0x1AF4, 0x1009)])
    host.kernel.add_device(VIRTIO, vendor=0x1AF4, device=0x1009, class_code=0x000200,
                           iommu_group=3)


def test_mounted_9p_tag_is_refused(host: Host) -> None:
    _virtio(host)
    host.kernel.add_mount_tag(VIRTIO, "hostroot")
    host.kernel.add_mount_tag(VIRTIO, "results")
    assert host.mgr.host_uses(VIRTIO) == [], "tags nobody mounted"
    host.kernel.add_mount("hostroot", "/", "9p")
    host.kernel.add_mount("hostroot", "/hostro", "9p")
    err = _refused(host, lambda: host.mgr.node_detach(VIRTIO), VIRTIO)
    assert [str(u) for u in err.uses] == ["9p mount tag hostroot mounted at /",
                                          "9p mount tag hostroot mounted at /hostro"]


def test_mounted_virtiofs_tag_is_refused(host: Host) -> None:
    _virtio(host)
    host.kernel.add_mount_tag(VIRTIO, "shared", fs="virtiofs")
    host.kernel.add_mount("shared", "/srv/shared", "9p")  # wrong fstype: not this tag
    assert host.mgr.host_uses(VIRTIO) == []
    host.kernel.add_mount("shared", "/mnt/shared", "virtiofs")
    err = _refused(host, lambda: host.mgr.node_detach(VIRTIO), VIRTIO)
    assert [str(u) for u in err.uses] == ["virtiofs mount tag shared mounted at /mnt/shared"]


# ---------------------------------------------------------------------- prepare


def test_prepare_refuses_the_whole_batch(host: Host) -> None:
    _nic(host)
    host.kernel.add_address("eno1", "10.0.0.2/24")
    err = _refused(host, lambda: host.mgr.prepare(VM1, [GPU, GPU_AUDIO, NIC]), GPU, GPU_AUDIO, NIC)
    assert err.address == NIC and str(err).startswith(f"cannot prepare PCI device {NIC}:")
    assert host.mgr.active() == []


def test_prepare_force(host: Host, caplog: pytest.LogCaptureFixture) -> None:
    _disk(host)
    host.kernel.add_swap("nvme0n1p1")
    with caplog.at_level(logging.WARNING, logger="hostdev"):
        report = host.mgr.prepare(VM1, [NVME], force=True)
    assert [r.address for r in report.prepared] == [NVME]
    assert any("forced: prepare PCI device" in r.message and "used as swap" in r.message
               for r in caplog.records)


def test_prepare_unmanaged_is_not_checked(host: Host) -> None:
    """An unmanaged device must already be on a stub: there is nothing left to lose."""
    _disk(host)
    host.kernel.add_mount("nvme0n1p2", "/", "ext4")
    spec = HostdevSpec(address=NVME, managed=False)
    with pytest.raises(Exception, match="must be manually detached"):
        host.mgr.prepare(VM1, [spec])


# ---------------------------------------------------------------------- VF counts


def test_vf_count_change_refused_when_a_vanishing_vf_carries_a_used_interface(
        host: Host) -> None:
    vf0, vf1 = host.vfs(2)
    host.kernel.add_netdev(vf1, "enp1s0v1")
    host.kernel.set_link_up("enp1s0v1")
    host.kernel.add_address("enp1s0v1", "172.16.0.5/16")
    err = _refused(host, lambda: host.mgr.set_num_vfs(PF, 1), PF, vf0, vf1)
    assert str(err).startswith(f"cannot change the VF count of PCI device {PF}: the host is"
                               f" using it ({vf1} carries network interface enp1s0v1 up")
    assert err.address == PF and host.vfs_now() == [vf0, vf1]
    report = host.mgr.set_num_vfs(PF, 1, force=True)
    assert report.after == 1 and "enp1s0v1" not in os.listdir("/sys/class/net")


def test_vf_count_change_allowed_while_the_pf_carries_a_used_interface(host: Host) -> None:
    """The PF keeps its driver through a VF count change: its own routed interface (the
    host's management NIC, say) does not need --force, nothing is taken from the host."""
    host.kernel.add_netdev(PF, "ens1f0")
    host.kernel.set_link_up("ens1f0")
    host.kernel.add_route("ens1f0", "default", via="10.0.0.1")
    assert host.mgr.set_num_vfs(PF, 2).after == 2
    assert host.kernel.device_state(PF).driver is not None


def test_show_through_the_manager_reads_nothing_it_does_not_need(host: Host) -> None:
    """The scan only looks at /proc when a function has children."""
    stats = host.mgr.sysfs.stats
    stats.trace = []
    assert host.mgr.host_uses(GPU) == []
    assert not any("/proc/" in path for path in stats.trace)


def test_forced_prepare_rolled_back_gives_the_disk_back(host: Host) -> None:
    """A forced batch that fails later rebinds nvme, whose probe makes the disk again."""
    _disk(host)
    host.kernel.add_mount("nvme0n1p2", "/", "ext4")
    # the second device cannot be taken, after the first went to vfio-pci
    host.kernel.fail_write(f"/sys/bus/pci/devices/{NIC}/driver_override", errno.EIO)
    with pytest.raises(HostdevError):
        host.mgr.prepare(VM1, [NVME, NIC], force=True)
    assert any(w.path.endswith("drivers_probe") and w.value.startswith(str(NVME))
               for w in host.kernel.writes), "the disk's function did leave nvme"
    assert host.driver(NVME) == "nvme" and host.driver(NIC) == "e1000e"
    assert sorted(os.listdir("/sys/class/block")) == ["nvme0n1", "nvme0n1p1", "nvme0n1p2"]
    assert [str(u) for u in host.mgr.host_uses(NVME)] == ["block device nvme0n1p2 mounted at /"]


# ---------------------------------------------------------------------- fixture hosts


def _fixture_manager(kernel: FakeKernel, name: str) -> HostdevManager:
    kernel.load_fixture(name)
    return HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0.0)


def test_server_fixture_boot_disk(fake_kernel: FakeKernel) -> None:
    mgr = _fixture_manager(fake_kernel, "two-socket-server")
    sata = PciAddress.parse("0000:00:17.0")
    with pytest.raises(DeviceUsedByHost) as info:
        mgr.node_detach(sata)
    assert sorted(str(u) for u in info.value.uses) == [
        "block device dm-0 (vg0-root) on sda3 mounted at /",
        "block device dm-1 (vg0-swap) on sda3 used as swap",
        "block device sda1 mounted at /boot/efi",
        "block device sda2 mounted at /boot",
    ]
    assert fake_kernel.device_state(sata).driver == "ahci" and fake_kernel.writes == []
    assert mgr.host_uses("0000:18:00.0") == [], "the data disks carry nothing in use"


def test_guest_fixture_root_function(fake_kernel: FakeKernel) -> None:
    """The fake's mirror of the real-kernel test: / is 9p over 00:01.0."""
    mgr = _fixture_manager(fake_kernel, "qemu-guest")
    with pytest.raises(DeviceUsedByHost, match="9p mount tag hostroot mounted at /[;)]"):
        mgr.node_detach("0000:00:01.0")
    with pytest.raises(DeviceUsedByHost, match="9p mount tag results mounted at /results"):
        mgr.prepare(VM1, ["0000:00:02.0"])
    assert fake_kernel.writes == []
    assert mgr.host_uses("0000:01:00.0") == []


def test_a_bridge_does_not_carry_what_the_functions_below_it_carry(host: Host) -> None:
    host.kernel.add_netdev(PF, "ens1f0")
    host.kernel.set_link_up("ens1f0")
    host.kernel.add_address("ens1f0", "10.9.0.1/24")
    assert [u.address for u in host.mgr.host_uses(PF)] == [PF]
    assert host.mgr.host_uses(ROOT_PORT) == []


@pytest.mark.parametrize("address, used", [("10.9.0.5/32", True), ("169.254.7.7/16", False)])
def test_ipv4_address_without_a_main_table_route(host: Host, address: str, used: bool) -> None:
    """/proc/net/route shows no route for a /32: netlink tells the interface has it."""
    _nic(host)
    host.kernel.add_address("eno1", address)
    with open("/proc/net/route") as table:
        assert "eno1" not in table.read() or not address.endswith("/32")
    if used:
        err = _refused(host, lambda: host.mgr.node_detach(NIC), NIC)
        assert [str(u) for u in err.uses] == [
            f"network interface eno1 up with address {address}"]
    else:
        assert host.mgr.host_uses(NIC) == []
