"""A NIC VF's network settings: saved, set for the guest, given back, and every refusal."""

from __future__ import annotations

import errno
import logging
from typing import Any

import pytest

from hostdev import VfNetConfig
from hostdev.errors import BadInput, KernelRefused, NotAssignable
from hostdev.manager import HostdevManager
from hostdev.state.records import HostdevSpec
from hostdev.testing import SimulatedCrash
from tests.smallhost import NIC, PF, VM1, VM2, Host

GUEST = VfNetConfig(mac="52:54:00:aa:bb:01", vlan=42)
DEFAULTS = {"mac": "00:00:00:00:00:00", "vlan": 0, "qos": 0, "spoofchk": True,
            "trust": False, "link_state": "auto"}


@pytest.fixture
def nic(host: Host) -> Host:
    host.kernel.add_netdev(PF, "ens1f0")
    return host


def _fresh(host: Host) -> HostdevManager:
    return HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0.0)


def test_prepare_sets_and_reattach_restores(nic: Host) -> None:
    vf0, _ = nic.vfs(2)
    nic.kernel.set_vf_net(PF, 0, mac="02:00:00:00:00:10", trust=True)
    report = nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST)])
    assert nic.kernel.vf_net(PF, 0) == {**DEFAULTS, "mac": "52:54:00:aa:bb:01", "vlan": 42,
                                        "trust": True}
    assert nic.kernel.vf_net(PF, 1) == DEFAULTS
    record = report.prepared[0]
    assert record.net is not None and record.net.fields() == {
        "mac": "52:54:00:aa:bb:01", "vlan": 42, "qos": 0}
    assert record.net_saved is not None and record.net_saved.fields() == {
        "mac": "02:00:00:00:00:10", "vlan": 0, "qos": 0}
    assert nic.driver(vf0) == "vfio-pci"
    result = nic.mgr.reattach(VM1, [vf0])
    assert result.ok and result.reattached == [vf0]
    assert nic.kernel.vf_net(PF, 0) == {**DEFAULTS, "mac": "02:00:00:00:00:10", "trust": True}
    assert nic.driver(vf0) == "ixgbevf"
    assert nic.mgr.active() == [] and nic.mgr.inactive() == []


def test_vf_interface_comes_and_goes_with_its_host_driver(nic: Host) -> None:
    vf0, _ = nic.vfs(2)
    assert sorted(nic.mgr.sysfs.list_dir(nic.mgr.sysfs.device_path(vf0, "net"))) == ["ens1f0v0"]
    nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST)])
    assert not nic.mgr.sysfs.exists(nic.mgr.sysfs.device_path(vf0, "net"))
    nic.mgr.reattach(VM1, [vf0])
    # Back on ixgbevf, the VF driver starts with the administrative MAC given back (none).
    assert nic.mgr.sysfs.exists("/sys/class/net/ens1f0v0")


def test_vf_interface_shows_the_administrative_mac(nic: Host) -> None:
    nic.vfs(1)
    nic.kernel.set_vf_net(PF, 0, mac="02:11:22:33:44:55")
    assert nic.mgr.sysfs.read_text("/sys/class/net/ens1f0v0/address").strip() == \
        "02:11:22:33:44:55"


def test_only_the_settings_asked_for_are_touched(nic: Host) -> None:
    vf0, _ = nic.vfs(2)
    nic.kernel.set_vf_net(PF, 0, mac="02:00:00:00:00:10", vlan=7, qos=3)
    before = len(nic.kernel.writes)
    nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=VfNetConfig(spoofchk=False))])
    net_writes = [w.path for w in nic.kernel.writes[before:] if w.path.startswith("netlink:")]
    assert net_writes == ["netlink:ens1f0/vf0/spoofchk"]
    assert nic.kernel.vf_net(PF, 0)["mac"] == "02:00:00:00:00:10"
    assert nic.kernel.vf_net(PF, 0)["spoofchk"] is False
    nic.mgr.reattach(VM1, [vf0])
    assert nic.kernel.vf_net(PF, 0) == {**DEFAULTS, "mac": "02:00:00:00:00:10", "vlan": 7,
                                        "qos": 3}


