"""Disk faults on the state directory: ENOSPC, EDQUOT and EIO at each step (temp
file write, fsync, rename) of each state-file and journal write of each
transaction of the fault suite's scenarios.

After every case: the error is one line; no temporary file is left; every device
that existed before is on the driver and override it had (the transaction's
kernel writes were undone, or none was made when the journal could not be
written; a reattach's give-backs, which have no undo step, are put back from the
journal); the lists are what they were; and the fault suite's invariants hold
(nothing moved and untracked, reconcile converges). The figures are printed at
the end.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from hostdev.errors import HostdevError, StateWriteFailed
from hostdev.manager import HostdevManager
from hostdev.state import files as statedir
from hostdev.state.journal import INTENT_NAME
from hostdev.testing import FakeKernel, SimulatedCrash
from tests.safety.test_fault_suite import (
    SCENARIOS,
    Scenario,
    _check_invariants,
    _fresh,
    _snapshot,
)
from tests.smallhost import NIC, NVME, VM1, build_host

STATE_DIR = "/run/hostdev"
#: Which errno each step of the atomic writer is made to fail with.
FAULTS = [("write", "ENOSPC"), ("write", "EDQUOT"), ("write", "EIO"), ("fsync", "EIO"),
          ("fsync", "ENOSPC"), ("rename", "EIO"), ("rename", "EDQUOT")]
FIGURES = {"cases": 0, "consistent": 0, "moved_untracked": 0, "moved_tracked": 0}
#: Transactions a failed save must leave with every device as it was: all of them
#: (steps without an undo, a reattach's give-backs, are put back from the journal).
UNDONE = {s.name for s in SCENARIOS}


def _count_saves(monkeypatch: pytest.MonkeyPatch, action: Callable[[], object]) -> list[str]:
    """The files written (by name) while ``action`` runs, in order."""
    written: list[str] = []

    def hook(step: str, path: Path) -> None:
        if step == "write":
            written.append(path.name)

    monkeypatch.setattr(statedir, "fault_hook", hook)
    try:
        action()
    finally:
        monkeypatch.setattr(statedir, "fault_hook", lambda step, path: None)
    return written


def _fail_at(monkeypatch: pytest.MonkeyPatch, k: int, step: str, err: int) -> None:
    """Make ``step`` of the k-th atomic write from now fail with ``err``."""
    seen = [0]

    def hook(at: str, path: Path) -> None:
        if at == "write":
            seen[0] += 1
        if seen[0] == k and at == step:
            raise OSError(err, os.strerror(err), str(path))

    monkeypatch.setattr(statedir, "fault_hook", hook)


def _outcome_of(mgr: HostdevManager) -> tuple[object, ...]:
    """Where every device is and what the lists hold, without inode numbers."""
    devices = {a: s[:2] for a, s in _snapshot(mgr).items()}
    lists = mgr.lists()
    return (devices, sorted((a, r.owner) for a, r in lists.active.items()),
            sorted(lists.inactive))


def _leftovers() -> list[str]:
    return sorted(n for n in os.listdir(STATE_DIR) if n.endswith(".tmp"))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_every_state_and_journal_write(fs: FakeFilesystem, monkeypatch: pytest.MonkeyPatch,
                                       scenario: Scenario) -> None:
    _, mgr, vfs = _fresh(fs, scenario)
    files = _count_saves(monkeypatch, lambda: scenario.action(mgr, vfs))
    assert files, f"{scenario.name}: no state or journal write"
    clean = _outcome_of(mgr)
    for k in range(1, len(files) + 1):
        for step, name in FAULTS:
            _, mgr, vfs = _fresh(fs, scenario)
            before = _snapshot(mgr)
            lists_before = mgr.lists()
            label = f"{scenario.name}/{files[k - 1]} write {k} of {len(files)}/{step} {name}"
            _fail_at(monkeypatch, k, step, getattr(errno, name))
            try:
                scenario.action(mgr, vfs)
            except HostdevError as exc:
                message = str(exc)
            else:
                # Only the journal entry of a helper write that returned in time may
                # fail harmlessly: the transaction then ends as a clean run does.
                monkeypatch.setattr(statedir, "fault_hook", lambda step, path: None)
                assert files[k - 1].startswith(f".{INTENT_NAME}"), f"{label}: no error"
                assert _outcome_of(mgr) == clean, f"{label}: no error, but not a clean run"
                assert _leftovers() == [], label
                FIGURES["cases"] += 1
                FIGURES["consistent"] += 1
                continue
            monkeypatch.setattr(statedir, "fault_hook", lambda step, path: None)
            assert "\n" not in message, label
            assert name in message, f"{label}: {message}"
            assert _leftovers() == [], label
            FIGURES["cases"] += 1
            now = _snapshot(mgr)
            moved = [a for a, (drv, ovr, gen) in now.items()
                     if a in before and before[a][2] == gen and before[a][:2] != (drv, ovr)]
            untracked = [a for a in moved if mgr.lists().find(a) is None]
            FIGURES["moved_untracked"] += len(untracked)
            FIGURES["moved_tracked"] += len(moved) - len(untracked)
            assert untracked == [], f"{label}: moved and untracked: {untracked}"
            if scenario.name in UNDONE:
                assert moved == [], f"{label}: not put back: {moved}"
            assert not os.path.exists(f"{STATE_DIR}/{INTENT_NAME}"), label
            assert mgr.lists() == lists_before, label
            _check_invariants(mgr, before, label)
            FIGURES["consistent"] += 1


def test_failed_save_and_failed_undo_keep_the_journal(fs: FakeFilesystem,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Disk full at the final save, and the undo of the move fails too: the lists
    cannot record the device, so the journal stays, and the next command puts
    the device back."""
    fs.reset()
    kernel = FakeKernel(fs)
    build_host(kernel)
    mgr = HostdevManager(root="/", state_dir=STATE_DIR, release_timeout=0)
    start = _snapshot(mgr)[NIC][:2]
    full = [False]

    def hook(step: str, path: Path) -> None:
        if path.name.startswith(".state.json") and step == "write" and not full[0]:
            full[0] = True  # disk full from now on; the rollback's unbind fails once
            kernel.fail_write("/sys/bus/pci/drivers/vfio-pci/unbind", errno.EIO, times=1)
        if full[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(statedir, "fault_hook", hook)
    with pytest.raises(StateWriteFailed) as caught:
        mgr.prepare(VM1, [NIC])
    message = str(caught.value)
    assert "\n" not in message
    assert "rollback incomplete" in message and "intent journal" in message
    assert _snapshot(mgr)[NIC][0] == "vfio-pci"  # could not be put back yet
    assert os.path.exists(f"{STATE_DIR}/{INTENT_NAME}")
    assert _leftovers() == []
    monkeypatch.setattr(statedir, "fault_hook", lambda step, path: None)  # space freed
    report = HostdevManager(root="/", state_dir=STATE_DIR, release_timeout=0).reconcile()
    assert any(str(NIC) in line and "back on" in line for line in report.recovered)
    assert _snapshot(mgr)[NIC][:2] == start
    assert not os.path.exists(f"{STATE_DIR}/{INTENT_NAME}")


def test_recovery_on_a_full_disk(fs: FakeFilesystem, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process died mid-prepare; the next one finds the disk full: it puts the device
    back, cannot save, says so in one line and keeps the journal; once there is space,
    the journal is dealt with and the lists are consistent."""
    fs.reset()
    kernel = FakeKernel(fs)
    build_host(kernel)
    mgr = HostdevManager(root="/", state_dir=STATE_DIR, release_timeout=0)
    start = _snapshot(mgr)
    total = kernel.count_writes(lambda: mgr.prepare(VM1, [NIC]))
    mgr.reattach(VM1, [NIC])
    assert _snapshot(mgr)[NIC][:2] == start[NIC][:2]
    kernel.crash_after_writes(total)  # dies with the NIC on vfio-pci, before the save
    with pytest.raises(SimulatedCrash):
        mgr.prepare(VM1, [NIC])
    assert _snapshot(mgr)[NIC][0] == "vfio-pci"
    assert os.path.exists(f"{STATE_DIR}/{INTENT_NAME}")

    def full(step: str, path: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(statedir, "fault_hook", full)
    # The put-back fails too, so recovery must record the device: the save that fails.
    kernel.fail_write("/sys/bus/pci/drivers/vfio-pci/unbind", errno.EIO, times=1)
    with pytest.raises(StateWriteFailed) as caught:
        HostdevManager(root="/", state_dir=STATE_DIR, release_timeout=0).reconcile()
    assert "\n" not in str(caught.value) and "ENOSPC" in str(caught.value)
    assert os.path.exists(f"{STATE_DIR}/{INTENT_NAME}")  # kept for the next try
    assert _leftovers() == []
    monkeypatch.setattr(statedir, "fault_hook", lambda step, path: None)
    after = HostdevManager(root="/", state_dir=STATE_DIR, release_timeout=0)
    after.reconcile()
    assert not os.path.exists(f"{STATE_DIR}/{INTENT_NAME}")
    assert {a: s[:2] for a, s in _snapshot(after).items()} == {a: s[:2] for a, s in start.items()}
    assert after.lists().find(NIC) is None


def test_real_full_disk(fs: FakeFilesystem) -> None:
    """A genuinely full file system (pyfakefs's size limit), not an injected errno."""
    fs.reset()
    kernel = FakeKernel(fs)
    build_host(kernel)
    mgr = HostdevManager(root="/", state_dir=STATE_DIR, release_timeout=0)
    mgr.node_detach(NIC)
    before = _snapshot(mgr)
    lists = mgr.lists()
    state_before = Path(STATE_DIR, "state.json").read_bytes()
    fs.add_mount_point(STATE_DIR + "-full", total_size=len(state_before) + 64)
    os.chmod(STATE_DIR + "-full", 0o700)
    full = HostdevManager(root="/", state_dir=STATE_DIR + "-full", release_timeout=0)
    with pytest.raises(StateWriteFailed, match="ENOSPC"):
        full.node_detach(NVME)
    assert _snapshot(mgr) == before
    assert [n for n in os.listdir(STATE_DIR + "-full") if n.endswith(".tmp")] == []
    assert mgr.lists() == lists


def test_reattach_whose_save_fails_is_put_back(fs: FakeFilesystem,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Disk full at the save that ends a reattach: the give-back is undone, so the
    record that stays active for the owner is true (the device is on its stub)."""
    fs.reset()
    kernel = FakeKernel(fs)
    build_host(kernel)
    mgr = HostdevManager(root="/", state_dir=STATE_DIR, release_timeout=0)
    mgr.prepare(VM1, [NIC])
    before = _snapshot(mgr)[NIC][:2]
    assert before[0] == "vfio-pci"

    def hook(step: str, path: Path) -> None:
        if path.name.startswith(".state.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(statedir, "fault_hook", hook)
    with pytest.raises(StateWriteFailed) as caught:
        mgr.reattach(VM1, [NIC])
    message = str(caught.value)
    assert "\n" not in message and "ENOSPC" in message
    assert f"put back: {NIC}: back on vfio-pci" in message, message
    monkeypatch.setattr(statedir, "fault_hook", lambda step, path: None)
    assert _snapshot(mgr)[NIC][:2] == before
    record = mgr.lists().active.get(NIC)
    assert record is not None and record.owner == VM1
    assert not os.path.exists(f"{STATE_DIR}/{INTENT_NAME}") and _leftovers() == []
    assert not mgr.reconcile().changed
    mgr.reattach(VM1, [NIC])  # with space again, the reattach goes through
    assert _snapshot(mgr)[NIC][0] == "e1000e" and mgr.lists().find(NIC) is None
