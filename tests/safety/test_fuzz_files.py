"""Fuzzing the files hostdev reads back: the state file, the intent journal and the
wishes file, damaged in every way a disk, an editor or an attacker can (truncated,
invalid UTF-8, NUL, absurd nesting, wrong types, huge numbers, unknown keys, hostile
driver names and addresses).

Whatever the file holds, an operation either works (the damage left a valid file)
or raises a HostdevError whose message is one line; a file refused as damaged
(StateCorrupt) is named, left byte for byte as it was, and nothing is written to
the kernel. Never any other exception. (Plain regression tests of what these found
are in tests/unit/test_state.py and tests/unit/test_state_dir.py.)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostdev.errors import HostdevError, StateCorrupt
from hostdev.manager import HostdevManager
from hostdev.state.records import HostdevSpec, VfNetConfig
from tests.cli.clirun import run
from tests.fuzzing import FUZZ, assert_one_line, damaged
from tests.smallhost import GPU, NIC, NVME, PF, VM1, Host

STATE = "/run/hostdev/state.json"
INTENT = "/run/hostdev/intent.json"
WISHES = "/etc/hostdev/wishes.json"


@pytest.fixture
def busy(host: Host) -> Host:
    """The small host with something in every list: a VF given to a guest with network
    settings (active), the NIC detached (inactive), wishes for the PF and the NVMe."""
    host.kernel.add_netdev(PF, "ens1f0")
    vfs = host.mgr.set_num_vfs(PF, 2, persistent=True).vfs
    host.mgr.node_detach(NIC)
    host.mgr.node_detach(NVME, persistent=True)
    host.mgr.prepare(VM1, [HostdevSpec(address=vfs[0], net=VfNetConfig(mac="52:54:00:aa:bb:01",
                                                                        vlan=42))])
    return host


def _manager() -> HostdevManager:
    # A new manager each time: none of the last one's cache of the state file.
    return HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0.0,
                          lock_timeout=1.0)


def _put(path: str, data: bytes, mode: int = 0o600) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _check(host: Host, path: str, data: bytes, action: Callable[[HostdevManager], object],
           mode: int = 0o600) -> bool:
    """Write ``data`` at ``path``, run ``action`` on a new manager, check the outcome;
    whether the kernel was written."""
    _put(path, data, mode)
    writes = len(host.kernel.writes)
    mgr = _manager()
    try:
        action(mgr)
    except StateCorrupt as exc:
        assert_one_line(str(exc), path)
        assert _read(path) == data, "a file refused as damaged was changed"
        assert len(host.kernel.writes) == writes, "the kernel was written after a refusal"
    except HostdevError as exc:  # a valid file, and an operation that refuses
        assert_one_line(str(exc))
    for line in mgr.recovered + mgr.recovery_failed + mgr.blocked:
        assert_one_line(line)
    return len(host.kernel.writes) != writes


# ------------------------------------------------------------------------ state file

_STATE_OPS: dict[str, Callable[[HostdevManager], object]] = {
    "lists": lambda mgr: mgr.lists(),
    "reconcile": lambda mgr: mgr.reconcile(),
    "node_detach": lambda mgr: mgr.node_detach(GPU),
}


@pytest.fixture
def state_doc(busy: Host) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_read(STATE))
    assert doc["active"] and doc["inactive"]
    return doc


@FUZZ
@given(data=st.data(), op=st.sampled_from(sorted(_STATE_OPS)))
def test_damaged_state_file(busy: Host, state_doc: dict[str, Any], data: st.DataObject,
                            op: str) -> None:
    raw = data.draw(damaged(state_doc))
    _check(busy, STATE, raw, _STATE_OPS[op])


# -------------------------------------------------------------------- intent journal

@pytest.fixture
def intent_doc(busy: Host) -> dict[str, Any]:
    """A journal of every kind of entry, describing the host as it is: recovering it
    changes nothing, so what a damaged one makes recovery do is the damage's doing."""
    sysfs = busy.mgr.sysfs
    vf0 = busy.mgr.active()[0].address
    return {"format": "hostdev-intent", "version": 1, "transaction": "t1",
            "operation": "prepare", "pid": 1,
            "devices": [{"address": str(a), "driver": busy.driver(a),
                         "override": busy.override(a), "identity": sysfs.identity(a)}
                        for a in (NIC, GPU)],
            "vf_counts": [{"pf": str(PF), "count": 2, "target": 0}],
            "vf_nets": [{"address": str(vf0), "pf": str(PF), "index": 0,
                         "identity": sysfs.identity(vf0),
                         "values": {"mac": "52:54:00:aa:bb:01", "vlan": 42}}],
            "pending": [{"path": "/sys/bus/pci/drivers/nouveau/unbind",
                         "value": f"{GPU}\n", "devices": [str(GPU)], "pid": 999999,
                         "start": None, "gave_up": False}]}


