"""Fuzzing the command line: every verb with generated addresses, driver names, owners,
counts, MACs, VLANs and global options (text with NUL, newlines, ``..``, ``/``, very
long, unicode, lone surrogates as undecodable bytes give, mixed with valid values).

The command exits 0 (the value was valid), 1 or 2; a failure is one line on stderr,
never an internal error or a traceback, and leaves the fake host as it was (drivers,
overrides, VF count) and the state file too. (Plain regression tests of what this
found are in tests/cli/test_commands.py.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostdev.address import PciAddress
from tests.cli.clirun import run, run_cli
from tests.fuzzing import FUZZ, HOSTILE_TEXT, assert_one_line
from tests.smallhost import PF, VM1, Host

#: A value where the command wants one: hostile or valid text, or any text at all.
TEXT = st.sampled_from(HOSTILE_TEXT) | st.text(max_size=24)

VF0 = PciAddress.parse("0000:03:10.0")
#: ``data.draw`` of a test given ``st.data()``.
Draw = Callable[[st.SearchStrategy[Any]], Any]


def _text(draw: Draw) -> str:
    text: str = draw(TEXT)
    return text


def _args(draw: Draw, command: str) -> list[str]:
    """The words after the command name."""
    t = _text(draw)
    if command in ("show", "reset", "reattach"):
        return [t]
    if command == "detach":
        return [t, *draw(st.sampled_from([[], ["--driver", _text(draw)]]))]
    if command == "assign":
        extra = draw(st.sampled_from([
            [t], ["--driver", _text(draw), "0000:00:19.0"], ["--count", _text(draw)],
            ["--count", "1", "--pf", _text(draw)], ["--count", "1", "--id", _text(draw)],
            ["--count", "1", "--numa", _text(draw)], ["0000:03:10.0", "--mac", _text(draw)],
            ["0000:03:10.0", "--vlan", _text(draw)],
            ["0000:03:10.0", "--vlan", "5", "--qos", _text(draw)]]))
        owner = draw(st.sampled_from(["qemu/vm1", t]))
        return ["--owner", owner, *extra]
    if command == "release":
        return ["--owner", _text(draw), draw(st.sampled_from(["0000:03:10.0", t]))]
    if command == "sriov":
        words: list[str] = draw(st.sampled_from([[str(PF), t], [t, "2"], [t, t]]))
        return words
    if command == "list":
        flag = draw(st.sampled_from(["--driver", "--id", "--pf", "--numa", "--list", "--class"]))
        return [flag, t]
    if command == "boot":
        return ["--only", t]
    if command == "schema":
        return [t]
    raise AssertionError(command)


COMMANDS = ["show", "reset", "reattach", "detach", "assign", "release", "sriov", "list",
            "boot", "schema"]


def _host_now(host: Host) -> tuple[object, ...]:
    state = "/run/hostdev/state.json"
    saved = None
    if os.path.exists(state):
        with open(state, "rb") as handle:
            saved = handle.read()
    addresses = host.kernel.addresses()
    return (addresses, host.where(*addresses), saved,
            host.mgr.sysfs.read_text(host.mgr.sysfs.device_path(PF, "sriov_numvfs")))


@pytest.fixture
def vf_host(host: Host) -> Host:
    """The small host with two VFs, the first given to a guest."""
    host.kernel.add_netdev(PF, "ens1f0")
    host.vfs(2)
    host.mgr.prepare(VM1, [VF0])
    return host


@FUZZ
@given(command=st.sampled_from(COMMANDS), data=st.data(), as_json=st.booleans())
def test_generated_arguments(vf_host: Host, capsys: pytest.CaptureFixture[str], command: str,
                             data: st.DataObject, as_json: bool) -> None:
    argv = [command, *_args(data.draw, command), *(["--json"] if as_json else [])]
    before = _host_now(vf_host)
    code, out, err = run(capsys, *argv)
    assert code in (0, 1, 2), (argv, code, err)
    if code == 0:
        return
    assert err.startswith("hostdev: ") and err.count("\n") == 1, (argv, err)
    assert_one_line(err.rstrip("\n"))
    assert _host_now(vf_host) == before, f"{argv} failed ({err.strip()}) and changed the host"
    if as_json and out:
        assert json.loads(out)["error"]["exit_code"] == code


@FUZZ
@given(option=st.sampled_from(["--root", "--state-dir", "--config-dir", "--release-timeout"]),
       value=TEXT, command=st.sampled_from(["reconcile", "list", "wishes"]))
def test_generated_global_options(vf_host: Host, capsys: pytest.CaptureFixture[str],
                                  option: str, value: str, command: str) -> None:
    before = _host_now(vf_host)
    code, _, err = run_cli(capsys, option, value, command)
    assert code in (0, 1, 2), (option, value, code, err)
    if code:
        assert err.startswith("hostdev: ") and err.count("\n") == 1, (option, value, err)
        assert_one_line(err.rstrip("\n"))
        assert _host_now(vf_host) == before


_LIST_WORDS = st.sampled_from([
    "list", "--json", "--schema", "-v", "-vv", "--verbose", "-q", "--quiet", "--driver", "--id",
    "--pf", "--numa", "--list", "--class", "--root", "--state-dir", "--config-dir",
    "--no-load-modules", "--", "-", "--json=1", "--driver=x", "--driver=", "--root=/x",
    "--root=", "-vq", "x", "", "-1", "--verbose=2", "--release-timeout", "3", "-h",
    "--jso", "--dri"]) | TEXT


@FUZZ
@given(st.lists(_LIST_WORDS, max_size=7))
def test_the_fast_list_parse_agrees_with_argparse(argv: list[str]) -> None:
    """``hostdev list`` is parsed by hand (cli/listargs.py) when it can be: what it takes,
    argparse takes too, with the same result."""
    import contextlib
    import io

    from hostdev.cli.listargs import fast_list_args
    from hostdev.cli.parser import build_parser

    fast = fast_list_args(argv)
    if fast is None:
        return
    with contextlib.redirect_stderr(io.StringIO()):
        slow = build_parser().parse_args(argv)  # SystemExit: argparse refuses it
    assert vars(fast) == vars(slow)
