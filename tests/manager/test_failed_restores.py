"""A device whose host driver will not take it back is never lost in silence.

Each case makes the host driver's probe fail (the fake kernel's ``fail_probe``)
while hostdev gives a device back: in a rollback, in recovery after a crash, in
reattach and in node reattach. The device must end where it started, or stay
tracked with its original driver (so a later call finishes the job), and the
error, the report and the exit code must say it failed.
"""

from __future__ import annotations

import errno

import pytest

from hostdev.cli.main import main
from hostdev.errors import HostdevError
from hostdev.manager import HostdevManager
from hostdev.state.records import HostdevSpec
from hostdev.testing import SimulatedCrash
from tests.smallhost import NIC, NVME, VM1, VM2, Host

STATE = ["--root", "/", "--state-dir", "/run/hostdev"]


def _fresh() -> HostdevManager:
    return HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([*STATE, *argv])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ rollback

def test_rollback_that_cannot_give_back_names_the_device_and_keeps_it(host: Host) -> None:
    # NIC goes to vfio-pci, then NVME's stub refuses it; e1000e refuses NIC back.
    host.kernel.fail_probe("pci-stub", errno.EIO)
    e1000e = host.kernel.fail_probe("e1000e", errno.EIO)
    specs = [HostdevSpec(address=NIC), HostdevSpec(address=NVME, stub_driver="pci-stub")]
    with pytest.raises(HostdevError) as caught:
        host.mgr.prepare(VM1, specs)
    message = str(caught.value)
    assert "rollback incomplete" in message
    assert f"PCI device {NIC} did not come back on e1000e (driver is now none)" in message
    assert host.driver(NIC) is None and host.where(NVME) == {NVME: ("nvme", None)}
    [record] = host.mgr.inactive()
    assert (record.address, record.owner, record.original_driver, record.unbind_from_stub) == (
        NIC, None, "e1000e", True)
    assert host.mgr.active() == []
    e1000e.cancel()
    result = host.mgr.node_reattach(NIC)
    assert (result.driver, result.action) == ("e1000e", "reattached to e1000e")
    assert host.where(NIC) == {NIC: ("e1000e", None)} and host.mgr.inactive() == []