def test_the_journal_of_the_fuzz_changes_nothing(busy: Host, intent_doc: dict[str, Any]) -> None:
    """The base the fuzz damages is a no-op for recovery (or every move would be blamed
    on the damage)."""
    _put(INTENT, json.dumps(intent_doc).encode())
    writes = len(busy.kernel.writes)
    mgr = _manager()
    mgr.reconcile()
    assert len(busy.kernel.writes) == writes and not mgr.recovery_failed


_KERNEL_NAME = re.compile(r"[^/\x00-\x1f\x7f]{1,255}")
_INTENT_OPS: dict[str, Callable[[HostdevManager], object]] = {
    "reconcile": lambda mgr: mgr.reconcile(),
    "node_detach": lambda mgr: mgr.node_detach(GPU),
    "prune": lambda mgr: mgr.prune_missing(),
}


@FUZZ
@given(data=st.data(), op=st.sampled_from(sorted(_INTENT_OPS)))
def test_damaged_journal(busy: Host, intent_doc: dict[str, Any], data: st.DataObject,
                         op: str) -> None:
    raw = data.draw(damaged(intent_doc))
    if _check(busy, INTENT, raw, _INTENT_OPS[op]) and op != "node_detach":
        # Recovery acted on the journal, so it took it for one hostdev wrote: then each
        # driver it gave a device back to is one a kernel can have (one sysfs name).
        for device in json.loads(raw)["devices"]:
            driver = device["driver"]
            assert driver is None or (_KERNEL_NAME.fullmatch(driver) and driver not in (
                ".", "..")), f"recovery moved a device back to driver {driver!r}"


# ----------------------------------------------------------------------- wishes file

@pytest.fixture
def wishes_doc(busy: Host) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_read(WISHES))
    assert doc["sriov"] and doc["detach"]
    return doc


_WISH_OPS: dict[str, Callable[[HostdevManager], object]] = {
    "wishes": lambda mgr: mgr.wishes(),
    "apply_persistent": lambda mgr: mgr.apply_persistent(),
}


@FUZZ
@given(data=st.data(), op=st.sampled_from(sorted(_WISH_OPS)))
def test_damaged_wishes_file(busy: Host, wishes_doc: dict[str, Any], data: st.DataObject,
                             op: str) -> None:
    raw = data.draw(damaged(wishes_doc))
    _check(busy, WISHES, raw, _WISH_OPS[op], mode=0o644)


@FUZZ
@given(data=st.data(), command=st.sampled_from(["wishes", "boot", "list", "reconcile"]))
def test_damaged_files_on_the_command_line(busy: Host, wishes_doc: dict[str, Any],
                                           state_doc: dict[str, Any],
                                           capsys: pytest.CaptureFixture[str],
                                           data: st.DataObject, command: str) -> None:
    """The commands that read the files: exit 0, 1 or 2 with one line on stderr."""
    path, doc = (WISHES, wishes_doc) if command in ("wishes", "boot") else (STATE, state_doc)
    _put(path, data.draw(damaged(doc)),
         0o644 if path == WISHES else 0o600)
    code, out, err = run(capsys, command)
    assert code in (0, 1, 2)
    if code == 1 and command == "boot" and not err:
        assert "failed" in out or "missing" in out, out  # a wish not applied, said on stdout
    elif code:
        assert err.startswith("hostdev: ") and err.count("\n") == 1, err
        assert_one_line(err.rstrip("\n"))
