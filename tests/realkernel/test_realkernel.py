"""The real-kernel tier, seen from the host: one outer test per inner test.

A session fixture boots the QEMU guest once (tests/realkernel/harness.py) and runs the
whole inner suite (tests/realkernel/inner) in it; each outer test then passes, fails or
skips as its inner test did, showing the inner failure text.

The tier runs only with ``HOSTDEV_REALKERNEL=1`` or when ``CI`` is set (and not
``HOSTDEV_REALKERNEL=0``); otherwise every outer test skips with a one-line reason.
``HOSTDEV_REALKERNEL_RECORD=1`` also writes the observations to tests/realkernel/observed/.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import harness

INNER = Path(__file__).parent / "inner"


def disabled_reason() -> str | None:
    """Return why the tier is switched off by the environment, or None when it is on."""
    flag = os.environ.get("HOSTDEV_REALKERNEL", "")
    if flag == "0":
        return "real-kernel tier off (HOSTDEV_REALKERNEL=0)"
    if flag == "1" or os.environ.get("CI"):
        return None
    return "real-kernel tier off: set HOSTDEV_REALKERNEL=1 (or CI) to boot the QEMU guest"


def _static_inner_ids() -> list[str]:
    """List inner test ids by reading the modules (cheap; used while the tier is off)."""
    ids = []
    for path in sorted(INNER.glob("test_*.py")):
        rel = path.relative_to(harness.REPO_ROOT).as_posix()
        tree = ast.parse(path.read_text())
        ids += [f"{rel}::{node.name}" for node in tree.body
                if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]
    return ids


def _collected_inner_ids() -> list[str]:
    """List inner test ids exactly as pytest collects them (a subprocess on the host)."""
    argv = [sys.executable, "-m", "pytest", "--collect-only", "-q",
            *harness.inner_pytest_options(), harness.INNER_DIR]
    proc = subprocess.run(argv, cwd=harness.REPO_ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    ids = [line.strip() for line in proc.stdout.splitlines() if "::" in line]
    if proc.returncode != 0 or not ids:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        return [f"{harness.INNER_DIR}::<collection failed: {' | '.join(tail)}>"]
    return ids


INNER_IDS = _static_inner_ids() if disabled_reason() else _collected_inner_ids()


@dataclass(frozen=True)
class SuiteRun:
    """The guest run of the whole inner suite, with one result per inner test."""

    run: harness.GuestRun
    results: dict[str, harness.InnerResult]


@pytest.fixture(scope="session")
def guest_suite() -> SuiteRun:
    """Boot the guest once and run the inner suite; skip with one line if impossible."""
    reason = disabled_reason()
    if reason:
        pytest.skip(reason)
    reason = harness.skip_reason()
    if reason:
        pytest.skip(f"real-kernel tier cannot run here: {reason}")
    run = harness.run_inner_suite()
    suite = SuiteRun(run, harness.read_inner_results(run.results_dir))
    harness.LAST_RUN = run
    harness.LAST_OUTCOMES = [r.outcome for r in suite.results.values()]
    if os.environ.get("HOSTDEV_REALKERNEL_RECORD") == "1":
        harness.LAST_RECORD = harness.record(run)
    return suite


def _short(nodeid: str) -> str:
    return nodeid.removeprefix(f"{harness.INNER_DIR}/")


@pytest.mark.parametrize("nodeid", INNER_IDS, ids=[_short(i) for i in INNER_IDS])
def test_inner(nodeid: str, guest_suite: SuiteRun) -> None:
    """Pass, fail or skip as the inner test ``nodeid`` did in the guest."""
    result = guest_suite.results.get(nodeid)
    run = guest_suite.run
    if result is None:
        state = "timed out" if run.timed_out else f"exit status {run.returncode}"
        pytest.fail(
            f"inner test {nodeid} did not report (guest {state} after {run.duration:.0f} s; "
            f"results in {run.results_dir})\n--- console tail ---\n{run.console_tail()}",
            pytrace=False)
    if result.outcome == "skipped":
        pytest.skip(f"inner: {result.text}")
    if result.outcome == "failed":
        pytest.fail(f"inner test failed in the guest:\n{result.text}", pytrace=False)
