"""fail_write, fail_probe, crash_after_writes and the write log."""

from __future__ import annotations

import errno

import pytest

from hostdev.testing import FakeKernel, SimulatedCrash

from .hostlib import GPU, NIC, PF, Sys, vf_addresses


def test_fail_write_once(host: FakeKernel, sysfs: Sys) -> None:
    fault = host.fail_write(f"*/{NIC}/driver_override", errno.EIO)
    assert sysfs.errno(sysfs.dev(NIC, "driver_override"), "vfio-pci") == errno.EIO
    assert sysfs.read(sysfs.dev(NIC, "driver_override")) == "(null)\n"  # no effect
    assert fault.remaining == 0 and fault.hits == 1
    sysfs.write(sysfs.dev(NIC, "driver_override"), "vfio-pci")
    assert sysfs.read(sysfs.dev(NIC, "driver_override")) == "vfio-pci\n"


def test_fail_write_every_time_until_cancelled(host: FakeKernel, sysfs: Sys) -> None:
    fault = host.fail_write("/sys/bus/pci/drivers/*/unbind", errno.EBUSY, times=None)
    for _ in range(3):
        assert sysfs.errno(sysfs.drv("e1000e", "unbind"), NIC) == errno.EBUSY
    assert sysfs.driver(NIC) == "e1000e"
    assert fault.hits == 3
    fault.cancel()
    sysfs.write(sysfs.drv("e1000e", "unbind"), NIC)
    assert sysfs.driver(NIC) is None


def test_fail_write_matches_canonical_path(host: FakeKernel, sysfs: Sys) -> None:
    host.fail_write("/sys/devices/pci0000:00/*/0000:04:00.0/remove", errno.ENOMEM, times=2)
    assert sysfs.errno(sysfs.dev(GPU, "remove"), "1") == errno.ENOMEM
    assert sysfs.errno(sysfs.dev(GPU, "remove"), "1") == errno.ENOMEM
    sysfs.write(sysfs.dev(GPU, "remove"), "1")
    assert not sysfs.exists(sysfs.dev(GPU))


def test_fail_write_other_paths_unaffected(host: FakeKernel, sysfs: Sys) -> None:
    host.fail_write(f"*/{GPU}/driver_override", errno.EIO)
    sysfs.write(sysfs.dev(NIC, "driver_override"), "x")
    assert host.writes[-1].errno is None


def test_write_log(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.dev(NIC, "driver_override"), "vfio-pci\n")
    sysfs.errno(sysfs.drv("e1000e", "bind"), NIC)
    assert [(w.path, w.value, w.errno) for w in host.writes] == [
        (f"/sys/bus/pci/devices/{NIC}/driver_override", "vfio-pci\n", None),
        # the override names another driver: no match, ENODEV (before EBUSY)
        ("/sys/bus/pci/drivers/e1000e/bind", NIC, errno.ENODEV),
    ]


def test_fail_probe_leaves_autoprobed_vf_unbound(host: FakeKernel, sysfs: Sys) -> None:
    host.fail_probe("ixgbevf", errno.EIO)
    sysfs.write(sysfs.dev(PF, "sriov_numvfs"), "2")  # the write itself succeeds
    assert [sysfs.driver(vf) for vf in vf_addresses(2)] == [None, None]
    assert sysfs.errno(sysfs.drv("ixgbevf", "bind"), vf_addresses(1)[0]) == errno.EIO


def test_fail_probe_times(host: FakeKernel, sysfs: Sys) -> None:
    fault = host.fail_probe("ixgbevf", errno.EIO, times=1)
    sysfs.write(sysfs.dev(PF, "sriov_numvfs"), "2")
    assert [sysfs.driver(vf) for vf in vf_addresses(2)] == [None, "ixgbevf"]
    assert not fault.active


def test_crash_after_writes(host: FakeKernel, sysfs: Sys) -> None:
    host.crash_after_writes(2)
    sysfs.write(sysfs.dev(NIC, "reset"), "1")
    assert sysfs.errno(sysfs.drv("e1000e", "bind"), NIC) == errno.EBUSY  # does not count
    with pytest.raises(SimulatedCrash) as info:
        try:
            sysfs.write(sysfs.drv("e1000e", "unbind"), NIC)
        except Exception:  # library code cannot swallow it
            pytest.fail("SimulatedCrash must not be an Exception")
    assert info.value.write.path == "/sys/bus/pci/drivers/e1000e/unbind"
    assert sysfs.driver(NIC) is None  # the write took effect before the crash
    sysfs.write(sysfs.drv("e1000e", "bind"), NIC)  # disarmed after firing
    assert sysfs.driver(NIC) == "e1000e"


def test_watch_runs_its_hook_before_the_kth_write_takes_effect(host: FakeKernel,
                                                                sysfs: Sys) -> None:
    """A hook at the 2nd write arms a fault for that very write; the 1st and 3rd go through."""
    calls: list[tuple[str, object]] = []

    def hook(path: str, address: object) -> None:
        calls.append((path, address))
        host.fail_write(path, errno.EIO, times=1)

    with host.watch_writes(hook, at=2) as watch:
        sysfs.write(sysfs.dev(NIC, "driver_override"), "vfio-pci")
        assert sysfs.errno(sysfs.drv("e1000e", "unbind"), NIC) == errno.EIO
        sysfs.write(sysfs.drv("e1000e", "unbind"), NIC)
    assert [(p, str(a)) for p, a in calls] == [("/sys/bus/pci/drivers/e1000e/unbind", NIC)]
    assert watch.seen == [f"/sys/bus/pci/devices/{NIC}/driver_override",
                          "/sys/bus/pci/drivers/e1000e/unbind",
                          "/sys/bus/pci/drivers/e1000e/unbind"]
    assert sysfs.driver(NIC) is None
    sysfs.write(sysfs.dev(NIC, "driver_override"), "\n")
    assert len(watch.seen) == 3, "a watch left behind sees nothing"


def test_watch_on_a_path_fires_once_and_skips_the_hooks_own_writes(host: FakeKernel,
                                                                  sysfs: Sys) -> None:
    """The first write matching the glob runs the hook (which unplugs the device: the
    write then fails as on a stale file); the hook's own write is not counted."""
    def unplug(path: str, address: object) -> None:
        sysfs.write(sysfs.dev(GPU, "remove"), "1")

    with host.watch_writes(unplug, match=f"*/{GPU}/driver_override") as watch:
        sysfs.write(sysfs.dev(NIC, "driver_override"), "x")
        assert sysfs.errno(sysfs.dev(GPU, "driver_override"), "x") == errno.ENODEV
    assert watch.seen == [f"/sys/bus/pci/devices/{NIC}/driver_override",
                          f"/sys/bus/pci/devices/{GPU}/driver_override"]
    assert not sysfs.exists(sysfs.dev(GPU))
    assert host.count_writes(lambda: sysfs.write(sysfs.dev(NIC, "driver_override"), "y")) == 1
