"""The fake kernel's per-VF network settings and VF interfaces (docs/kernel-model.md §10)."""

from __future__ import annotations

import errno
import os

import pytest

from hostdev.linux import netlink
from hostdev.linux.sysfs import Sysfs
from hostdev.testing import FakeKernel, FakeKernelSetupError, SimulatedCrash
from tests.smallhost import PF, build_host

DEFAULTS = {"mac": "00:00:00:00:00:00", "vlan": 0, "qos": 0, "spoofchk": True,
            "trust": False, "link_state": "auto"}


@pytest.fixture
def kernel(fake_kernel: FakeKernel) -> FakeKernel:
    build_host(fake_kernel)
    fake_kernel.add_netdev(PF, "ens1f0")
    with open(f"/sys/bus/pci/devices/{PF}/sriov_numvfs", "w") as f:
        f.write("2\n")
    return fake_kernel


def test_vfs_start_at_the_kernel_defaults(kernel: FakeKernel) -> None:
    assert kernel.vf_net(PF, 0) == DEFAULTS and kernel.vf_net(PF, 1) == DEFAULTS
    listed = netlink.read_vf(Sysfs("/"), "ens1f0", 1)
    assert listed == DEFAULTS


def test_administrator_settings_show_through_netlink(kernel: FakeKernel) -> None:
    kernel.set_vf_net(PF, 1, mac="02:00:00:00:00:01", vlan=5, qos=2, trust=True,
                      link_state="disable", spoofchk=False)
    assert netlink.read_vf(Sysfs("/"), "ens1f0", 1) == {
        "mac": "02:00:00:00:00:01", "vlan": 5, "qos": 2, "spoofchk": False, "trust": True,
        "link_state": "disable"}


@pytest.mark.parametrize("values", [{"mac": "03:00:00:00:00:01"}, {"vlan": 4096},
                                    {"qos": 8}, {"link_state": "up"}, {"colour": 1}])
def test_administrator_gets_the_kernel_refusals(kernel: FakeKernel,
                                                values: dict[str, object]) -> None:
    with pytest.raises(FakeKernelSetupError):
        kernel.set_vf_net(PF, 0, **values)
    assert kernel.vf_net(PF, 0) == DEFAULTS


def test_netlink_errors(kernel: FakeKernel) -> None:
    from hostdev.errors import KernelRefused

    sysfs = Sysfs("/")
    for ifname, index, code in (("ens1f0", 2, errno.EINVAL), ("nope0", 0, errno.ENODEV)):
        with pytest.raises(KernelRefused) as caught:
            netlink.write_vf(sysfs, ifname, index, "trust", {"trust": True})
        assert caught.value.errno == code
    kernel.add_netdev("0000:04:00.0", "eno1")  # no SR-IOV: no ndo_set_vf_*
    with pytest.raises(KernelRefused) as caught:
        netlink.write_vf(sysfs, "eno1", 0, "trust", {"trust": True})
    assert caught.value.errno == errno.EOPNOTSUPP
    with pytest.raises(KernelRefused):
        netlink.read_vf(sysfs, "eno1", 0)


def test_injected_failure_and_records(kernel: FakeKernel) -> None:
    sysfs = Sysfs("/")
    fault = kernel.fail_netlink("ens1f0", 0, "vlan", errno.EIO)  # not one write_vf retries
    with pytest.raises(Exception) as caught:
        netlink.write_vf(sysfs, "ens1f0", 0, "vlan", {"vlan": 3, "qos": 0})
    assert getattr(caught.value, "errno", None) == errno.EIO and fault.hits == 1
    netlink.write_vf(sysfs, "ens1f0", 0, "vlan", {"vlan": 3, "qos": 0})
    assert [(w.path, w.value, w.errno) for w in kernel.writes[-2:]] == [
        ("netlink:ens1f0/vf0/vlan", "vlan 3 qos 0", errno.EIO),
        ("netlink:ens1f0/vf0/vlan", "vlan 3 qos 0", None)]
    kernel.crash_after_writes(1)
    with pytest.raises(SimulatedCrash):
        netlink.write_vf(sysfs, "ens1f0", 0, "trust", {"trust": True})
    assert kernel.vf_net(PF, 0)["trust"] is True  # the crash comes after the effect


def test_vf_interfaces_follow_the_host_driver(kernel: FakeKernel) -> None:
    vf0 = os.readlink(f"/sys/bus/pci/devices/{PF}/virtfn0").rsplit("/", 1)[-1]
    assert os.listdir(f"/sys/bus/pci/devices/{vf0}/net") == ["ens1f0v0"]
    assert os.path.exists("/sys/class/net/ens1f0v1")
    with open(f"/sys/bus/pci/devices/{vf0}/driver/unbind", "w") as f:
        f.write(vf0)
    assert not os.path.exists("/sys/class/net/ens1f0v0")
    kernel.set_vf_net(PF, 0, mac="02:aa:00:00:00:01")
    with open("/sys/bus/pci/drivers_probe", "w") as f:
        f.write(vf0)
    with open("/sys/class/net/ens1f0v0/address") as f:
        assert f.read() == "02:aa:00:00:00:01\n"


def test_settings_go_with_the_vfs(kernel: FakeKernel) -> None:
    kernel.set_vf_net(PF, 0, trust=True)
    for count in ("0\n", "2\n"):
        with open(f"/sys/bus/pci/devices/{PF}/sriov_numvfs", "w") as f:
            f.write(count)
    assert kernel.vf_net(PF, 0) == DEFAULTS
    with pytest.raises(FakeKernelSetupError):
        kernel.vf_net(PF, 2)


def test_phys_port_name_and_dev_port(kernel: FakeKernel) -> None:
    kernel.add_netdev(PF, "eth5", phys_port_name="pf0vf1", dev_port=2)
    base = "/sys/class/net"
    with open(f"{base}/eth5/phys_port_name") as f:
        assert f.read() == "pf0vf1\n"
    with open(f"{base}/eth5/dev_port") as f:
        assert f.read() == "2\n"
    with open(f"{base}/ens1f0/dev_port") as f:
        assert f.read() == "0\n"
    # A netdev with no devlink port: the file is there and opens; reading it fails.
    fd = os.open(f"{base}/ens1f0/phys_port_name", os.O_RDONLY)
    try:
        with pytest.raises(OSError) as caught:
            os.read(fd, 4096)
        assert caught.value.errno == errno.EOPNOTSUPP
    finally:
        os.close(fd)
    with open(f"{base}/ens1f0/phys_port_name") as f, pytest.raises(OSError) as text:
        f.read()
    assert text.value.errno == errno.EOPNOTSUPP
    with pytest.raises(PermissionError):
        open(f"{base}/ens1f0/phys_port_name", "w")  # noqa: SIM115 - refused at open
    with pytest.raises(FakeKernelSetupError):
        kernel.add_netdev(PF, "eth6", phys_port_name="vf1")  # not a name the kernel makes


def test_a_representor_answers_no_vf_list_and_no_vf_setting(kernel: FakeKernel) -> None:
    from hostdev.errors import KernelRefused

    kernel.add_netdev(PF, "eth5", phys_port_name="pf0vf0")
    sysfs = Sysfs("/")
    with pytest.raises(KernelRefused) as caught:
        netlink.write_vf(sysfs, "eth5", 0, "trust", {"trust": True})
    assert caught.value.errno == errno.EOPNOTSUPP and kernel.vf_net(PF, 0) == DEFAULTS
    assert netlink.read_vfs(sysfs, "eth5") == []
    assert len(netlink.read_vfs(sysfs, "ens1f0")) == 2
