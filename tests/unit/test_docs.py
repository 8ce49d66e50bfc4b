"""The repository's documents: every reference points at a file and a section that exist.

Code cites the kernel model by section ("docs/kernel-model.md §4.2"), the real-kernel
tier's observations name sections in their claims, no file names a design document
that is not in the repository, and no file names a path of one machine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
SCANNED = ("README.md", "CHANGELOG.md", "pyproject.toml", ".ci", "docs", "hostdev", "tests",
           "bench", "fixtures")
SKIPPED_DIRS = {"__pycache__", "out"}

#: "kernel-model.md §4.2", "kernel-model.md 4.2".
_CITATION = re.compile(r"kernel-model\.md §?(\d+(?:\.\d+)?)")
#: Upper-case design documents kept outside the repository (built from parts so that
#: this file does not name them itself).
_OUTSIDE = re.compile(r"\b(?:REAL-)?(?:" + "|".join(
    ("KER" + "NEL", "LIB" + "VIRT", "PE" + "ERS", "ARCHI" + "TECTURE")) + r")\.md\b")
_DOC_LINK = re.compile(r"docs/([a-z-]+\.md)")


def _text_files() -> Iterator[Path]:
    for name in SCANNED:
        top = REPO / name
        paths = [top] if top.is_file() else sorted(top.rglob("*"))
        for path in paths:
            if path.is_file() and not SKIPPED_DIRS & set(path.relative_to(REPO).parts) \
                    and path.suffix in {"", ".py", ".md", ".toml", ".json", ".txt", ".sh"}:
                yield path


def _sections(doc: Path) -> set[str]:
    return set(re.findall(r"^#+ §?(\d+(?:\.\d+)?)\b", doc.read_text(), re.M))


def test_the_kernel_model_keeps_its_section_numbers() -> None:
    sections = _sections(DOCS / "kernel-model.md")
    # The numbers code has cited since the first fake kernel; renumbering breaks citations.
    for number in ("0", "1", "1.1", "2", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "2.7",
                   "3", "3.1", "3.2", "3.3", "3.4", "4", "4.1", "4.2", "4.3", "4.4", "5",
                   "6", "7", "7.1", "7.2"):
        assert number in sections, f"docs/kernel-model.md has no section {number}"


def test_every_cited_section_exists() -> None:
    sections = _sections(DOCS / "kernel-model.md")
    missing = []
    for path in _text_files():
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for match in _CITATION.finditer(line):
                if match.group(1) not in sections:
                    missing.append(f"{path.relative_to(REPO)}:{lineno}: {match.group(0)}")
    assert missing == []


def test_observed_claims_name_existing_sections() -> None:
    sections = _sections(DOCS / "kernel-model.md")
    observed = sorted((REPO / "tests/realkernel/observed").glob("*.json"))
    if not observed:  # pragma: no cover - the data ships with the repository
        pytest.skip("no observed data")
    bad = []
    for path in observed:
        for record in json.loads(path.read_text())["records"]:
            claim = record.get("claim", "")
            # A claim starts with the section it checks ("3.1 step 7", "1/7.2 ...").
            first = re.match(r"(\d+(?:\.\d+)?)(?:[ /]|$)", claim)
            if first and first.group(1) not in sections:
                bad.append(f"{path.name}: {record['test']} {record['name']!r}: {claim!r}")
    assert bad == []


def test_every_linked_document_exists() -> None:
    missing = sorted({f"{path.relative_to(REPO)}: docs/{m.group(1)}"
                      for path in _text_files()
                      for m in _DOC_LINK.finditer(path.read_text(errors="replace"))
                      if not (DOCS / m.group(1)).is_file()})
    assert missing == []


def test_no_file_names_a_path_of_one_machine() -> None:
    machine_paths = re.compile("/" + "work/|/" + "root/|/" + "home/[a-z]")
    found = [f"{path.relative_to(REPO)}:{lineno}: {line.strip()[:80]}"
             for path in _text_files()
             for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
             if machine_paths.search(line)]
    assert found == []


def test_no_file_cites_a_document_outside_the_repository() -> None:
    found = [f"{path.relative_to(REPO)}:{lineno}: {line.strip()[:80]}"
             for path in _text_files()
             for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
             if _OUTSIDE.search(line)]
    assert found == []
