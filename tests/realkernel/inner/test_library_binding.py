"""The library moving a real VF between drivers (node verbs, prepare/reattach, a VFIO user).

(c) node_detach to vfio-pci and node_reattach; (d) prepare and reattach for an owner;
(e) a process holding the VF's VFIO device makes reattach report DeviceBusy without the
kernel ever blocking; once it lets go, reattach gives the VF back.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from hostdev.errors import DeviceBusy
from hostdev.linux.vfio import Holder
from hostdev.manager import HostdevManager
from hostdev.reports import ReattachReport
from hostdev.state.records import HostdevSpec, Owner

from . import guest
from .guest import DEV_VFIO, dev
from .observing import Observer

pytestmark = pytest.mark.realkernel

HOLDER = Path(__file__).with_name("vfio_holder.py")
OWNER = Owner(driver="qemu", domain="vm-real")
#: What the kernel logs when an unbind waits for a VFIO user (docs/kernel-model.md §4.4).
BLOCKED = "blocked until released"
#: A library call that takes longer than this is taken as hung (in the kernel or elsewhere).
WATCHDOG = 60.0

T = TypeVar("T")


def _blocked_lines() -> int:
    return sum(BLOCKED in line for line in guest.kmsg_lines())


def _within(seconds: float, call: Callable[[], T], on_hang: Callable[[], object]) -> T:
    return guest.within(seconds, call, on_hang, what="library call")


def _settled_driver(addr: str) -> str | None:
    """Wait until nvme has given up on an unprovisioned VF (it binds, then drops it)."""
    if guest.driver_of(addr) == "nvme":
        guest.wait_unbound([addr], 20.0)
    return guest.driver_of(addr)


def test_node_detach_and_reattach_vf(pf: str, manager: HostdevManager,
                                     observe: Observer) -> None:
    """(c) node_detach puts the VF on vfio-pci (tracked inactive); node_reattach gives it
    back to whatever the kernel picks; the library's answers agree with sysfs."""
    vf = guest.enable_vfs(1, autoprobe=True)[0]
    assert guest.wait_unbound([vf], 20.0), "nvme did not drop the unprovisioned VF"
    group = guest.group_of(vf)
    node = DEV_VFIO / str(group)
    inode = os.stat(dev(vf)).st_ino

    result = manager.node_detach(vf)
    assert (result.driver, guest.driver_of(vf)) == ("vfio-pci", "vfio-pci")
    assert result.action == "detached to vfio-pci"
    assert node.exists(), f"{node} did not appear"
    assert (dev(vf) / "vfio-dev").is_dir()
    assert guest.override_of(vf) == "vfio-pci"
    [record] = manager.inactive()
    assert str(record.address) == vf and record.owner is None and not record.managed
    assert (record.original_driver, record.original_override) == (None, None)
    assert record.unbind_from_stub and str(record.pf) == pf and record.vf_index == 0
    assert record.identity == inode
    assert manager.active() == [] and manager.used_by(vf) is None

    again = manager.node_detach(vf)
    assert again.action == "already on vfio-pci" and guest.driver_of(vf) == "vfio-pci"

    result = manager.node_reattach(vf)
    right_after = guest.driver_of(vf)
    observe.record("node_reattach of a VF: library says / sysfs right after",
                   [result.driver, right_after])
    # nvme (autoprobe 1) takes the VF back, then gives up on it ~0.5 s later.
    assert result.driver in ("nvme", None)
    assert right_after == result.driver or (result.driver, right_after) == ("nvme", None)
    assert result.action == f"reattached to {result.driver or 'no driver'}"
    assert not node.exists(), f"{node} still there after node_reattach"
    assert not (dev(vf) / "vfio-dev").exists()
    assert guest.override_of(vf) == "(null)"
    assert manager.inactive() == [] and manager.active() == []
    observe.record("VF driver once settled after node_reattach", _settled_driver(vf))


