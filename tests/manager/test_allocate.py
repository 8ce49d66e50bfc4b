"""allocate(): which VFs it picks, which it skips, and all-or-nothing on failure.

On the two-socket fixture server: an Intel X710 PF 0000:3d:00.0 (NUMA node 0)
boots with two VFs (3d:02.0, 3d:02.1); its port 3d:00.1 (node 0) and the
ConnectX-4 PFs 86:00.0 and 86:00.1 (node 1) have none until a test enables them.
"""

from __future__ import annotations

import errno
import pickle

import pytest

from hostdev.address import PciAddress
from hostdev.errors import BadInput, DeviceNotFound, HostdevError, NotEnoughFreeVfs
from hostdev.linux.binding import current_driver
from hostdev.manager import HostdevManager
from hostdev.state.records import Owner, VfNetConfig
from hostdev.testing import FakeKernel

VM1 = Owner(driver="qemu", domain="vm1")
VM2 = Owner(driver="qemu", domain="vm2")
X710 = PciAddress.parse("0000:3d:00.0")
X710_PORT1 = PciAddress.parse("0000:3d:00.1")
CX4 = PciAddress.parse("0000:86:00.0")
X_VF0, X_VF1 = PciAddress.parse("0000:3d:02.0"), PciAddress.parse("0000:3d:02.1")
CX_VF0, CX_VF1 = PciAddress.parse("0000:86:00.2"), PciAddress.parse("0000:86:00.3")
GPU = PciAddress.parse("0000:5e:00.0")


def _manager() -> HostdevManager:
    return HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0)


@pytest.fixture
def mgr(fake_kernel: FakeKernel) -> HostdevManager:
    fake_kernel.load_fixture("two-socket-server")
    manager = _manager()
    assert manager.set_num_vfs(CX4, 2).vfs == [CX_VF0, CX_VF1]
    return manager


def _where(mgr: HostdevManager) -> dict[PciAddress, tuple[str | None, str | None]]:
    """Driver and override of every function: what a refusal must leave alone."""
    sysfs = mgr.sysfs
    return {a: (current_driver(sysfs, a), sysfs.read_override(a))
            for a in (PciAddress.parse(n) for n in sysfs.list_dir(sysfs.pci_devices))}


def _to_driver(mgr: HostdevManager, address: PciAddress, driver: str) -> None:
    """Move a function to ``driver`` by hand, as an administrator would (untracked)."""
    sysfs = mgr.sysfs
    sysfs.write(sysfs.device_path(address, "driver_override"), f"{driver}\n")
    old = current_driver(sysfs, address)
    if old is not None:
        sysfs.write(sysfs.driver_dir(old) + "/unbind", f"{address}\n")
    sysfs.write(sysfs.drivers_probe_path, f"{address}\n")
    assert current_driver(sysfs, address) == driver


# ------------------------------------------------------------------ the choice


def test_report_names_the_vfs_chosen_and_prepares_them(mgr: HostdevManager) -> None:
    report = mgr.allocate(VM1, 2)
    assert report.chosen == [X_VF0, X_VF1]
    assert [r.address for r in report.prepared] == report.chosen
    assert all(r.owner == VM1 and r.pf == X710 for r in report.prepared)
    assert (report.candidates, report.free, report.off_node) == (4, 4, [])
    assert [r.address for r in mgr.active()] == [X_VF0, X_VF1]
    assert {current_driver(mgr.sysfs, a) for a in report.chosen} == {"vfio-pci"}
    assert mgr.store.saves == 2  # the VF count change, then one save for the allocation


def test_numa_node_is_a_preference_filled_up_from_other_nodes(mgr: HostdevManager) -> None:
    first = mgr.allocate(VM1, 1, numa_node=1)
    assert (first.chosen, first.off_node) == ([CX_VF0], [])
    # One VF is left on node 1: it comes first, then the lowest PF's VFs make up the count.
    second = mgr.allocate(VM2, 3, numa_node=1)
    assert second.chosen == [CX_VF1, X_VF0, X_VF1]
    assert second.off_node == [X_VF0, X_VF1]


def test_without_preference_the_lowest_pf_and_vf_index_come_first(
        mgr: HostdevManager) -> None:
    assert mgr.allocate(VM1, 3).chosen == [X_VF0, X_VF1, CX_VF0]


