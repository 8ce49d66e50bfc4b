"""The state file is re-encoded only where a list changed; the bytes must be exactly
those of a full encoding, whatever sequence of changes and copies led there."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostdev.address import PciAddress
from hostdev.state.lists import Lists
from hostdev.state.records import DeviceRecord, Owner
from hostdev.state.store import StateStore

ADDRS = [PciAddress(0, 0x3B, 2 + i // 8, i % 8) for i in range(24)]
OWNERS = [None, Owner(driver="qemu", domain="vm1"), Owner(driver="qemu", domain="vm2")]


def _record(addr: PciAddress, identity: int, owner: Owner | None = None) -> DeviceRecord:
    return DeviceRecord(address=addr, owner=owner, vendor=0x8086, device=0x154C,
                        original_driver="iavf", unbind_from_stub=True, identity=identity)


def _fresh_bytes(tmp: Path, lists: Lists) -> bytes:
    """What a store that never saw the lists before writes for them."""
    store = StateStore(tmp)
    with store.locked():
        store.save(Lists(dict(lists.active), dict(lists.inactive)))
    return store.path.read_bytes()


OP = st.tuples(st.sampled_from(["set", "pop", "move", "clear", "update", "setdefault",
                                "popitem", "copy", "reload"]),
               st.sampled_from(ADDRS), st.integers(0, 3), st.sampled_from(OWNERS))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(OP, max_size=6), min_size=1, max_size=5))
def test_patched_file_equals_full_encoding(
        tmp_path_factory: pytest.TempPathFactory,
        transactions: list[list[tuple[str, PciAddress, int, Owner | None]]]) -> None:
    base = tmp_path_factory.mktemp("st")
    store = StateStore(base / "main")
    lists = Lists({a: _record(a, 0) for a in ADDRS[:6]}, {a: _record(a, 0) for a in ADDRS[6:12]})
    with store.locked():
        store.save(lists)
    for n, ops in enumerate(transactions):
        with store.locked():
            lists = store.load()
            work = lists.copy()
            for op, addr, gen, owner in ops:
                target = work.active if owner is not None else work.inactive
                if op == "set":
                    target[addr] = _record(addr, gen, owner)
                elif op == "pop":
                    target.pop(addr, None)
                elif op == "move":
                    record = work.drop(addr)
                    if record is not None:
                        work.inactive[addr] = record.model_copy(update={"owner": None})
                elif op == "clear" and gen == 0:
                    target.clear()
                elif op == "update":
                    target.update({addr: _record(addr, gen, owner)})
                elif op == "setdefault":
                    target.setdefault(addr, _record(addr, gen, owner))
                elif op == "popitem" and target:
                    target.popitem()
                elif op == "copy":
                    work = work.copy()
                elif op == "reload":
                    work = store.load().copy()
            store.save(work)
        expected = _fresh_bytes(base / f"fresh{n}", work)
        assert store.path.read_bytes() == expected
        assert store.load() == work
