"""--json on every command that prints: each document carries its schema id and
validates against the schema ``hostdev schema NAME`` prints; errors are documents
too, on stdout, with the exit code unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import jsonschema
import pytest

from hostdev.cli.documents import DOCUMENTS, ErrorOutput, schema_id_of
from hostdev.cli.main import main
from hostdev.testing import FakeKernel

STATE = ["--state-dir", "/run/hostdev"]
NIC = "0000:18:00.0"
PF = "0000:3d:00.0"
VF = "0000:3d:02.0"


def _schema(capsys: pytest.CaptureFixture[str], name: str) -> dict[str, object]:
    assert main(["schema", name]) == 0
    schema: dict[str, object] = json.loads(capsys.readouterr().out)
    return schema


def _document(capsys: pytest.CaptureFixture[str], name: str, *argv: str,
              code: int = 0) -> dict[str, Any]:
    """Run ``argv`` with --json; check its exit code, schema id and schema."""
    assert main([*STATE, *argv, "--json"]) == code
    out = capsys.readouterr().out
    doc: dict[str, Any] = json.loads(out)
    assert doc["schema"] == schema_id_of(DOCUMENTS[name])
    assert next(iter(doc)) == "schema"  # first, where a reader looks
    jsonschema.validate(doc, _schema(capsys, name))
    return doc


def test_every_command_prints_a_document_of_its_schema(
        fake_kernel: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    seen = set()

    def doc(name: str, *argv: str, code: int = 0) -> dict[str, Any]:
        seen.add(name)
        return _document(capsys, name, *argv, code=code)

    doc("list", "list")
    doc("show", "show", NIC)
    detached = doc("node", "detach", NIC)
    assert detached["results"] == [{"address": NIC, "driver": "vfio-pci",
                                    "action": "detached to vfio-pci", "pruned": []}]
    doc("node", "reset", NIC)
    doc("node", "reattach", NIC)
    assigned = doc("assign", "assign", "--owner", "qemu/vm1", VF)
    assert [r["address"] for r in assigned["prepared"]] == [VF]
    doc("release", "release", "--owner", "qemu/vm1", VF)
    assert doc("sriov", "sriov", PF, "4")["after"] == 4
    assert doc("reconcile", "reconcile")["failed"] == []
    assert doc("prune", "prune")["pruned"] == []
    chosen = doc("allocate", "assign", "--owner", "qemu/vm2", "--count", "2")["chosen"]
    assert len(chosen) == 2
    doc("release", "release", "--owner", "qemu/vm2", *chosen)
    assert doc("node", "detach", NIC, "--persistent")["results"][0]["address"] == NIC
    assert [w["device"]["address"] for w in doc("wishes", "wishes")["detach"]] == [NIC]
    assert [o["address"] for o in doc("boot", "boot")["already"]] == [NIC]
    assert set(doc("schemas", "schema")["documents"]) == set(DOCUMENTS)
    doc("error", "show", "0000:99:00.0", code=1)
    # The audit log is a file, not a command's output; watch lines and install-units
    # (which reads the package's files, not on the fake file system) are checked in
    # tests/cli/test_watch_command.py and tests/cli/test_persistent_commands.py.
    assert seen == set(DOCUMENTS) - {"audit", "watch", "units"}


def test_a_report_that_fails_keeps_its_document_and_exit_code(
        fake_kernel: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    assert main([*STATE, "assign", "--owner", "qemu/vm1", VF]) == 0
    fake_kernel.hold_vfio(VF, pid=77)
    capsys.readouterr()
    doc = _document(capsys, "release", "--release-timeout", "0", "release", "--owner",
                    "qemu/vm1", VF, code=1)
    assert [f["address"] for f in doc["failed"]] == [VF]


@pytest.mark.parametrize(("argv", "code", "kind", "device"), [
    (["detach", "0000:99:00.0"], 1, "DeviceNotFound", "0000:99:00.0"),
    (["detach", "not-an-address"], 2, "InvalidAddress", None),
    (["show", "0000:99:00.0"], 1, "DeviceNotFound", "0000:99:00.0"),
    (["sriov", PF, "4", "--force"], 0, None, None),
    (["reset", "--driver", "x", NIC], 2, "UsageError", None),  # does not parse
    (["detach", "--driver", "../x", NIC], 2, "InvalidDriverName", None),
])
def test_errors_are_documents_on_stdout_with_the_same_exit_code(
        fake_kernel: FakeKernel, capsys: pytest.CaptureFixture[str], argv: list[str],
        code: int, kind: str | None, device: str | None) -> None:
    fake_kernel.load_fixture("two-socket-server")
    try:
        got = main([*STATE, *argv, "--json"])
    except SystemExit as exit_info:  # a command line that does not parse exits as argparse does
        got = int(str(exit_info.code))
    out, err = capsys.readouterr()
    assert got == code
    if kind is None:
        assert "error" not in json.loads(out)
        return
    doc = json.loads(out)
    assert doc == {"schema": "hostdev.error/1",
                   "error": {"type": kind, "message": err.removeprefix("hostdev: ").rstrip("\n"),
                             "exit_code": code, "device": device},
                   "done": None}
    jsonschema.validate(doc, ErrorOutput.model_json_schema(by_alias=True))
    ErrorOutput.model_validate(doc)  # the hand-written document is the model's


def test_an_error_after_some_devices_says_what_was_done(
        fake_kernel: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    doc = _document(capsys, "error", "detach", NIC, "0000:99:00.0", code=1)
    assert doc["error"]["device"] == "0000:99:00.0"
    done = doc["done"]
    assert done["schema"] == "hostdev.node/1"
    assert [r["address"] for r in done["results"]] == [NIC]
    jsonschema.validate(done, _schema(capsys, "node"))


def test_without_json_an_error_prints_nothing_on_stdout(
        fake_kernel: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    assert main([*STATE, "detach", "0000:99:00.0"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("hostdev: PCI device 0000:99:00.0 not found")


def test_json_after_a_double_dash_is_not_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["nope", "--", "--json"])
    assert capsys.readouterr().out == ""


def test_list_fails_as_json_without_pydantic() -> None:
    """The error document of ``list`` is written on list's fast path."""
    code = ("import sys\nfrom hostdev.cli.main import main\n"
            "rc = main(['--root', '/nonexistent', '--state-dir', '/nonexistent', 'list',"
            " '--json'])\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'logging'))\n"
            "print(rc, ','.join(heavy), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.stderr.splitlines()[-1].strip() == "2", done.stderr
    doc = json.loads(done.stdout)
    assert doc["schema"] == "hostdev.error/1" and doc["error"]["type"] == "NotASysfsTree"
    assert doc["error"]["exit_code"] == 2


def test_schema_lists_every_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows == [[name, schema_id_of(model)] for name, model in DOCUMENTS.items()]
    for name, model in DOCUMENTS.items():
        schema = _schema(capsys, name)
        props = schema["properties"]
        assert isinstance(props, dict)
        assert props["schema"]["const"] == schema_id_of(model), name
    assert _schema(capsys, "list") == json.loads(_list_schema(capsys))


def _list_schema(capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["list", "--schema"]) == 0
    return capsys.readouterr().out


def test_an_unknown_schema_name_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hostdev: no document named 'nope': choose one of list, show,")


def test_an_internal_error_is_one_line_and_a_document(
        fake_kernel: FakeKernel, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_kernel.load_fixture("two-socket-server")
    import importlib

    # The module the command runs (sys.modules'; a test may have re-imported it).
    inventory = importlib.import_module("hostdev.cli.inventory")

    def broken(args: object) -> int:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(inventory, "cmd_show", broken)
    monkeypatch.delenv("HOSTDEV_TRACEBACK", raising=False)
    assert main([*STATE, "show", NIC, "--json"]) == 1
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "internal error: ZeroDivisionError" in err
    assert "HOSTDEV_TRACEBACK=1" in err
    assert json.loads(out)["error"]["type"] == "InternalError"
    monkeypatch.setenv("HOSTDEV_TRACEBACK", "1")
    with pytest.raises(ZeroDivisionError):
        main([*STATE, "show", NIC])
