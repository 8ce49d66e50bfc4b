"""``hostdev watch`` in process on the fake kernel, stopped by a real SIGTERM.

The fake kernel lives in this process (pyfakefs), so the command cannot run in a
subprocess here; the signal is sent to this process instead, from inside the
watch's wait for a batch of uevents, once its handler is known to be installed.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import jsonschema
import pytest

from hostdev.cli.documents import json_schema
from hostdev.cli.main import main
from hostdev.cli.watching import STOP_SIGNALS, stop_handler, stopping_on_signals
from hostdev.errors import UeventsUnavailable
from hostdev.linux import uevents
from hostdev.linux.uevents import BATCH_LIMIT, Batch, EventSource
from tests.smallhost import VM1, Host

STATE = ["--state-dir", "/run/hostdev", "--no-load-modules"]


def test_stop_handler_sets_the_event() -> None:
    stop = threading.Event()
    stop_handler(stop)(signal.SIGTERM, None)
    assert stop.is_set()


def test_signals_are_routed_only_while_watching() -> None:
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    stop = threading.Event()
    with stopping_on_signals(stop):
        assert all(signal.getsignal(sig) not in (before[sig], signal.SIG_DFL)
                   for sig in STOP_SIGNALS)
    assert {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} == before


@pytest.mark.parametrize("signum", STOP_SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_watch_prunes_then_stops_on_a_signal(host: Host, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str],
                                             signum: int) -> None:
    vf0, _ = host.vfs(2)
    host.mgr.prepare(VM1, [vf0])
    before = signal.getsignal(signum)
    real = uevents.gather
    waits: list[float] = []

    def gather(source: EventSource, timeout: float, limit: int = BATCH_LIMIT) -> Batch:
        waits.append(timeout)
        if len(waits) == 1:
            host.vfs(0)  # someone else removes the VFs
        elif len(waits) == 2:
            handler = signal.getsignal(signum)
            assert callable(handler) and handler is not before, \
                "the watch must install its own handler before it waits"
            os.kill(os.getpid(), signum)
        return real(source, timeout, limit)

    monkeypatch.setattr(uevents, "gather", gather)
    root = logging.getLogger()
    handler = logging.StreamHandler()  # stands in for the basicConfig the CLI does
    root.addHandler(handler)
    try:
        code = main([*STATE, "watch", "--json"])
    finally:
        root.removeHandler(handler)
    out, err = capsys.readouterr()
    assert code == 0
    assert len(waits) == 2, "the watch ends at the first look after the signal"
    events = [json.loads(line) for line in out.splitlines()]
    schema = json_schema("watch")
    for event in events:  # each line a document of its own, stamped first
        assert next(iter(event)) == "schema" and event["schema"] == "hostdev.watch/1"
        jsonschema.validate(event, schema)
    assert [(e["kind"], e["address"], e["owner"]) for e in events] == [
        ("pruned", str(vf0), {"driver": "qemu", "domain": "vm1"})]
    assert f"{vf0}: gone" in err and "held by driver qemu, domain vm1" in err
    assert "watching PCI uevents" in err
    assert signal.getsignal(signum) is before
    assert host.kernel.state.monitors == []
    assert host.mgr.active() == []


def test_watch_needs_the_running_kernel(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    os.makedirs(f"{tmp_path}/sys/bus/pci/devices")
    code = main(["--root", str(tmp_path), "--state-dir", f"{tmp_path}/state", "watch"])
    _, err = capsys.readouterr()
    assert code == 2 and "--root must be /" in err


def _reachable_by_others(path: str) -> bool:
    """Every directory down to ``path`` can be entered by any user."""
    path = os.path.realpath(path)
    while True:
        if not os.stat(path).st_mode & 0o001:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def test_watch_on_this_machine_stops_on_sigterm(tmp_path: Path) -> None:
    """`hostdev watch` in a subprocess on this machine's kernel: it starts listening and
    SIGTERM ends it with exit 0. It runs as nobody (when we are root), so it cannot write
    this machine's /sys whatever it does."""
    if not os.path.isdir("/sys/bus/pci/devices"):
        pytest.skip("this machine has no /sys/bus/pci")
    try:
        uevents.PyudevSource().close()
    except UeventsUnavailable as exc:
        pytest.skip(f"no kernel uevents here: {exc}")
    user: dict[str, object] = {}
    if os.geteuid() == 0:
        here = Path(__file__).resolve().parents[2]
        if not all(_reachable_by_others(p) for p in (str(here), sys.executable)):
            pytest.skip("the checkout or the interpreter is not readable by nobody")
        user = {"user": 65534, "group": 65534, "extra_groups": []}
    shared = Path(tempfile.mkdtemp(prefix="hostdev-watch-"))
    try:
        shared.chmod(0o777)  # nobody creates the state directory in it
        argv = [sys.executable, "-m", "hostdev.cli.main", "--state-dir", str(shared / "state"),
                "--no-load-modules", "watch"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
                                **user)  # type: ignore[call-overload]
        try:
            assert proc.stderr is not None
            ready, _, _ = select.select([proc.stderr], [], [], 60)
            line = proc.stderr.readline() if ready else ""
            assert "watching PCI uevents" in line, (line, proc.poll())
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
            assert out == ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
    finally:
        shutil.rmtree(shared)
