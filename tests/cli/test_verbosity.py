"""-v/--verbose logs every kernel write and every holder found; -q/--quiet only errors.
Both are taken before and after the sub-command."""

from __future__ import annotations

import errno
import logging
import threading

import pytest

from hostdev.cli.main import main
from hostdev.cli.parser import build_parser
from hostdev.testing import FakeKernel

STATE = ["--state-dir", "/run/hostdev"]
NIC = "0000:18:00.0"
DEV = f"/sys/bus/pci/devices/{NIC}"


def _debug(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == logger and r.levelno == logging.DEBUG]


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_logs_each_write_with_its_result(fake_kernel: FakeKernel,
                                                 caplog: pytest.LogCaptureFixture,
                                                 capsys: pytest.CaptureFixture[str],
                                                 where: str) -> None:
    fake_kernel.load_fixture("two-socket-server")
    caplog.set_level(logging.NOTSET)
    argv = [*STATE, "-v", "detach", NIC] if where == "before" else [*STATE, "detach", NIC, "-v"]
    assert main(argv) == 0
    writes = _debug(caplog, "hostdev.kernel")
    # One line per write the fake kernel saw, in order, each saying what, where, and "ok".
    assert len(writes) == len(fake_kernel.writes) > 0
    assert f"write 'vfio-pci' to {DEV}/driver_override: ok" in writes
    assert all(line.endswith(": ok") for line in writes)


def test_a_refused_write_is_logged_with_the_error(fake_kernel: FakeKernel,
                                                  caplog: pytest.LogCaptureFixture,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    fake_kernel.fail_write(f"*/{NIC}/driver_override", errno.EIO)
    caplog.set_level(logging.NOTSET)
    assert main([*STATE, "detach", "-v", NIC]) == 1
    writes = _debug(caplog, "hostdev.kernel")
    assert writes[0].startswith(f"write 'vfio-pci' to {DEV}/driver_override: KernelRefused:")
    assert "EIO" in writes[0]


def test_without_verbose_no_write_is_logged(fake_kernel: FakeKernel,
                                            caplog: pytest.LogCaptureFixture,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    assert main([*STATE, "detach", NIC]) == 0
    assert fake_kernel.writes and _debug(caplog, "hostdev.kernel") == []


def test_verbose_logs_each_holder_found(fake_kernel: FakeKernel,
                                       caplog: pytest.LogCaptureFixture,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    assert main([*STATE, "detach", NIC]) == 0
    fake_kernel.hold_vfio(NIC, pid=4321, comm="qemu-system-x86")
    caplog.set_level(logging.NOTSET)
    assert main([*STATE, "--release-timeout", "0", "reattach", NIC, "--verbose"]) == 1
    holders = [m for m in _debug(caplog, "hostdev") if m.startswith("holder found")]
    assert holders and all("qemu-system-x86 (pid 4321" in m and m.endswith(NIC)
                           for m in holders)


def test_quiet_shows_no_wait_and_no_warning(fake_kernel: FakeKernel,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    assert main([*STATE, "detach", NIC]) == 0
    holder = fake_kernel.hold_vfio(NIC, pid=4321, comm="qemu-system-x86", via="mmap")
    root = logging.getLogger()
    handler = logging.StreamHandler()  # stands in for the basicConfig the CLI does
    root.addHandler(handler)
    try:
        timer = threading.Timer(0.3, holder.release)
        timer.start()
        code = main(["-q", *STATE, "--release-timeout", "5", "reattach", NIC])
        timer.join()
        assert code == 0
        assert "waiting" not in capsys.readouterr().err
        # The same wait without --quiet is shown: the difference is the option.
        assert main([*STATE, "detach", NIC]) == 0
        holder = fake_kernel.hold_vfio(NIC, pid=4322, comm="qemu-system-x86", via="mmap")
        timer = threading.Timer(0.3, holder.release)
        timer.start()
        assert main([*STATE, "--release-timeout", "5", "reattach", NIC]) == 0
        timer.join()
        assert "waiting up to 5 s for qemu-system-x86 (pid 4322" in capsys.readouterr().err
    finally:
        root.removeHandler(handler)


def test_quiet_after_the_command_keeps_warnings_out(fake_kernel: FakeKernel,
                                                    caplog: pytest.LogCaptureFixture,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    assert main([*STATE, "reconcile", "--quiet"]) == 0
    assert logging.getLogger("hostdev").getEffectiveLevel() == logging.ERROR
    assert main([*STATE, "reconcile"]) == 0  # each run sets the level anew
    assert logging.getLogger("hostdev").getEffectiveLevel() == logging.INFO


def test_verbose_and_quiet_together_is_bad_input(fake_kernel: FakeKernel,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    with pytest.raises(SystemExit) as info:
        main([*STATE, "-v", "detach", NIC, "-q"])
    assert info.value.code == 2
    assert "--verbose and --quiet cannot be used together" in capsys.readouterr().err
    assert fake_kernel.writes == []


def test_every_command_takes_the_common_options() -> None:
    import argparse

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert len(subs.choices) >= 13
    for name, sub in subs.choices.items():  # commands added later get them too
        options = {o for a in sub._actions for o in a.option_strings}
        assert {"-v", "--verbose", "-q", "--quiet"} <= options, name
    assert parser.parse_args(["prune", "-v"]).verbose == 1
    assert parser.parse_args(["-v", "prune"]).verbose == 1  # not undone by the sub-parser
    assert parser.parse_args(["-q", "prune"]).quiet is True
    assert parser.parse_args(["prune", "--quiet"]).quiet is True
    assert parser.parse_args(["prune"]).verbose == 0


def test_quiet_show_keeps_its_warnings_to_itself(fake_kernel: FakeKernel,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import os

    fake_kernel.load_fixture("vmd-workstation")
    vf = "0000:01:00.2"
    link = os.path.realpath(f"/sys/bus/pci/devices/{vf}") + "/physfn"
    os.unlink(link)
    os.symlink("../../../../etc", link)  # a link that is not a PCI function: a warning
    assert main([*STATE, "show", vf]) == 0
    assert "physfn link points at 'etc'" in capsys.readouterr().err
    assert main([*STATE, "show", vf, "-q"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and vf in out
