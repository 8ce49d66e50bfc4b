"""VFIO: device nodes at bind/unbind and a real VFIO user holding a VF (docs/kernel-model.md §4)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from . import guest
from .guest import DEV_VFIO, DRIVERS, PCI, dev
from .observing import Observer

pytestmark = pytest.mark.realkernel

HOLDER = Path(__file__).with_name("vfio_holder.py")


def _vfio_dev(addr: str) -> list[str]:
    path = dev(addr) / "vfio-dev"
    return sorted(os.listdir(path)) if path.is_dir() else []


def _kernel_at_least(major: int, minor: int) -> bool:
    found = re.match(r"(\d+)\.(\d+)", platform.release())
    if found is None:
        return False
    return (int(found.group(1)), int(found.group(2))) >= (major, minor)


def _vfio_vf(count: int = 1) -> list[str]:
    """Enable VFs with autoprobe 0 and bind the first to vfio-pci through the override."""
    vfs = guest.enable_vfs(count, autoprobe=False)
    guest.must(dev(vfs[0]) / "driver_override", "vfio-pci")
    guest.must(PCI / "drivers_probe", vfs[0])
    return vfs


def _release(proc: subprocess.Popen[str]) -> str:
    """Tell the holder to close its fds; return its last line ("" if it had died)."""
    line = ""
    with contextlib.suppress(OSError):
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("close\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
    proc.wait(timeout=30)
    return line


def test_vfio_bind_and_unbind_nodes(pf: str, observe: Observer) -> None:
    """Bind adds driver links, /dev/vfio/N and vfio-dev/vfioX; unbind removes them."""
    vf = guest.enable_vfs(1, autoprobe=False)[0]
    group = guest.group_of(vf)
    node = DEV_VFIO / str(group)
    observe.check("/dev/vfio/vfio exists", (DEV_VFIO / "vfio").exists(), True, "4.1")
    observe.check("no group node before bind", node.exists(), False, "4.1")
    observe.check("vfio-pci/bind without override", guest.write(DRIVERS / "vfio-pci/bind", vf),
                  "ENODEV", "1.1 override_only entry")
    guest.must(dev(vf) / "driver_override", "vfio-pci")
    observe.check("vfio-pci/bind with override", guest.write(DRIVERS / "vfio-pci/bind", vf), "ok",
                  "2.1")
    observe.check("driver link", guest.readlink(dev(vf) / "driver"),
                  "../../../../bus/pci/drivers/vfio-pci", "1 driver")
    observe.check("drivers/vfio-pci/<vf> link", os.path.realpath(DRIVERS / "vfio-pci" / vf),
                  os.path.realpath(dev(vf)), "1 driver")
    observe.check(f"/dev/vfio/{group} after bind", node.exists(), True, "4.1")
    names = _vfio_dev(vf)
    observe.record("vfio-dev entries while bound", names)
    observe.check("vfio-dev/vfioX while bound", len(names) == 1 and bool(
        re.fullmatch(r"vfio\d+", names[0])), True, "4.1 (seen on the real 6.1 kernel)")
    cdev = [n for n in names if (DEV_VFIO / "devices" / n).exists()]
    observe.record("/dev/vfio/devices/vfioX present (CONFIG_VFIO_DEVICE_CDEV)", bool(cdev))
    if names:
        observe.check("/sys/class/vfio-dev/vfioX", (Path("/sys/class/vfio-dev") / names[0])
                      .exists(), True, "4.1")
    observe.record("power_state of the idle vfio-pci VF", guest.read(dev(vf) / "power_state"))
    observe.check("vfio-pci/bind again", guest.write(DRIVERS / "vfio-pci/bind", vf), "EBUSY",
                  "2.1 step 3")
    observe.check("nvme/bind while on vfio-pci (override vfio-pci)",
                  guest.write(DRIVERS / "nvme/bind", vf), "ENODEV", "2.1 step 2")
    result, seconds = guest.timed_write(DRIVERS / "vfio-pci/unbind", vf)
    observe.check("vfio-pci/unbind", result, "ok", "2.2")
    observe.record("unbind with no user took (s)", round(seconds, 3))
    observe.check(f"/dev/vfio/{group} after unbind", node.exists(), False, "4.1")
    observe.check("vfio-dev after unbind", _vfio_dev(vf), [], "4.1")
    observe.check("driver link after unbind", guest.readlink(dev(vf) / "driver"), None, "2.2")
    observe.check("override survives unbind", guest.read(dev(vf) / "driver_override"),
                  "vfio-pci\n", "1.1")


def test_vfio_user_holding_a_vf(pf: str, observe: Observer) -> None:
    """A container+group+device-fd holder shows in /proc/PID/fd; release, then unbind."""
    vf = _vfio_vf()[0]
    group = str(guest.group_of(vf))
    log_before = len(guest.kmsg_lines())  # earlier tests may block an unbind on purpose
    observe.check("VF on vfio-pci", guest.driver_of(vf), "vfio-pci", "setup")
    proc = subprocess.Popen([sys.executable, str(HOLDER), vf, group], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        report = json.loads(proc.stdout.readline())
        observe.record("holder report", {k: v for k, v in report.items() if k != "pid"})
        observe.check("holder got a device fd", report.get("error"), None, "4.3")
        observe.check("group viable (only vfio-pci in it)", report.get("viable"), True, "4.2")
        fd_dir = Path(f"/proc/{proc.pid}/fd")
        links = {int(fd.name): os.readlink(fd) for fd in fd_dir.iterdir()}
        held = {links.get(report.get(k, -1)) for k in ("container", "group", "device")}
        observe.record("holder /proc/PID/fd targets", sorted(
            {re.sub(r"\[\d+\]$", "[N]", t) for t in links.values() if not t.startswith("/tmp/")}))
        observe.check("fd targets of container, group, device", sorted(t or "" for t in held),
                      sorted(["/dev/vfio/vfio", f"/dev/vfio/{group}", "anon_inode:[vfio-device]"]),
                      "4.3 detection recipe")
        fdinfo = Path(f"/proc/{proc.pid}/fdinfo/{report.get('device')}").read_text()
        observe.record("device fd fdinfo keys", [ln.split(":", 1)[0] for ln in fdinfo.splitlines()])
        syspath = [ln for ln in fdinfo.splitlines() if ln.startswith("vfio-device-syspath:")]
        observe.check("fdinfo has vfio-device-syspath", bool(syspath), _kernel_at_least(6, 18),
                      "4.3 since v6.18")
        try:
            second = os.open(DEV_VFIO / group, os.O_RDWR)
            os.close(second)
            second_open = "ok"
        except OSError as exc:
            second_open = guest.errname(exc.errno)
        observe.check("second open of the group node while held", second_open, "EBUSY", "4.2")
    finally:
        closed = _release(proc)
    observe.record("holder closed", json.loads(closed) if closed else None)
    started = time.monotonic()
    result = guest.write(DRIVERS / "vfio-pci/unbind", vf)
    observe.check("unbind after the holder closed", result, "ok", "4.4")
    observe.record("unbind after release took (s)", round(time.monotonic() - started, 3))
    observe.check(f"/dev/vfio/{group} gone", (DEV_VFIO / group).exists(), False, "4.1")
    warned = [ln for ln in guest.kmsg_lines()[log_before:] if "blocked until released" in ln]
    observe.check("no 'blocked until released' warning", warned, [], "4.4 no unbind while held")


def test_numvfs_zero_unbinds_vfio_vf(pf: str, observe: Observer) -> None:
    """numvfs 0 unbinds an idle vfio-pci VF, and its /dev/vfio/N goes."""
    vfs = _vfio_vf(2)
    group = str(guest.group_of(vfs[0]))
    observe.check("group node while bound", (DEV_VFIO / group).exists(), True, "4.1")
    observe.check("numvfs 0", guest.write(dev(pf) / "sriov_numvfs", "0"), "ok", "3.4")
    observe.check("group node after numvfs 0", (DEV_VFIO / group).exists(), False, "3.4 / 4.1")
    observe.check("VF gone", dev(vfs[0]).exists(), False, "3.4")


def test_group_fds_alone_do_not_block_unbind(pf: str, observe: Observer) -> None:
    """A user holding only the container and group fds does not block unbind."""
    vf = _vfio_vf()[0]
    group = str(guest.group_of(vf))
    proc = subprocess.Popen([sys.executable, str(HOLDER), vf, group, "nodevice"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    outcome: dict[str, tuple[str, float]] = {}
    worker = threading.Thread(
        target=lambda: outcome.update(unbind=guest.timed_write(DRIVERS / "vfio-pci/unbind", vf)),
        daemon=True)
    try:
        report = json.loads(proc.stdout.readline())
        observe.check("holder set container and IOMMU", report.get("error"), None, "4.2")
        worker.start()
        worker.join(5.0)
        observe.check("unbind returned while group fds are open", not worker.is_alive(), True,
                      "4.3 group fds alone do not block")
        observe.check(f"/dev/vfio/{group} after unbind, fd still open",
                      (DEV_VFIO / group).exists(), False, "4.1 deleted at last unbind")
    finally:
        _release(proc)
        if worker.ident is not None:
            worker.join(30.0)
    observe.record("unbind result and seconds", outcome.get("unbind"))
    observe.check("VF unbound", guest.driver_of(vf), None, "2.2")


def test_vfio_pf_with_enable_sriov(pf: str, observe: Observer) -> None:
    """A vfio-pci PF (enable_sriov=1) makes VFs whose override is vfio-pci; unbind drops them."""
    param = Path("/sys/module/vfio_pci/parameters/enable_sriov")
    if not param.exists():
        pytest.skip("vfio_pci has no enable_sriov parameter")
    original = guest.read(param).strip()
    d = dev(pf)
    guest.must(d / "driver_override", "vfio-pci")
    guest.must(DRIVERS / "nvme/unbind", pf)
    guest.must(PCI / "drivers_probe", pf)
    observe.check("PF on vfio-pci", guest.driver_of(pf), "vfio-pci", "setup")
    try:
        observe.check("enable_sriov=Y", guest.write(param, "Y"), "ok", "module parameter 0644")
        observe.check("numvfs 2 under vfio-pci with enable_sriov", guest.write(
            d / "sriov_numvfs", "2"), "ok", "3.1 vfio-pci PF")
        vfs = guest.vf_addresses(pf, 2)
        for vf in vfs:
            observe.check(f"{vf} override set by vfio's notifier",
                          guest.read(dev(vf) / "driver_override"), "vfio-pci\n", "1.1 last bullet")
            observe.check(f"{vf} bound to vfio-pci", guest.driver_of(vf), "vfio-pci",
                          "1.1 override + autoprobe")
        result, seconds = guest.timed_write(DRIVERS / "vfio-pci/unbind", pf)
        observe.check("unbind the vfio-pci PF", result, "ok", "2.2")
        observe.record("PF unbind with 2 idle vfio VFs took (s)", round(seconds, 2))
        observe.check("VFs disabled by the PF unbind", [dev(v).exists() for v in vfs],
                      [False, False], "2.2 vfio_pci_core_unregister_device")
        observe.check("numvfs after the PF unbind", guest.read(d / "sriov_numvfs"), "0\n", "2.2")
    finally:
        guest.write(param, original or "N")