def test_qos_alone_keeps_the_vlan(nic: Host) -> None:
    vf0, _ = nic.vfs(2)
    nic.kernel.set_vf_net(PF, 0, vlan=9)
    nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=VfNetConfig(qos=5))])
    assert (nic.kernel.vf_net(PF, 0)["vlan"], nic.kernel.vf_net(PF, 0)["qos"]) == (9, 5)
    nic.mgr.reattach(VM1, [vf0])
    assert (nic.kernel.vf_net(PF, 0)["vlan"], nic.kernel.vf_net(PF, 0)["qos"]) == (9, 0)


@pytest.mark.parametrize("values, words", [
    ({"mac": "01:00:5e:00:00:01"}, "multicast"),
    ({"mac": "00:00:00:00:00:00"}, "00:00:00:00:00:00"),
    ({"mac": "52:54:00:zz:00:01"}, "invalid MAC"),
    ({"vlan": 4096}, "vlan"),
    ({"vlan": True}, "vlan"),
    ({"qos": 8}, "qos"),
    ({"trust": "yes"}, "trust"),
    ({"link_state": "up"}, "link state"),
    ({"speed": 1}, "unknown"),
])
def test_bad_values_are_bad_input(values: dict[str, object], words: str) -> None:
    with pytest.raises(BadInput, match=words):
        VfNetConfig(**values)  # type: ignore[arg-type]


def test_bad_values_in_a_spec_are_bad_input() -> None:
    with pytest.raises(BadInput, match="multicast"):
        HostdevSpec(address=NIC, net={"mac": "ff:ff:ff:ff:ff:ff"})  # type: ignore[arg-type]


def test_mac_is_normalised() -> None:
    assert VfNetConfig(mac="52-54-00-AA-BB-CC").mac == "52:54:00:aa:bb:cc"


def test_net_config_refused_on_a_function_that_is_not_a_vf(nic: Host) -> None:
    writes = len(nic.kernel.writes)
    with pytest.raises(NotAssignable, match="not an SR-IOV VF"):
        nic.mgr.prepare(VM1, [HostdevSpec(address=NIC, net=GUEST)])
    assert nic.driver(NIC) == "e1000e" and len(nic.kernel.writes) == writes


def test_net_config_refused_when_the_pf_has_no_interface(host: Host) -> None:
    vf0, _ = host.vfs(2)
    writes = len(host.kernel.writes)
    with pytest.raises(NotAssignable, match="carries no network interface"):
        host.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST)])
    assert host.driver(vf0) == "ixgbevf" and len(host.kernel.writes) == writes


@pytest.mark.parametrize("field", ["mac", "vlan"])
def test_failed_netlink_write_rolls_everything_back(nic: Host, field: str) -> None:
    vf0, vf1 = nic.vfs(2)
    nic.kernel.set_vf_net(PF, 0, mac="02:00:00:00:00:10")
    nic.kernel.fail_netlink("ens1f0", 0, field, errno.EPERM)
    with pytest.raises(KernelRefused) as caught:
        nic.mgr.prepare(VM1, [HostdevSpec(address=vf1), HostdevSpec(address=vf0, net=GUEST)])
    assert caught.value.errno == errno.EPERM and caught.value.path.startswith("netlink:ens1f0")
    assert "run as root" in str(caught.value)
    assert nic.kernel.vf_net(PF, 0) == {**DEFAULTS, "mac": "02:00:00:00:00:10"}
    assert nic.driver(vf0) == "ixgbevf" and nic.driver(vf1) == "ixgbevf"
    assert nic.mgr.active() == [] and nic.mgr.inactive() == []


