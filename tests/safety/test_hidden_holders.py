"""Holders /proc cannot show (another PID namespace) and holders that keep only a mapping.

The kernel counts every open of a vfio-bound device in ``enable`` and
``power/runtime_usage``, whatever our PID namespace: a device it reports open
with no holder in view is held by a VFIO user outside this process's view.
"""

from __future__ import annotations

import logging
import math

import pytest

from hostdev.errors import BadInput, DeviceBusy
from hostdev.linux import vfio
from hostdev.manager import HostdevManager
from hostdev.testing import FakeKernel, SimulatedCrash
from tests.smallhost import NIC, NVME, PF, VM1, Host

OUTSIDE = "a VFIO user outside this process's view"


# ----------------------------------------------------------------------- outside our view

def test_hidden_holder_shown_by_holders(host: Host) -> None:
    host.mgr.node_detach(NIC)
    assert host.mgr.holders(NIC) == []
    holder = host.kernel.hold_vfio(NIC, visible=False)
    [found] = host.mgr.holders(NIC)
    assert found.pid is None and not found.visible and found.comm == OUTSIDE
    assert found.via == ["enable=1, runtime_usage=1"]
    assert str(found) == f"{OUTSIDE} (the kernel reports enable=1, runtime_usage=1)"
    holder.release()
    assert host.mgr.holders(NIC) == []


def test_node_reattach_refuses_hidden_holder_without_writing(host: Host) -> None:
    host.mgr.node_detach(NIC)
    host.kernel.hold_vfio(NIC, visible=False)
    before, writes = host.where(NIC), len(host.kernel.writes)
    with pytest.raises(DeviceBusy) as info:
        host.mgr.node_reattach(NIC, release_timeout=0.05)
    message = str(info.value)
    assert OUTSIDE in message and "enable=1, runtime_usage=1" in message
    assert [h.pid for h in info.value.holders] == [None]
    assert host.where(NIC) == before and len(host.kernel.writes) == writes
    assert host.kernel.would_block_events == []
    assert [r.address for r in host.mgr.inactive()] == [NIC]


def test_reattach_keeps_hidden_held_device_active_then_finishes(host: Host) -> None:
    host.mgr.prepare(VM1, [NIC, NVME])
    holder = host.kernel.hold_vfio(NVME, visible=False)
    report = host.mgr.reattach(VM1, [NIC, NVME], release_timeout=0.05)
    assert report.reattached == [NIC]
    assert [f.address for f in report.failed] == [NVME] and OUTSIDE in report.failed[0].reason
    assert host.mgr.used_by(NVME) == VM1 and host.driver(NVME) == "vfio-pci"
    holder.release()
    assert host.mgr.reattach(VM1, [NVME]).reattached == [NVME]
    assert host.driver(NVME) == "nvme" and host.kernel.would_block_events == []


def test_visible_holder_reported_not_counted_twice(host: Host) -> None:
    host.mgr.node_detach(NIC)
    seen = host.kernel.hold_vfio(NIC, pid=700, comm="qemu")
    hidden = host.kernel.hold_vfio(NIC, visible=False)
    assert [(h.pid, h.comm) for h in host.mgr.holders(NIC)] == [(700, "qemu")]
    seen.release()
    assert [h.pid for h in host.mgr.holders(NIC)] == [None], "the hidden one still holds it"
    hidden.release()
    assert host.mgr.holders(NIC) == []


def test_set_num_vfs_refuses_hidden_held_vf(host: Host) -> None:
    vf0, _ = host.vfs(2)
    host.mgr.node_detach(vf0)
    host.kernel.hold_vfio(vf0, visible=False)
    with pytest.raises(DeviceBusy, match="outside this process's view"):
        host.mgr.set_num_vfs(PF, 0, release_timeout=0.01)
    assert len(host.vfs_now()) == 2 and host.kernel.would_block_events == []


def test_enable_left_by_a_write_is_not_a_holder(host: Host) -> None:
    """``enable`` written 1 before the bind stays; runtime_usage 0 says nobody has it open."""
    sysfs = host.mgr.sysfs
    sysfs.write(sysfs.device_path(NIC, "driver/unbind"), str(NIC))
    sysfs.write(sysfs.device_path(NIC, "enable"), "1")
    host.mgr.node_detach(NIC)
    assert sysfs.read_text(sysfs.device_path(NIC, "enable")) == "1"
    assert host.mgr.holders(NIC) == []
    host.kernel.hold_vfio(NIC, visible=False)
    assert [str(h) for h in host.mgr.holders(NIC)] == [
        f"{OUTSIDE} (the kernel reports enable=2, runtime_usage=1)"]


