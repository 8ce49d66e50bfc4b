"""VFs created straight onto a stub: ``set_num_vfs(..., stub_driver=...)`` turns the PF's
``sriov_drivers_autoprobe`` off while they appear, so no host VF driver ever binds them."""

from __future__ import annotations

import errno

import pytest

from hostdev.errors import BadInput, HostdevError, NotAssignable
from hostdev.linux import binding
from hostdev.manager import HostdevManager
from hostdev.testing import SimulatedCrash
from tests.smallhost import NIC, PF, Host, vf_addresses

STATE_DIR = "/run/hostdev"


def _autoprobe(host: Host) -> bool:
    return binding.vf_autoprobe(host.mgr.sysfs, PF)


def test_new_vfs_go_straight_to_the_stub(host: Host) -> None:
    report = host.mgr.set_num_vfs(PF, 3, stub_driver="vfio-pci")
    vfs = host.vfs_now()
    assert len(vfs) == 3 and report.vfs == vfs
    assert [(r.address, r.driver, r.action) for r in report.detached] == [
        (vf, "vfio-pci", "created on vfio-pci") for vf in vfs]
    assert {vf: host.driver(vf) for vf in vfs} == dict.fromkeys(vfs, "vfio-pci")
    # Never bound to the host's VF driver on the way (no interface for a network
    # manager to configure, no probe to undo).
    assert [e for e in host.kernel.uevents if e.action == "bind" and e.driver == "ixgbevf"] == []
    records = {r.address: r for r in host.mgr.inactive()}
    assert sorted(records) == vfs
    assert all(r.original_driver is None and r.unbind_from_stub for r in records.values())
    assert _autoprobe(host) is True, "the PF's setting is back as it was"
    # Given back, a VF goes to the host's VF driver as any new VF would.
    assert host.mgr.node_reattach(vfs[0]).driver == "ixgbevf"


def test_existing_vfs_stay_where_they_are(host: Host) -> None:
    host.mgr.set_num_vfs(PF, 2)
    report = host.mgr.set_num_vfs(PF, 2, stub_driver="vfio-pci")
    assert report.detached == []
    assert [host.driver(vf) for vf in host.vfs_now()] == ["ixgbevf", "ixgbevf"]


def test_autoprobe_left_off_by_the_administrator_is_not_written(host: Host) -> None:
    binding.set_vf_autoprobe(host.mgr.sysfs, PF, False)
    writes = host.kernel.count_writes(lambda: host.mgr.set_num_vfs(PF, 2, stub_driver="vfio-pci"))
    assert writes == 1 + 2 * 2  # the count, then each VF's override and bind
    assert _autoprobe(host) is False
    assert [host.driver(vf) for vf in host.vfs_now()] == ["vfio-pci", "vfio-pci"]


def test_a_failed_move_undoes_everything(host: Host) -> None:
    """The second VF cannot be moved: the first goes back, the VFs go, autoprobe is on."""
    host.kernel.fail_write(f"*{vf_addresses(2)[1]}/driver_override", errno.EIO)
    with pytest.raises(HostdevError):
        host.mgr.set_num_vfs(PF, 2, stub_driver="vfio-pci")
    assert host.vfs_now() == [] and host.mgr.inactive() == []
    assert _autoprobe(host) is True


def test_a_failure_going_back_to_a_nonzero_count_gives_host_drivers(host: Host) -> None:
    """From 2 VFs to 3 through 0; the new third VF cannot be moved: the two VFs come
    back on the host's VF driver (autoprobe is back on before the count)."""
    host.mgr.set_num_vfs(PF, 2)
    host.kernel.fail_write(f"*{vf_addresses(3)[2]}/driver_override", errno.EIO)
    with pytest.raises(HostdevError):
        host.mgr.set_num_vfs(PF, 3, stub_driver="vfio-pci")
    assert [host.driver(vf) for vf in host.vfs_now()] == ["ixgbevf", "ixgbevf"]
    assert host.mgr.inactive() == [] and _autoprobe(host) is True


@pytest.mark.parametrize("start", [0, 2])
@pytest.mark.parametrize("after", [1, 2, 3, 4, 5, 6])
def test_a_crash_is_put_back_by_the_next_manager(host: Host, start: int, after: int) -> None:
    """A crash after each write (autoprobe off, the count through 0, each VF's override
    and bind): the next manager puts the count and the setting back, and VFs that
    come back get the host's VF driver."""
    if start:
        host.mgr.set_num_vfs(PF, start)
    host.kernel.crash_after_writes(after)
    with pytest.raises(SimulatedCrash):
        host.mgr.set_num_vfs(PF, 3, stub_driver="vfio-pci")
    report = HostdevManager(root="/", state_dir=STATE_DIR).reconcile()
    assert report.failed == []
    assert [host.driver(vf) for vf in host.vfs_now()] == ["ixgbevf"] * start
    assert _autoprobe(host) is True
    assert HostdevManager(root="/", state_dir=STATE_DIR).inactive() == []


def test_refused_before_any_write(host: Host) -> None:
    for bad in ("../vfio-pci", "vfio/pci", "vfio\0pci", ""):
        with pytest.raises(BadInput):
            host.mgr.set_num_vfs(PF, 2, stub_driver=bad)
    with pytest.raises(NotAssignable):
        host.mgr.set_num_vfs(NIC, 2, stub_driver="vfio-pci")
    with pytest.raises(HostdevError, match="not loaded"):
        host.mgr.set_num_vfs(PF, 2, stub_driver="no-such-stub")
    assert host.kernel.writes == [] and host.vfs_now() == []


def test_persistent_wishes_the_count_and_each_vf_detached(host: Host) -> None:
    host.mgr.set_num_vfs(PF, 2, stub_driver="vfio-pci", persistent=True)
    wishes = host.mgr.wishes()
    assert [(w.device.address, w.num_vfs) for w in wishes.sriov] == [(PF, 2)]
    assert sorted((w.device.address, w.stub_driver) for w in wishes.detach) == [
        (vf, "vfio-pci") for vf in host.vfs_now()]
