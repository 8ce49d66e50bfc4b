"""The library against VFIO users it cannot see in /proc, or that keep only a mapping.

(a) hostdev in its own PID namespace (``unshare --pid --fork --mount-proc``) while a
process outside holds a VF's device fd: node_reattach is refused with DeviceBusy
naming a user outside its view, returns (no hang), and the VF stays on vfio-pci.
(b) a process that mapped BAR0 and closed every fd: holders() finds and names it,
and reattach is refused.

Every library call that could write ``unbind`` runs in a child process with a
deadline: if the guard ever let the write through, the kernel would block the
child, not the test; the test then releases the holder (which lets the kernel
finish), kills the child and fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hostdev.manager import HostdevManager

from . import guest
from .observing import Observer
from .test_vfio_counts import hard_limit, holder, vfio_vf  # noqa: F401 - fixture reused

pytestmark = pytest.mark.realkernel

#: What the child in its own PID namespace runs: look, then try to give the VF back.
_CHILD = r"""
import json, logging, os, sys, time
logging.basicConfig(level=logging.INFO)
from hostdev.errors import DeviceBusy
from hostdev.manager import HostdevManager
vf, state = sys.argv[1], sys.argv[2]
mgr = HostdevManager(root="/", state_dir=state, release_timeout=2)
out = {"pid": os.getpid(), "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
out["holders"] = [h.model_dump() for h in mgr.holders(vf)]
started = time.monotonic()
try:
    mgr.node_reattach(vf)
    out["result"] = "reattached"
except DeviceBusy as exc:
    out["result"] = "DeviceBusy"
    out["message"] = str(exc)
out["seconds"] = round(time.monotonic() - started, 3)
print(json.dumps(out), flush=True)
"""


def _run_bounded(argv: list[str], release: Any, limit: float) -> dict[str, Any]:
    """Run ``argv``; past ``limit`` s, release the holder (the kernel lets go), kill, fail."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        release()
        proc.kill()
        proc.communicate(timeout=30)
        raise AssertionError(f"the library call did not return within {limit:g} s") from None
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert proc.returncode == 0 and lines, f"child failed ({proc.returncode}): {err[-2000:]}"
    doc: dict[str, Any] = json.loads(lines[-1])
    doc["stderr"] = err
    return doc


def _release(proc: subprocess.Popen[str]) -> None:
    try:
        assert proc.stdin is not None
        proc.stdin.write("close\n")
        proc.stdin.flush()
    except (OSError, AssertionError):
        pass


def test_library_in_own_pid_namespace_refuses(pf: str, tmp_path: Path,
                                              observe: Observer) -> None:
    """(a) The holder is outside the library's PID namespace: refused, no hang."""
    vf = vfio_vf()
    with holder(vf) as (proc, report):
        assert report.get("error") is None, report
        argv = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                sys.executable, "-c", _CHILD, vf, str(tmp_path / "state")]
        doc = _run_bounded(argv, lambda: _release(proc), limit=90.0)
        observe.record("library in its own PID namespace", {
            k: doc[k] for k in ("result", "message", "holders", "seconds")})
        assert proc.pid not in doc["procs"], "the child was meant not to see the holder"
        assert doc["result"] == "DeviceBusy", doc
        assert "outside this process's view" in doc["message"]
        assert "enable=1, runtime_usage=1" in doc["message"]
        assert [h["pid"] for h in doc["holders"]] == [None]
        assert "waiting up to 2 s for a VFIO user outside this process's view" in doc["stderr"]
        assert doc["seconds"] >= 1.5, "it waited for the user before refusing"
        assert guest.driver_of(vf) == "vfio-pci", "the VF stays on vfio-pci"
    assert guest.wait_until(lambda: guest.read(guest.dev(vf) / "enable").strip() == "0", 10)
    assert guest.write(guest.PCI / "drivers/vfio-pci/unbind", vf) == "ok"


def test_mapping_only_holder_found_and_refused(pf: str, manager: HostdevManager,
                                              observe: Observer) -> None:
    """(b) BAR0 mapped, every fd closed: holders() names the process; reattach refused."""
    vf = guest.enable_vfs(1, autoprobe=False)[0]
    manager.node_detach(vf)  # the library's own: giving it back means unbinding vfio-pci
    with holder(vf, "mmap") as (proc, report):
        assert report.get("error") is None and report.get("fds_closed"), report
        found = manager.holders(vf)
        observe.record("holders of a mapping-only user", [
            {"comm": h.comm, "via": h.via, "is_holder": h.pid == proc.pid} for h in found])
        assert [(h.pid, h.via) for h in found] == [(proc.pid, ["mapping"])]
        assert found[0].comm == Path(f"/proc/{proc.pid}/comm").read_text().strip()
        state = str(manager.store.dir)
        child = _CHILD.replace("release_timeout=2", "release_timeout=1")
        started = time.monotonic()
        doc = _run_bounded([sys.executable, "-c", child, vf, state], lambda: _release(proc),
                           limit=90.0)
        assert doc["result"] == "DeviceBusy", doc
        assert f"(pid {proc.pid}, mapping)" in doc["message"]
        assert time.monotonic() - started < 90
        assert guest.driver_of(vf) == "vfio-pci"
        assert [str(r.address) for r in manager.inactive()] == [vf]
    assert guest.wait_until(lambda: manager.holders(vf) == [], 10)
    manager.node_reattach(vf)
    assert guest.driver_of(vf) != "vfio-pci"
    assert os.path.exists(guest.dev(vf))