def test_kernel_without_runtime_usage_relies_on_enable(host: Host) -> None:
    """No CONFIG_PM_ADVANCED_DEBUG: ``power/runtime_usage`` is absent; ``enable`` decides."""
    host.mgr.node_detach(NIC)
    usage = host.kernel.state.devices[NIC].files.pop("power/runtime_usage")
    host.kernel.state.vfs.remove(usage.parent_dir(), "runtime_usage")  # type: ignore[arg-type, misc]
    assert host.mgr.holders(NIC) == []
    host.kernel.hold_vfio(NIC, visible=False)
    assert host.mgr.holders(NIC)[0].via == ["enable=1, runtime_usage=unreadable"]


def test_host_driver_counts_are_not_holders(host: Host) -> None:
    """On a host driver enable 1 and runtime_usage 2 are the driver's own."""
    assert host.mgr.holders(NIC) == []
    assert vfio.kernel_count(host.mgr.sysfs, NIC) is None


def test_recovery_does_not_unbind_a_hidden_held_device(host: Host) -> None:
    host.kernel.crash_after_writes(3)  # mid-prepare, NIC already on vfio-pci
    with pytest.raises(SimulatedCrash):
        host.mgr.prepare(VM1, [NIC, NVME])
    assert host.driver(NIC) == "vfio-pci"
    host.kernel.hold_vfio(NIC, visible=False)
    mgr = HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0.02)
    report = mgr.reconcile()
    assert host.driver(NIC) == "vfio-pci" and host.kernel.would_block_events == []
    assert any(str(NIC) in line and OUTSIDE in line for line in report.failed)
    assert [r.address for r in mgr.inactive()] == [NIC], "kept tracked, on the stub"


# ----------------------------------------------------------------------- mapping only

def test_mapping_only_holder_named(host: Host) -> None:
    host.mgr.node_detach(NIC)
    holder = host.kernel.hold_vfio(NIC, pid=910, comm="dpdk-testpmd", via="mmap")
    assert [(h.pid, h.comm, h.via) for h in host.mgr.holders(NIC)] == [
        (910, "dpdk-testpmd", ["mapping"])]
    with pytest.raises(DeviceBusy, match=r"dpdk-testpmd \(pid 910, mapping\)"):
        host.mgr.node_reattach(NIC, release_timeout=0.02)
    assert host.driver(NIC) == "vfio-pci" and host.kernel.would_block_events == []
    holder.release()
    host.mgr.node_reattach(NIC)
    assert host.driver(NIC) == "e1000e"


def test_mapping_attributed_only_to_devices_the_kernel_reports_open(host: Host) -> None:
    """An anonymous mapping does not say whose it is; an idle device (count 0) it is not."""
    host.mgr.node_detach(NIC)
    host.mgr.node_detach(NVME)
    host.kernel.hold_vfio(NIC, pid=911, via="mmap")
    found = vfio.holders_of(host.mgr.sysfs, [NIC, NVME])
    assert [h.pid for h in found[NIC]] == [911] and found[NVME] == []
    host.mgr.node_reattach(NVME)
    assert host.driver(NVME) == "nvme"


def test_mapping_beside_another_group_is_not_this_device(host: Host) -> None:
    """A process with only NVMe's group open: its anonymous mapping is NVMe's, not NIC's.

    NIC is still held by someone (the kernel says so), so it is reported as a user
    outside our view rather than misnamed."""
    host.mgr.node_detach(NIC)
    host.mgr.node_detach(NVME)
    host.kernel.hold_vfio(NVME, pid=920, comm="qemu")  # group 6 open
    host.kernel.hold_vfio(NIC, pid=920, via="mmap")  # NIC's group closed, mapping kept
    found = vfio.holders_of(host.mgr.sysfs, [NIC, NVME])
    assert [h.pid for h in found[NIC]] == [None]
    assert [(h.pid, "mapping" in h.via) for h in found[NVME]] == [(920, True)]


def test_maps_not_read_while_no_device_is_open(host: Host) -> None:
    host.mgr.node_detach(NIC)
    host.kernel.hold_vfio(NIC, pid=930, via="group")
    sysfs = host.mgr.sysfs
    sysfs.stats.trace = []
    host.kernel.state.processes[930].holds[0].release()
    vfio.holders_of(sysfs, [NIC])
    assert not [p for p in sysfs.stats.trace if p.endswith("/maps")]
    host.kernel.hold_vfio(NIC, pid=931, via="mmap")
    sysfs.stats.trace = []
    vfio.holders_of(sysfs, [NIC])
    maps = [p for p in sysfs.stats.trace if p.endswith("/maps")]
    assert maps and len(maps) == len(set(maps)), "each process's maps read once per pass"


def test_long_maps_read_to_the_end(host: Host) -> None:
    """A maps file longer than one read (QEMU's are) is read whole."""
    host.mgr.node_detach(NIC)
    process_holder = host.kernel.hold_vfio(NIC, pid=940, via="group")
    process = host.kernel.state.processes[940]
    for _ in range(3000):
        process.map("/usr/lib/x86_64-linux-gnu/libsomething.so.1")
    host.kernel.hold_vfio(NIC, pid=940, via="mmap")
    process_holder.release()  # fds closed: only the last mapping shows it
    with open("/proc/940/maps") as maps:
        assert len(maps.read()) > 3 * 65536
    assert [h.via for h in host.mgr.holders(NIC)] == [["mapping"]]


