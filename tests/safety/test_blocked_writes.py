"""The kernel never hangs the caller: a VFIO user that appears after every check.

Between the holder check and the ``unbind`` (or ``sriov_numvfs`` 0) write a VFIO
user can open the device; a real kernel then blocks the write until it lets go.
The write is made by a helper process (here the fake kernel's replacement of
it, with a helper in /proc) and the caller gets DeviceBusy at the deadline; the
journal keeps the write, nothing touches the device while it is blocked, and
the first call after the user let go records where the device ended up.
"""

from __future__ import annotations

import errno
import json
import math
import time
from typing import Any

import pytest

from hostdev.address import PciAddress
from hostdev.errors import BadInput, DeviceBusy, WriteBlocked
from hostdev.linux.sysfs import Sysfs
from hostdev.manager import HostdevManager
from hostdev.testing import FakeKernel, VfioHolder, VfioWouldBlock
from tests.smallhost import NIC, NVME, PF, VM1, Host

WRITE_TIMEOUT = 0.2


def _manager(timeout: float = WRITE_TIMEOUT) -> HostdevManager:
    return HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0,
                          write_timeout=timeout)


def _journal() -> dict[str, Any] | None:
    try:
        with open("/run/hostdev/intent.json") as f:
            doc: dict[str, Any] = json.load(f)
            return doc
    except FileNotFoundError:
        return None


def _writes_to(kernel: FakeKernel, address: PciAddress) -> int:
    return sum(1 for w in kernel.writes if str(address) in w.path or str(address) in w.value)


def test_node_reattach_gets_control_back_and_next_call_records_the_end(host: Host) -> None:
    host.mgr.node_detach(NIC)
    mgr = _manager()
    holders: list[VfioHolder] = []
    started = time.monotonic()
    with host.kernel.watch_writes(
            lambda *_: holders.append(host.kernel.hold_vfio(NIC, pid=777)),
            match="*/unbind"), \
            pytest.raises(DeviceBusy) as info:
        mgr.node_reattach(NIC)
    took = time.monotonic() - started
    assert isinstance(info.value, WriteBlocked)
    assert WRITE_TIMEOUT <= took < WRITE_TIMEOUT + 2
    assert (f"PCI device {NIC}: unbind from vfio-pci is blocked in the kernel until the VFIO"
            " user releases it") in str(info.value)
    assert host.kernel.would_block_events == [], "the write was made unguarded"
    [blocked] = host.kernel.blocked_writes
    assert blocked.pid == info.value.pid and mgr.sysfs.process_alive(blocked.pid, blocked.start)
    # Not rolled back (it would touch a device the kernel is busy with); journaled.
    journal = _journal()
    assert journal is not None
    [entry] = journal["pending"]
    assert entry["gave_up"] and entry["pid"] == blocked.pid and entry["devices"] == [str(NIC)]
    assert [r.address for r in mgr.inactive()] == [NIC]

    # While the user holds it: other calls return at once and leave the device alone.
    fresh = _manager()
    touched = _writes_to(host.kernel, NIC)
    report = fresh.reconcile()
    assert [line for line in report.blocked if str(NIC) in line]
    assert not report.changed and _journal() is not None
    with pytest.raises(DeviceBusy, match="still blocked in the kernel"):
        fresh.node_reattach(NIC)
    fresh.prepare(VM1, [NVME])  # other devices are not held up
    assert host.driver(NVME) == "vfio-pci"
    assert _writes_to(host.kernel, NIC) == touched
    assert _journal() is not None, "a later transaction dropped the blocked write"

    holders[0].release()  # the kernel finishes the unbind; the helper exits
    assert host.kernel.blocked_writes == []
    assert not fresh.sysfs.process_alive(blocked.pid, blocked.start)
    assert host.driver(NIC) is None, "the fake finished the unbind"
    report = _manager().reconcile()
    assert any(f"{NIC}: the write of" in line and "now on e1000e" in line
               for line in report.recovered), report
    assert host.driver(NIC) == "e1000e" and host.override(NIC) is None
    assert _manager().lists().find(NIC) is None
    assert _journal() is None
    assert not _manager().reconcile().changed
    assert host.kernel.would_block_events == []


