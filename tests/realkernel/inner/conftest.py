"""Fixtures and hooks of the inner real-kernel suite (runs inside the QEMU guest).

Outside the guest every test here is skipped at collection. Inside it:

* ``observe`` records what the real kernel did as JSON lines in
  ``$HOSTDEV_RESULTS/observed.jsonl`` and compares it with what docs/kernel-model.md claims; each
  mismatch fails the test at the end with both values shown (all checks of a test run).
* every phase report goes to ``$HOSTDEV_RESULTS/inner-report.jsonl`` for the outer test.
* ``pf`` resets the NVMe PF to its boot state before and after the test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from hostdev.manager import HostdevManager

from . import guest
from .observing import Observer, results_dir

_OBSERVER_KEY = pytest.StashKey[Observer]()


def _short(nodeid: str) -> str:
    return re.sub(r"^.*?inner/", "", nodeid)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every inner test when not inside the hostdev guest."""
    reason = guest.not_in_guest_reason()
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.path)).is_relative_to(here):
            item.add_marker(pytest.mark.realkernel)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def observe(request: pytest.FixtureRequest) -> Observer:
    """Return the Observer of the current test."""
    observer = Observer(_short(request.node.nodeid))
    request.node.stash[_OBSERVER_KEY] = observer
    return observer


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Turn a passing test with docs/kernel-model.md mismatches into a failure listing them all."""
    report = yield
    observer = item.stash.get(_OBSERVER_KEY, None)
    if call.when == "call" and observer is not None and observer.mismatches:
        text = "\n".join(["real kernel differs from docs/kernel-model.md:", *observer.mismatches])
        if report.passed:
            report.outcome = "failed"
            report.longrepr = text
        else:
            report.longrepr = f"{report.longrepr}\n\n{text}"
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Append each phase report to ``$HOSTDEV_RESULTS/inner-report.jsonl``."""
    results = results_dir()
    if results is None:
        return
    outcome = report.outcome
    longrepr = ""
    if report.skipped and isinstance(report.longrepr, tuple):
        longrepr = str(report.longrepr[2])
    elif report.longrepr is not None:
        longrepr = str(report.longrepr)
    entry = {"nodeid": report.nodeid, "when": report.when, "outcome": outcome,
             "duration": round(report.duration, 3), "longrepr": longrepr}
    with (results / "inner-report.jsonl").open("a") as f:
        f.write(json.dumps(entry) + "\n")


@pytest.fixture
def pf() -> Iterator[str]:
    """Reset the NVMe PF to its boot state around the test; yield its address."""
    guest.reset_pf_state()
    yield guest.PF
    guest.reset_pf_state()


@pytest.fixture
def manager(tmp_path: Path) -> HostdevManager:
    """A HostdevManager on the guest's real sysfs, with its state on the guest's tmpfs.

    Refuses to exist outside the guest: the library writes to ``/sys``.
    """
    reason = guest.not_in_guest_reason()
    if reason:
        raise RuntimeError(f"refusing to drive the library on this machine's /sys: {reason}")
    state = tmp_path / "state"
    if not str(state).startswith("/tmp/"):
        raise RuntimeError(f"state directory {state} is not on the guest's /tmp tmpfs")
    return HostdevManager(root="/", state_dir=state, lock_timeout=5.0, release_timeout=2.0)
