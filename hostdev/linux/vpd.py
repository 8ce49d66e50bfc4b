"""PCI Vital Product Data: the product name, part and serial numbers a card carries.

The ``vpd`` attribute of a device is the raw VPD (PCI Local Bus spec, appendix I;
PCIe base spec 6.28): a list of resources, each starting with a tag byte.

* Large resources (tag bit 7 set): the item name is ``tag & 0x7f``, then a 16-bit
  little-endian length and that many bytes. ``0x82`` is the identifier string
  (the product name); ``0x90`` is VPD-R and ``0x91`` VPD-W, both a list of
  keywords: two ASCII characters, a length byte, the value. ``PN`` part number,
  ``EC`` engineering change level, ``SN`` serial number, ``MN`` manufacturer id,
  ``V0``-``VZ`` vendor fields, ``RV`` the checksum (its first byte makes the bytes
  from the start of the VPD up to and including it sum to 0), ``RW`` free space.
* Small resources (bit 7 clear): the item name is ``(tag >> 3) & 0xf`` and the
  length ``tag & 7``. ``0x78`` is the end tag.

:func:`parse_vpd` is pure and total: it returns a :class:`Vpd` or raises
:class:`MalformedVpd` (a ValueError), never anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hostdev.errors import HostdevError

# typing.TYPE_CHECKING, without importing typing at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from hostdev.address import PciAddress
    from hostdev.linux.sysfs import Sysfs

_ID_STRING = 0x02
_VPD_R = 0x10
_VPD_W = 0x11
_END_TAG = 0x78
#: Keywords whose value is not text (the checksum, the free space).
_SKIP = frozenset({"RV", "RW"})
#: Keyword names that show up in ``hostdev show``.
KEYWORD_NAMES = {
    "PN": "part number",
    "EC": "engineering change",
    "SN": "serial number",
    "MN": "manufacturer id",
}


class MalformedVpd(ValueError):
    """The VPD bytes do not follow the PCI VPD format (the message says where)."""


@dataclass
class Vpd:
    """What a device's VPD says."""

    #: The identifier string (product name), None if the VPD has none.
    name: str | None = None
    #: VPD-R keywords in the order found (``PN``, ``SN``...; checksum left out).
    read_only: dict[str, str] = field(default_factory=dict)
    #: VPD-W keywords (free space ``RW`` left out).
    read_write: dict[str, str] = field(default_factory=dict)
    #: The ``RV`` checksum was right (None: no ``RV`` keyword).
    checksum_ok: bool | None = None

    @property
    def part_number(self) -> str | None:
        """``PN`` of VPD-R."""
        return self.read_only.get("PN")

    @property
    def serial_number(self) -> str | None:
        """``SN`` of VPD-R."""
        return self.read_only.get("SN")


def _text(data: bytes) -> str:
    """VPD strings are ASCII; anything else is shown escaped, trailing NULs and blanks cut."""
    text = data.rstrip(b"\x00").decode("ascii", "backslashreplace")
    text = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
    return text.strip()


def _keywords(data: bytes, start: int, end: int, whole: bytes, what: str,
              out: dict[str, str], vpd: Vpd) -> None:
    pos = start
    while pos < end:
        if end - pos < 3:
            raise MalformedVpd(f"{what} keyword at offset {pos} is cut short")
        raw_key = data[pos:pos + 2]
        length = data[pos + 2]
        value_at = pos + 3
        if value_at + length > end:
            raise MalformedVpd(
                f"{what} keyword at offset {pos} claims {length} bytes, past the end of {what}")
        if not all(0x20 < b < 0x7F for b in raw_key):
            raise MalformedVpd(f"{what} keyword at offset {pos} is not two ASCII characters")
        key = raw_key.decode("ascii")
        if key == "RV":
            if length < 1:
                raise MalformedVpd(f"{what} checksum keyword RV at offset {pos} is empty")
            vpd.checksum_ok = sum(whole[:value_at + 1]) & 0xFF == 0
        elif key not in _SKIP:
            out[key] = _text(data[value_at:value_at + length])
        pos = value_at + length


