"""Loading the stub with modprobe, and reading VPD, on the real kernel (guest only).

modprobe: the guest's modules live in its initramfs, not in the host root it chroots
into (which has no /lib/modules for the guest kernel, and is read-only). The harness
passes the kernel's kept module tree (``HOSTDEV_GUEST_MODROOT``); the test copies it to
the guest's /tmp, runs depmod there and points modprobe at it with MODPROBE_OPTIONS,
which kmod's modprobe reads. Then it unloads vfio_pci and lets hostdev load it again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from hostdev.address import PciAddress
from hostdev.cli.inventory import read_vpd
from hostdev.errors import NotAssignable
from hostdev.linux.sysfs import Sysfs
from hostdev.manager import HostdevManager

from . import guest
from .observing import Observer

T = TypeVar("T")
#: Hard limit for any one library call here.
WATCHDOG = 60.0


def _within(seconds: float, call: Callable[[], T]) -> T:
    return guest.within(seconds, call, what="library call")


def _run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, **env})


def _module_tree(tmp: Path) -> Path:
    """A writable copy of the guest kernel's modules, with depmod's indexes."""
    source = os.environ.get("HOSTDEV_GUEST_MODROOT", "")
    release = os.uname().release
    tree = Path(source) / "lib/modules" / release
    if not source or not (tree / "modules.dep").exists():
        pytest.skip(f"no module tree of {release} passed by the harness (HOSTDEV_GUEST_MODROOT)")
    base = tmp / "modroot"
    shutil.copytree(tree, base / "lib/modules" / release)
    depmod = shutil.which("depmod") or "/sbin/depmod"
    done = _run([depmod, "-b", str(base), release])
    assert done.returncode == 0, f"depmod failed: {done.stderr.strip()}"
    return base


def test_hostdev_loads_vfio_pci_with_modprobe(pf: str, tmp_path: Path,
                                              observe: Observer) -> None:
    base = _module_tree(tmp_path)
    os.environ["MODPROBE_OPTIONS"] = f"-d {base}"
    try:
        assert guest.driver_of(pf) == "nvme"
        removed = _run(["rmmod", "vfio_pci"])
        if removed.returncode != 0:
            pytest.skip(f"cannot unload vfio_pci here: {removed.stderr.strip()}")
        assert not (guest.DRIVERS / "vfio-pci").exists()
        manager = HostdevManager(root="/", state_dir=tmp_path / "state", lock_timeout=5.0,
                                 release_timeout=2.0, modprobe_timeout=30.0)
        result = _within(WATCHDOG, lambda: manager.node_detach(pf))
        observe.record("node_detach with vfio_pci unloaded",
                       {"action": result.action, "driver": guest.driver_of(pf)})
        assert result.action == "detached to vfio-pci"
        assert (guest.DRIVERS / "vfio-pci").is_dir() and guest.driver_of(pf) == "vfio-pci"
        back = _within(WATCHDOG, lambda: manager.node_reattach(pf))
        assert back.driver == "nvme"
    finally:
        os.environ.pop("MODPROBE_OPTIONS", None)
        if not (guest.DRIVERS / "vfio-pci").exists():
            _run(["modprobe", "-d", str(base), "vfio_pci"])


def test_missing_module_is_a_one_line_refusal(pf: str, tmp_path: Path) -> None:
    base = _module_tree(tmp_path)
    os.environ["MODPROBE_OPTIONS"] = f"-d {base}"
    try:
        manager = HostdevManager(root="/", state_dir=tmp_path / "state", lock_timeout=5.0)
        with pytest.raises(NotAssignable) as info:
            _within(WATCHDOG, lambda: manager.node_detach(pf, stub_driver="no_such_stub"))
        message = str(info.value)
        assert "driver no_such_stub is not loaded and cannot load module no_such_stub:" \
            " modprobe failed:" in message and "\n" not in message
        assert guest.driver_of(pf) == "nvme"
    finally:
        os.environ.pop("MODPROBE_OPTIONS", None)


def test_vpd_of_the_nvme(pf: str, observe: Observer) -> None:
    path = guest.DEVICES / pf / "vpd"
    present = path.exists()
    detail: object = None
    if present:
        try:
            detail = path.read_bytes()[:64].hex()
        except OSError as exc:
            detail = guest.errname(exc.errno or 0)
    observe.record("vpd attribute of the QEMU NVMe", {"present": present, "read": detail})
    shown = _within(WATCHDOG, lambda: read_vpd(Sysfs("/"), PciAddress.parse(pf)))
    if not present:
        assert shown is None  # QEMU's NVMe has no VPD capability: nothing to show
    else:
        assert shown is not None  # parsed, or shown as malformed/unreadable: never raised