def test_bad_vf_index_is_einval_from_the_kernel(nic: Host) -> None:
    from hostdev.linux import netlink

    nic.vfs(1)
    with pytest.raises(KernelRefused) as caught:
        netlink.write_vf(nic.mgr.sysfs, "ens1f0", 5, "trust", {"trust": True})
    assert caught.value.errno == errno.EINVAL
    with pytest.raises(KernelRefused) as missing:
        netlink.read_vf(nic.mgr.sysfs, "ens9", 0)
    assert missing.value.errno == errno.ENODEV


@pytest.mark.parametrize("k", [1, 2])
def test_crash_after_each_netlink_write_is_recovered(nic: Host, k: int) -> None:
    vf0, _ = nic.vfs(2)
    nic.kernel.set_vf_net(PF, 0, mac="02:00:00:00:00:10", vlan=3)
    sysfs_writes = _writes_until_first_netlink(nic, vf0)
    nic.kernel.crash_after_writes(sysfs_writes + k)
    with pytest.raises(SimulatedCrash):
        nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST)])
    assert nic.kernel.vf_net(PF, 0)["mac"] == "52:54:00:aa:bb:01"
    report = _fresh(nic).reconcile()
    assert any("network settings back" in line for line in report.recovered), report
    assert nic.kernel.vf_net(PF, 0) == {**DEFAULTS, "mac": "02:00:00:00:00:10", "vlan": 3}
    assert nic.driver(vf0) == "ixgbevf"


def _writes_until_first_netlink(host: Host, vf: object) -> int:
    """How many sysfs writes a prepare of ``vf`` makes before its first netlink write
    (measured on a copy of the run: the same host state is rebuilt by the caller)."""
    # The PCI part alone: a prepare without a net config makes the same sysfs writes.
    total = host.kernel.count_writes(
        lambda: host.mgr.prepare(VM1, [HostdevSpec(address=vf)]))  # type: ignore[arg-type]
    host.mgr.reattach(VM1, [vf])  # type: ignore[list-item]
    return total


def test_crash_in_reattach_before_the_restore_is_put_back_by_recovery(nic: Host) -> None:
    vf0, _ = nic.vfs(2)
    nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST)])
    nic.kernel.crash_after_writes(1)  # the MAC going back
    with pytest.raises(SimulatedCrash):
        nic.mgr.reattach(VM1, [vf0])
    fresh = _fresh(nic)
    fresh.reconcile()
    # The reattach never finished: recovery undoes it, so the guest keeps its settings.
    assert fresh.used_by(vf0) == VM1
    assert nic.kernel.vf_net(PF, 0)["mac"] == "52:54:00:aa:bb:01"
    assert fresh.reattach(VM1, [vf0]).ok
    assert nic.kernel.vf_net(PF, 0) == DEFAULTS


def test_failed_restore_at_reattach_keeps_the_vf_tracked(nic: Host) -> None:
    vf0, _ = nic.vfs(2)
    nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST)])
    nic.kernel.fail_netlink("ens1f0", 0, "mac", errno.EIO)
    report = nic.mgr.reattach(VM1, [vf0])
    assert [f.address for f in report.failed] == [vf0]
    assert "network settings back" in report.failed[0].reason
    assert nic.driver(vf0) == "vfio-pci"
    [record] = nic.mgr.inactive()
    assert record.net_saved is not None
    again = nic.mgr.reattach(VM1, [vf0])
    assert again.ok and again.reattached == [vf0]
    assert nic.kernel.vf_net(PF, 0) == DEFAULTS and nic.driver(vf0) == "ixgbevf"


def test_reconcile_reports_drift(nic: Host) -> None:
    vf0, _ = nic.vfs(2)
    nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST)])
    assert nic.mgr.reconcile().net_drift == []
    nic.kernel.set_vf_net(PF, 0, vlan=100)
    drift = nic.mgr.reconcile().net_drift
    assert len(drift) == 1 and str(vf0) in drift[0] and "vlan 100, not 42" in drift[0]