def parse_vpd(data: bytes) -> Vpd:
    """Parse raw VPD bytes; MalformedVpd if they are not VPD.

    Reading stops at the end tag. Padding where a tag is expected (0x00 or 0xff,
    what an unprogrammed EEPROM holds) also ends it, once something was read.
    """
    if not isinstance(data, bytes | bytearray):
        raise MalformedVpd(f"VPD must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise MalformedVpd("VPD is empty")
    vpd = Vpd()
    pos = 0
    seen = 0
    while True:
        if pos >= len(data):
            if seen:
                return vpd  # no end tag, but it ended on a resource boundary
            raise MalformedVpd("VPD is empty")
        tag = data[pos]
        if tag == _END_TAG:
            if not seen:
                raise MalformedVpd("VPD holds nothing but its end tag")
            return vpd
        if tag in (0x00, 0xFF) and seen:
            return vpd
        if tag & 0x80:
            item = tag & 0x7F
            if not seen and item not in (_ID_STRING, _VPD_R, _VPD_W):
                raise MalformedVpd(f"VPD starts with unknown resource tag {tag:#04x}")
            if pos + 3 > len(data):
                raise MalformedVpd(f"large resource tag {tag:#04x} at offset {pos} is cut short")
            length = data[pos + 1] | (data[pos + 2] << 8)
            body = pos + 3
            end = body + length
            if end > len(data):
                raise MalformedVpd(
                    f"resource {tag:#04x} at offset {pos} claims {length} bytes; only"
                    f" {len(data) - body} follow")
            if item == _ID_STRING:
                vpd.name = _text(data[body:end])
            elif item == _VPD_R:
                _keywords(data, body, end, data, "VPD-R", vpd.read_only, vpd)
            elif item == _VPD_W:
                _keywords(data, body, end, data, "VPD-W", vpd.read_write, vpd)
            pos = end  # other large resources after a known one are skipped
        else:
            if not seen:
                raise MalformedVpd(f"VPD starts with small resource tag {tag:#04x}, not a"
                                   " large resource")
            pos += 1 + (tag & 0x07)
        seen += 1


def build_vpd(name: str | None = None, read_only: dict[str, str] | None = None,
              read_write: dict[str, str] | None = None, *, checksum: bool = True) -> bytes:
    """Encode VPD (the inverse of :func:`parse_vpd`, for fake devices and tests).

    ``checksum``: end VPD-R with a correct ``RV`` keyword.
    """
    out = bytearray()

    def large(item: int, body: bytes) -> None:
        if len(body) > 0xFFFF:
            raise ValueError("VPD resource longer than 65535 bytes")
        out.extend((0x80 | item, len(body) & 0xFF, len(body) >> 8))
        out.extend(body)

    def keywords(values: dict[str, str]) -> bytes:
        body = bytearray()
        for key, value in values.items():
            raw = value.encode("ascii")
            if len(key) != 2 or len(raw) > 255:
                raise ValueError(f"bad VPD keyword {key!r}")
            body.extend(key.encode("ascii") + bytes((len(raw),)) + raw)
        return bytes(body)

    if name is not None:
        large(_ID_STRING, name.encode("ascii"))
    if read_only is not None or checksum:
        body = keywords(read_only or {})
        if checksum:
            # RV with one checksum byte: its value makes everything up to it sum to 0.
            total = len(body) + 4
            head = (bytes(out) + bytes((0x80 | _VPD_R, total & 0xFF, total >> 8)) + body
                    + b"RV\x01")
            body += b"RV\x01" + bytes(((-sum(head)) & 0xFF,))
        large(_VPD_R, body)
    if read_write:
        large(_VPD_W, keywords(read_write))
    out.append(_END_TAG)
    return bytes(out)


def read_serial(sysfs: Sysfs, address: PciAddress) -> str | None:
    """The serial number (VPD-R ``SN``) of a device, None when it has none.

    PCI sysfs has no ``serial`` attribute; the VPD is where a card keeps its
    serial number. A device without ``vpd``, with VPD that cannot be read (not
    root, a device that does not answer) or parsed, or without ``SN``, has none.
    """
    try:
        raw = sysfs.read_binary(sysfs.device_path(address, "vpd"), address)
    except HostdevError:
        return None
    if not raw:
        return None
    try:
        return parse_vpd(raw).serial_number or None
    except MalformedVpd:
        return None
