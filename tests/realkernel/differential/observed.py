"""The observed real-kernel data (tests/realkernel/observed/<kernel>.json), as records.

``HOSTDEV_OBSERVED=/path/doc.json`` (or a run's ``observed.jsonl``) reads other data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OBSERVED_DIR = Path(__file__).resolve().parents[1] / "observed"
#: The record test_library_inventory.py makes of the guest's whole PCI layout.
LAYOUT_TEST = "test_library_inventory.py::test_cli_list_json_matches_shell_read"
LAYOUT_NAME = "guest PCI layout (shell read, 2 VFs, autoprobe 0)"


@dataclass(frozen=True)
class Record:
    """One observation of the real kernel."""

    kernel: str
    test: str
    name: str
    observed: Any

    @property
    def key(self) -> tuple[str, str]:
        """(inner test, record name)."""
        return (self.test, self.name)

    @property
    def id(self) -> str:
        """A test id."""
        return f"{self.kernel}:{self.test}::{self.name}"


def _load_documents() -> list[tuple[str, list[dict[str, Any]]]]:
    override = os.environ.get("HOSTDEV_OBSERVED")
    paths = [Path(override)] if override else sorted(OBSERVED_DIR.glob("*.json"))
    docs = []
    for path in paths:
        text = path.read_text()
        if path.suffix == ".jsonl":
            docs.append((path.stem, [json.loads(line) for line in text.splitlines() if line]))
        else:
            doc = json.loads(text)
            docs.append((str(doc.get("kernel") or path.stem), list(doc["records"])))
    return docs


def _records() -> list[Record]:
    out = []
    for kernel, raw in _load_documents():
        for r in raw:
            out.append(Record(kernel, r["test"], r["name"], r.get("observed")))
    return out


RECORDS = _records()
