"""The fault suites' figures, printed once at the end of the session.

Each case of tests/safety/test_fault_suite.py and test_disk_faults.py counts
itself (cases run, consistent, devices left driverless or moved and untracked).
Whatever order or subset ran (one file, one scenario, ``-k``, ``-x``), the
totals are printed in the terminal summary, and the session fails if a counted
case was not consistent or a device was left driverless and untracked, even if
the case's own assertion was somehow skipped.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

_FAULTS = "tests.safety.test_fault_suite"
_DISK = "tests.safety.test_disk_faults"


def figures(modules: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(lines to print, problems) for the suite modules loaded in ``modules``."""
    lines: list[str] = []
    problems: list[str] = []
    faults = modules.get(_FAULTS)
    if faults is not None and faults.CASES:
        cases, consistent = faults.CASES, faults.CONSISTENT
        lost = faults.DRIVERLESS_UNTRACKED
        lines.append(f"fault-injection suite: {len(cases)} cases run, {len(consistent)}"
                     f" consistent, {len(lost)} devices left driverless and untracked;"
                     f" {len(faults.BLOCKED_CASES)} cases had a write blocked in the kernel"
                     " by a VFIO user appearing mid-transaction")
        bad = sorted(set(cases) - set(consistent))
        if bad:
            problems.append(f"fault-injection suite: {len(bad)} cases not consistent:"
                            f" {bad[:5]}")
        if lost:
            problems.append(f"fault-injection suite: left driverless and untracked: {lost[:5]}")
    disk = modules.get(_DISK)
    if disk is not None and disk.FIGURES["cases"]:
        f = disk.FIGURES
        lines.append(f"disk-fault suite: {f['cases']} cases ran, {f['consistent']} consistent,"
                     f" {f['moved_untracked']} devices left moved and untracked,"
                     f" {f['moved_tracked']} moved but still recorded")
        if f["consistent"] != f["cases"]:
            problems.append(f"disk-fault suite: {f['cases'] - f['consistent']} cases not"
                            " consistent")
        if f["moved_untracked"]:
            problems.append(f"disk-fault suite: {f['moved_untracked']} devices left moved and"
                            " untracked")
    return lines, problems


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the totals of whatever fault-suite cases ran."""
    lines, problems = figures(dict(sys.modules))
    for line in lines + problems:
        terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session when a counted case was inconsistent."""
    _, problems = figures(dict(sys.modules))
    if problems and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
