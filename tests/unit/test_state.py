"""The state file: atomic, private, versioned; a bad file is an error and is never overwritten."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from hostdev.address import PciAddress
from hostdev.errors import StateBusy, StateCorrupt
from hostdev.state.lists import Lists
from hostdev.state.records import DeviceRecord, Owner
from hostdev.state.store import StateStore


def _record(addr: str, owner: Owner | None = None) -> DeviceRecord:
    return DeviceRecord(address=PciAddress.parse(addr), owner=owner, vendor=0x8086,
                        device=0x154C, original_driver="iavf", unbind_from_stub=True,
                        pf=PciAddress.parse("0000:3b:00.0"), vf_index=1, identity=42)


def test_roundtrip_and_permissions(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "st")
    lists = Lists({PciAddress.parse("0000:3b:02.1"): _record("0000:3b:02.1", Owner(
        driver="qemu", domain="vm1"))}, {PciAddress.parse("0000:3b:02.0"): _record(
            "0000:3b:02.0")})
    with store.locked():
        assert store.load() == Lists()
        store.save(lists)
    assert store.load() == lists
    assert stat.S_IMODE(os.stat(store.dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    doc = json.loads(store.path.read_text())
    assert doc["format"] == "hostdev-state" and doc["version"] == 1
    assert doc["active"][0]["owner"] == {"driver": "qemu", "domain": "vm1"}
    assert doc["active"][0]["vendor"] == "8086"
    assert store.saves == 1
    assert [p.name for p in store.dir.iterdir() if p.name.endswith(".tmp")] == []


def test_a_file_naming_the_identity_generation_still_loads(tmp_path: Path) -> None:
    """Files and journals written by hostdev 0.1 call the device's identity "generation":
    they load with it, and the next save writes the one name."""
    from hostdev.state.journal import Intent, Journal

    store = StateStore(tmp_path / "st")
    with store.locked():
        store.save(Lists(inactive={PciAddress.parse("0000:3b:02.0"): _record("0000:3b:02.0")}))
    text = store.path.read_text()
    assert '"identity":42' in text and "generation" not in text
    store.path.write_text(text.replace('"identity":42', '"generation":42'))
    old = StateStore(tmp_path / "st")
    with old.locked():
        lists = old.load()
        assert lists.inactive[PciAddress.parse("0000:3b:02.0")].identity == 42
        old.save(Lists(inactive=dict(lists.inactive)))
    assert '"identity":42' in old.path.read_text()
    journal = Journal(tmp_path / "st")
    with open(journal.path, "w") as handle:
        json.dump({"operation": "node_detach", "devices": [
            {"address": "0000:3b:02.0", "driver": "iavf", "override": None,
             "generation": 7}]}, handle)
    os.chmod(journal.path, 0o600)
    intent = journal.read()
    assert isinstance(intent, Intent) and intent.devices[0].identity == 7


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (b'{"format": "hostdev-state", "version": 1, "active": [', "not valid JSON"),
        (b"\x00\x01garbage", "not valid JSON"),
        (b"[]", "not a hostdev state file"),
        (b'{"format": "hostdev-state", "version": 7}', "version 7"),
        (b'{"format": "hostdev-state", "version": 1, "active": [{"address": "zz"}]}',
         "damaged at active.0"),
        (b"", "not valid JSON"),
    ],
)
def test_corrupt_file_is_an_error_and_kept(tmp_path: Path, content: bytes, phrase: str) -> None:
    store = StateStore(tmp_path)
    store.path.write_bytes(content)
    os.chmod(store.path, 0o600)
    with pytest.raises(StateCorrupt) as info:
        store.load()
    assert phrase in str(info.value)
    assert str(store.path) in str(info.value)
    assert store.path.read_bytes() == content


def _file_with(**changes: object) -> bytes:
    """A state file of one inactive record, with ``changes`` made to that record."""
    record = json.loads(_record("0000:3b:02.0").model_dump_json())
    record.update(changes)
    return json.dumps({"format": "hostdev-state", "version": 1, "inactive": [record]}).encode()


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        # The key of an unknown field was quoted as it is: its newline split the message.
        (b'{"format": "hostdev-state", "version": 1, "a\\nb\\u0000c": 1}',
         "damaged at a\\nb\\x00c: Extra inputs"),
        (b'{"format": "hostdev-state", "version": 1, "' + b"k" * 5000 + b'": 1}',
         "damaged at " + "k" * 40 + "...: Extra inputs"),
        # A version of 5,000 numbers was printed whole.
        (b'{"format": "hostdev-state", "version": true}', "has version True, this"),
        (b'{"format": "hostdev-state", "version": [' + b"1," * 5000 + b'1]}',
         "has version [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, ..., this"),
        # Values hostdev never writes: they were loaded and used (a driver name that
        # is no directory name, ids printed as "-001", an override of "" or "(null)"
        # written back to the kernel).
        (_file_with(original_driver="../x"), "damaged at inactive.0.original_driver"),
        (_file_with(original_driver="e1000e\nx"), "damaged at inactive.0.original_driver"),
        (_file_with(original_driver=".."), "damaged at inactive.0.original_driver"),
        (_file_with(vendor="-1"), "damaged at inactive.0.vendor"),
        (_file_with(device=0x10000), "damaged at inactive.0.device"),
        (_file_with(original_override=""), "damaged at inactive.0.original_override"),
        (_file_with(original_override="(null)"), "damaged at inactive.0.original_override"),
        (_file_with(vf_index=-1), "damaged at inactive.0.vf_index"),
    ],
)
def test_damaged_values_are_refused_in_one_line(tmp_path: Path, content: bytes,
                                                 phrase: str) -> None:
    store = StateStore(tmp_path)
    store.path.write_bytes(content)
    os.chmod(store.path, 0o600)
    with pytest.raises(StateCorrupt) as info:
        store.load()
    message = str(info.value)
    assert phrase in message and str(store.path) in message
    assert "\n" not in message and "\x00" not in message and len(message) < 300
    assert store.path.read_bytes() == content


def test_symlinked_state_file_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text('{"format": "hostdev-state", "version": 1}')
    store = StateStore(tmp_path / "st")
    store.dir.mkdir(mode=0o700)
    store.path.symlink_to(target)
    with pytest.raises(StateCorrupt, match="symlink"):
        store.load()
    assert store.path.is_symlink()


def test_world_writable_file_refused(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.path.write_text('{"format": "hostdev-state", "version": 1}')
    os.chmod(store.path, 0o666)
    with pytest.raises(StateCorrupt, match="writable by other users"):
        store.load()
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o666


def test_lock_timeout_is_busy(tmp_path: Path) -> None:
    first, second = StateStore(tmp_path, lock_timeout=0.05), StateStore(tmp_path,
                                                                          lock_timeout=0.05)
    with first.locked(), pytest.raises(StateBusy, match="locked by another hostdev process"), \
            second.locked():
        pass
    with second.locked():
        pass
