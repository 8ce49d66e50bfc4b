"""hold_vfio: /proc layout, would-block operations, claimed groups (docs/kernel-model.md §4)."""

from __future__ import annotations

import errno
import os

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from hostdev.testing import FakeKernel, FakeKernelSetupError, VfioWouldBlock

from .hostlib import (
    GPU,
    GPU_AUDIO,
    NIC,
    PF,
    ROOT_PORT,
    ROOT_PORT2,
    Sys,
    build_host,
    vf_addresses,
)


def _to_vfio(sysfs: Sys, address: str) -> None:
    if sysfs.driver(address):
        sysfs.write(sysfs.dev(address, "driver/unbind"), address)
    sysfs.write(sysfs.dev(address, "driver_override"), "vfio-pci")
    sysfs.write("/sys/bus/pci/drivers_probe", address)
    assert sysfs.driver(address) == "vfio-pci"


def _fds(pid: int) -> dict[int, str]:
    base = f"/proc/{pid}/fd"
    return {int(n): os.readlink(f"{base}/{n}") for n in os.listdir(base)}


def test_hold_requires_vfio_driver(host: FakeKernel) -> None:
    with pytest.raises(FakeKernelSetupError, match="e1000e"):
        host.hold_vfio(NIC)


def test_hold_requires_viable_group(host: FakeKernel, sysfs: Sys) -> None:
    _to_vfio(sysfs, GPU)
    with pytest.raises(FakeKernelSetupError, match="snd_hda_intel"):
        host.hold_vfio(GPU)
    sysfs.write(sysfs.dev(GPU_AUDIO, "driver_override"), "pci-stub")
    sysfs.write(sysfs.dev(GPU_AUDIO, "driver/unbind"), GPU_AUDIO)
    sysfs.write("/sys/bus/pci/drivers_probe", GPU_AUDIO)
    assert sysfs.driver(GPU_AUDIO) == "pci-stub"
    with host.hold_vfio(GPU) as holder:
        assert host.device_state(GPU).holder_pids == (holder.pid,)
    assert host.device_state(GPU).holder_pids == ()


def test_group_holder_proc_layout(host: FakeKernel, sysfs: Sys) -> None:
    _to_vfio(sysfs, NIC)
    holder = host.hold_vfio(NIC, comm="qemu-kvm")
    assert sysfs.read(f"/proc/{holder.pid}/comm") == "qemu-kvm\n"
    targets = sorted(_fds(holder.pid).values())
    assert targets == ["/dev/null", "/dev/null", "/dev/null", "/dev/vfio/5",
                       "/dev/vfio/vfio", "anon_inode:[vfio-device]"]
    device_fd = next(fd for fd, t in _fds(holder.pid).items() if t.startswith("anon_inode"))
    info = sysfs.read(f"/proc/{holder.pid}/fdinfo/{device_fd}")
    assert info.startswith("pos:\t0\n") and "vfio-device-syspath" not in info
    assert sysfs.read(sysfs.dev(NIC, "power_state")) == "D0\n"
    holder.release()
    assert not sysfs.exists(f"/proc/{holder.pid}")
    assert sysfs.read(sysfs.dev(NIC, "power_state")) == "D3hot\n"


def test_cdev_holder_and_fdinfo_syspath(fs: FakeFilesystem, sysfs: Sys) -> None:
    kernel = build_host(FakeKernel(fs, vfio_fdinfo_syspath=True))
    _to_vfio(sysfs, NIC)
    holder = kernel.hold_vfio(NIC, pid=777, via="cdev")
    assert holder.pid == 777
    fds = _fds(777)
    assert "/dev/vfio/devices/vfio0" in fds.values()
    assert "/dev/vfio/5" not in fds.values()
    device_fd = next(fd for fd, t in fds.items() if t == "/dev/vfio/devices/vfio0")
    info = sysfs.read(f"/proc/777/fdinfo/{device_fd}")
    assert f"vfio-device-syspath: {os.path.realpath(sysfs.dev(NIC))}\n" in info


