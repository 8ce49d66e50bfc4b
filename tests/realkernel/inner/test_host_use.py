"""Devices the host cannot lose, on the real kernel.

(c) The guest's root file system is a 9p mount (tag ``hostroot``) over a virtio-pci
function; detaching that function would take ``/`` away and hang everything that touches
it. node_detach and prepare must refuse it naming the mount, write nothing to sysfs, and
the guest must keep running. The results export (tag ``results``) is refused the same
way; the NVMe PF, which carries no namespace, is not.

Each library call runs under a watchdog: if it has not returned in time the test fails
instead of waiting (a regression that detaches ``/`` would otherwise hang the guest).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from hostdev.address import PciAddress
from hostdev.cli.main import main
from hostdev.errors import DeviceUsedByHost
from hostdev.linux.hostuse import host_uses
from hostdev.linux.sysfs import Sysfs
from hostdev.manager import HostdevManager
from hostdev.state.records import Owner

from . import guest
from .observing import Observer

pytestmark = pytest.mark.realkernel

VIRTIO = Path("/sys/bus/virtio/devices")
OWNER = Owner(driver="qemu", domain="vm-real")
#: A library call that takes longer than this is taken as hung.
WATCHDOG = 30.0

T = TypeVar("T")


def _within(seconds: float, call: Callable[[], T]) -> T:
    return guest.within(seconds, call)


def _tags() -> dict[str, tuple[str, bytes]]:
    """Mount tag -> (PCI function carrying it, raw ``mount_tag`` bytes)."""
    out = {}
    for virtio in sorted(VIRTIO.iterdir()):
        tag_file = virtio / "mount_tag"
        if tag_file.exists():
            raw = tag_file.read_bytes()
            function = Path(os.path.realpath(virtio)).parent.name
            out[raw.rstrip(b"\0\n").decode()] = (function, raw)
    return out


def _refuse(manager: HostdevManager, address: str,
            call: Callable[[], object]) -> DeviceUsedByHost:
    before = (guest.driver_of(address), guest.override_of(address))
    stats = manager.sysfs.stats
    writes, written = stats.writes, len(stats.written)

    def expect() -> DeviceUsedByHost:
        try:
            call()
        except DeviceUsedByHost as exc:
            return exc
        raise AssertionError(f"{address} was not refused")

    err = _within(WATCHDOG, expect)
    assert (stats.writes, stats.written[written:]) == (writes, []), "nothing may be written"
    assert (guest.driver_of(address), guest.override_of(address)) == before
    return err


def test_root_filesystem_function_is_refused(manager: HostdevManager, observe: Observer,
                                             tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """(c) node_detach and prepare refuse the function behind ``/``; nothing is written."""
    tags = _tags()
    observe.record("virtio mount tags", {tag: [fn, raw.hex()] for tag, (fn, raw) in
                                         tags.items()},
                   note="9pnet_virtio prints the tag with its NUL")
    assert "hostroot" in tags, f"no virtio device carries the root's tag: {tags}"
    root_fn = tags["hostroot"][0]
    assert guest.driver_of(root_fn) == "virtio-pci"
    uses = _within(WATCHDOG, lambda: host_uses(Sysfs("/"), PciAddress.parse(root_fn)))
    observe.record("host uses of the root's function", [str(u) for u in uses])
    assert "9p mount tag hostroot mounted at /" in [str(u) for u in uses]

    err = _refuse(manager, root_fn, lambda: manager.node_detach(root_fn))
    assert f"cannot detach PCI device {root_fn}" in str(err)
    assert "9p mount tag hostroot mounted at /" in str(err) and "--force" in str(err)
    err = _refuse(manager, root_fn, lambda: manager.prepare(OWNER, [root_fn]))
    assert f"cannot prepare PCI device {root_fn}" in str(err)
    assert manager.inactive() == [] and manager.active() == []

    # The command line says the same, in one line, and exits 1 (in this process: a
    # child Python takes some 15 s to start under TCG).
    code = _within(WATCHDOG, lambda: main(
        ["--state-dir", str(tmp_path / "cli-state"), "detach", root_fn]))
    err_text = capsys.readouterr().err
    assert code == 1, err_text
    assert err_text.startswith(f"hostdev: cannot detach PCI device {root_fn}: the host")
    assert err_text.count("\n") == 1 and "--force" in err_text
    assert guest.driver_of(root_fn) == "virtio-pci"

    # The guest keeps running: its root file system still answers.
    listing = _within(WATCHDOG, lambda: os.listdir("/usr/bin"))
    assert listing, "/usr/bin is empty or unreadable after the refusal"
    assert _within(WATCHDOG, lambda: Path("/etc/os-release").read_text()).strip()


def test_results_export_is_refused_and_the_pf_is_not(manager: HostdevManager) -> None:
    """The writable 9p export is in use too; the NVMe PF carries nothing mounted."""
    tags = _tags()
    results = os.environ.get("HOSTDEV_RESULTS", "")
    if "results" not in tags or not results:
        pytest.skip("no results export in this guest")
    function = tags["results"][0]
    err = _refuse(manager, function, lambda: manager.node_detach(function))
    assert f"9p mount tag results mounted at {results}" in str(err)
    assert _within(WATCHDOG, lambda: host_uses(Sysfs("/"), PciAddress.parse(guest.PF))) == []