def test_pf_is_a_filter(mgr: HostdevManager) -> None:
    assert mgr.allocate(VM1, 2, pf="86:00.0").chosen == [CX_VF0, CX_VF1]
    with pytest.raises(NotEnoughFreeVfs, match="0 of 2 candidate VFs are free"):
        mgr.allocate(VM1, 1, pf=CX4, numa_node=1)
    # No VF of another PF stands in, even on the NUMA node asked for.
    before = _where(mgr)
    with pytest.raises(NotEnoughFreeVfs) as info:
        mgr.allocate(VM2, 1, pf=X710_PORT1, numa_node=0)
    assert str(info.value) == (
        "cannot allocate 1 VF of PF 0000:3d:00.1 for driver qemu, domain vm2: no VF on this"
        " host matches; PF 0000:3d:00.1 has no VFs enabled: enable some with"
        " 'hostdev sriov 0000:3d:00.1 N'")
    assert _where(mgr) == before


def test_vendor_device_is_a_filter(mgr: HostdevManager) -> None:
    report = mgr.allocate(VM1, 1, vendor_device="15B3:1014")
    assert report.chosen == [CX_VF0] and report.candidates == 2
    with pytest.raises(NotEnoughFreeVfs, match="cannot allocate 1 VF with id 1234:5678 .*"
                                               "no VF on this host matches$"):
        mgr.allocate(VM1, 1, vendor_device="1234:5678")


def test_pci_stub_and_auto(mgr: HostdevManager) -> None:
    report = mgr.allocate(VM1, 1, stub_driver="pci-stub")
    assert report.prepared[0].stub_driver == "pci-stub"
    assert current_driver(mgr.sysfs, report.chosen[0]) == "pci-stub"
    report = mgr.allocate(VM2, 1, stub_driver="auto")
    assert report.prepared[0].stub_driver == "vfio-pci"  # no variant driver claims it


# ------------------------------------------------------------- what is skipped


def test_busy_vfs_are_skipped_and_the_error_says_why(fake_kernel: FakeKernel,
                                                     mgr: HostdevManager) -> None:
    mgr.allocate(VM2, 1, pf=CX4)                                   # CX_VF0: assigned
    mgr.node_detach(CX_VF1)                                        # CX_VF1: inactive list
    _to_driver(mgr, X_VF0, "vfio-pci")                             # X_VF0: held by QEMU
    holder = fake_kernel.hold_vfio(X_VF0, pid=4242, comm="qemu-kvm")
    fake_kernel.add_netdev(X_VF1, "enp61s2")                       # X_VF1: routed interface
    fake_kernel.set_link_up("enp61s2")
    fake_kernel.add_address("enp61s2", "192.0.2.7/24")
    before, lists, writes = _where(mgr), mgr.lists(), len(fake_kernel.writes)
    with pytest.raises(NotEnoughFreeVfs) as info:
        mgr.allocate(VM1, 1)
    err = info.value
    assert str(err) == (
        "cannot allocate 1 VF for driver qemu, domain vm1: 0 of 4 candidate VFs are free;"
        " not free: 1 held by a VFIO user (0000:3d:02.0); 1 used by the host"
        " (0000:3d:02.1); 1 assigned (0000:86:00.2); 1 detached (inactive list)"
        " (0000:86:00.3)")
    assert (err.requested, err.candidates, err.free) == (1, 4, [])
    assert err.not_free[CX_VF0] == "assigned: qemu/vm2"
    assert err.not_free[X_VF0].startswith("held by a VFIO user: qemu-kvm (pid 4242")
    assert "network interface enp61s2" in err.not_free[X_VF1]
    assert err.exit_code == 1
    assert pickle.loads(pickle.dumps(err)).not_free == err.not_free
    assert fake_kernel.writes[writes:] == [] and _where(mgr) == before
    assert mgr.lists() == lists
    # Once QEMU lets go, the VF it held (untracked on vfio-pci) is free again.
    holder.release()
    report = mgr.allocate(VM1, 1)
    assert report.chosen == [X_VF0] and report.free == 1


def test_vf_on_a_user_space_io_driver_is_skipped(fake_kernel: FakeKernel,
                                                 mgr: HostdevManager) -> None:
    fake_kernel.add_driver("uio_pci_generic")
    _to_driver(mgr, X_VF0, "uio_pci_generic")
    assert mgr.allocate(VM1, 1, pf=X710).chosen == [X_VF1]
    with pytest.raises(NotEnoughFreeVfs, match=r"1 on a user-space I/O driver \(0000:3d:02.0\)"):
        mgr.allocate(VM2, 1, pf=X710)


