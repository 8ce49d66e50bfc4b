"""The kernel's own count of VFIO users: ``enable`` and ``power/runtime_usage``.

Readable from any PID namespace, so the library can tell that a device is held
even when /proc does not show the holder. Recorded: a VF idle on vfio-pci, held
through its device fd, held only through a mapping of BAR0 (every fd closed),
and after each release; and the nvme-bound PF for comparison (a host driver's
own counts).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import guest
from .guest import PCI, dev
from .observing import Observer

pytestmark = pytest.mark.realkernel

HOLDER = Path(__file__).with_name("vfio_holder.py")
#: Hard limit of each test here (seconds): a regression fails instead of hanging the guest.
LIMIT = 120


@pytest.fixture(autouse=True)
def hard_limit() -> Iterator[None]:
    """Raise TimeoutError in the test when it runs longer than LIMIT seconds."""
    with guest.hard_limit(LIMIT):
        yield


def counts(addr: str) -> dict[str, str]:
    """``enable``, ``power/runtime_usage`` and ``power/runtime_status`` of ``addr``."""
    out = {}
    for name in ("enable", "power/runtime_usage", "power/runtime_status"):
        out[name] = guest.read(dev(addr) / name).strip()
    return out


def settled(addr: str) -> dict[str, str]:
    """:func:`counts` once runtime PM has finished a transition (suspending, resuming)."""
    guest.wait_until(lambda: guest.read(dev(addr) / "power/runtime_status").strip()
                     not in ("suspending", "resuming"), 5.0)
    return counts(addr)


@contextlib.contextmanager
def holder(vf: str, mode: str = "") -> Iterator[tuple[subprocess.Popen[str], dict[str, object]]]:
    """Run vfio_holder.py on ``vf`` (``mode``: "" device fd, "mmap" mapping only)."""
    group = str(guest.group_of(vf))
    proc = subprocess.Popen([sys.executable, str(HOLDER), vf, group, *([mode] if mode else [])],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = guest.LineReader(proc.stdout).readline(60.0)
        assert line is not None, "the holder said nothing within 60 s"
        yield proc, json.loads(line)
    finally:
        guest.release_holder(proc)


def vfio_vf() -> str:
    """A VF on vfio-pci (autoprobe 0, override then drivers_probe)."""
    vf = guest.enable_vfs(1, autoprobe=False)[0]
    guest.must(dev(vf) / "driver_override", "vfio-pci")
    guest.must(PCI / "drivers_probe", vf)
    return vf


def vfio_lines(pid: int) -> list[str]:
    """The pathname of each VFIO mapping in /proc/PID/maps, with its permissions."""
    out = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6 and "vfio" in fields[5]:
            out.append(f"{fields[1]} {fields[5].strip()}")
    return out


def test_vfio_user_counts(pf: str, observe: Observer) -> None:
    """enable and runtime_usage: 0 idle on vfio-pci, 1 held by fd or mapping, 0 after."""
    observe.record("nvme-bound PF counts", {k: v for k, v in counts(pf).items()
                                            if k != "power/runtime_status"})
    vf = vfio_vf()
    idle = {"enable": "0", "power/runtime_usage": "0", "power/runtime_status": "suspended"}
    held = {"enable": "1", "power/runtime_usage": "1", "power/runtime_status": "active"}
    observe.check("idle on vfio-pci", settled(vf), idle, "no user: not enabled, suspended")
    with holder(vf) as (proc, report):
        observe.check("device fd holder set up", report.get("error"), None, "setup")
        observe.check("held through the device fd", settled(vf), held, "vfio open enables")
    observe.check("after the fd holder closed", settled(vf), idle, "last close disables")
    with holder(vf, "mmap") as (proc, report):
        observe.check("mapping holder set up", report.get("error"), None, "setup")
        observe.record("BAR0 region", report.get("bar0"))
        fds = [p.name for p in Path(f"/proc/{proc.pid}/fd").iterdir()
               if "vfio" in (guest.readlink(p) or "")]
        observe.check("VFIO fds left after the mapping", fds, [], "every fd closed")
        observe.check("VFIO lines in /proc/PID/maps", vfio_lines(proc.pid),
                      ["rw-s anon_inode:[vfio-device]"], "the mapping keeps the device file")
        observe.check("held through a mapping only", settled(vf), held,
                      "the mapping keeps the device open")
    observe.check("after the mapping went", settled(vf), idle, "last user gone")
    observe.check("unbind after release", guest.write(PCI / "drivers/vfio-pci/unbind", vf),
                  "ok", "nobody holds it")
