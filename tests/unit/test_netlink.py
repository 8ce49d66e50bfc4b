"""The pyroute2 side of the netlink boundary: what it sends, how it reads the kernel's
answer (real rtnetlink messages, encoded and decoded by pyroute2), errno kept."""

from __future__ import annotations

import errno
import socket
from typing import Any, ClassVar

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from hostdev.errors import KernelRefused
from hostdev.linux import netlink
from hostdev.linux.sysfs import Sysfs

#: What rtnetlink reports for a switch the driver does not tell (-1 as a u32).
UNKNOWN = 0xFFFFFFFF


def _answer(unknown: bool = False) -> ifinfmsg:
    """A PF's RTM_NEWLINK answer with two VFs, as the kernel would send it."""
    msg = ifinfmsg()
    msg["attrs"] = [("IFLA_IFNAME", "ens1f0"), ("IFLA_VFINFO_LIST", {"attrs": [
        ("IFLA_VF_INFO", {"attrs": [
            ("IFLA_VF_MAC", {"vf": 0, "mac": "52:54:00:AA:BB:01"}),
            ("IFLA_VF_VLAN", {"vf": 0, "vlan": 42, "qos": 3}),
            ("IFLA_VF_SPOOFCHK", {"vf": 0, "spoofchk": 0}),
            ("IFLA_VF_LINK_STATE", {"vf": 0, "link_state": 2}),
            ("IFLA_VF_TRUST", {"vf": 0, "trust": 1})]}),
        ("IFLA_VF_INFO", {"attrs": [
            ("IFLA_VF_MAC", {"vf": 1, "mac": "00:00:00:00:00:00"}),
            ("IFLA_VF_VLAN", {"vf": 1, "vlan": 0, "qos": 0}),
            ("IFLA_VF_SPOOFCHK", {"vf": 1, "spoofchk": UNKNOWN if unknown else 1}),
            ("IFLA_VF_LINK_STATE", {"vf": 1, "link_state": 0}),
            ("IFLA_VF_TRUST", {"vf": 1, "trust": UNKNOWN if unknown else 0})]})]})]
    msg.encode()
    decoded = ifinfmsg(msg.data)
    decoded.decode()
    return decoded


def _link(index: int, name: str) -> ifinfmsg:
    msg = ifinfmsg()
    msg["index"] = index
    msg["attrs"] = [("IFLA_IFNAME", name)]
    msg.encode()
    decoded = ifinfmsg(msg.data)
    decoded.decode()
    return decoded


def _addr(index: int, address: str, prefixlen: int) -> ifaddrmsg:
    msg = ifaddrmsg()
    msg["family"], msg["index"], msg["prefixlen"] = socket.AF_INET, index, prefixlen
    msg["attrs"] = [("IFA_ADDRESS", address), ("IFA_LOCAL", address)]
    msg.encode()
    decoded = ifaddrmsg(msg.data)
    decoded.decode()
    return decoded


class FakeIPRoute:
    """Stands for pyroute2.IPRoute: answers with real messages, records what is sent."""

    sent: ClassVar[list[dict[str, Any]]] = []
    error: ClassVar[Exception | None] = None
    #: VF 1's driver cannot tell its spoof check and trust settings.
    unknown: ClassVar[bool] = False

    def __enter__(self) -> FakeIPRoute:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def link_lookup(self, ifname: str) -> list[int]:
        return [7] if ifname == "ens1f0" else []

    def get_links(self, index: int | None = None, ext_mask: int = 0) -> list[ifinfmsg]:
        if index is None:
            return [_link(1, "lo"), _link(7, "ens1f0")]
        assert (index, ext_mask) == (7, 9)  # the VF list, without per-VF statistics
        return [_answer(FakeIPRoute.unknown)]

    def get_addr(self, family: int) -> list[ifaddrmsg]:
        return [_addr(1, "127.0.0.1", 8), _addr(7, "10.9.0.5", 32), _addr(7, "10.1.0.2", 24)]

    def link(self, command: str, **kwargs: Any) -> None:
        if FakeIPRoute.error is not None:
            raise FakeIPRoute.error
        FakeIPRoute.sent.append({"command": command, **kwargs})