def test_vfs_without_an_iommu_group_only_for_pci_stub(fake_kernel: FakeKernel) -> None:
    fake_kernel.add_driver("i40e", ids=[(0x8086, 0x1572)], sriov=True)
    fake_kernel.add_driver("iavf", ids=[(0x8086, 0x154C)])
    fake_kernel.add_driver("vfio-pci")
    fake_kernel.add_driver("pci-stub")
    fake_kernel.add_device("0000:01:00.0", vendor=0x8086, device=0x1572,
                           class_code=0x020000, sriov_totalvfs=4, vf_device=0x154C,
                           sriov_numvfs=2)
    mgr = _manager()
    with pytest.raises(NotEnoughFreeVfs, match=r"2 no IOMMU group \(0000:01:00.1, 0000:01:00.2"):
        mgr.allocate(VM1, 1)
    assert mgr.allocate(VM1, 2, stub_driver="pci-stub").chosen == [
        PciAddress.parse("0000:01:00.1"), PciAddress.parse("0000:01:00.2")]


def test_no_vf_at_all(fake_kernel: FakeKernel) -> None:
    fake_kernel.load_fixture("two-socket-server")
    mgr = _manager()
    mgr.set_num_vfs(X710, 0)
    with pytest.raises(NotEnoughFreeVfs, match="no VF on this host matches; no PF has VFs"
                                               " enabled: enable some with 'hostdev sriov"):
        mgr.allocate(VM1, 1)