def test_kernel_without_device_cdev(fs: FakeFilesystem, sysfs: Sys) -> None:
    """Like Debian's 6.1: vfio-dev/vfioX in sysfs, but no /dev/vfio/devices."""
    kernel = build_host(FakeKernel(fs, vfio_device_cdev=False))
    _to_vfio(sysfs, NIC)
    assert sysfs.ls(sysfs.dev(NIC, "vfio-dev")) == ["vfio0"]
    assert sysfs.exists("/sys/class/vfio-dev/vfio0")
    assert sysfs.ls("/dev/vfio") == ["5", "vfio"]
    assert not sysfs.exists("/dev/vfio/devices/vfio0")
    # no device number: device_add makes no ``dev`` file, the uevent has no MAJOR/MINOR
    assert sysfs.ls(sysfs.dev(NIC, "vfio-dev/vfio0")) == ["device", "uevent"]
    assert sysfs.read(sysfs.dev(NIC, "vfio-dev/vfio0/uevent")) == ""
    with pytest.raises(FakeKernelSetupError, match="cdev"):
        kernel.hold_vfio(NIC, via="cdev")
    holder = kernel.hold_vfio(NIC)  # the group path works as on 6.1
    holder.release()
    sysfs.write(sysfs.drv("vfio-pci", "unbind"), NIC)
    assert not sysfs.exists(sysfs.dev(NIC, "vfio-dev"))
    assert sysfs.ls("/dev/vfio") == ["vfio"]


def test_several_holders(host: FakeKernel, sysfs: Sys) -> None:
    _to_vfio(sysfs, GPU)
    _to_vfio(sysfs, GPU_AUDIO)
    one = host.hold_vfio(GPU)
    two = host.hold_vfio(GPU_AUDIO, pid=one.pid)  # same process, shared group fd
    three = host.hold_vfio(GPU)
    assert three.pid != one.pid
    assert sorted(_fds(one.pid).values()).count("/dev/vfio/4") == 1
    assert sorted(_fds(one.pid).values()).count("anon_inode:[vfio-device]") == 2
    assert host.device_state(GPU).holder_pids == tuple(sorted((one.pid, three.pid)))
    one.release()
    assert "/dev/vfio/4" in _fds(two.pid).values()  # still used by the second device
    two.release()
    three.release()
    assert host.holders() == []


def test_would_block_unbind(host: FakeKernel, sysfs: Sys) -> None:
    _to_vfio(sysfs, NIC)
    holder = host.hold_vfio(NIC)
    for path in (sysfs.drv("vfio-pci", "unbind"), sysfs.dev(NIC, "driver/unbind")):
        with pytest.raises(VfioWouldBlock) as info:
            sysfs.write(path, NIC)
        assert info.value.pids == [holder.pid] and info.value.address == NIC
        assert not isinstance(info.value, OSError)
    assert sysfs.driver(NIC) == "vfio-pci" and sysfs.exists("/dev/vfio/5")
    assert len(host.would_block_events) == 2
    assert host.writes[-1].blocked
    holder.release()
    sysfs.write(sysfs.drv("vfio-pci", "unbind"), NIC)
    assert sysfs.driver(NIC) is None


@pytest.mark.parametrize("target", [GPU, ROOT_PORT2])
def test_would_block_remove(host: FakeKernel, sysfs: Sys, target: str) -> None:
    _to_vfio(sysfs, GPU)
    sysfs.write(sysfs.dev(GPU_AUDIO, "driver/unbind"), GPU_AUDIO)  # group must be viable
    host.hold_vfio(GPU)
    with pytest.raises(VfioWouldBlock):
        sysfs.write(sysfs.dev(target, "remove"), "1")
    with pytest.raises(VfioWouldBlock):
        host.remove_device(target)
    for address in (ROOT_PORT2, GPU, GPU_AUDIO):
        assert sysfs.exists(sysfs.dev(address))
    assert sysfs.driver(GPU) == "vfio-pci"
    assert sysfs.driver(ROOT_PORT2) == "pcieport"
    assert [e.addresses for e in host.would_block_events] == [(GPU,), (GPU,)]


