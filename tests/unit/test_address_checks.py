"""The hand-written address and driver-name checks of :mod:`hostdev.address` accept
exactly what their regular expressions (the specification) accept."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from hostdev.address import PciAddress, validate_driver_name
from hostdev.errors import InvalidAddress, InvalidDriverName

ADDRESS = re.compile(r"(?:(?P<domain>[0-9a-fA-F]{1,8}):)?(?P<bus>[0-9a-fA-F]{1,2}):"
                     r"(?P<slot>[0-9a-fA-F]{1,2})\.(?P<function>[0-9a-fA-F])")
DRIVER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+:-]*")

_parts = st.text(alphabet="0123456789abcdefABCDEFgG:._ +-\n\u0661x", max_size=14)


def _parses(text: str) -> bool:
    try:
        PciAddress.parse(text)
    except InvalidAddress:
        return False
    return True


def _address_ok(text: str) -> bool:
    match = ADDRESS.fullmatch(text)
    if match is None:
        return False
    return int(match["slot"], 16) <= 0x1F and int(match["function"], 16) <= 7


@given(_parts)
def test_address_parse_is_the_pattern(text: str) -> None:
    assert _parses(text) == _address_ok(text), text


@given(st.from_regex(ADDRESS, fullmatch=True))
def test_every_address_of_the_pattern(text: str) -> None:
    assert _parses(text) == _address_ok(text), text
    if _address_ok(text):
        match = ADDRESS.fullmatch(text)
        assert match is not None
        addr = PciAddress.parse(text)
        assert addr.domain == int(match["domain"] or "0", 16)
        assert (addr.bus, addr.slot, addr.function) == (
            int(match["bus"], 16), int(match["slot"], 16), int(match["function"], 16))


def _driver_ok(name: str) -> bool:
    return (0 < len(name) <= 64 and ".." not in name
            and DRIVER.fullmatch(name) is not None)


@given(st.text(alphabet="aZ09_.+:-/ \n\x00\u00e9", max_size=12))
def test_driver_check_is_the_pattern(name: str) -> None:
    try:
        validate_driver_name(name)
        accepted = True
    except InvalidDriverName:
        accepted = False
    assert accepted == _driver_ok(name), name


def test_ordering_without_total_ordering() -> None:
    a, b = PciAddress.parse("0000:01:00.0"), PciAddress.parse("0000:01:00.1")
    assert a < b and a <= b and b > a and b >= a and a <= a and a >= a
    assert not (a > b) and not (b < a)