# ------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"count": 0}, "VF count must be a whole number of at least 1, not 0"),
    ({"count": True}, "VF count must be"),
    ({"count": "2"}, "VF count must be"),
    ({"count": 1, "numa_node": -1}, "NUMA node must be a whole number >= 0, not -1"),
    ({"count": 1, "numa_node": 1.0}, "NUMA node must be"),
    ({"count": 1, "vendor_device": "8086"}, "invalid id '8086': expected VVVV:DDDD"),
    ({"count": 1, "vendor_device": "8086:154c:0"}, "expected VVVV:DDDD"),
    ({"count": 1, "pf": "zz:00.0"}, "zz:00.0"),
    ({"count": 1, "pf": GPU}, "0000:5e:00.0 is not an SR-IOV PF"),
    ({"count": 1, "stub_driver": "../x"}, "driver"),
])
def test_bad_input_changes_nothing(fake_kernel: FakeKernel, mgr: HostdevManager,
                                   kwargs: dict[str, object], match: str) -> None:
    before, writes, saves = _where(mgr), len(fake_kernel.writes), mgr.store.saves
    with pytest.raises(BadInput, match=match) as info:
        mgr.allocate(VM1, **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    assert fake_kernel.writes[writes:] == [] and _where(mgr) == before
    assert mgr.store.saves == saves


def test_missing_pf(mgr: HostdevManager) -> None:
    with pytest.raises(DeviceNotFound, match="0000:99:00.0 not found"):
        mgr.allocate(VM1, 1, pf="99:00.0")


# ---------------------------------------------------------- all or nothing


@pytest.mark.parametrize("err", [errno.EIO, errno.EBUSY])
def test_a_write_failing_anywhere_rolls_everything_back(fake_kernel: FakeKernel,
                                                        mgr: HostdevManager, err: int) -> None:
    before = _where(mgr)
    total = fake_kernel.count_writes(lambda: mgr.allocate(VM1, 3))
    assert total >= 9  # three VFs: override, unbind, probe each
    mgr.reattach(VM1, [X_VF0, X_VF1, CX_VF0])
    assert _where(mgr) == before
    for k in range(1, total + 1):
        hook = fake_kernel.watch_writes(
            lambda path, address: fake_kernel.fail_write(path, err, times=1), at=k)
        with hook as watch, pytest.raises(HostdevError):
            mgr.allocate(VM1, 3)
        assert len(watch.seen) >= k, f"write {k} was never reached"
        assert _where(mgr) == before, f"a device moved after failing write {k}"
        assert mgr.active() == [] and mgr.inactive() == [], f"lists after write {k}"


def test_two_allocations_never_share_a_vf(mgr: HostdevManager) -> None:
    """Each allocation chooses under the state lock, from the lists as the last one
    left them, so a second manager (another process) never picks the same VF."""
    other = _manager()
    first = mgr.allocate(VM1, 2)
    second = other.allocate(VM2, 2)
    assert set(first.chosen).isdisjoint(second.chosen)
    assert len(first.chosen + second.chosen) == 4
    with pytest.raises(NotEnoughFreeVfs, match="0 of 4 candidate VFs are free; not free:"
                                               r" 4 assigned \(0000:3d:02.0, 0000:3d:02.1,"
                                               r" 0000:86:00.2, 1 more\)"):
        mgr.allocate(VM1, 1)
    # Given back, they are free for the next one.
    mgr.reattach(VM1, first.chosen)
    assert other.allocate(VM2, 2).chosen == first.chosen


# ------------------------------------------------------- with network settings


def test_a_network_configuration_takes_only_vfs_of_a_pf_with_an_interface(
        mgr: HostdevManager, fake_kernel: FakeKernel) -> None:
    fake_kernel.add_netdev(CX4, "ens2f0")  # the X710 (first by address) has none
    report = mgr.allocate(VM1, 2, net=VfNetConfig(vlan=100, trust=True))
    assert report.chosen == [CX_VF0, CX_VF1]
    assert [fake_kernel.vf_net(CX4, i)["vlan"] for i in (0, 1)] == [100, 100]
    assert all(r.net_saved is not None and r.net_saved.vlan == 0 for r in mgr.active())
    mgr.reattach(VM1, report.chosen)
    assert [fake_kernel.vf_net(CX4, i)["vlan"] for i in (0, 1)] == [0, 0]
    assert [fake_kernel.vf_net(CX4, i)["trust"] for i in (0, 1)] == [False, False]


def test_without_a_nic_pf_the_error_says_why_each_vf_is_not_free(
        mgr: HostdevManager) -> None:
    before = _where(mgr)
    with pytest.raises(NotEnoughFreeVfs) as info:
        mgr.allocate(VM1, 1, net=VfNetConfig(vlan=5))
    assert info.value.free == [] and "no network interface on its PF" in str(info.value)
    assert _where(mgr) == before and mgr.active() == []


def test_a_mac_is_for_one_vf_only(mgr: HostdevManager, fake_kernel: FakeKernel) -> None:
    fake_kernel.add_netdev(CX4, "ens2f0")
    before = _where(mgr)
    with pytest.raises(BadInput, match="a MAC address names one VF"):
        mgr.allocate(VM1, 2, net=VfNetConfig(mac="52:54:00:00:00:01"))
    assert _where(mgr) == before
    report = mgr.allocate(VM1, 1, net=VfNetConfig(mac="52:54:00:00:00:01"))
    assert fake_kernel.vf_net(CX4, 0)["mac"] == "52:54:00:00:00:01"
    assert report.chosen == [CX_VF0]


def test_a_mac_another_vf_of_the_pf_carries_is_refused_before_any_change(
        mgr: HostdevManager, fake_kernel: FakeKernel) -> None:
    fake_kernel.add_netdev(CX4, "ens2f0")
    fake_kernel.set_vf_net(CX4, 1, mac="52:54:00:00:00:01")  # VF 1 has it already
    before = (_where(mgr), [fake_kernel.vf_net(CX4, i) for i in (0, 1)], len(fake_kernel.writes))
    with pytest.raises(BadInput, match=f"already the MAC of VF 1 \\({CX_VF1}\\)"):
        mgr.allocate(VM1, 1, net=VfNetConfig(mac="52:54:00:00:00:01"))
    after = (_where(mgr), [fake_kernel.vf_net(CX4, i) for i in (0, 1)], len(fake_kernel.writes))
    assert after == before and mgr.active() == [] and mgr.inactive() == []


def test_a_pf_carrying_only_representors_gives_no_vf_a_network_configuration(
        mgr: HostdevManager, fake_kernel: FakeKernel) -> None:
    # Switchdev mode with the uplink gone (another network namespace): only the
    # representors of the CX4's VFs are left under it.
    fake_kernel.add_netdev(CX4, "eth0", phys_port_name="pf0vf0")
    fake_kernel.add_netdev(CX4, "eth1", phys_port_name="pf0vf1")
    before = _where(mgr)
    with pytest.raises(NotEnoughFreeVfs) as info:
        mgr.allocate(VM1, 1, net=VfNetConfig(vlan=5))
    assert "no network interface on its PF" in str(info.value)
    assert _where(mgr) == before and mgr.active() == []
    fake_kernel.add_netdev(CX4, "ens2f0np0", phys_port_name="p0")  # the uplink is back
    assert mgr.allocate(VM1, 1, net=VfNetConfig(vlan=5)).chosen == [CX_VF0]
    assert fake_kernel.vf_net(CX4, 0)["vlan"] == 5