@pytest.fixture
def ipr(monkeypatch: pytest.MonkeyPatch) -> type[FakeIPRoute]:
    import pyroute2

    monkeypatch.setattr(pyroute2, "IPRoute", FakeIPRoute)
    FakeIPRoute.sent = []
    FakeIPRoute.error = None
    FakeIPRoute.unknown = False
    return FakeIPRoute


def test_reads_the_vf_list(ipr: type[FakeIPRoute]) -> None:
    sysfs = Sysfs("/")
    assert netlink.read_vf(sysfs, "ens1f0", 0) == {
        "mac": "52:54:00:aa:bb:01", "vlan": 42, "qos": 3, "spoofchk": False, "trust": True,
        "link_state": "disable"}
    assert netlink.read_vf(sysfs, "ens1f0", 1) == netlink.VF_DEFAULTS
    with pytest.raises(KernelRefused) as missing:
        netlink.read_vf(sysfs, "ens1f0", 2)
    assert missing.value.errno == errno.EINVAL
    with pytest.raises(KernelRefused) as gone:
        netlink.read_vf(sysfs, "eth9", 0)
    assert gone.value.errno == errno.ENODEV


def test_a_setting_the_driver_cannot_tell_is_unknown_not_off(ipr: type[FakeIPRoute]) -> None:
    # rtnetlink presets these to -1 and reports them as a u32 when the driver says nothing.
    ipr.unknown = True
    values = netlink.read_vf(Sysfs("/"), "ens1f0", 1)
    assert (values["spoofchk"], values["trust"]) == (None, None)
    assert values["mac"] == "00:00:00:00:00:00" and values["vlan"] == 0


def test_writes_one_attribute_per_call(ipr: type[FakeIPRoute]) -> None:
    sysfs = Sysfs("/")
    netlink.write_vf(sysfs, "ens1f0", 1, "vlan", {"vlan": 100, "qos": 2})
    netlink.write_vf(sysfs, "ens1f0", 1, "mac", {"mac": "52:54:00:00:00:01"})
    netlink.write_vf(sysfs, "ens1f0", 1, "link_state", {"link_state": "enable"})
    netlink.write_vf(sysfs, "ens1f0", 1, "trust", {"trust": True})
    assert ipr.sent == [
        {"command": "set", "index": 7, "vf": {"vf": 1, "vlan": {"vlan": 100, "qos": 2}}},
        {"command": "set", "index": 7, "vf": {"vf": 1, "mac": "52:54:00:00:00:01"}},
        {"command": "set", "index": 7, "vf": {"vf": 1, "link_state": 1}},
        {"command": "set", "index": 7, "vf": {"vf": 1, "trust": 1}}]


def test_netlink_errors_keep_their_errno(ipr: type[FakeIPRoute]) -> None:
    from pyroute2.netlink.exceptions import NetlinkError

    ipr.error = NetlinkError(errno.EOPNOTSUPP, "Operation not supported")
    with pytest.raises(KernelRefused) as caught:
        netlink.write_vf(Sysfs("/"), "ens1f0", 0, "trust", {"trust": True})
    assert caught.value.errno == errno.EOPNOTSUPP
    assert caught.value.path == "netlink:ens1f0/vf0"
    assert "does not support it" in str(caught.value)


def test_refused_under_another_root(tmp_path: Any) -> None:
    with pytest.raises(KernelRefused, match="real root") as caught:
        netlink.read_vf(Sysfs(tmp_path), "ens1f0", 0)
    assert caught.value.errno == errno.EOPNOTSUPP


def test_ipv4_addresses_by_interface(ipr: type[FakeIPRoute]) -> None:
    assert netlink.ipv4_addresses(Sysfs("/")) == {
        "lo": ["127.0.0.1/8"], "ens1f0": ["10.9.0.5/32", "10.1.0.2/24"]}


def test_ipv4_addresses_unanswered_under_another_root(tmp_path: Any) -> None:
    assert netlink.ipv4_addresses(Sysfs(tmp_path)) is None
