"""The fake kernel's uevents: add, remove, bind and unbind for what it does, heard through
the library's boundary (hostdev.linux.uevents.open_events) as a real monitor would."""

from __future__ import annotations

import pytest

from hostdev.address import PciAddress
from hostdev.linux.sysfs import Sysfs
from hostdev.linux.uevents import Uevent, open_events
from hostdev.testing import FakeKernel
from hostdev.testing.uevents import FakeMonitor

from .hostlib import DEVICES, DRIVERS, NIC, PF, Sys, vf_addresses


def heard(monitor: FakeMonitor | object) -> list[tuple[str, str, str | None]]:
    assert isinstance(monitor, FakeMonitor)
    batch = monitor.drain(0)
    assert not batch.lost
    return [(e.action, str(e.address), e.driver) for e in batch.events]


def test_the_boundary_opens_a_fake_monitor(host: FakeKernel) -> None:
    monitor = open_events(Sysfs("/"))
    assert isinstance(monitor, FakeMonitor) and host.state.monitors == [monitor]
    monitor.close()
    monitor.close()
    assert host.state.monitors == []


def test_hot_add_is_add_then_bind(kernel: FakeKernel) -> None:
    kernel.add_driver("e1000e", ids=[(0x8086, 0x10D3)])
    monitor = open_events(Sysfs("/"))
    kernel.add_device("0000:05:00.0", 0x8086, 0x10D3, 0x020000, iommu_group=9)
    kernel.add_device("0000:06:00.0", 0x8086, 0x1234, 0x020000, iommu_group=10)
    assert heard(monitor) == [("add", "0000:05:00.0", None), ("bind", "0000:05:00.0", "e1000e"),
                              ("add", "0000:06:00.0", None)]


def test_unbind_and_bind_through_sysfs(host: FakeKernel, sysfs: Sys) -> None:
    monitor = open_events(Sysfs("/"))
    sysfs.write(f"{DRIVERS}/e1000e/unbind", NIC)
    sysfs.write(f"{DEVICES}/{NIC}/driver_override", "vfio-pci")
    sysfs.write(f"{DRIVERS}/vfio-pci/bind", NIC)
    # An unbind names no driver: the kernel makes the message once it is gone.
    assert heard(monitor) == [("unbind", NIC, None), ("bind", NIC, "vfio-pci")]
    assert sysfs.errno(f"{DRIVERS}/e1000e/bind", NIC) != 0
    assert heard(monitor) == [], "a refused bind sends nothing"


def test_vf_count_changes(host: FakeKernel, sysfs: Sys) -> None:
    vf0, vf1 = vf_addresses(2)
    monitor = open_events(Sysfs("/"))
    sysfs.write(f"{DEVICES}/{PF}/sriov_numvfs", "2")
    assert heard(monitor) == [("add", vf0, None), ("bind", vf0, "ixgbevf"),
                              ("add", vf1, None), ("bind", vf1, "ixgbevf")]
    sysfs.write(f"{DEVICES}/{PF}/sriov_numvfs", "0")
    assert heard(monitor) == [("unbind", vf0, None), ("remove", vf0, None),
                              ("unbind", vf1, None), ("remove", vf1, None)]


def test_unbinding_a_pf_removes_its_vfs_before_its_own_unbind(host: FakeKernel,
                                                              sysfs: Sys) -> None:
    (vf0,) = vf_addresses(1)
    sysfs.write(f"{DEVICES}/{PF}/sriov_numvfs", "1")
    monitor = open_events(Sysfs("/"))
    sysfs.write(f"{DRIVERS}/ixgbe/unbind", PF)
    # The kernel's message comes after the driver's remove, which disabled SR-IOV.
    assert heard(monitor) == [("unbind", vf0, None), ("remove", vf0, None),
                              ("unbind", PF, None)]


def test_hot_unplug_and_rescan(host: FakeKernel, sysfs: Sys) -> None:
    monitor = open_events(Sysfs("/"))
    host.remove_device(NIC)
    assert heard(monitor) == [("unbind", NIC, None), ("remove", NIC, None)]
    sysfs.write("/sys/bus/pci/rescan", "1")
    assert heard(monitor) == [("add", NIC, None), ("bind", NIC, "e1000e")]


def test_every_monitor_hears_everything_and_the_kernel_keeps_a_record(
        host: FakeKernel, sysfs: Sys) -> None:
    first, second = open_events(Sysfs("/")), open_events(Sysfs("/"))
    sent = len(host.uevents)
    sysfs.write(f"{DRIVERS}/e1000e/unbind", NIC)
    assert heard(first) == heard(second) == [("unbind", NIC, None)]
    assert host.uevents[sent:] == [Uevent("unbind", PciAddress.parse(NIC))]
    second.close()
    host.send_uevent("change", NIC)
    assert heard(first) == [("change", NIC, None)] and heard(second) == []


def test_a_full_buffer_drops_events_and_says_so(host: FakeKernel, sysfs: Sys) -> None:
    monitor = open_events(Sysfs("/"))
    assert isinstance(monitor, FakeMonitor)
    host.limit_uevents(3)
    sysfs.write(f"{DEVICES}/{PF}/sriov_numvfs", "2")
    batch = monitor.drain(0)
    assert batch.lost and len(batch.events) == 3
    assert monitor.drain(0) == ([], False), "the loss is reported once"
    with pytest.raises(ValueError):
        host.limit_uevents(-1)


def test_drain_waits_no_longer_than_asked(host: FakeKernel) -> None:
    monitor = open_events(Sysfs("/"))
    assert monitor.drain(0.01) == ([], False)
    host.send_uevent("change", NIC)
    host.send_uevent("change", PF)
    assert len(monitor.drain(0.01, limit=1).events) == 1
    assert len(monitor.drain(0.01).events) == 1
