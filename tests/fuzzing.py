"""What the fuzz tests feed hostdev: hostile text, damaged JSON documents and bytes.

Shared by the property tests of the files hostdev reads (state file, intent journal,
wishes file), of the command line, and of the parsers. Every test runs a few dozen
examples, derandomized (the same examples on every run, no example database), so
that the suite stays fast and a failure reproduces.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: The settings of every fuzz test: few examples, the same ones on every run. The
#: fake host of a test is built once and reused by its examples (a rejected input
#: changes nothing, which is what the tests check).
FUZZ = settings(max_examples=150, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

#: Text a demanding user (or a damaged file) gives where a name, an address or a
#: number is expected.
HOSTILE_TEXT = ["", " ", "..", "../..", "../../etc", "/", "a/b", "x\x00y", "a\nb", "\n", "\r",
                "-", "--", "-1", "0", "99999999999999999999", "1e3", "0x10", " 1", "\u0661",
                "nan", "\u00e9" * 300, "x" * 5000, "\udcff", "\u2028", "vfio-pci", "none",
                "0000:00:19.0", "00:19.0", "0000:00:19.0\n", "0000:ff:1f.7",
                "ffffffff:ff:1f.7", "fffffffff:00:00.0", "0000:03:00.0", "0000:04:00.0",
                "qemu/vm1", "qemu/", "/vm", "q/\x01", "52:54:00:12:34:56",
                "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "8086:10ed", "zz:zz"]

#: Values a damaged file holds where hostdev wrote something else.
HOSTILE_VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 8, 65535, 65536, 2**63, 2**64 + 1, 10**30, -(2**70), 1.5,
    1e308, [], {}, [[[]]], {"a\nb": 1}, *HOSTILE_TEXT[:30], "ffff", "10ed", "8086",
    {"driver": "a\nb", "domain": "x"}, {"mac": "ff:ff:ff:ff:ff:ff"}, {"vlan": 5000}]

_LEAVES = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.text(max_size=12) | st.sampled_from(HOSTILE_VALUES))
#: Any JSON value, small: nested lists and objects of hostile leaves.
JSON_VALUES = st.recursive(
    _LEAVES, lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


def _paths(doc: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every place in ``doc`` a value sits (the root excluded)."""
    out: list[tuple[str | int, ...]] = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            out += _paths(value, (*prefix, index))
    return out


def _replace(doc: Any, path: tuple[str | int, ...], value: Any) -> Any:
    out = copy.deepcopy(doc)
    here = out
    for step in path[:-1]:
        here = here[step]
    here[path[-1]] = value
    return out


_NUMBERS = [value for value in HOSTILE_VALUES if isinstance(value, int | float)]


def _value_at(doc: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def damaged_documents(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """``base`` (a document hostdev wrote) with one to three values replaced, or an
    unknown key added, as JSON bytes. A replaced text is mostly hostile text, a
    replaced number mostly a hostile number (what reaches furthest: the document
    still parses), anything else any JSON value."""
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        doc = base
        for _ in range(draw(st.integers(1, 3))):
            places = _paths(doc)
            kind = draw(st.sampled_from(["text", "number", "any"]))
            wanted = {"text": str, "number": int}.get(kind)
            typed = [p for p in places if wanted is not None
                     and isinstance(_value_at(doc, p), wanted)]
            path = draw(st.sampled_from(typed or places))
            pool = HOSTILE_TEXT if kind == "text" else _NUMBERS if kind == "number" else None
            value = draw(JSON_VALUES if pool is None else st.sampled_from(pool) | JSON_VALUES)
            doc = _replace(doc, path, value)
        if draw(st.integers(0, 5)) == 0:
            doc = {**doc, draw(st.sampled_from(["a\nb", "x\x00", "\u2028", "k" * 200])): 1}
        return json.dumps(doc).encode()

    return build()


def damaged(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Mostly :func:`damaged_documents` of ``base``, else :func:`damaged_bytes`."""
    documents = damaged_documents(base)
    return st.one_of(documents, documents, documents, damaged_bytes(base))


def damaged_bytes(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Bytes that are not the document ``base``: truncated, with junk appended,
    invalid UTF-8, NUL, absurdly nested, or any JSON value at all."""
    text = json.dumps(base).encode()
    return st.one_of(
        st.builds(lambda n, junk: text[:n] + junk, st.integers(0, len(text) - 1),
                  st.binary(max_size=4)),
        st.binary(max_size=64),
        st.sampled_from([b"", b"\x00", b"\xff\xfe", text.replace(b'"', b"\xc3", 1),
                         b"[" * 100_000, b'{"a":' * 50_000, b"1" * 5000,
                         json.dumps(text.decode()).encode()]),
        JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    )


# ------------------------------------------------------------------- sysfs content

_TEXT = st.sampled_from(HOSTILE_TEXT) | st.text(max_size=24)
_HEX = st.text("0123456789abcdefABCDEF", min_size=1, max_size=8)
#: What a damaged file holds where the kernel prints a hex id: mostly a number that
#: ``int()`` takes (one too big, signed, spaced), so that a whole line parses.
_ID = st.text("0123456789abcdefABCDEF", min_size=1, max_size=4)
NUMBERS = st.one_of(_ID, _ID, _ID, _HEX, st.sampled_from(
    ["-1", "+5", " 5", "5 ", "1_0", "0x10", "\u0661", "", "-0", "123456", "1234567",
     "ffffffff", "zz", "\x00"]))
_ID_PAIRS = st.builds(lambda a, b: f"{a}:{b}", NUMBERS, NUMBERS)


@st.composite
def uevents(draw: st.DrawFn) -> str:
    """A ``uevent`` as a damaged or hostile tree holds it: the kernel's lines, each value
    valid or not, in any order, one of them missing at times, with other lines."""
    lines = [f"PCI_CLASS={draw(NUMBERS)}", f"PCI_ID={draw(_ID_PAIRS)}",
             f"PCI_SUBSYS_ID={draw(_ID_PAIRS)}"]
    if draw(st.integers(0, 3)) == 0:
        del lines[draw(st.integers(0, 2))]
    if draw(st.booleans()):
        lines.append(f"DRIVER={draw(_TEXT)}")
    lines += draw(st.lists(st.builds(lambda k, v: f"{k}={v}", st.sampled_from(
        ["PCI_SLOT_NAME", "MODALIAS", "X"]), _TEXT), max_size=2))
    return "\n".join(draw(st.permutations(lines))) + draw(st.sampled_from(["\n", "", "\x00"]))


def assert_one_line(message: str, *names: str) -> None:
    """An error message as users must get it: one line, naming each of ``names``."""
    assert "\n" not in message and "\r" not in message, message
    assert "Traceback" not in message and "internal error" not in message, message
    for name in names:
        assert name in message, (name, message)
