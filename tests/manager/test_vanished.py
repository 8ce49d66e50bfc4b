"""Devices that vanish (VF count changes, hot unplug) and VFs re-created at old addresses."""

from __future__ import annotations

import pytest

from hostdev.address import PciAddress
from hostdev.state.records import HostdevSpec
from tests.smallhost import NIC, VM1, VM2, Host


def test_vanished_vfs_pruned_by_reattach(host: Host) -> None:
    vfs = host.vfs(4)
    host.mgr.prepare(VM1, [*vfs, NIC])
    host.vfs(0)
    report = host.mgr.reattach(VM1, [*vfs, NIC])
    assert sorted(r.address for r in report.pruned) == sorted(vfs)
    assert report.reattached == [NIC] and report.ok
    assert host.mgr.active() == [] and host.mgr.inactive() == []
    # The next start is not blocked by stale "in use" entries.
    new = host.vfs(2)
    host.mgr.prepare(VM2, new)


def test_reattach_does_not_prune_other_owners(host: Host) -> None:
    vf0, vf1 = host.vfs(2)
    host.mgr.prepare(VM1, [vf0])
    host.mgr.prepare(VM2, [vf1])
    host.vfs(0)
    report = host.mgr.reattach(VM1, [vf0, vf1])
    assert [r.address for r in report.pruned] == [vf0]
    assert host.mgr.used_by(vf1) == VM2
    assert [r.address for r in host.mgr.prune_missing()] == [vf1]
    assert host.mgr.active() == []


def test_recreated_vf_is_not_the_old_record(host: Host) -> None:
    vf0, vf1 = host.vfs(2)
    host.mgr.prepare(VM1, [vf0])
    host.mgr.node_detach(vf1)
    host.vfs(2)  # 2 -> 0 -> 2: new VFs at the same addresses, back on ixgbevf
    assert host.where(vf0, vf1) == {vf0: ("ixgbevf", None), vf1: ("ixgbevf", None)}
    writes = len(host.kernel.writes)
    report = host.mgr.reattach(VM1, [vf0])
    assert [r.address for r in report.pruned] == [vf0] and report.reattached == []
    assert len(host.kernel.writes) == writes, "the new VF must not be rebound"
    result = host.mgr.node_reattach(vf1)
    assert [r.address for r in result.pruned] == [vf1]
    assert host.where(vf0, vf1) == {vf0: ("ixgbevf", None), vf1: ("ixgbevf", None)}
    assert host.mgr.inactive() == [] and host.mgr.active() == []


def test_prepare_drops_stale_record_and_takes_new_vf(host: Host) -> None:
    vf0, _ = host.vfs(2)
    host.mgr.node_detach(vf0)
    host.vfs(2)
    report = host.mgr.prepare(VM1, [HostdevSpec(address=vf0)])
    assert [r.address for r in report.pruned] == [vf0]
    assert report.prepared[0].original_driver == "ixgbevf"


def test_prune_missing_several_consecutive_vfs(host: Host) -> None:
    vfs = host.vfs(6)
    for vf in vfs:
        host.mgr.node_detach(vf)
    host.vfs(0)
    assert sorted(r.address for r in host.mgr.prune_missing()) == sorted(vfs)
    assert host.mgr.inactive() == []


def test_a_missing_device_reads_the_same_from_every_layer(host: Host) -> None:
    """The check before an operation, a snapshot and a kernel verb on a device that is
    gone all say it in the one wording of DeviceNotFound."""
    from hostdev.errors import DeviceNotFound
    from hostdev.linux.binding import current_driver
    from hostdev.linux.scan import read_device

    gone = PciAddress.parse("0000:05:00.0")
    seen = []
    for attempt in (lambda: host.mgr.node_detach(gone),
                    lambda: read_device(host.mgr.sysfs, gone),
                    lambda: current_driver(host.mgr.sysfs, gone)):
        with pytest.raises(DeviceNotFound) as caught:
            attempt()
        assert caught.value.address == gone
        seen.append(str(caught.value).replace(", cannot detach it", ""))
    assert seen == [str(DeviceNotFound.at(gone))] * 3
    assert "check the address with 'hostdev list'" in seen[0]
