"""Fuzzing what a damaged or hand-made tree under ``--root`` holds: one attribute of one
device (``uevent``, the ids, ``numa_node``, the SR-IOV counts, ``driver_override``...)
replaced by any text, then ``show --json`` and ``list --json``.

Exit 0 with a document that validates against its schema (the device left out of
``list`` with a warning, or its bad attribute named), or exit 1 or 2 with one line on
stderr; never an internal error. (The regressions this guards are in
tests/unit/test_scan_uevent.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostdev.cli.documents import json_schema
from hostdev.cli.main import main
from hostdev.testing.materialize import materialize
from tests.fuzzing import FUZZ, HOSTILE_TEXT, NUMBERS, assert_one_line, uevents

#: A PF, one of its VFs, a NIC, a GPU and a USB controller of the two-socket server.
DEVICES = ["0000:3d:00.0", "0000:3d:02.0", "0000:18:00.0", "0000:5e:00.0", "0000:00:14.0"]
ATTRIBUTES = ["uevent", "class", "vendor", "device", "subsystem_vendor", "subsystem_device",
              "numa_node", "sriov_totalvfs", "sriov_numvfs", "sriov_offset", "sriov_stride",
              "driver_override", "reset_method", "revision"]
#: What a damaged attribute holds: numbers the kernel never prints, and any text.
VALUES = st.sampled_from([
    "", "\n", "-1\n", "-2\n", "0\n", "7\n", "65536\n", "99999999999999999999\n", "0x\n",
    "0xffffffff\n", "-0x1\n", "0x123456\n", "nan\n", "1 2\n", "(null)\n", "a\nb\n",
    "x" * 5000, *HOSTILE_TEXT]) | st.text(max_size=12)
_IDS = {"class", "vendor", "device", "subsystem_vendor", "subsystem_device"}
_NUMBERS = {"numa_node", "sriov_totalvfs", "sriov_numvfs", "sriov_offset", "sriov_stride"}


def _value(attribute: str) -> st.SearchStrategy[str]:
    """What to write in ``attribute``: mostly what it holds, damaged, else anything."""
    if attribute == "uevent":
        return uevents() | VALUES
    if attribute in _IDS:
        return st.builds(lambda n: f"0x{n}\n", NUMBERS) | VALUES
    if attribute in _NUMBERS:
        return st.integers(-(2**70), 2**70).map(lambda n: f"{n}\n") | VALUES
    return VALUES


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("host")
    materialize("two-socket-server", root)
    (root / "state").mkdir(mode=0o700)
    return root


@settings(FUZZ, max_examples=100)  # two commands an example
@given(device=st.sampled_from(DEVICES),
       attribute=st.sampled_from(ATTRIBUTES) | st.just("uevent"),  # read first, parsed most
       data=st.data(), command=st.sampled_from(["show", "list"]))
def test_a_damaged_attribute(tree: Path, capsys: pytest.CaptureFixture[str], device: str,
                             attribute: str, data: st.DataObject, command: str) -> None:
    value = data.draw(_value(attribute))
    path = tree / "sys/bus/pci/devices" / device / attribute
    old = path.read_bytes() if path.exists() else None
    path.write_bytes(value.encode("utf-8", "surrogateescape"))
    try:
        argv = ["--root", str(tree), "--state-dir", str(tree / "state"), command,
                *([device] if command == "show" else []), "--json"]
        code = main(argv)
        out, err = capsys.readouterr()
    finally:
        if old is None:
            path.unlink()
        else:
            path.write_bytes(old)
    assert code in (0, 1, 2)
    if code:
        assert err.startswith("hostdev: ") and err.count("\n") == 1, err
        assert_one_line(err.rstrip("\n"))
        return
    jsonschema.validate(json.loads(out), json_schema(command))
    for line in err.splitlines():
        assert line.startswith("hostdev: warning: "), err
