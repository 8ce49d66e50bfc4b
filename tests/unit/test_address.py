"""PciAddress and driver-name parsing: valid values or the project's own error, nothing else."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from hostdev.address import PciAddress, validate_driver_name
from hostdev.errors import BadInput, InvalidAddress, InvalidDriverName


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("0000:01:00.2", "0000:01:00.2"),
        ("01:00.2", "0000:01:00.2"),
        ("ABCD:EF:1F.7", "abcd:ef:1f.7"),
        ("1:2:3.4", "0001:02:03.4"),
        ("ffff:ff:1f.7", "ffff:ff:1f.7"),
        # Domains above 0xffff (Intel VMD, Hyper-V) print with more digits, as the kernel's %04x.
        ("10000:e1:00.0", "10000:e1:00.0"),
        ("00010000:E1:00.0", "10000:e1:00.0"),
        ("ffffffff:00:00.0", "ffffffff:00:00.0"),
    ],
)
def test_parse_and_format(text: str, canonical: str) -> None:
    assert str(PciAddress.parse(text)) == canonical


@pytest.mark.parametrize(
    "text",
    ["", "0000:01:00", "0000:01:20.0", "0000:01:00.8", "100000000:00:00.0", "0000:100:00.0",
     "0000:01:00.0\n", " 0000:01:00.0", "0000:01:00.0/../x", "g0:00.0", "0000-01-00.0",
     "0000:01:00.0\x00"],
)
def test_rejects_malformed(text: str) -> None:
    with pytest.raises(InvalidAddress) as info:
        PciAddress.parse(text)
    assert "PCI address" in str(info.value)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_ranges_checked_on_construction() -> None:
    for args in [(0x100000000, 0, 0, 0), (0, 0x100, 0, 0), (0, 0, 0x20, 0), (0, 0, 0, 8),
                 (-1, 0, 0, 0)]:
        with pytest.raises(InvalidAddress):
            PciAddress(*args)


def test_hashable_ordered_immutable() -> None:
    a, b = PciAddress.parse("0000:01:00.1"), PciAddress.parse("01:00.1")
    c = PciAddress.parse("0000:00:1f.7")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert sorted([a, c]) == [c, a]
    assert c < a and a > c and a != c
    with pytest.raises(AttributeError):
        a.bus = 3  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(a)) == a


def test_routing_id_roundtrip() -> None:
    pf = PciAddress.parse("0000:03:00.0")
    assert PciAddress.from_routing_id(0, pf.pf_bus_devfn + 128 + 2 * 4) == PciAddress.parse(
        "0000:03:11.0")


def test_pydantic_field_roundtrip() -> None:
    class M(BaseModel):
        address: PciAddress

    m = M.model_validate({"address": "01:00.2"})
    assert m.address == PciAddress(0, 1, 0, 2)
    assert m.model_dump_json() == '{"address":"0000:01:00.2"}'
    with pytest.raises(ValueError, match="invalid PCI address"):
        M.model_validate({"address": "nope"})


@given(st.text(max_size=30))
def test_any_text_parses_or_raises_own_error(text: str) -> None:
    try:
        addr = PciAddress.parse(text)
    except InvalidAddress:
        return
    assert PciAddress.parse(str(addr)) == addr
    assert "/" not in str(addr) and ".." not in str(addr)


def test_big_domains_order_numerically() -> None:
    texts = ["10000:00:00.0", "ffff:ff:1f.7", "0000:00:00.0", "20000:01:00.0", "1000:00:00.0"]
    ordered = sorted(PciAddress.parse(t) for t in texts)
    assert [a.domain for a in ordered] == [0, 0x1000, 0xFFFF, 0x10000, 0x20000]


@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFF), st.integers(0, 0x1F), st.integers(0, 7))
def test_every_valid_address_roundtrips(d: int, b: int, s: int, f: int) -> None:
    addr = PciAddress(d, b, s, f)
    assert PciAddress.parse(str(addr)) == addr
    assert PciAddress.parse(str(addr).upper()) == addr


@pytest.mark.parametrize("name", ["vfio-pci", "pci-stub", "mlx5_core", "snd_hda_intel",
                                  "nvme", "i40e", "mlx5_vfio_pci", "x" * 64])
def test_driver_names_accepted(name: str) -> None:
    assert validate_driver_name(name) == name


@pytest.mark.parametrize("name", ["", "../vfio-pci", "vfio/pci", "..", ".", "vfio..pci",
                                  "vfio\x00pci", "vfio pci", "vfio-pci\n", "\tx", "x" * 65,
                                  "-rf", ".hidden"])
def test_hostile_driver_names_rejected(name: str) -> None:
    with pytest.raises(InvalidDriverName) as info:
        validate_driver_name(name)
    assert isinstance(info.value, BadInput)
    assert "\n" not in str(info.value)


@given(st.text(max_size=80))
def test_driver_name_parser_total(text: str) -> None:
    try:
        name = validate_driver_name(text)
    except InvalidDriverName:
        return
    assert "/" not in name and ".." not in name and "\x00" not in name
    assert not any(ch.isspace() for ch in name)
    assert 0 < len(name) <= 64


def test_non_string_inputs() -> None:
    with pytest.raises(InvalidAddress):
        PciAddress.parse(1234)
    with pytest.raises(InvalidDriverName):
        validate_driver_name(None)
