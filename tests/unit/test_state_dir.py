"""The state directory as an attacker or an unlucky host leaves it: FIFOs, sockets,
devices, directories and symlinks in place of the files, foreign owners, a
read-only directory, absurd nesting and size. Every command answers with one
line and exit 2 (``list`` and ``show``: the table with a one-line note), nothing
hangs, nothing is overwritten."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pyfakefs.helpers import set_uid

from hostdev.cli.main import main
from hostdev.errors import StateCorrupt, StateUnusable
from hostdev.manager import HostdevManager
from hostdev.state.files import MAX_FILE_SIZE
from hostdev.state.journal import Journal
from hostdev.state.store import StateStore, default_state_dir
from hostdev.testing import FakeKernel
from hostdev.testing.materialize import materialize
from tests.smallhost import NIC, build_host

ROOT_UID = os.getuid()

DEVICE = "0000:00:02.0"  # the qemu-guest host's NIC
IS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("host")
    materialize("qemu-guest", root)
    return root


@pytest.fixture
def state(tmp_path: Path) -> Path:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o700)
    return directory


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """A hang (a FIFO read, a lock never granted) fails the test instead."""
    def expire(signum: int, frame: object) -> None:
        raise TimeoutError("hostdev hung")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run(capsys: pytest.CaptureFixture[str], tree: Path, state: Path,
        *argv: str) -> tuple[int, str, str]:
    code = main(["--root", str(tree), "--state-dir", str(state), "--release-timeout", "0",
                 *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _fifo(path: Path) -> str:
    os.mkfifo(path, 0o600)
    return "a FIFO"


def _directory(path: Path) -> str:
    path.mkdir(mode=0o700)
    (path / "keep").write_text("mine")
    return "a directory"


def _socket(path: Path) -> str:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    return "a socket"


def _symlink(path: Path) -> str:
    target = path.parent.parent / f"elsewhere-{path.name}"
    target.write_text('{"format": "hostdev-state", "version": 1}')
    os.chmod(target, 0o600)
    path.symlink_to(target)
    return "a symlink"


def _device(path: Path) -> str:
    if not IS_ROOT:
        pytest.skip("making a device node needs root")
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
    return "a character device"


KINDS: dict[str, Callable[[Path], str]] = {
    "fifo": _fifo, "directory": _directory, "socket": _socket, "symlink": _symlink,
    "device": _device,
}
COMMANDS = [("prune",), ("reconcile",), ("detach", DEVICE), ("reattach", DEVICE),
            ("reset", DEVICE), ("release", "--owner", "qemu/vm1", DEVICE)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["state.json", "intent.json", "state.lock"])
def test_not_a_regular_file(capsys: pytest.CaptureFixture[str], tree: Path, state: Path,
                            name: str, kind: str) -> None:
    path = state / name
    what = KINDS[kind](path)
    before = os.lstat(path)
    for argv in COMMANDS:
        code, out, err = run(capsys, tree, state, *argv)
        assert code == 2, (argv, err)
        assert err.count("\n") == 1 and str(path) in err and what in err, (argv, err)
        assert "Traceback" not in err
    for argv in [("list",), ("show", DEVICE)]:
        code, out, err = run(capsys, tree, state, *argv)
        assert code == 0 and DEVICE in out
        # list prints the note on stderr, show in its "list" line
        note = err if argv == ("list",) else out
        if name == "state.json":  # the only file a reading command opens
            assert "lists not shown" in note and what in note and str(path) in note
            assert err.count("\n") == (1 if argv == ("list",) else 0)
        else:
            assert err == "" and "lists not shown" not in out
    after = os.lstat(path)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    if kind == "directory":
        assert (path / "keep").read_text() == "mine"
    assert [n for n in os.listdir(state) if n.endswith(".tmp")] == []


@pytest.mark.parametrize("name", ["state.json", "intent.json"])
def test_deeply_nested_json(capsys: pytest.CaptureFixture[str], tree: Path, state: Path,
                            name: str) -> None:
    path = state / name
    path.write_text("[" * 100_000 + "]" * 100_000)
    os.chmod(path, 0o600)
    code, _, err = run(capsys, tree, state, "reconcile")
    assert code == 2 and err.count("\n") == 1 and "nested too deeply" in err
    assert str(path) in err
    code, out, err = run(capsys, tree, state, "list")
    assert code == 0 and DEVICE in out
    if name == "state.json":
        assert "nested too deeply" in err and err.count("\n") == 1
    assert path.stat().st_size == 200_000


@pytest.mark.parametrize("name", ["state.json", "intent.json"])
def test_huge_file_not_read(tmp_path: Path, state: Path, name: str,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = state / name
    with open(path, "wb") as f:
        f.truncate(100 << 20)  # sparse: 100 MB that costs no disk
    os.chmod(path, 0o600)
    reads: list[int] = []
    real_read = os.read

    def counting_read(fd: int, n: int) -> bytes:
        reads.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(os, "read", counting_read)
    store = StateStore(state)
    with pytest.raises(StateCorrupt, match="larger than 16 MiB"):
        if name == "state.json":
            store.load()
        else:
            Journal(state).read()
    assert reads == []  # refused from its size, not read


def test_size_cap_fits_4096_records(tmp_path: Path) -> None:
    """The cap is generous: a file of 4,096 records with long owner names fits."""
    from hostdev.address import PciAddress
    from hostdev.state.lists import Lists
    from hostdev.state.records import DeviceRecord, Owner

    lists = Lists()
    owner = Owner(driver="qemu", domain="a-rather-long-virtual-machine-name-" * 4)
    for i in range(4096):
        addr = PciAddress(domain=0, bus=i // 32, slot=i % 32, function=0)
        lists.active[addr] = DeviceRecord(address=addr, owner=owner, vendor=0x8086,
                                          device=0x10ed, original_driver="ixgbevf",
                                          pf=addr, vf_index=i, identity=10**9 + i)
    store = StateStore(tmp_path / "big")
    store.save(lists)
    size = store.path.stat().st_size
    assert size * 4 < MAX_FILE_SIZE, size
    assert len(StateStore(tmp_path / "big").load().active) == 4096


@pytest.mark.skipif(not IS_ROOT, reason="giving a file to another user needs root")
@pytest.mark.parametrize("what", ["directory", "state.json", "intent.json", "state.lock"])
def test_owned_by_another_user(capsys: pytest.CaptureFixture[str], tree: Path, state: Path,
                               what: str) -> None:
    for name in ("state.json", "intent.json"):
        path = state / name
        if name == what or name == "state.json":
            body = {"format": "hostdev-state", "version": 1} if name == "state.json" else {}
            path.write_text(json.dumps(body))
            os.chmod(path, 0o600)
    if what == "state.lock":
        (state / what).touch(mode=0o600)
    target = state if what == "directory" else state / what
    os.chown(target, 4242, 4242)  # private mode bits, foreign owner
    code, _, err = run(capsys, tree, state, "reconcile")
    assert code == 2 and err.count("\n") == 1
    assert "owned by uid 4242" in err and str(target) in err
    code, out, err = run(capsys, tree, state, "list")
    assert code == 0 and DEVICE in out
    if what in ("directory", "state.json"):
        assert "owned by uid 4242" in err
    assert os.stat(target).st_uid == 4242


@pytest.fixture
def as_nobody(fake_kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKernel]:
    """A fake host, and the caller turned into uid 65534 (pyfakefs then enforces
    permissions as for that user): works whether the suite runs as root or not."""
    fake_kernel.load_fixture("qemu-guest")
    set_uid(65534)
    monkeypatch.setattr("os.geteuid", lambda: 65534)
    try:
        yield fake_kernel
    finally:
        set_uid(ROOT_UID)


def test_read_only_state_directory(as_nobody: FakeKernel,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    state = "/var/lib/nobody-state"
    os.makedirs(state, mode=0o700)
    os.chmod(state, 0o500)  # read-only, even for its owner
    assert main(["--state-dir", state, "reconcile"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"lock file {state}/state.lock cannot be opened: Permission denied" in err
    assert main(["--state-dir", state, "list"]) == 0
    out, err = capsys.readouterr()
    assert DEVICE in out and err == ""
    assert os.listdir(state) == []


def test_non_root_on_roots_directory(as_nobody: FakeKernel,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    state = "/run/hostdev"
    set_uid(0)
    os.makedirs(state, mode=0o700)
    with open(f"{state}/state.json", "w") as f:
        f.write('{"format": "hostdev-state", "version": 1}')
    os.chmod(f"{state}/state.json", 0o600)
    os.chmod(state, 0o755)  # even readable: it is still root's
    set_uid(65534)
    for argv in (["reconcile"], ["detach", DEVICE], ["prune"]):
        assert main(["--state-dir", state, *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert f"state directory {state} is owned by uid 0, not by uid 65534" in err
    assert main(["--state-dir", state, "list"]) == 0
    out, err = capsys.readouterr()
    assert DEVICE in out and "note: lists not shown" in err and "owned by uid 0" in err
    set_uid(0)
    os.chmod(state, 0o700)
    set_uid(65534)
    assert main(["--state-dir", state, "reconcile"]) == 2  # private: cannot even look in
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "owned by uid 0" in err


def test_relative_xdg_runtime_dir_is_ignored(monkeypatch: pytest.MonkeyPatch, tree: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "run/user/1000")
    with pytest.raises(StateCorrupt, match="relative path .* so ignored"):
        default_state_dir(tree)
    with pytest.raises(StateCorrupt, match="relative path"):
        default_state_dir("/")
    assert main(["--root", str(tree), "reconcile"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "XDG_RUNTIME_DIR is a relative path" in err
    assert main(["--root", str(tree), "list"]) == 0
    out, err = capsys.readouterr()
    assert DEVICE in out and "relative path" in err
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert default_state_dir(tree) == tree / "run/user/1000/hostdev"


def test_state_directory_symlink_and_file(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(StateUnusable, match="is a symlink, not a plain directory"):
        StateStore(tmp_path / "link").peek()
    (tmp_path / "file").write_text("")
    store = StateStore(tmp_path / "file")
    with pytest.raises(StateUnusable, match="not a plain directory"), store.locked():
        pass


_NIC_BEFORE = {"address": str(NIC), "driver": "e1000e", "override": None, "identity": None}
#: Journals of the right shape holding values hostdev never writes.
_DAMAGED_JOURNALS: dict[str, dict[str, object]] = {
    "pending entry naming no device": {"pending": [{
        "path": "/sys/bus/pci/drivers/vfio-pci/unbind", "value": "x", "devices": [],
        "pid": 999999, "start": None, "gave_up": True}]},
    "override of two lines": {"devices": [{**_NIC_BEFORE, "override": "a\nb"}]},
    # Recovery gave the NIC "back" to these (unbind from vfio-pci, probe) before they
    # were refused: a name no kernel driver can have is damage, not a driver.
    "driver leaving the tree": {"devices": [{**_NIC_BEFORE, "driver": "../../etc"}]},
    "driver with a slash": {"devices": [{**_NIC_BEFORE, "driver": "a/b"}]},
    "driver of two lines": {"devices": [{**_NIC_BEFORE, "driver": "e1000e\nx"}]},
    "driver dot dot": {"devices": [{**_NIC_BEFORE, "driver": ".."}]},
    "driver empty": {"devices": [{**_NIC_BEFORE, "driver": ""}]},
    # An empty override reached set_override, which raised a bare ValueError ("internal
    # error"); "(null)" would have been written to driver_override as a driver's name.
    "override empty": {"devices": [{**_NIC_BEFORE, "driver": "vfio-pci", "override": ""}]},
    "override (null)": {"devices": [{**_NIC_BEFORE, "driver": "vfio-pci",
                                     "override": "(null)"}]},
    "negative VF count": {"vf_counts": [{"pf": "0000:03:00.0", "count": -1, "target": 0}]},
    "VF count past 16 bits": {"vf_counts": [{"pf": "0000:03:00.0", "count": 2**64,
                                             "target": 0}]},
    # Printed in the lines of what recovery did: a newline split them.
    "operation of two lines": {"operation": "node_detach\nroot: all good"},
    "pending path of two lines": {"pending": [{
        "path": "/sys/bus/pci/drivers/e1000e/unbind\nx", "value": "0000:00:19.0\n",
        "devices": [str(NIC)], "pid": 999999, "start": None, "gave_up": True}]},
    "PID namespace with a NUL": {"pending": [{
        "path": "/sys/bus/pci/drivers/e1000e/unbind", "value": "0000:00:19.0\n",
        "devices": [str(NIC)], "pid": 999999, "start": None, "pidns": "pid:[1]\x00",
        "gave_up": True}]},
    "negative VF index": {"vf_nets": [{"address": "0000:03:10.0", "pf": "0000:03:00.0",
                                       "index": -1, "identity": None,
                                       "values": {"vlan": 0}}]},
}


@pytest.mark.parametrize("damage", sorted(_DAMAGED_JOURNALS))
def test_a_damaged_journal_that_parses_is_refused(fake_kernel: FakeKernel, damage: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """JSON of the right shape but values hostdev never writes: StateCorrupt (exit 2), no
    traceback, nothing written back to the kernel."""
    import json

    build_host(fake_kernel)
    state = "/run/hostdev"
    HostdevManager(root="/", state_dir=state).node_detach(NIC)
    doc: dict[str, object] = {
        "format": "hostdev-intent", "version": 1, "transaction": "x", "operation": "node_detach",
        "pid": 1, "vf_counts": [], "devices": [], "pending": []}
    doc.update(_DAMAGED_JOURNALS[damage])
    with open(f"{state}/intent.json", "w") as handle:
        json.dump(doc, handle)
    os.chmod(f"{state}/intent.json", 0o600)
    writes = len(fake_kernel.writes)
    assert main(["--root", "/", "--state-dir", state, "reconcile"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "intent.json" in err and "Traceback" not in err
    assert "is damaged at " in err
    assert len(fake_kernel.writes) == writes
