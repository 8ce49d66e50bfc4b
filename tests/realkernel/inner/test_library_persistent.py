"""Persistent wishes on the real kernel: a VF count and a VF kept on vfio-pci, applied
again after a simulated reboot (no VFs, an empty state directory, a new manager)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hostdev.manager import HostdevManager
from hostdev.state.wishes import Wishes

from . import guest
from .guest import dev
from .observing import Observer

pytestmark = pytest.mark.realkernel


def _manager(tmp_path: Path) -> HostdevManager:
    state = tmp_path / "state"
    if not str(state).startswith("/tmp/"):
        raise RuntimeError(f"state directory {state} is not on the guest's /tmp tmpfs")
    return HostdevManager(root="/", state_dir=state, config_dir=tmp_path / "etc-hostdev",
                          lock_timeout=5.0, release_timeout=2.0)


def test_persistent_vf_count_and_detach_survive_a_reboot(
        pf: str, manager: HostdevManager, tmp_path: Path, observe: Observer) -> None:
    """set_num_vfs and node_detach with persistent=True; VFs to 0 and the state gone;
    apply_persistent() re-creates the VFs, then puts the VF back on vfio-pci, tracked
    inactive as node_detach tracks it; a second run changes nothing."""
    with guest.hard_limit(180):
        # nvme would grab each new VF and give up on it after a while; the wishes
        # are about hostdev's part, so the VFs are created unprobed.
        guest.must(dev(pf) / "sriov_drivers_autoprobe", "0")
        mgr = _manager(tmp_path)
        report = guest.within(60, lambda: mgr.set_num_vfs(pf, 2, persistent=True),
                              what="set_num_vfs")
        vf = str(report.vfs[1])
        guest.within(60, lambda: mgr.node_detach(vf, persistent=True), what="node_detach")
        assert guest.driver_of(vf) == "vfio-pci"
        [record] = mgr.inactive()
        wishes = mgr.wishes()
        assert [(str(w.device.address), w.num_vfs) for w in wishes.sriov] == [(pf, 2)]
        assert [(str(w.device.address), w.stub_driver) for w in wishes.detach] == \
            [(vf, "vfio-pci")]
        observe.record("persistent wish identities (serial from VPD, if any)",
                       [w.device.model_dump(mode="json") for w in wishes.sriov]
                       + [w.device.model_dump(mode="json") for w in wishes.detach])

        # The reboot: the VF leaves vfio-pci with the VFs, the state directory is emptied.
        guest.must(dev(pf) / "sriov_numvfs", "0")
        assert guest.wait_until(lambda: not dev(vf).exists(), 10.0), "the VF did not vanish"
        shutil.rmtree(tmp_path / "state")
        mgr = _manager(tmp_path)
        assert mgr.inactive() == []

        applied = guest.within(60, mgr.apply_persistent, what="apply_persistent")
        assert applied.failed == [] and applied.missing == [], applied
        assert [(str(o.address), o.wish) for o in applied.done] == \
            [(pf, "2 VFs"), (vf, "on vfio-pci")]
        assert guest.read(dev(pf) / "sriov_numvfs") == "2\n"
        assert (guest.driver_of(vf), guest.override_of(vf)) == ("vfio-pci", "vfio-pci")
        [again] = mgr.inactive()
        assert again.identity != record.identity, "the VF is a new kernel object"
        assert again.model_copy(update={"identity": None}) == \
            record.model_copy(update={"identity": None})

        second = guest.within(60, mgr.apply_persistent, what="second apply_persistent")
        assert not second.changed and second.ok
        assert [str(o.address) for o in second.already] == [pf, vf]

        # Dropping the wishes leaves the configuration empty and the PF as it was.
        guest.within(60, lambda: mgr.node_reattach(vf, persistent=True), what="node_reattach")
        guest.within(60, lambda: mgr.set_num_vfs(pf, 0, persistent=True), what="set_num_vfs 0")
        assert mgr.wishes() == Wishes()
        assert guest.read(dev(pf) / "sriov_numvfs") == "0\n"