# ----------------------------------------------------------------------- the wait, said

class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_logs_each_holder_once_then_time_left(host: Host,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    host.mgr.node_detach(NIC)
    host.kernel.hold_vfio(NIC, pid=950, comm="qemu-kvm")
    t = FakeTime()
    caplog.set_level(logging.INFO, logger="hostdev")
    busy = vfio.wait_all_released(host.mgr.sysfs, [NIC], 12, sleep=t.sleep, clock=t.clock)
    assert list(busy) == [NIC]
    lines = [r.getMessage() for r in caplog.records if r.name == "hostdev"]
    waiting = [m for m in lines if m.startswith("waiting")]
    assert waiting == [f"waiting up to 12 s for qemu-kvm (pid 950, group 5, device fd"
                       f" (unnamed)) to release {NIC}"]
    still = [m for m in lines if m.startswith("still waiting")]
    assert len(still) == 2, still  # about every 5 s of a 12 s wait
    assert still[0].endswith("s left") and f"release {NIC}" in still[0]
    lefts = [float(m.rsplit(": ", 1)[1].split()[0]) for m in still]
    assert lefts[0] > lefts[1] > 0
    assert all(getattr(r, vfio.WAIT_LOG_FLAG, False) for r in caplog.records
               if r.getMessage() in waiting + still)


def test_wait_announces_a_new_holder_too(host: Host, caplog: pytest.LogCaptureFixture) -> None:
    host.mgr.node_detach(NIC)
    host.kernel.hold_vfio(NIC, pid=960, comm="first")
    t = FakeTime()
    calls = 0

    def sleep(seconds: float) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            host.kernel.hold_vfio(NIC, pid=961, comm="second")
        t.sleep(seconds)

    caplog.set_level(logging.INFO, logger="hostdev")
    vfio.wait_all_released(host.mgr.sysfs, [NIC], 1, sleep=sleep, clock=t.clock)
    waiting = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting")]
    assert [m.split(" (pid")[0].rsplit(" ", 1)[1] for m in waiting] == ["first", "second"]


def test_no_wait_no_message(host: Host, caplog: pytest.LogCaptureFixture) -> None:
    host.mgr.node_detach(NIC)
    host.kernel.hold_vfio(NIC, visible=False)
    caplog.set_level(logging.INFO, logger="hostdev")
    with pytest.raises(DeviceBusy):
        host.mgr.wait_released(NIC, timeout=0)
    assert not [r for r in caplog.records if r.getMessage().startswith("waiting")]


# ----------------------------------------------------------------------- release_timeout

BAD_TIMEOUTS = [math.nan, math.inf, -math.inf, -1, -0.5, True, "1", None]


@pytest.mark.parametrize("bad", BAD_TIMEOUTS[:-1])
def test_bad_release_timeout_everywhere(host: Host, bad: object) -> None:
    host.mgr.prepare(VM1, [NIC])
    host.mgr.node_detach(NVME)
    where = host.where(NIC, NVME)
    writes = len(host.kernel.writes)
    with pytest.raises(BadInput, match="release timeout"):
        HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(BadInput, match="release timeout"):
        host.mgr.reattach(VM1, [NIC], release_timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(BadInput, match="release timeout"):
        host.mgr.node_reattach(NVME, release_timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(BadInput, match="release timeout"):
        host.mgr.set_num_vfs(PF, 1, release_timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(BadInput, match="release timeout"):
        host.mgr.wait_released(NVME, timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(BadInput, match="release timeout"):
        vfio.wait_released(host.mgr.sysfs, NVME, bad)  # type: ignore[arg-type]
    assert host.where(NIC, NVME) == where and len(host.kernel.writes) == writes
    assert host.mgr.used_by(NIC) == VM1 and [r.address for r in host.mgr.inactive()] == [NVME]


def test_good_release_timeouts(fake_kernel: FakeKernel) -> None:
    for good in (0, 0.0, 2, 1.5):
        assert HostdevManager(root="/", state_dir="/run/hostdev",
                              release_timeout=good).release_timeout == float(good)


def test_a_holder_name_with_a_newline_keeps_the_error_on_one_line(host: Host) -> None:
    """Any process picks its own comm: it must not break (or forge) a line of output."""
    host.mgr.node_detach(NIC)
    host.kernel.hold_vfio(NIC, pid=912, comm="qemu\nhostdev: fake")
    with pytest.raises(DeviceBusy) as info:
        host.mgr.node_reattach(NIC, release_timeout=0)
    assert "\n" not in str(info.value) and "qemu\\x0ahostdev: fake (pid 912" in str(info.value)
