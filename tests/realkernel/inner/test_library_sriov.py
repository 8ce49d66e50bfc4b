"""The library's records when VFs vanish and come back under ``sriov_numvfs`` changes.

(f) numvfs 0 under a VF tracked inactive: prune_missing reports the record;
(g) numvfs back up: the new VF at the old address is not taken for the old record.
VF counts are written to sysfs directly (the library's set_num_vfs is not used here).
"""

from __future__ import annotations

import os

import pytest

from hostdev.manager import HostdevManager
from hostdev.records import HostdevSpec, Owner

from . import guest
from .guest import DEV_VFIO, dev
from .observing import Observer

pytestmark = pytest.mark.realkernel


def test_numvfs_zero_then_prune(pf: str, manager: HostdevManager, observe: Observer) -> None:
    """(f) A VF detached by node_detach vanishes with numvfs 0; prune_missing drops it."""
    vfs = guest.enable_vfs(2, autoprobe=False)
    manager.node_detach(vfs[0])
    group = str(guest.group_of(vfs[0]))
    assert guest.driver_of(vfs[0]) == "vfio-pci" and (DEV_VFIO / group).exists()
    [record] = manager.inactive()
    result, seconds = guest.timed_write(dev(pf) / "sriov_numvfs", "0")
    assert result == "ok"
    observe.record("numvfs 0 under an idle vfio-pci VF took (s)", round(seconds, 2))
    assert not dev(vfs[0]).exists() and not (DEV_VFIO / group).exists()
    assert manager.inactive() == [record], "the record went away by itself"
    pruned = manager.prune_missing()
    assert pruned == [record]
    assert manager.inactive() == [] and manager.active() == []
    assert manager.prune_missing() == []


def test_recreated_vf_is_not_the_old_record(pf: str, manager: HostdevManager,
                                            observe: Observer) -> None:
    """(g) node_detach VF 0, numvfs 0 then 2: a new VF sits at the old address (same ids,
    PF and index, and here the same group number). The old record is stale: prune_missing
    drops it, and the new VF is left as the kernel made it."""
    vfs = guest.enable_vfs(2, autoprobe=False)
    vf = vfs[0]
    manager.node_detach(vf)
    [old] = manager.inactive()
    old_group = guest.group_of(vf)
    guest.must(dev(pf) / "sriov_numvfs", "0")
    assert guest.enable_vfs(2, autoprobe=False) == vfs
    new_inode = os.stat(dev(vf)).st_ino
    observe.record("VF 0 group and directory inode before/after re-creation",
                   {"group": [old_group, guest.group_of(vf)],
                    "inode": [old.generation, new_inode]})
    assert new_inode != old.generation, "kernfs reused the inode: identity check is blind"
    assert (guest.driver_of(vf), guest.override_of(vf)) == (None, "(null)")
    assert manager.inactive() == [old], "the stale record went away by itself"

    pruned = manager.prune_missing()
    assert pruned == [old]
    assert manager.inactive() == [] and manager.active() == []
    assert (guest.driver_of(vf), guest.override_of(vf)) == (None, "(null)"), "new VF touched"

    # The new VF is a fresh device for the library: it can be given to an owner.
    owner = Owner(driver="qemu", domain="vm-new")
    report = manager.prepare(owner, [HostdevSpec(address=vf)])
    assert [r.generation for r in report.prepared] == [new_inode]
    assert guest.driver_of(vf) == "vfio-pci"
    back = manager.reattach(owner, [vf])
    assert [str(a) for a in back.reattached] == [vf] and back.failed == []
    assert (guest.driver_of(vf), guest.override_of(vf)) == (None, "(null)")


def test_stale_record_is_pruned_by_node_reattach(pf: str, manager: HostdevManager) -> None:
    """(g, through a verb) node_reattach of the re-created VF prunes the old record and
    does not bind the new VF anywhere (autoprobe 0, no override)."""
    vf = guest.enable_vfs(1, autoprobe=False)[0]
    manager.node_detach(vf)
    [old] = manager.inactive()
    guest.must(dev(pf) / "sriov_numvfs", "0")
    guest.enable_vfs(1, autoprobe=False)
    result = manager.node_reattach(vf)
    assert result.pruned == [old]
    assert result.driver is None and guest.driver_of(vf) is None
    assert guest.override_of(vf) == "(null)"
    assert manager.inactive() == []