def test_reattach_reports_the_blocked_device_and_gives_back_the_others(host: Host) -> None:
    host.mgr.prepare(VM1, [NIC, NVME])
    mgr = _manager()
    holders: list[VfioHolder] = []

    def hold() -> None:
        if not holders:
            holders.append(host.kernel.hold_vfio(NIC, pid=778))

    with host.kernel.watch_writes(lambda *_: hold(), match="*drivers/vfio-pci/unbind") as watch:
        report = mgr.reattach(VM1, [NIC, NVME])
    assert watch.seen, "no write was made"
    assert [f.address for f in report.failed] == [NIC]
    assert "blocked in the kernel until the VFIO user releases it" in report.failed[0].reason
    assert report.reattached == [NVME] and host.driver(NVME) == "nvme"
    assert mgr.used_by(NIC) == VM1, "the blocked device stays tracked as it was"
    assert host.kernel.would_block_events == []
    # Asked again while the write is still blocked: reported, not touched, no exception.
    again = _manager().reattach(VM1, [NIC])
    assert [f.address for f in again.failed] == [NIC]
    assert "still blocked in the kernel" in again.failed[0].reason
    assert _manager().used_by(NIC) == VM1
    holders[0].release()
    report2 = _manager().reconcile()
    assert any("now on e1000e" in line and "record dropped" in line
               for line in report2.recovered), report2
    assert host.driver(NIC) == "e1000e" and _manager().lists().find(NIC) is None
    assert _journal() is None


def test_vf_removal_blocked_by_a_late_holder(host: Host) -> None:
    vfs = host.vfs(2)
    host.mgr.node_detach(vfs[0])
    mgr = _manager()
    holders: list[VfioHolder] = []
    with host.kernel.watch_writes(
            lambda *_: holders.append(host.kernel.hold_vfio(vfs[0])),
            match="*/sriov_numvfs"), \
            pytest.raises(WriteBlocked) as info:
        mgr.set_num_vfs(PF, 3)
    assert "removing its VFs (sriov_numvfs 0) is blocked in the kernel" in str(info.value)
    assert host.kernel.would_block_events == []
    journal = _journal()
    assert journal is not None and journal["pending"][0]["devices"][0] == str(PF)
    # The PF and its VFs are left alone while the write is blocked.
    with pytest.raises(DeviceBusy):
        _manager().set_num_vfs(PF, 1)
    holders[0].release()
    assert host.vfs_now() == []
    report = _manager().reconcile()
    assert any(f"{PF}: the write of" in line and "0 VFs now" in line
               for line in report.recovered), report
    assert _manager().lists().find(vfs[0]) is None
    assert _journal() is None and not _manager().reconcile().changed


def test_interrupted_wait_keeps_the_write_journaled(host: Host,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from hostdev.testing.blocking import FakeHelperWrite

    host.mgr.node_detach(NIC)
    holder = host.kernel.hold_vfio(NIC, pid=779)

    def interrupted(self: FakeHelperWrite, timeout: float) -> int | None:
        raise KeyboardInterrupt

    monkeypatch.setattr(FakeHelperWrite, "wait", interrupted)
    mgr = _manager(timeout=30)
    with pytest.raises(KeyboardInterrupt):
        # Skip the holder check, as if the user came after it.
        monkeypatch.setattr("hostdev.linux.vfio.wait_released", lambda *a, **k: None)
        mgr.node_reattach(NIC)
    monkeypatch.undo()
    journal = _journal()
    assert journal is not None and journal["pending"][0]["gave_up"]
    assert host.kernel.blocked_writes and host.driver(NIC) == "vfio-pci"
    holder.release()
    _manager().reconcile()
    assert host.driver(NIC) == "e1000e" and _journal() is None


def test_bounded_write_on_the_fake_parks_and_completes(fake_kernel: FakeKernel) -> None:
    from tests.smallhost import build_host

    build_host(fake_kernel)
    mgr = _manager()
    mgr.node_detach(NIC)
    holder = fake_kernel.hold_vfio(NIC, pid=780)
    sysfs = Sysfs("/")
    sysfs.write_timeout = 0.05
    path = "/sys/bus/pci/drivers/vfio-pci/unbind"
    with pytest.raises(VfioWouldBlock):  # unguarded: the fake still says it would hang
        sysfs.write(path, f"{NIC}\n", NIC)
    with pytest.raises(WriteBlocked):
        sysfs.write(path, f"{NIC}\n", NIC, blocking=[NIC])
    [helper] = sysfs.helpers
    assert helper.gave_up and NIC in sysfs.fenced
    with open(f"/proc/{helper.pid}/stat") as f:
        assert f.read().split()[2] == "D"
    with pytest.raises(DeviceBusy):
        sysfs.read_override(NIC)
    before = len(fake_kernel.writes)
    holder.release()
    assert fake_kernel.writes[before:][0].path == path
    assert fake_kernel.writes[before:][0].errno is None
    assert not sysfs.process_alive(helper.pid, helper.start)
    assert Sysfs("/").read_link(f"/sys/bus/pci/devices/{NIC}/driver") is None


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, "5", True])
def test_write_timeout_must_be_finite_and_positive(bad: Any) -> None:
    with pytest.raises(BadInput, match="write timeout"):
        HostdevManager(root="/", state_dir="/tmp/x", write_timeout=bad)


