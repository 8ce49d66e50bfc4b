"""Host-side hooks of the real-kernel tier: a terminal summary of the guest run."""

from __future__ import annotations

import pytest

from . import harness


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how long the guest ran, where its results are and what was recorded."""
    run = harness.LAST_RUN
    if run is None:
        return
    state = "TIMED OUT" if run.timed_out else f"exit {run.returncode}"
    terminalreporter.write_sep("-", "real-kernel tier")
    terminalreporter.write_line(
        f"guest {run.kernel_version}: {state} after {run.duration:.1f} s; "
        f"results in {run.results_dir}")
    outcomes = harness.LAST_OUTCOMES
    counts = {k: outcomes.count(k) for k in ("passed", "failed", "skipped")}
    terminalreporter.write_line(
        f"inner tests in the guest: {counts['passed']} passed, {counts['failed']} failed,"
        f" {counts['skipped']} skipped")
    if harness.LAST_RECORD is not None:
        terminalreporter.write_line(f"observations recorded in {harness.LAST_RECORD}")