def test_prepare_and_reattach_for_owner(pf: str, manager: HostdevManager,
                                        observe: Observer) -> None:
    """(d) prepare: VF on vfio-pci and active for the owner; reattach: back, lists empty."""
    vf = guest.enable_vfs(1, autoprobe=False)[0]
    node = DEV_VFIO / str(guest.group_of(vf))
    report = manager.prepare(OWNER, [HostdevSpec(address=vf, managed=True,
                                                 stub_driver="vfio-pci")])
    assert [str(r.address) for r in report.prepared] == [vf] and report.pruned == []
    assert report.prepared[0].owner == OWNER
    assert guest.driver_of(vf) == "vfio-pci" and node.exists()
    assert [str(r.address) for r in manager.active()] == [vf] and manager.inactive() == []
    assert manager.used_by(vf) == OWNER
    assert manager.holders(vf) == []
    back = manager.reattach(OWNER, [vf])
    observe.record("reattach report of an idle VF", back.model_dump(mode="json"))
    assert [str(a) for a in back.reattached] == [vf]
    assert (back.failed, back.kept_on_stub, back.pruned, back.warnings) == ([], [], [], [])
    # autoprobe 0 and no override: nothing may bind the VF, as before prepare.
    assert guest.driver_of(vf) is None and guest.override_of(vf) == "(null)"
    assert not node.exists()
    assert manager.active() == [] and manager.inactive() == [] and manager.used_by(vf) is None


def _start_holder(vf: str, group: str) -> tuple[subprocess.Popen[bytes], guest.LineReader]:
    proc = subprocess.Popen([sys.executable, str(HOLDER), vf, group], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, bufsize=0)
    assert proc.stdout is not None
    return proc, guest.LineReader(proc.stdout)


def _stop_holder(proc: subprocess.Popen[bytes], reader: guest.LineReader) -> str | None:
    """Tell the holder to close its fds and exit; return its last line."""
    line = None
    with contextlib.suppress(OSError):
        assert proc.stdin is not None
        proc.stdin.write(b"close\n")
        proc.stdin.flush()
        line = reader.readline(30.0)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
    return line


def test_reattach_refuses_while_vfio_user_holds(pf: str, manager: HostdevManager,
                                                observe: Observer) -> None:
    """(e) A real holder (container, group, type-1 IOMMU, device fd): reattach reports the
    VF failed with DeviceBusy naming the holder, never blocks, and keeps it active; after
    the holder exits, reattach gives the VF back."""
    vf = guest.enable_vfs(1, autoprobe=False)[0]
    group = str(guest.group_of(vf))
    manager.prepare(OWNER, [HostdevSpec(address=vf)])
    assert guest.driver_of(vf) == "vfio-pci"
    blocked_before = _blocked_lines()
    proc, reader = _start_holder(vf, group)
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            _stop_holder(proc, reader)

    try:
        line = reader.readline(60.0)
        assert line is not None, "the VFIO holder did not report"
        report = json.loads(line)
        assert report.get("error") is None, f"holder failed: {report}"
        assert "device" in report, "holder has no device fd"
        comm = Path(f"/proc/{proc.pid}/comm").read_text().strip()

        found = manager.holders(vf)
        assert [(h.pid, h.comm) for h in found] == [(proc.pid, comm)]
        observe.record("library's holder entry (6.1: no fdinfo syspath)", found[0].via)
        with pytest.raises(DeviceBusy) as busy:
            manager.wait_released(vf, 0.2)
        assert [(h.pid, h.comm) for h in busy.value.holders
                if isinstance(h, Holder)] == [(proc.pid, comm)]

        started = time.monotonic()
        first: ReattachReport = _within(
            WATCHDOG, lambda: manager.reattach(OWNER, [vf], release_timeout=2.0), release)
        took = time.monotonic() - started
        observe.record("reattach of a held VF", {"seconds": round(took, 2),
                                                "report": first.model_dump(mode="json")})
        assert first.reattached == [] and first.pruned == []
        [failure] = first.failed
        assert str(failure.address) == vf
        assert "still held by a VFIO user" in failure.reason
        assert f"pid {proc.pid}" in failure.reason and comm in failure.reason
        assert took >= 1.5, f"reattach gave up after {took:.2f} s, before release_timeout"
        assert guest.driver_of(vf) == "vfio-pci", "the held VF left vfio-pci"
        assert manager.used_by(vf) == OWNER, (
            f"the held VF is no longer active: {manager.lists().to_file()}")
        assert (DEV_VFIO / group).exists()
        assert proc.poll() is None, "the holder died"
    finally:
        release()
    assert _blocked_lines() == blocked_before, "the kernel logged a blocked unbind"

    second: ReattachReport = _within(WATCHDOG, lambda: manager.reattach(OWNER, [vf]),
                                     lambda: None)
    assert [str(a) for a in second.reattached] == [vf] and second.failed == []
    assert guest.driver_of(vf) != "vfio-pci" and guest.override_of(vf) == "(null)"
    assert not (DEV_VFIO / group).exists()
    assert manager.active() == [] and manager.inactive() == []
    assert _blocked_lines() == blocked_before, "the kernel logged a blocked unbind"
