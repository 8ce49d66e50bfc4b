"""Never unbind a device a VFIO user still holds: wait, then refuse with DeviceBusy."""

from __future__ import annotations

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from hostdev.errors import DeviceBusy
from hostdev.linux.vfio import Holder
from hostdev.manager import HostdevManager
from hostdev.testing import FakeKernel
from tests.smallhost import NIC, NVME, VM1, Host


def test_holders_found_by_group(host: Host) -> None:
    host.mgr.prepare(VM1, [NIC])
    assert host.mgr.holders(NIC) == []
    holder = host.kernel.hold_vfio(NIC, pid=4242, comm="qemu-kvm")
    found = host.mgr.holders(NIC)
    assert [(h.pid, h.comm) for h in found] == [(4242, "qemu-kvm")]
    assert "group 5" in found[0].via
    holder.release()
    assert host.mgr.holders(NIC) == []


def test_holders_found_by_cdev(host: Host) -> None:
    host.mgr.prepare(VM1, [NIC])
    host.kernel.hold_vfio(NIC, pid=77, via="cdev")
    found = host.mgr.holders(NIC)
    assert [h.pid for h in found] == [77] and found[0].via[0].startswith("cdev vfio")


def test_anonymous_device_fd_of_another_device_not_counted_with_syspath(
        fs: FakeFilesystem) -> None:
    from tests.smallhost import build_host

    fake_kernel = FakeKernel(fs, vfio_fdinfo_syspath=True)
    build_host(fake_kernel)
    mgr = HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0)
    mgr.prepare(VM1, [NIC, NVME])
    fake_kernel.hold_vfio(NVME, pid=9)
    assert mgr.holders(NIC) == []
    assert [h.pid for h in mgr.holders(NVME)] == [9]


def test_reattach_refuses_while_held_and_completes_later(host: Host) -> None:
    host.mgr.prepare(VM1, [NIC, NVME])
    holder = host.kernel.hold_vfio(NIC, pid=321, comm="qemu-system-x86")
    report = host.mgr.reattach(VM1, [NIC, NVME], release_timeout=0.05)
    assert report.reattached == [NVME]
    assert [f.address for f in report.failed] == [NIC]
    assert "qemu-system-x86 (pid 321" in report.failed[0].reason
    assert host.mgr.used_by(NIC) == VM1, "a busy device stays tracked as it was"
    assert host.driver(NIC) == "vfio-pci"
    assert host.kernel.would_block_events == []
    holder.release()
    again = host.mgr.reattach(VM1, [NIC])
    assert again.reattached == [NIC] and host.driver(NIC) == "e1000e"


def test_node_reattach_raises_device_busy(host: Host) -> None:
    host.mgr.node_detach(NIC)
    host.kernel.hold_vfio(NIC, pid=55, comm="dpdk-app")
    with pytest.raises(DeviceBusy) as info:
        host.mgr.node_reattach(NIC, release_timeout=0.01)
    holder = info.value.holders[0]
    assert isinstance(holder, Holder) and holder.pid == 55
    assert "dpdk-app (pid 55" in str(info.value)
    assert host.driver(NIC) == "vfio-pci" and [r.address for r in host.mgr.inactive()] == [NIC]
    assert host.kernel.would_block_events == []


def test_wait_released_returns_when_holder_goes(host: Host) -> None:
    import threading

    host.mgr.node_detach(NIC)
    holder = host.kernel.hold_vfio(NIC, pid=66)
    timer = threading.Timer(0.1, holder.release)
    timer.start()
    host.mgr.wait_released(NIC, timeout=5)
    timer.join()
    assert host.mgr.holders(NIC) == []
    host.mgr.node_reattach(NIC)
    assert host.driver(NIC) == "e1000e"


def test_holder_appearing_after_the_first_look_keeps_the_device_active(
        host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    from hostdev import manager as manager_module

    host.mgr.prepare(VM1, [NIC])
    before = host.where(NIC)

    def first_look_sees_nobody(self: HostdevManager, addresses: object,
                               timeout: float) -> dict[object, object]:
        host.kernel.hold_vfio(NIC, pid=808)  # QEMU grabs it right after the look
        return {}

    monkeypatch.setattr(manager_module.HostdevManager, "_wait_all", first_look_sees_nobody)
    report = host.mgr.reattach(VM1, [NIC])
    assert [f.address for f in report.failed] == [NIC] and "pid 808" in report.failed[0].reason
    assert host.mgr.used_by(NIC) == VM1
    assert host.where(NIC) == before, "nothing written before the refusal"
    assert host.kernel.would_block_events == []
