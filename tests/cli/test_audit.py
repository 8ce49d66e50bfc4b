"""The audit log: one JSON line per transaction, rotated at its size cap, and never
the cause of a failed or hung operation."""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from hostdev.address import PciAddress
from hostdev.cli.documents import json_schema
from hostdev.errors import HostdevError, KernelRefused, StateCorrupt
from hostdev.manager import HostdevManager
from hostdev.state.audit import AuditLog
from hostdev.state.records import HostdevSpec, Owner
from hostdev.state.store import StateStore
from hostdev.testing import FakeKernel


# Functions, not module constants: a Path made before pyfakefs patches the file
# system would reach the real one on Python 3.10 (its pathlib binds the I/O early).
def state_dir() -> Path:
    return Path("/run/hostdev")


def audit_log() -> Path:
    return state_dir() / "audit.log"


NIC = PciAddress.parse("0000:18:00.0")
PF = PciAddress.parse("0000:3d:00.0")


def _lines(path: Path | None = None) -> list[dict[str, Any]]:
    path = audit_log() if path is None else path
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def mgr(fake_kernel: FakeKernel) -> HostdevManager:
    fake_kernel.load_fixture("two-socket-server")
    return HostdevManager(root="/", state_dir=state_dir(), release_timeout=0)


def test_one_line_per_transaction_with_verb_devices_and_result(mgr: HostdevManager) -> None:
    mgr.node_detach(NIC)
    mgr.node_reattach(str(NIC))
    owner = Owner(driver="qemu", domain="vm1")
    vf = PciAddress.parse("0000:3d:02.0")
    mgr.prepare(owner, [HostdevSpec(address=vf)])
    mgr.reattach(owner, [vf])
    mgr.reconcile()
    mgr.prune_missing()
    mgr.active()  # a query: no transaction, no line
    lines = _lines()
    assert [line["verb"] for line in lines] == ["node_detach", "node_reattach", "prepare",
                                                 "reattach", "reconcile", "prune_missing"]
    assert [line["devices"] for line in lines] == [[str(NIC)], [str(NIC)], [str(vf)],
                                                    [str(vf)], [], []]
    schema = json_schema("audit")
    for line in lines:
        jsonschema.validate(line, schema)
        assert line["result"] == "ok" and line["error"] is None
        assert line["pid"] == os.getpid() and line["uid"] == os.getuid()
        assert line["schema"] == "hostdev.audit/1"
    assert os.stat(audit_log()).st_mode & 0o777 == 0o600


def test_a_failed_transaction_is_logged_with_its_error(mgr: HostdevManager,
                                                       fake_kernel: FakeKernel) -> None:
    fake_kernel.fail_write(f"*/{NIC}/driver_override", errno.EIO)
    with pytest.raises(KernelRefused):
        mgr.node_detach(NIC)
    (line,) = _lines()
    assert line["verb"] == "node_detach" and line["devices"] == [str(NIC)]
    assert line["result"] == "error"
    error = line["error"]
    assert isinstance(error, dict) and error["type"] == "KernelRefused"
    assert "EIO" in error["message"]
    jsonschema.validate(line, json_schema("audit"))