def test_every_netlink_write_is_logged(nic: Host, caplog: pytest.LogCaptureFixture) -> None:
    vf0, _ = nic.vfs(2)
    with caplog.at_level(logging.DEBUG, logger="hostdev.kernel"):
        nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST)])
    lines = [r.getMessage() for r in caplog.records if r.name == "hostdev.kernel"
             and "netlink" in r.getMessage()]
    assert lines == ["netlink: ens1f0 vf 0 mac 52:54:00:aa:bb:01: ok",
                     "netlink: ens1f0 vf 0 vlan 42 qos 0: ok"]


def test_vf_settings_go_with_the_vfs(nic: Host) -> None:
    nic.vfs(2)
    nic.kernel.set_vf_net(PF, 1, trust=True)
    nic.vfs(0)
    nic.vfs(2)
    assert nic.kernel.vf_net(PF, 1) == DEFAULTS


def test_node_reattach_finishes_a_failed_restore(nic: Host) -> None:
    vf0, _ = nic.vfs(2)
    nic.kernel.set_vf_net(PF, 0, mac="02:00:00:00:00:10")
    nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST)])
    nic.kernel.fail_netlink("ens1f0", 0, "vlan", errno.EIO)  # the MAC goes back, not the VLAN
    assert not nic.mgr.reattach(VM1, [vf0]).ok
    assert nic.kernel.vf_net(PF, 0)["vlan"] == 42
    result = nic.mgr.node_reattach(vf0)
    assert result.driver == "ixgbevf"
    assert nic.kernel.vf_net(PF, 0) == {**DEFAULTS, "mac": "02:00:00:00:00:10"}
    assert nic.mgr.inactive() == []


def test_a_new_prepare_keeps_the_values_a_failed_restore_left_to_give_back(nic: Host) -> None:
    vf0, _ = nic.vfs(2)
    nic.kernel.set_vf_net(PF, 0, mac="02:00:00:00:00:10")
    nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST)])
    nic.kernel.fail_netlink("ens1f0", 0, "mac", errno.EIO)
    assert not nic.mgr.reattach(VM1, [vf0]).ok
    other = VfNetConfig(mac="52:54:00:aa:bb:02")
    [record] = nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=other)]).prepared
    assert record.net_saved is not None and record.net_saved.mac == "02:00:00:00:00:10"
    assert nic.mgr.reattach(VM1, [vf0]).ok
    assert nic.kernel.vf_net(PF, 0) == {**DEFAULTS, "mac": "02:00:00:00:00:10"}


def test_node_reattach_restore_failure_changes_nothing(nic: Host) -> None:
    vf0, _ = nic.vfs(2)
    nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST)])
    nic.kernel.fail_netlink("ens1f0", 0, "mac", errno.EIO)
    nic.mgr.reattach(VM1, [vf0])
    nic.kernel.fail_netlink("ens1f0", 0, "vlan", errno.EIO)
    with pytest.raises(KernelRefused):
        nic.mgr.node_reattach(vf0)
    assert nic.driver(vf0) == "vfio-pci"
    assert nic.kernel.vf_net(PF, 0)["mac"] == "52:54:00:aa:bb:01"  # the undo put it back
    [record] = nic.mgr.inactive()
    assert record.net_saved is not None


# ------------------------------------------- an undo, a recovery or a give-back fails


def test_a_failed_undo_keeps_the_vf_on_its_stub_with_what_to_give_back(nic: Host) -> None:
    vf0, _ = nic.vfs(2)
    nic.kernel.fail_netlink("ens1f0", 0, "vlan", errno.EIO)  # the prepare's second write
    # ... and, armed as that write is made (after the MAC write), the MAC's undo fails.
    with nic.kernel.watch_writes(
            lambda path, address: nic.kernel.fail_netlink("ens1f0", 0, "mac", errno.EIO),
            match="netlink:ens1f0/vf0/vlan"), pytest.raises(KernelRefused):
        nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST)])
    assert nic.kernel.vf_net(PF, 0)["mac"] == "52:54:00:aa:bb:01", "the undo did fail"
    # Not given back to the host with the guest's MAC: on its stub, tracked, owed.
    assert nic.driver(vf0) == "vfio-pci"
    [record] = nic.mgr.inactive()
    assert record.address == vf0 and record.owner is None
    assert record.net_saved is not None and record.net_saved.mac == DEFAULTS["mac"]
    assert nic.mgr.active() == []
    result = nic.mgr.node_reattach(vf0)
    assert result.driver == "ixgbevf" and nic.kernel.vf_net(PF, 0) == DEFAULTS
    assert nic.mgr.inactive() == []