def test_would_block_numvfs_zero(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.dev(PF, "sriov_numvfs"), "3")
    vfs = vf_addresses(3)
    _to_vfio(sysfs, vfs[2])
    holder = host.hold_vfio(vfs[2], pid=4321)
    with pytest.raises(VfioWouldBlock, match="4321"):
        sysfs.write(sysfs.dev(PF, "sriov_numvfs"), "0")
    assert sysfs.read(sysfs.dev(PF, "sriov_numvfs")) == "3\n"
    assert all(sysfs.exists(sysfs.dev(vf)) for vf in vfs)
    # unbinding the PF (ixgbe disables SR-IOV on remove) and removing it block too
    with pytest.raises(VfioWouldBlock):
        sysfs.write(sysfs.drv("ixgbe", "unbind"), PF)
    with pytest.raises(VfioWouldBlock):
        sysfs.write(sysfs.dev(ROOT_PORT, "remove"), "1")
    assert sysfs.driver(PF) == "ixgbe"
    holder.release()
    sysfs.write(sysfs.dev(PF, "sriov_numvfs"), "0")
    assert not any(sysfs.exists(sysfs.dev(vf)) for vf in vfs)


def test_would_block_unbind_vfio_pf_with_held_vf(fs: FakeFilesystem, sysfs: Sys) -> None:
    kernel = build_host(FakeKernel(fs, vfio_enable_sriov=True))
    _to_vfio(sysfs, PF)
    sysfs.write(sysfs.dev(PF, "sriov_numvfs"), "2")
    vf = vf_addresses(2)[1]
    assert sysfs.driver(vf) == "vfio-pci"
    kernel.hold_vfio(vf)
    with pytest.raises(VfioWouldBlock) as info:
        sysfs.write(sysfs.drv("vfio-pci", "unbind"), PF)
    assert info.value.addresses == [vf]
    assert sysfs.driver(PF) == "vfio-pci"
    assert sysfs.read(sysfs.dev(PF, "sriov_numvfs")) == "2\n"


def test_host_bind_into_held_group_is_ebusy(host: FakeKernel, sysfs: Sys) -> None:
    _to_vfio(sysfs, GPU)
    sysfs.write(sysfs.dev(GPU_AUDIO, "driver/unbind"), GPU_AUDIO)
    holder = host.hold_vfio(GPU)
    assert sysfs.errno(sysfs.drv("snd_hda_intel", "bind"), GPU_AUDIO) == errno.EBUSY
    # driver_managed_dma drivers are fine
    sysfs.write(sysfs.dev(GPU_AUDIO, "driver_override"), "pci-stub")
    sysfs.write(sysfs.drv("pci-stub", "bind"), GPU_AUDIO)
    assert sysfs.driver(GPU_AUDIO) == "pci-stub"
    sysfs.write(sysfs.drv("pci-stub", "unbind"), GPU_AUDIO)
    sysfs.write(sysfs.dev(GPU_AUDIO, "driver_override"), "\n")
    holder.release()
    sysfs.write(sysfs.drv("snd_hda_intel", "bind"), GPU_AUDIO)
    assert sysfs.driver(GPU_AUDIO) == "snd_hda_intel"


def test_init_process_is_not_a_vfio_user(kernel: FakeKernel, sysfs: Sys) -> None:
    assert sysfs.read("/proc/1/comm") == "systemd\n"
    assert not any("vfio" in t for t in _fds(1).values())


# ----------------------------------------------------------------- the kernel's own count


def _counts(sysfs: Sys, address: str) -> tuple[str, str, str]:
    return (sysfs.read(sysfs.dev(address, "enable")).strip(),
            sysfs.read(sysfs.dev(address, "power/runtime_usage")).strip(),
            sysfs.read(sysfs.dev(address, "power/runtime_status")).strip())