def test_rollback_failure_exits_1_on_the_command_line(
        host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    host.kernel.fail_probe("pci-stub", errno.EIO)
    host.kernel.fail_probe("e1000e", errno.EIO)
    code, out, err = _cli(capsys, "assign", "--owner", "qemu/vm1", "--driver", "pci-stub",
                          str(NIC))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and f"{NIC} did not come back on e1000e" in err
    assert [r.address for r in host.mgr.inactive()] == [NIC]


# ------------------------------------------------------------------ recovery

def test_recovery_reports_the_driver_that_bound_and_tracks_a_lost_device(
        host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    host.kernel.crash_after_writes(3)  # NIC: override, unbind, probe onto vfio-pci
    with pytest.raises(SimulatedCrash):
        host.mgr.prepare(VM1, [NIC, NVME])
    assert host.driver(NIC) == "vfio-pci" and host.mgr.lists().find(NIC) is None
    host.kernel.fail_probe("e1000e", errno.EIO)
    code, out, _ = _cli(capsys, "reconcile")
    assert code == 1, out
    assert [line for line in out.splitlines() if line.startswith("recovered:")] == []
    assert f"FAILED: prepare by pid {_pid()}: {NIC}: could not put back on e1000e" in out
    assert "did not come back on e1000e (driver is now none)" in out
    assert f"{NIC}: not given back yet: no driver (e1000e did not take it)" in out
    assert "behind our back" not in out
    assert host.driver(NIC) is None
    [record] = host.mgr.inactive()
    assert (record.address, record.original_driver, record.unbind_from_stub) == (
        NIC, "e1000e", True)
    code, out, _ = _cli(capsys, "reconcile")  # converged: nothing new to report as failed
    assert code == 0 and "FAILED" not in out and "not given back yet" in out


def test_recovery_onto_another_host_driver_says_which(host: Host) -> None:
    host.kernel.add_driver("e1000e_alt", ids=[(0x8086, 0x10D3)])
    host.kernel.crash_after_writes(3)
    with pytest.raises(SimulatedCrash):
        host.mgr.prepare(VM1, [NIC])
    host.kernel.fail_probe("e1000e", errno.ENODEV)
    report = _fresh().reconcile()
    assert report.failed == []
    assert [line.split(": ", 1)[1] for line in report.recovered] == [
        f"{NIC}: back on e1000e_alt, not on e1000e"]
    assert host.where(NIC) == {NIC: ("e1000e_alt", None)} and host.mgr.inactive() == []


def _pid() -> int:
    import os

    return os.getpid()


# ------------------------------------------------------------------ reattach

def test_reattach_with_failing_host_probe_fails_and_keeps_the_record(
        host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    host.mgr.prepare(VM1, [NIC, NVME])
    fault = host.kernel.fail_probe("e1000e", errno.EIO)
    code, out, _ = _cli(capsys, "release", "--owner", "qemu/vm1", str(NIC), str(NVME))
    assert code == 1
    assert f"{NVME}: given back to the host, now on nvme" in out
    assert f"{NIC}: FAILED: PCI device {NIC} did not come back on e1000e" in out
    assert host.driver(NIC) is None
    [record] = host.mgr.inactive()
    assert (record.address, record.owner, record.original_driver) == (NIC, None, "e1000e")
    # Naming it again finishes the job (the record is free: any owner may).
    again = host.mgr.reattach(VM1, [NIC])
    assert [f.address for f in again.failed] == [NIC] and host.mgr.inactive() == [record]
    fault.cancel()
    done = host.mgr.reattach(VM2, [NIC])
    assert done.ok and done.reattached == [NIC] and done.drivers == {NIC: "e1000e"}
    assert done.warnings == []
    assert host.where(NIC) == {NIC: ("e1000e", None)} and host.mgr.inactive() == []


def test_failed_reattach_is_finished_by_node_reattach(host: Host) -> None:
    host.mgr.prepare(VM1, [NIC])
    fault = host.kernel.fail_probe("e1000e", errno.EIO)
    assert [f.address for f in host.mgr.reattach(VM1, [NIC]).failed] == [NIC]
    fault.cancel()
    assert host.mgr.node_reattach(NIC).driver == "e1000e"
    assert host.where(NIC) == {NIC: ("e1000e", None)} and host.mgr.lists().find(NIC) is None


def test_reattach_onto_another_host_driver_is_a_warning(host: Host) -> None:
    host.kernel.add_driver("e1000e_alt", ids=[(0x8086, 0x10D3)])
    host.mgr.prepare(VM1, [NIC])
    host.kernel.fail_probe("e1000e", errno.ENODEV)
    report = host.mgr.reattach(VM1, [NIC])
    assert report.ok and report.drivers == {NIC: "e1000e_alt"}
    assert report.warnings == [
        f"PCI device {NIC} came back on e1000e_alt, not on its original driver e1000e"]
    assert host.mgr.inactive() == []


def test_a_busy_unfinished_give_back_stays_inactive(host: Host) -> None:
    host.mgr.prepare(VM1, [NIC])
    sysfs = host.mgr.sysfs
    fault = host.kernel.fail_probe("e1000e", errno.EIO)
    host.mgr.reattach(VM1, [NIC])
    fault.cancel()
    # Someone put it back on vfio-pci and opened it: the next try waits, fails, keeps it.
    sysfs.write(sysfs.device_path(NIC, "driver_override"), "vfio-pci\n")
    sysfs.write(sysfs.drivers_probe_path, f"{NIC}\n")
    holder = host.kernel.hold_vfio(NIC)
    report = host.mgr.reattach(VM1, [NIC])
    assert [f.address for f in report.failed] == [NIC]
    assert host.mgr.active() == [] and [r.address for r in host.mgr.inactive()] == [NIC]
    holder.release()
    assert host.mgr.reattach(VM1, [NIC]).reattached == [NIC]
    assert host.driver(NIC) == "e1000e"


# ------------------------------------------------------------ node reattach

def test_node_reattach_with_failing_host_probe_goes_back_on_the_stub(
        host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    host.mgr.node_detach(NIC)
    before = host.mgr.inactive()
    fault = host.kernel.fail_probe("e1000e", errno.EIO)
    code, out, err = _cli(capsys, "reattach", str(NIC))
    assert code == 1 and out == ""
    assert err == (f"hostdev: cannot reattach PCI device {NIC}: PCI device {NIC} did not come"
                   " back on e1000e (driver is now none); check that e1000e can take it"
                   " (dmesg); it goes back on vfio-pci, still tracked\n")
    assert host.where(NIC) == {NIC: ("vfio-pci", "vfio-pci")}
    assert host.mgr.inactive() == before
    fault.cancel()
    assert _cli(capsys, "reattach", str(NIC))[:2] == (0, f"{NIC}: reattached to e1000e\n")


def test_node_reattach_that_cannot_go_back_either_stays_tracked(host: Host) -> None:
    host.mgr.node_detach(NIC)
    host.kernel.fail_probe("e1000e", errno.EIO)
    host.kernel.fail_probe("vfio-pci", errno.EIO)
    with pytest.raises(HostdevError, match="rollback incomplete") as caught:
        host.mgr.node_reattach(NIC)
    assert f"{NIC} did not come back on vfio-pci" in str(caught.value)
    assert host.driver(NIC) is None
    [record] = host.mgr.inactive()
    assert (record.address, record.original_driver) == (NIC, "e1000e")


def test_untracked_device_that_cannot_go_anywhere_gets_a_record(host: Host) -> None:
    sysfs = host.mgr.sysfs
    sysfs.write(sysfs.device_path(NIC, "driver_override"), "vfio-pci\n")
    sysfs.write(sysfs.driver_dir("e1000e") + "/unbind", f"{NIC}\n")
    sysfs.write(sysfs.drivers_probe_path, f"{NIC}\n")
    # Untracked: its host driver is not known, so a driverless end is the kernel's
    # choice, reported as such.
    fault = host.kernel.fail_probe("e1000e", errno.EIO)
    result = host.mgr.node_reattach(NIC)
    assert result.driver is None
    assert result.action.startswith("off vfio-pci; no host driver took it")
    fault.cancel()
    host.mgr.node_reattach(NIC)
    # Back onto the stub by hand, then neither e1000e nor vfio-pci will take it.
    sysfs.write(sysfs.device_path(NIC, "driver_override"), "vfio-pci\n")
    sysfs.write(sysfs.driver_dir("e1000e") + "/unbind", f"{NIC}\n")
    sysfs.write(sysfs.drivers_probe_path, f"{NIC}\n")
    host.kernel.fail_probe("vfio-pci", errno.EIO)
    host.kernel.fail_write(sysfs.drivers_probe_path, errno.EIO, times=1)
    with pytest.raises(HostdevError, match="rollback incomplete"):
        host.mgr.node_reattach(NIC)
    assert host.driver(NIC) is None
    [record] = host.mgr.inactive()
    assert (record.address, record.stub_driver, record.unbind_from_stub) == (
        NIC, "vfio-pci", True)


def test_taking_an_unfinished_device_again_remembers_its_original_driver(host: Host) -> None:
    host.mgr.prepare(VM1, [NIC])
    fault = host.kernel.fail_probe("e1000e", errno.EIO)
    host.mgr.reattach(VM1, [NIC])
    fault.cancel()
    assert host.driver(NIC) is None
    [record] = host.mgr.prepare(VM2, [NIC]).prepared
    assert (record.original_driver, record.unbind_from_stub) == ("e1000e", True)
    assert host.mgr.reattach(VM2, [NIC]).drivers == {NIC: "e1000e"}
    assert host.where(NIC) == {NIC: ("e1000e", None)} and host.mgr.lists().find(NIC) is None


def test_give_back_that_lands_on_a_stub_is_a_failure(host: Host) -> None:
    sysfs = host.mgr.sysfs
    # An administrator's override naming pci-stub, set while e1000e held the device.
    sysfs.write(sysfs.device_path(NIC, "driver_override"), "pci-stub\n")
    host.mgr.prepare(VM1, [NIC])
    report = host.mgr.reattach(VM1, [NIC])
    assert report.reattached == [] and [f.address for f in report.failed] == [NIC]
    assert "did not come back on e1000e (driver is now pci-stub)" in report.failed[0].reason
    assert host.driver(NIC) == "pci-stub"
    assert [r.address for r in host.mgr.inactive()] == [NIC]
    assert host.mgr.node_reattach(NIC).driver == "e1000e"  # drops the stub override
    assert host.mgr.lists().find(NIC) is None


def test_recovery_of_a_dead_node_reattach_of_an_untracked_device(host: Host) -> None:
    sysfs = host.mgr.sysfs
    sysfs.write(sysfs.device_path(NIC, "driver_override"), "vfio-pci\n")
    sysfs.write(sysfs.driver_dir("e1000e") + "/unbind", f"{NIC}\n")
    sysfs.write(sysfs.drivers_probe_path, f"{NIC}\n")
    host.kernel.crash_after_writes(2)  # override cleared, unbound from vfio-pci
    with pytest.raises(SimulatedCrash):
        host.mgr.node_reattach(NIC)
    assert host.driver(NIC) is None
    fault = host.kernel.fail_probe("vfio-pci", errno.EIO)  # cannot go back on the stub
    report = _fresh().reconcile()
    [line] = report.failed
    assert f"{NIC}: could not put back on vfio-pci" in line and "tracked inactive" in line
    [record] = host.mgr.inactive()
    assert (record.original_driver, record.original_override) == (None, None)
    fault.cancel()
    # Its host driver is unknown: finishing lets the kernel choose, not the stub again.
    assert host.mgr.node_reattach(NIC).driver == "e1000e"
    assert host.where(NIC) == {NIC: ("e1000e", None)} and host.mgr.inactive() == []