def test_recovery_that_cannot_give_settings_back_keeps_the_vf_on_its_stub(nic: Host) -> None:
    vf0, _ = nic.vfs(2)
    sysfs_writes = _writes_until_first_netlink(nic, vf0)
    nic.kernel.crash_after_writes(sysfs_writes + 1)  # right after the MAC write
    with pytest.raises(SimulatedCrash):
        nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST)])
    nic.kernel.fail_netlink("ens1f0", 0, "mac", errno.EIO)
    report = _fresh(nic).reconcile()
    assert any("kept on its stub, tracked" in line for line in report.failed), report
    assert nic.driver(vf0) == "vfio-pci", "not back on the host with the guest's MAC"
    [record] = _fresh(nic).inactive()
    assert record.net_saved is not None and record.net_saved.mac == DEFAULTS["mac"]
    assert _fresh(nic).node_reattach(vf0).driver == "ixgbevf"
    assert nic.kernel.vf_net(PF, 0) == DEFAULTS


def test_a_holder_found_at_give_back_leaves_the_guest_its_settings(nic: Host) -> None:
    vf0, _ = nic.vfs(2)
    nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST)])
    # A VFIO user opens the VF after the release wait, as its settings go back.
    with nic.kernel.watch_writes(lambda path, address: nic.kernel.hold_vfio(vf0, pid=4242),
                                 match="netlink:ens1f0/vf0/mac"):
        result = nic.mgr.reattach(VM1, [vf0])
    assert [f.address for f in result.failed] == [vf0]
    assert "stay the guest's" in result.failed[0].reason
    assert nic.mgr.used_by(vf0) == VM1 and nic.driver(vf0) == "vfio-pci"
    assert nic.kernel.vf_net(PF, 0)["mac"] == "52:54:00:aa:bb:01"
    assert nic.kernel.vf_net(PF, 0)["vlan"] == 42


def test_node_reattach_of_a_vf_put_on_its_driver_behind_our_back_gives_settings_back(
        nic: Host) -> None:
    vf0, _ = nic.vfs(2)
    nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST)])
    nic.kernel.fail_netlink("ens1f0", 0, "mac", errno.EIO)
    assert not nic.mgr.reattach(VM1, [vf0]).ok  # settings owed, kept on the stub
    # Someone moves it to its host driver by hand.
    sysfs = nic.mgr.sysfs
    sysfs.write(sysfs.device_path(vf0, "driver_override"), "\n")
    sysfs.write("/sys/bus/pci/drivers/vfio-pci/unbind", str(vf0))
    sysfs.write("/sys/bus/pci/drivers_probe", str(vf0))
    assert nic.driver(vf0) == "ixgbevf"
    nic.mgr.node_reattach(vf0)
    assert nic.kernel.vf_net(PF, 0) == DEFAULTS and nic.mgr.inactive() == []


def test_an_empty_network_configuration_is_bad_input() -> None:
    with pytest.raises(BadInput, match="sets nothing"):
        VfNetConfig()