def test_runtime_pm_counts_by_driver(host: FakeKernel, sysfs: Sys) -> None:
    """As on a real 6.1 kernel: 2 on a host driver, 1 unbound, 0 idle on vfio-pci."""
    assert _counts(sysfs, NIC)[1:] == ("2", "active")
    assert _counts(sysfs, NIC)[0] == "1"  # e1000e enabled it in probe
    sysfs.write(sysfs.dev(NIC, "driver/unbind"), NIC)
    assert _counts(sysfs, NIC) == ("0", "1", "active")
    _to_vfio(sysfs, NIC)
    assert _counts(sysfs, NIC) == ("0", "0", "suspended")


@pytest.mark.parametrize("via", ["group", "cdev", "mmap"])
@pytest.mark.parametrize("visible", [True, False])
def test_every_holder_raises_the_counts_until_released(host: FakeKernel, sysfs: Sys,
                                                       via: str, visible: bool) -> None:
    _to_vfio(sysfs, NIC)
    holder = host.hold_vfio(NIC, via=via, visible=visible)
    assert _counts(sysfs, NIC) == ("1", "1", "active")
    assert sysfs.read(sysfs.dev(NIC, "power_state")) == "D0\n"
    second = host.hold_vfio(NIC, via=via, visible=visible)
    assert _counts(sysfs, NIC) == ("1", "1", "active"), "one open of the device, however many"
    holder.release()
    assert _counts(sysfs, NIC) == ("1", "1", "active")
    second.release()
    assert _counts(sysfs, NIC) == ("0", "0", "suspended")


def test_hidden_holder_has_no_proc_entry_but_blocks(host: FakeKernel, sysfs: Sys) -> None:
    _to_vfio(sysfs, NIC)
    before = sorted(os.listdir("/proc"))
    holder = host.hold_vfio(NIC, pid=4100, visible=False)
    assert sorted(os.listdir("/proc")) == before
    assert not holder.visible and "not visible" in repr(holder)
    with pytest.raises(VfioWouldBlock):
        sysfs.write("/sys/bus/pci/drivers/vfio-pci/unbind", NIC)
    with pytest.raises(FakeKernelSetupError, match="not visible"):
        host.hold_vfio(NIC, pid=4100)
    holder.release()
    sysfs.write("/sys/bus/pci/drivers/vfio-pci/unbind", NIC)
    assert sysfs.driver(NIC) is None


def test_mmap_holder_keeps_only_a_mapping(host: FakeKernel, sysfs: Sys) -> None:
    _to_vfio(sysfs, NIC)
    holder = host.hold_vfio(NIC, pid=4200, comm="dpdk", via="mmap")
    assert sorted(_fds(4200).values()) == ["/dev/null"] * 3, "every VFIO fd was closed"
    maps = sysfs.read("/proc/4200/maps").splitlines()
    vfio = [line for line in maps if "vfio" in line]
    assert len(vfio) == 1 and vfio[0].split()[-1] == "anon_inode:[vfio-device]"
    assert vfio[0].split()[1] == "rw-s"
    assert any(line.endswith("[stack]") for line in maps)
    with pytest.raises(VfioWouldBlock):
        sysfs.write("/sys/bus/pci/drivers/vfio-pci/unbind", NIC)
    holder.release()
    assert not os.path.exists("/proc/4200")
    sysfs.write("/sys/bus/pci/drivers/vfio-pci/unbind", NIC)


def test_mmap_and_fd_holds_in_one_process(host: FakeKernel, sysfs: Sys) -> None:
    _to_vfio(sysfs, NIC)
    mapped = host.hold_vfio(NIC, pid=4300, via="mmap")
    opened = host.hold_vfio(NIC, pid=4300)
    assert "anon_inode:[vfio-device]" in _fds(4300).values()
    mapped.release()
    assert "vfio" not in sysfs.read("/proc/4300/maps")
    assert "anon_inode:[vfio-device]" in _fds(4300).values()
    opened.release()
    assert not os.path.exists("/proc/4300")


def test_hold_via_unknown(host: FakeKernel, sysfs: Sys) -> None:
    _to_vfio(sysfs, NIC)
    with pytest.raises(FakeKernelSetupError, match="'group', 'cdev' or 'mmap'"):
        host.hold_vfio(NIC, via="ioctl")