def test_caller_killed_while_waiting(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller that dies while its helper is blocked (no chance to mark it given up)."""
    from hostdev.testing import SimulatedCrash
    from hostdev.testing.blocking import FakeHelperWrite

    host.mgr.node_detach(NIC)
    holder = host.kernel.hold_vfio(NIC, pid=781)

    def killed(self: FakeHelperWrite, timeout: float) -> int | None:
        raise SimulatedCrash(host.kernel.writes[-1])

    monkeypatch.setattr(FakeHelperWrite, "wait", killed)
    monkeypatch.setattr(Sysfs, "_give_up", lambda self, helper: None)  # SIGKILL: no cleanup
    monkeypatch.setattr("hostdev.linux.vfio.wait_released", lambda *a, **k: None)
    with pytest.raises(SimulatedCrash):
        _manager(timeout=30).node_reattach(NIC)
    monkeypatch.undo()
    journal = _journal()
    assert journal is not None and journal["operation"] == "node_reattach"
    assert [p["gave_up"] for p in journal["pending"]] == [False], "journaled before waiting"
    report = _manager().reconcile()  # must not touch NIC (it would block on a real kernel)
    assert report.blocked and not report.recovered
    assert host.driver(NIC) == "vfio-pci" and host.kernel.blocked_writes
    holder.release()
    report = _manager().reconcile()
    assert any("now on e1000e" in line for line in report.recovered), report
    assert host.driver(NIC) == "e1000e" and _manager().lists().find(NIC) is None
    assert _journal() is None and not _manager().reconcile().changed


def test_rollback_blocked_by_a_late_holder(host: Host) -> None:
    """prepare fails after moving NIC; its rollback's unbind of NIC blocks."""
    import errno

    host.kernel.fail_write(f"*{NVME}/driver_override", errno.EIO, times=1)
    holders: list[VfioHolder] = []
    mgr = _manager()
    with host.kernel.watch_writes(
            lambda *_: holders.append(host.kernel.hold_vfio(NIC, pid=782)),
            match="*drivers/vfio-pci/unbind"), \
            pytest.raises(Exception) as info:
        mgr.prepare(VM1, [NIC, NVME])
    assert "rollback incomplete" in str(info.value)
    assert "unbind from vfio-pci is blocked in the kernel" in str(info.value)
    assert host.kernel.would_block_events == []
    record = mgr.lists().find(NIC)
    assert record is not None and record.original_driver == "e1000e", "NIC left untracked"
    assert host.driver(NVME) == "nvme"
    holders[0].release()
    report = _manager().reconcile()
    assert any(f"{NIC}: the write of" in line and "now on e1000e" in line
               for line in report.recovered), report
    assert host.where(NIC, NVME) == {NIC: ("e1000e", None), NVME: ("nvme", None)}
    assert _manager().lists().find(NIC) is None and _journal() is None


def test_blocked_unbind_that_finishes_driverless_stays_tracked_and_fails(
        host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    """The write returns once the user lets go, but the host driver's probe fails:
    the device is neither dropped nor reported recovered; reconcile exits 1."""
    from hostdev.cli.main import main

    host.mgr.prepare(VM1, [NIC])
    holders: list[VfioHolder] = []

    def hold() -> None:
        if not holders:
            holders.append(host.kernel.hold_vfio(NIC, pid=778))

    with host.kernel.watch_writes(lambda *_: hold(), match="*drivers/vfio-pci/unbind"):
        report = _manager().reattach(VM1, [NIC])
    assert [f.address for f in report.failed] == [NIC]
    host.kernel.fail_probe("e1000e", errno.EIO)
    holders[0].release()
    code = main(["--root", "/", "--state-dir", "/run/hostdev", "reconcile"])
    out, _ = capsys.readouterr()
    assert code == 1 and f"{NIC}" in out and "no driver took the device" in out
    assert host.driver(NIC) is None
    record = _manager().lists().inactive.get(NIC)
    assert record is not None and record.owner is None and record.original_driver == "e1000e"


def test_helper_in_another_pid_namespace_is_not_taken_for_finished(
        host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    """A blocked write journaled by a previous pod (another PID namespace): its helper
    is not in our /proc, but the kernel still reports the device open, so the device
    stays fenced (no probe, no uevent read) until the kernel shows the user gone."""
    from hostdev.cli.main import main

    host.mgr.node_detach(NIC)
    holders: list[VfioHolder] = []
    with host.kernel.watch_writes(
            lambda *_: holders.append(host.kernel.hold_vfio(NIC, pid=779)),
            match="*/unbind"), \
            pytest.raises(WriteBlocked):
        _manager().node_reattach(NIC)
    journal = _journal()
    assert journal is not None
    [entry] = journal["pending"]
    assert entry["pidns"] == "pid:[4026531836]", "the helper's PID namespace is journaled"

    host.kernel.enter_pid_namespace()  # a new pod: the helper and the holder are not seen
    [blocked] = host.kernel.blocked_writes
    assert not _manager().sysfs.process_alive(blocked.pid, blocked.start)
    touched = _writes_to(host.kernel, NIC)
    report = _manager().reconcile()
    [line] = [line for line in report.blocked if str(NIC) in line]
    assert "uncertain" in line and "another PID namespace" in line, line
    assert not report.recovered and _journal() is not None
    assert _writes_to(host.kernel, NIC) == touched, "a write reached a device still blocked"
    with pytest.raises(DeviceBusy, match="another PID namespace"):
        _manager().node_reattach(NIC)
    # list reads no lock-taking attribute of the fenced device.
    sysfs = Sysfs("/")
    from hostdev.cli.listing import fence_blocked
    fence_blocked(sysfs, main_args())
    assert NIC in sysfs.fenced
    assert main(["--root", "/", "--state-dir", "/run/hostdev", "list"]) == 0
    capsys.readouterr()

    holders[0].release()  # the kernel finishes the unbind: enable drops to 0
    assert host.kernel.blocked_writes == []
    sysfs = Sysfs("/")
    fence_blocked(sysfs, main_args())
    assert NIC not in sysfs.fenced
    report = _manager().reconcile()
    assert any(f"{NIC}: the write of" in line and "now on e1000e" in line
               for line in report.recovered), report
    assert host.driver(NIC) == "e1000e" and _journal() is None


def main_args() -> Any:
    import argparse

    return argparse.Namespace(root="/", state_dir="/run/hostdev")


def test_a_fenced_device_still_shows_the_kernel_counts(host: Host) -> None:
    """``enable`` and ``power/runtime_usage`` are read without the device lock, so a
    fenced device's counts stay readable: a journaled write from another PID
    namespace is seen to have finished even when its device is already fenced."""
    from hostdev.linux.binding import WRITE_DONE, WRITE_UNSEEN, pending_write

    host.mgr.node_detach(NIC)
    sysfs = Sysfs("/")
    sysfs.fence([NIC], "a write of ours is blocked")
    assert sysfs.read_optional(sysfs.device_path(NIC, "enable"), NIC) == "0"
    assert sysfs.read_optional(sysfs.device_path(NIC, "power/runtime_usage"), NIC) == "0"
    other = "pid:[4026532999]"
    assert pending_write(sysfs, 30999, None, other, [NIC]) == WRITE_DONE
    holder = host.kernel.hold_vfio(NIC, visible=False)
    assert pending_write(sysfs, 30999, None, other, [NIC]) == WRITE_UNSEEN
    holder.release()
    assert pending_write(sysfs, 30999, None, other, [NIC]) == WRITE_DONE
    with pytest.raises(DeviceBusy):
        sysfs.read_override(NIC)  # lock-taking reads stay refused