def test_a_setting_the_driver_does_not_report_cannot_be_changed(
        nic: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    from hostdev.linux import netlink

    real = netlink.read_vfs

    def unknown_spoofchk(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return [{**e, "spoofchk": None} for e in real(*args, **kwargs)]  # the kernel said -1

    monkeypatch.setattr(netlink, "read_vfs", unknown_spoofchk)
    vf0, _ = nic.vfs(2)
    writes = len(nic.kernel.writes)
    with pytest.raises(NotAssignable, match="does not report its spoofchk"):
        nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=VfNetConfig(spoofchk=False))])
    assert len(nic.kernel.writes) == writes and nic.driver(vf0) == "ixgbevf"
    # A setting it does report can still be given.
    nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=VfNetConfig(vlan=9))])
    assert nic.kernel.vf_net(PF, 0)["vlan"] == 9


# ------------------------------------------- transient refusals (a VF being reset)


def _netlink_attempts(seen: list[str], field: str = "mac") -> int:
    return sum(1 for path in seen if path == f"netlink:ens1f0/vf0/{field}")


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits between retries, recorded (and not waited)."""
    from hostdev.linux import netlink

    waits: list[float] = []
    monkeypatch.setattr(netlink, "sleep", waits.append, raising=False)
    return waits


@pytest.mark.parametrize("code", [errno.EAGAIN, errno.EBUSY])
def test_a_write_refused_while_the_vf_resets_is_retried(
        nic: Host, slept: list[float], code: int, caplog: pytest.LogCaptureFixture) -> None:
    vf0, _ = nic.vfs(2)
    fault = nic.kernel.fail_netlink("ens1f0", 0, "mac", code, times=2)
    with nic.kernel.watch_writes() as watch, \
            caplog.at_level(logging.DEBUG, logger="hostdev.kernel"):
        nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST)])
    assert fault.hits == 2 and _netlink_attempts(watch.seen) == 3
    assert nic.kernel.vf_net(PF, 0)["mac"] == "52:54:00:aa:bb:01"
    assert nic.mgr.used_by(vf0) == VM1 and nic.driver(vf0) == "vfio-pci"
    assert len(slept) == 2 and sum(slept) < 1
    name = errno.errorcode[code]
    lines = [r.getMessage() for r in caplog.records
             if r.name == "hostdev.kernel" and "netlink" in r.getMessage()]
    assert lines[:3] == [
        f"netlink: ens1f0 vf 0 mac 52:54:00:aa:bb:01: {name}, retrying in 10 ms (attempt 1 of 6)",
        f"netlink: ens1f0 vf 0 mac 52:54:00:aa:bb:01: {name}, retrying in 20 ms (attempt 2 of 6)",
        "netlink: ens1f0 vf 0 mac 52:54:00:aa:bb:01: ok"]
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name == "hostdev.kernel")


def test_a_vf_stuck_in_reset_is_given_up_on_with_its_errno(
        nic: Host, slept: list[float]) -> None:
    from hostdev.linux import netlink

    vf0, vf1 = nic.vfs(2)
    nic.kernel.set_vf_net(PF, 0, mac="02:00:00:00:00:10")
    # Never ready while the prepare tries; ready again for its rollback.
    fault = nic.kernel.fail_netlink("ens1f0", 0, "vlan", errno.EAGAIN, times=6)
    with nic.kernel.watch_writes() as watch, pytest.raises(KernelRefused) as caught:
        nic.mgr.prepare(VM1, [HostdevSpec(address=vf1), HostdevSpec(address=vf0, net=GUEST)])
    assert caught.value.errno == errno.EAGAIN
    assert caught.value.path == "netlink:ens1f0/vf0" and "6 attempts" in str(caught.value)
    assert fault.hits == len(netlink.RETRY_DELAYS) + 1 == 6
    assert _netlink_attempts(watch.seen, "vlan") == 6 + 1  # and the undo's write
    assert slept == list(netlink.RETRY_DELAYS) and sum(slept) < 1
    # Rolled back: the MAC written before it is put back, the VFs on their driver.
    assert nic.kernel.vf_net(PF, 0) == {**DEFAULTS, "mac": "02:00:00:00:00:10"}
    assert nic.driver(vf0) == "ixgbevf" and nic.driver(vf1) == "ixgbevf"
    assert nic.mgr.active() == [] and nic.mgr.inactive() == []


def test_the_bound_on_retries_is_well_under_a_second() -> None:
    from hostdev.linux import netlink

    assert sum(netlink.RETRY_DELAYS) < 0.5
    assert sorted(netlink.TRANSIENT_ERRNOS) == sorted([errno.EAGAIN, errno.EBUSY])


@pytest.mark.parametrize("code", [errno.EIO, errno.EPERM, errno.EINVAL, errno.EOPNOTSUPP])
def test_other_refusals_are_not_retried(nic: Host, slept: list[float], code: int) -> None:
    vf0, _ = nic.vfs(2)
    fault = nic.kernel.fail_netlink("ens1f0", 0, "mac", code)  # a retry would succeed
    with nic.kernel.watch_writes() as watch, pytest.raises(KernelRefused) as caught:
        nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST)])
    assert caught.value.errno == code and fault.hits == 1 and slept == []
    # The refused write and its undo (pushed before it): no second attempt.
    assert _netlink_attempts(watch.seen) == 2
    assert nic.kernel.vf_net(PF, 0) == DEFAULTS and nic.driver(vf0) == "ixgbevf"


# --------------------------------------------------- a MAC another VF already has


def _host_now(host: Host, *vfs: Any) -> tuple[object, ...]:
    """What a refusal must leave as it was: lists, drivers, every VF's settings."""
    return (host.mgr.active(), host.mgr.inactive(), host.where(*vfs),
            [host.kernel.vf_net(PF, i) for i in range(len(vfs))])


