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
from tests.smallhost import NIC, PF, VM1, Host

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
    nic.kernel.fail_netlink("ens1f0", 0, "mac", errno.EBUSY)
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

    real = netlink.read_vf

    def unknown_spoofchk(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {**real(*args, **kwargs), "spoofchk": None}  # the kernel said -1

    monkeypatch.setattr(netlink, "read_vf", unknown_spoofchk)
    vf0, _ = nic.vfs(2)
    writes = len(nic.kernel.writes)
    with pytest.raises(NotAssignable, match="does not report its spoofchk"):
        nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=VfNetConfig(spoofchk=False))])
    assert len(nic.kernel.writes) == writes and nic.driver(vf0) == "ixgbevf"
    # A setting it does report can still be given.
    nic.mgr.prepare(VM1, [HostdevSpec(address=vf0, net=VfNetConfig(vlan=9))])
    assert nic.kernel.vf_net(PF, 0)["vlan"] == 9
