"""The VPD parser: real layouts parse, anything else is MalformedVpd, never another error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostdev.linux.vpd import MalformedVpd, Vpd, build_vpd, parse_vpd

# A ConnectX-style VPD as ``lspci -vv`` shows it, built by hand (not by build_vpd).
_NAME = b"ConnectX-6 Dx EN adapter card"
_RO = b"PN\x10MCX623106AN-CDATEC\x02A6SN\x0cMT2145X12345V0\x0cPCIeGen4 x16"


def _by_hand(checksum_delta: int = 0) -> bytes:
    head = bytes((0x82, len(_NAME), 0)) + _NAME
    ro_len = len(_RO) + 4
    body = bytes((0x90, ro_len, 0)) + _RO + b"RV\x01"
    check = (-sum(head + body) + checksum_delta) & 0xFF
    rw = b"V1\x03abcRW\x05\x00\x00\x00\x00\x00"
    return head + body + bytes((check,)) + bytes((0x91, len(rw), 0)) + rw + b"\x78"


def test_parses_a_real_layout() -> None:
    vpd = parse_vpd(_by_hand())
    assert vpd.name == "ConnectX-6 Dx EN adapter card"
    assert vpd.part_number == "MCX623106AN-CDAT"
    assert vpd.serial_number == "MT2145X12345"
    assert vpd.read_only == {"PN": "MCX623106AN-CDAT", "EC": "A6", "SN": "MT2145X12345",
                             "V0": "PCIeGen4 x16"}
    assert vpd.read_write == {"V1": "abc"}  # RW (free space) left out
    assert vpd.checksum_ok is True


def test_bad_checksum_is_reported_not_raised() -> None:
    assert parse_vpd(_by_hand(checksum_delta=1)).checksum_ok is False


def test_padding_after_the_data_ends_it() -> None:
    data = _by_hand()[:-1]  # no end tag
    assert parse_vpd(data + b"\xff" * 64).name == "ConnectX-6 Dx EN adapter card"
    assert parse_vpd(data + b"\x00" * 64).part_number == "MCX623106AN-CDAT"
    assert parse_vpd(data).serial_number == "MT2145X12345"


def test_non_ascii_values_are_escaped() -> None:
    data = bytes((0x82, 4, 0)) + b"ab\x07\xe9" + b"\x78"
    assert parse_vpd(data).name == "ab\\x07\\xe9"


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"\x78", "nothing but its end tag"),
    (b"\xff" * 32, "unknown resource tag 0xff"),
    (b"\x00" * 32, "small resource tag 0x00"),
    (b"\x82\x10\x00abc", "claims 16 bytes; only 3 follow"),
    (b"\x82", "cut short"),
    (b"\x90\x05\x00PN\x09ab", "past the end of VPD-R"),
    (b"\x90\x02\x00PN", "cut short"),
    (b"\x90\x03\x00\x01\x02\x00\x78", "not two ASCII characters"),
    (b"\x90\x03\x00RV\x00\x78", "RV at offset 3 is empty"),
])
def test_malformed_vpd_says_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(MalformedVpd, match=message) as info:
        parse_vpd(data)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_malformed(data: bytes) -> None:
    try:
        vpd = parse_vpd(data)
    except MalformedVpd:
        return
    assert isinstance(vpd, Vpd)
    for value in [vpd.name or "", *vpd.read_only.values(), *vpd.read_write.values()]:
        assert value.isprintable()


_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(
    str.strip)
_key = st.text(st.sampled_from("ABCDEFGHIJKLMNOPQSTUVWXYZ0123456789"), min_size=2, max_size=2)


@given(st.one_of(st.none(), _text), st.dictionaries(_key, _text, max_size=6),
       st.dictionaries(_key, _text, max_size=3))
def test_build_then_parse_roundtrips(name: str | None, ro: dict[str, str],
                                     rw: dict[str, str]) -> None:
    vpd = parse_vpd(build_vpd(name, ro, rw or None))
    assert vpd.name == name and vpd.read_only == ro and vpd.read_write == rw
    assert vpd.checksum_ok is True


@settings(max_examples=300)
@given(st.data())
def test_damaged_vpd_parses_or_raises_malformed(data: st.DataObject) -> None:
    raw = bytearray(build_vpd("Some card", {"PN": "X1", "SN": "S2"}, {"V1": "x"}))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        vpd = parse_vpd(bytes(raw[:cut]))
    except MalformedVpd as exc:
        assert "\n" not in str(exc)
        return
    assert all(v.isprintable() for v in vpd.read_only.values())