def test_a_mac_another_vf_of_the_pf_carries_is_refused(nic: Host) -> None:
    vf0, vf1, vf2 = nic.vfs(3)
    nic.kernel.set_vf_net(PF, 2, mac="52:54:00:aa:bb:01")
    before = _host_now(nic, vf0, vf1, vf2)
    writes = len(nic.kernel.writes)
    with pytest.raises(BadInput) as caught:
        nic.mgr.prepare(VM1, [HostdevSpec(address=vf1), HostdevSpec(address=vf0, net=GUEST)])
    message = str(caught.value)
    assert f"already the MAC of VF 2 ({vf2}) of the same PF {PF} (ens1f0)" in message
    assert message.endswith("clear it first: ip link set ens1f0 vf 2 mac 00:00:00:00:00:00")
    assert "\n" not in message and caught.value.address == vf0
    assert _host_now(nic, vf0, vf1, vf2) == before and len(nic.kernel.writes) == writes


def test_the_mac_of_a_vf_assigned_to_another_guest_names_it(nic: Host) -> None:
    vf0, vf1 = nic.vfs(2)
    nic.mgr.prepare(VM2, [HostdevSpec(address=vf1, net=GUEST)])
    before = _host_now(nic, vf0, vf1)
    with pytest.raises(BadInput, match=f"VF 1 \\({vf1}, assigned to qemu/vm2\\)"):
        nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST)])
    assert _host_now(nic, vf0, vf1) == before


def test_two_vfs_of_one_pf_cannot_be_given_one_mac_in_one_call(nic: Host) -> None:
    vf0, vf1 = nic.vfs(2)
    before = _host_now(nic, vf0, vf1)
    with pytest.raises(BadInput, match=f"asked for both VF {vf0} and VF {vf1}"):
        nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST),
                              HostdevSpec(address=vf1, net=GUEST)])
    assert _host_now(nic, vf0, vf1) == before


def test_the_vf_s_own_mac_and_unset_macs_are_no_duplicates(nic: Host) -> None:
    vf0, _, _ = nic.vfs(3)  # VFs 1 and 2 carry no MAC (all zeros): never a duplicate
    nic.kernel.set_vf_net(PF, 0, mac="52:54:00:aa:bb:01")
    nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST)])
    assert nic.kernel.vf_net(PF, 0)["vlan"] == 42


# ------------------------------------------ which netdev of the PF is its interface