def test_an_error_naming_a_path_that_is_not_utf8_is_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A state directory named with bytes that are not UTF-8 (lone surrogates in the
    message): the line was lost, with a warning, for every failed transaction."""
    log = AuditLog(tmp_path)
    error = StateCorrupt("state file /run/host\udcffdev/state.json is not valid JSON")
    with caplog.at_level(logging.WARNING, logger="hostdev"):
        log.record("node_detach", [NIC], error)
    assert caplog.records == []
    (line,) = _lines(log.path)
    assert line["error"]["message"] == str(error)
    jsonschema.validate(line, json_schema("audit"))


def test_devices_a_call_did_not_name_are_the_ones_it_changed(mgr: HostdevManager,
                                                             fake_kernel: FakeKernel) -> None:
    owner = Owner(driver="qemu", domain="vm1")
    vf = PciAddress.parse("0000:3d:02.1")
    mgr.prepare(owner, [HostdevSpec(address=vf)])
    mgr.set_num_vfs(PF, 0, force=True)  # the VF's record goes with it
    line = _lines()[-1]
    assert line["verb"] == "set_num_vfs"
    assert str(PF) in line["devices"] and str(vf) in line["devices"]


def test_rotated_at_the_size_cap_keeping_a_few_files(mgr: HostdevManager) -> None:
    mgr.audit = AuditLog(state_dir(), max_size=600, keep=2)
    for _ in range(12):
        mgr.reconcile()
    names = sorted(p.name for p in state_dir().iterdir() if p.name.startswith("audit.log"))
    assert names == ["audit.log", "audit.log.1", "audit.log.2"]
    for name in names:
        size = (state_dir() / name).stat().st_size
        assert 0 < size <= 600
        assert all(line["verb"] == "reconcile" for line in _lines(state_dir() / name))
    # No line is lost between the newest two files: each holds whole lines.
    line_size = len(audit_log().read_text().splitlines()[0])
    assert len(_lines(state_dir() / "audit.log.1")) == 600 // line_size


@pytest.mark.parametrize("kind", ["symlink", "directory", "foreign"])
def test_an_unsafe_audit_file_warns_once_and_never_fails_the_operation(
        mgr: HostdevManager, caplog: pytest.LogCaptureFixture, kind: str) -> None:
    mgr.reconcile()  # the state directory exists
    audit_log().unlink()
    target = state_dir() / "elsewhere"
    if kind == "symlink":
        target.write_text("kept\n")
        os.symlink(target, audit_log())
    elif kind == "directory":
        audit_log().mkdir()
    else:
        audit_log().write_text("")
        os.chown(audit_log(), os.getuid() + 1, -1)
    caplog.set_level(logging.WARNING)
    mgr.node_detach(NIC)
    mgr.node_reattach(NIC)
    warnings = [r.getMessage() for r in caplog.records if "audit log" in r.getMessage()]
    assert len(warnings) == 1 and "the operation itself is not affected" in warnings[0]
    assert mgr.inactive() == [] and mgr.sysfs.read_link_name(
        mgr.sysfs.device_path(NIC, "driver")) != "vfio-pci"
    if kind == "symlink":  # nothing was written through the link
        assert target.read_text() == "kept\n"
    elif kind != "directory":
        assert audit_log().read_text() == ""


@pytest.mark.parametrize("kind", ["fifo", "socket", "group-writable"])
def test_a_fifo_socket_or_shared_file_is_never_written(tmp_path: Path, kind: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """On the real file system (a FIFO opened for writing would hang the process)."""
    import socket

    log = tmp_path / "audit.log"
    expected = "not a regular file"
    if kind == "fifo":
        os.mkfifo(log, 0o600)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(log))
    else:
        log.write_text("")
        os.chmod(log, 0o620)
        expected = "writable by other users"
    audit = AuditLog(tmp_path)
    caplog.set_level(logging.WARNING)
    audit.record("node_detach", [NIC])
    audit.record("node_detach", [NIC])
    (warning,) = [r.getMessage() for r in caplog.records]
    assert expected in warning and audit.warned
    if kind == "group-writable":
        assert log.read_text() == ""


def test_a_full_disk_loses_the_line_not_the_operation(mgr: HostdevManager,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    real_write = os.write

    def full(fd: int, data: bytes) -> int:
        if bytes(data).startswith(b"{\"schema\": \"hostdev.audit/1\""):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    caplog.set_level(logging.WARNING)
    result = mgr.node_detach(NIC)
    assert result.driver == "vfio-pci" and [r.address for r in mgr.inactive()] == [NIC]
    (warning,) = [r.getMessage() for r in caplog.records if "audit log" in r.getMessage()]
    assert "ENOSPC" in warning


def test_the_cli_names_the_verb_of_each_command(fake_kernel: FakeKernel,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from hostdev.cli.main import main

    fake_kernel.load_fixture("two-socket-server")
    state = ["--state-dir", str(state_dir())]
    assert main([*state, "detach", str(NIC)]) == 0
    assert main([*state, "sriov", str(PF), "4"]) == 0
    assert main([*state, "reset", "0000:99:00.0"]) == 1
    verbs = [(line["verb"], line["result"]) for line in _lines()]
    assert verbs == [("node_detach", "ok"), ("set_num_vfs", "ok"), ("node_reset", "error")]
    assert _lines()[-1]["devices"] == ["0000:99:00.0"]


def test_a_state_directory_refused_as_unsafe_gets_no_audit_line(
        fake_kernel: FakeKernel) -> None:
    fake_kernel.load_fixture("two-socket-server")
    state_dir().mkdir(parents=True)
    os.chmod(state_dir(), 0o777)  # anyone could plant files: refused, and nothing written there
    mgr = HostdevManager(root="/", state_dir=state_dir(), release_timeout=0)
    with pytest.raises(HostdevError):
        mgr.node_detach(NIC)
    assert sorted(os.listdir(state_dir())) == []


def test_the_audit_line_is_written_under_the_state_lock(mgr: HostdevManager,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    inside: list[bool] = [False]
    held: list[bool] = []
    real_locked, real_record = StateStore.locked, AuditLog.record

    @contextmanager
    def locked(self: StateStore, timeout: float | None = None) -> Iterator[None]:
        with real_locked(self, timeout):
            inside[0] = True
            try:
                yield
            finally:
                inside[0] = False

    def record(self: AuditLog, *args: Any, **kwargs: Any) -> None:
        held.append(inside[0])
        real_record(self, *args, **kwargs)

    monkeypatch.setattr(StateStore, "locked", locked)
    monkeypatch.setattr(AuditLog, "record", record)
    mgr.node_detach(NIC)
    with pytest.raises(HostdevError):
        mgr.node_detach("0000:99:00.0")
    assert held == [True, True], "each line (success or error) written before unlocking"
