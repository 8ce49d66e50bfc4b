"""``hostdev list`` on this machine's real /sys: read-only, and without root.

Only reads happen here; the test fails if the listing tries to write anything.
"""

from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stderr, redirect_stdout

import pytest

from hostdev.cli import inventory  # noqa: F401  (imported before dropping root)
from hostdev.cli.main import main
from hostdev.linux.sysfs import Sysfs

pytestmark = pytest.mark.skipif(not os.path.isdir("/sys/bus/pci/devices"),
                                reason="this machine has no /sys/bus/pci")


def _list_as(uid: int | None) -> tuple[int, str, str]:
    """Run 'hostdev list --json' in a forked child, as ``uid`` when given."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 99
        try:
            os.close(read_fd)
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            os.environ.pop("XDG_RUNTIME_DIR", None)
            out, err = io.StringIO(), io.StringIO()
            with redirect_stdout(out), redirect_stderr(err):
                code = main(["list", "--json"])
            os.write(write_fd, json.dumps([code, out.getvalue(), err.getvalue()]).encode())
        finally:
            os._exit(0 if code != 99 else 1)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 1 << 16):
        chunks.append(chunk)
    os.close(read_fd)
    os.waitpid(pid, 0)
    code, out, err = json.loads(b"".join(chunks))
    return code, out, err


def test_list_on_real_sys_matches_a_shell_read() -> None:
    code, out, err = _list_as(None)
    assert code == 0, err
    devices = json.loads(out)["devices"]
    names = sorted(os.listdir("/sys/bus/pci/devices"))
    assert [d["address"] for d in devices] == names
    for dev in devices:
        base = f"/sys/bus/pci/devices/{dev['address']}"
        with open(f"{base}/vendor") as handle:
            assert int(handle.read(), 16) == int(dev["vendor"], 16)
        link = f"{base}/driver"
        assert dev["driver"] == (os.path.basename(os.readlink(link))
                                 if os.path.islink(link) else None)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")
def test_list_without_root() -> None:
    code, out, err = _list_as(65534)
    assert code == 0, err
    assert len(json.loads(out)["devices"]) == len(os.listdir("/sys/bus/pci/devices"))


def test_listing_never_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Sysfs, path: str, value: str, address: object = None) -> None:
        raise AssertionError(f"listing tried to write {path}")

    monkeypatch.setattr(Sysfs, "write", refuse)
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["list"]) == 0
    assert "Devices on a host driver" in out.getvalue()