@pytest.mark.parametrize("netdevs, uplink", [
    # Kernel names before udev renames them: the representors may sort first.
    ([("eth0", "pf0vf0", 0), ("eth1", "pf0vf1", 0), ("eth2", "p0", 0)], "eth2"),
    ([("ens1f0np0", "p0", 0), ("ens1f0npf0vf0", "pf0vf0", 0)], "ens1f0np0"),
    ([("rep1", "c1pf0vf3", 0), ("up", "p0", 0), ("rep0", "pf0sf1", 0)], "up"),
    ([("a0", "pf0vf1", 0), ("b0", None, 0)], "b0"),  # no phys_port_name: EOPNOTSUPP
    ([("a0", "pf0", 0), ("b0", "p0", 0)], "b0"),  # a PF's representor comes last
    ([("a0", None, 1), ("b0", None, 0)], "b0"),  # two ports: the lowest dev_port
    ([("a0", "p1", 1), ("b0", "pf0vf0", 0), ("c0", "p0", 0)], "c0"),
])
def test_the_vf_settings_go_through_the_uplink_not_a_representor(
        host: Host, netdevs: list[tuple[str, str | None, int]], uplink: str) -> None:
    from hostdev.linux import netlink

    for name, port, dev_port in netdevs:
        host.kernel.add_netdev(PF, name, phys_port_name=port, dev_port=dev_port)
    vf0, _ = host.vfs(2)
    assert netlink.pf_interface(host.mgr.sysfs, PF) == uplink
    before = len(host.kernel.writes)
    host.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST)])
    assert [w.path for w in host.kernel.writes[before:] if w.path.startswith("netlink:")] == [
        f"netlink:{uplink}/vf0/mac", f"netlink:{uplink}/vf0/vlan"]
    assert host.kernel.vf_net(PF, 0)["mac"] == "52:54:00:aa:bb:01"
    assert host.mgr.reattach(VM1, [vf0]).ok and host.kernel.vf_net(PF, 0) == DEFAULTS


def test_a_pf_with_only_representors_is_like_one_with_no_interface(host: Host) -> None:
    host.kernel.add_netdev(PF, "eth0", phys_port_name="pf0vf0")
    host.kernel.add_netdev(PF, "eth1", phys_port_name="pf0vf1")
    vf0, vf1 = host.vfs(2)
    before = _host_now(host, vf0, vf1)
    writes = len(host.kernel.writes)
    with pytest.raises(NotAssignable) as caught:
        host.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=GUEST)])
    message = str(caught.value)
    assert f"its PF {PF} carries no network interface of its own" in message
    assert "eth0 (pf0vf0), eth1 (pf0vf1)" in message and "uplink" in message
    assert _host_now(host, vf0, vf1) == before and len(host.kernel.writes) == writes


def test_a_phys_port_name_that_cannot_be_read_is_no_representor(
        host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    from hostdev.linux import netlink
    from hostdev.linux.sysfs import Sysfs

    host.kernel.add_netdev(PF, "a0", phys_port_name="pf0")
    host.kernel.add_netdev(PF, "b0", phys_port_name="pf0vf0")
    host.kernel.add_netdev(PF, "c0")
    real = Sysfs.read_optional

    def quirk(self: Sysfs, path: str, address: Any = None) -> str | None:
        if path.endswith("/c0/phys_port_name"):  # a driver's odd errno, not EOPNOTSUPP
            raise KernelRefused("the kernel refused reading it", errno=errno.EINVAL, path=path)
        return real(self, path, address)

    monkeypatch.setattr(Sysfs, "read_optional", quirk)
    # Not a representor for all we know: taken before a PF's representor ...
    assert netlink.pf_interface(host.mgr.sysfs, PF) == "c0"
    # ... and after a netdev that says it is a port.
    host.kernel.add_netdev(PF, "d0", phys_port_name="p0", dev_port=3)
    assert netlink.pf_interface(host.mgr.sysfs, PF) == "d0"
