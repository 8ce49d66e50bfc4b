"""Observations of the real kernel, compared with docs/kernel-model.md and kept as JSON lines."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import guest


def results_dir() -> Path | None:
    """Return the writable results directory of the guest run (None outside the guest)."""
    value = os.environ.get("HOSTDEV_RESULTS")
    return Path(value) if value and guest.in_guest() else None


class Observer:
    """Records observations of one test and collects differences from docs/kernel-model.md."""

    def __init__(self, test: str) -> None:
        """Start an empty record for ``test`` (a short node id)."""
        self.test = test
        self.mismatches: list[str] = []

    def _write(self, entry: dict[str, Any]) -> None:
        results = results_dir()
        if results is None:
            return
        with (results / "observed.jsonl").open("a") as f:
            f.write(json.dumps(entry, sort_keys=True, default=str) + "\n")

    def check(self, name: str, observed: Any, expected: Any, claim: str) -> bool:
        """Record ``observed`` and compare it with ``expected`` (what ``claim`` says).

        Returns whether they match; a mismatch fails the test when it ends.
        """
        matches = bool(observed == expected)
        self._write({"test": self.test, "name": name, "claim": claim,
                     "expected": expected, "observed": observed, "matches": matches})
        if not matches:
            self.mismatches.append(
                f"{name}: docs/kernel-model.md ({claim}) expects {expected!r}, "
                f"the real kernel gave {observed!r}")
        return matches

    def record(self, name: str, observed: Any, note: str = "") -> None:
        """Record a value that docs/kernel-model.md makes no exact claim about."""
        entry: dict[str, Any] = {"test": self.test, "name": name, "observed": observed,
                                 "matches": True}
        if note:
            entry["note"] = note
        self._write(entry)
