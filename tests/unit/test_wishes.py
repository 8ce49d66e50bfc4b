"""The wishes file on a real file system: its mode, and what is refused (pyfakefs
cannot show a file's mode as the kernel keeps it once opened)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hostdev.address import PciAddress
from hostdev.errors import StateCorrupt, StateUnusable
from hostdev.state.wishes import DetachWish, DeviceIdentity, Wishes, WishStore

NIC = PciAddress.parse("0000:04:00.0")


def _wishes() -> Wishes:
    wishes = Wishes()
    wishes.set_detach(DetachWish(device=DeviceIdentity(address=NIC, vendor=0x8086,
                                                       device=0x10D3, serial="A1")))
    wishes.set_vf_count(DeviceIdentity(address=PciAddress.parse("0000:01:00.0"),
                                       vendor=0x8086, device=0x1572), 4)
    return wishes


def test_written_0644_in_a_0755_directory_whatever_the_umask(tmp_path: Path) -> None:
    store = WishStore(tmp_path / "etc" / "hostdev")
    old = os.umask(0o077)
    try:
        store.save(_wishes())
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(store.dir).st_mode) == 0o755
    assert store.load() == _wishes()
    assert [p.name for p in store.dir.iterdir()] == ["wishes.json"]


def test_absent_directory_or_file_is_no_wish(tmp_path: Path) -> None:
    assert WishStore(tmp_path / "none").load() == Wishes()
    assert WishStore(tmp_path).load() == Wishes()


def test_world_writable_file_is_refused_and_left(tmp_path: Path) -> None:
    store = WishStore(tmp_path)
    store.save(_wishes())
    os.chmod(store.path, 0o666)
    with pytest.raises(StateUnusable, match=r"wishes file .* is writable by other users"):
        store.load()
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o666


def test_fifo_in_place_of_the_file_is_refused_without_opening(tmp_path: Path) -> None:
    store = WishStore(tmp_path)
    os.mkfifo(store.path)
    with pytest.raises(StateUnusable, match="is a FIFO"):
        store.load()


def test_zero_vfs_drops_the_wish_and_a_stored_zero_is_refused(tmp_path: Path) -> None:
    wishes = _wishes()
    wishes.set_vf_count(wishes.sriov[0].device, 0)
    assert wishes.sriov == []
    store = WishStore(tmp_path)
    store.path.write_text('{"format": "hostdev-wishes", "version": 1, "sriov": [{"device":'
                          ' {"address": "0000:01:00.0", "vendor": "8086", "device": "1572"},'
                          ' "num_vfs": 0}]}')
    with pytest.raises(StateCorrupt, match=r"damaged at sriov\.0\.num_vfs"):
        store.load()


@pytest.mark.parametrize(("content", "phrase"), [
    # The unknown key was quoted as it is: its newline split the message in two.
    ('{"format": "hostdev-wishes", "version": 1, "a\\nb": 1}', "damaged at a\\nb: Extra"),
    ('{"format": "hostdev-wishes", "version": 1, "detach": [{"device": {"address":'
     ' "0000:04:00.0", "vendor": "8086", "device": "10d3"}, "stub_driver": "vfio-pci",'
     ' "x\\u0000y": 1}]}', "damaged at detach.0.x\\x00y: Extra"),
    ('{"format": "hostdev-wishes", "version": ["' + "v" * 5000 + '"]}', "has version ['vvvv"),
    ('{"format": "hostdev-wishes", "version": true}', "has version True, this"),
    ('{"format": "hostdev-wishes", "version": 1, "sriov": [{"device": {"address":'
     ' "0000:01:00.0", "vendor": "-1", "device": "1572"}, "num_vfs": 2}]}',
     "damaged at sriov.0.device.vendor"),
    # Printed as it was by 'hostdev wishes' (its newline split the line).
    ('{"format": "hostdev-wishes", "version": 1, "detach": [{"device": {"address":'
     ' "0000:04:00.0", "vendor": "8086", "device": "10d3", "serial": "A1\\nB2"}}]}',
     "damaged at detach.0.device.serial"),
])
def test_damage_is_told_in_one_line(tmp_path: Path, content: str, phrase: str) -> None:
    store = WishStore(tmp_path)
    store.path.write_text(content)
    with pytest.raises(StateCorrupt) as info:
        store.load()
    message = str(info.value)
    assert phrase in message and str(store.path) in message
    assert "\n" not in message and "\x00" not in message and len(message) < 300
    assert store.path.read_text() == content


def test_identity_mismatch_wording() -> None:
    wanted = DeviceIdentity(address=NIC, vendor=0x8086, device=0x10D3, serial="A1")
    assert wanted.mismatch(wanted) is None
    assert wanted.mismatch(wanted.model_copy(update={"serial": None})) == \
        "0000:04:00.0 now has no readable serial, not serial 'A1'"
    assert "now holds 8086:1572" in str(wanted.mismatch(wanted.model_copy(
        update={"device": 0x1572})))
    # A wish without a serial matches any serial: the device had none to go by.
    assert wanted.model_copy(update={"serial": None}).mismatch(wanted) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root")
def test_file_or_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    store = WishStore(tmp_path / "hostdev")
    store.save(_wishes())
    os.chown(store.path, 1000, 1000)
    with pytest.raises(StateUnusable, match=r"wishes file .* is owned by uid 1000, not by uid 0"
                                            r" running hostdev; use a directory of your own"
                                            r" \(--config-dir\)"):
        store.load()
    os.chown(store.path, 0, 0)
    os.chown(store.dir, 1000, 1000)
    with pytest.raises(StateUnusable, match="configuration directory .* is owned by uid 1000"):
        store.load()


@pytest.mark.skipif(os.geteuid() != 0, reason="a file of root's needs root")
@pytest.mark.parametrize("mode", [0o664, 0o646])
def test_user_refuses_roots_file_that_others_may_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int) -> None:
    """Root's file is trusted by a user only while no one else may write it."""
    store = WishStore(tmp_path / "hostdev")
    store.save(_wishes())
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # a user reading root's files
    assert store.load() == _wishes()
    os.chmod(store.path, mode)
    with pytest.raises(StateUnusable, match=rf"^wishes file {store.path} is writable by other"
                                            rf" users \(mode 0{mode:o}\)"):
        store.load()
