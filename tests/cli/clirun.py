"""Running the ``hostdev`` command in-process in tests: its exit code (argparse's
refusals included, which exit through SystemExit) and what it printed."""

from __future__ import annotations

import pytest

from hostdev.cli.main import main

#: The state directory the command tests use on the fake file system.
STATE = ["--state-dir", "/run/hostdev"]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``hostdev ARGV``; (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own refusals
        code = int(str(exc.code or 0))
    out, err = capsys.readouterr()
    return code, out, err


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``hostdev --state-dir /run/hostdev ARGV``; (exit code, stdout, stderr)."""
    return run_cli(capsys, *STATE, *argv)
