"""PCI addresses and driver names: the only values paths are built from.

Everything the library turns into a path under the sysfs root passes through
:class:`PciAddress` or :func:`validate_driver_name` first, so no caller input
can name a file outside the tree.
"""

from __future__ import annotations

from hostdev.errors import InvalidAddress, InvalidDriverName

# typing.TYPE_CHECKING, without importing typing at run time (cold start).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    # pydantic is imported only when a model using PciAddress is built, so that
    # ``import hostdev`` and pydantic-free commands (``hostdev list``) stay cheap.
    from pydantic import GetCoreSchemaHandler
    from pydantic_core import CoreSchema

# Addresses and driver names are checked by hand rather than by regular
# expressions: ``re`` (with enum and functools) costs ``hostdev list`` about half
# of lspci's whole run (tests/unit compare these checks with the patterns).
_HEX = frozenset("0123456789abcdefABCDEF")
#: PCI domains are 32-bit: Intel VMD and Hyper-V number theirs from 0x10000 up, and
#: the kernel prints them with ``%04x`` (so with five to eight digits).
DOMAIN_MAX = 0xFFFFFFFF
_DRIVER_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_DRIVER_CHARS = _DRIVER_FIRST | frozenset(".+:-")
DRIVER_NAME_MAX = 64
#: Parsed addresses by text: a listing parses the same names several times (device
#: entries, group members, virtfn and physfn links). Addresses are immutable, so
#: sharing them is safe; the cache is emptied when it grows past _PARSED_MAX.
_PARSED: dict[str, PciAddress] = {}
_PARSED_MAX = 1 << 16


class PciAddress:
    """A PCI function address ``DDDD:BB:SS.F``; hashable, ordered, immutable.

    The domain is 32-bit and printed as the kernel names devices (at least four
    hex digits: ``0000:01:00.0``, ``10000:e1:00.0``); addresses order numerically.
    """

    __slots__ = ("_key", "_text", "bus", "domain", "function", "slot")

    domain: int
    bus: int
    slot: int
    function: int
    _key: tuple[int, int, int, int]
    _text: str

    def __init__(self, domain: int, bus: int, slot: int, function: int) -> None:
        for name, value, top in (
            ("domain", domain, DOMAIN_MAX),
            ("bus", bus, 0xFF),
            ("slot", slot, 0x1F),
            ("function", function, 7),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
                raise InvalidAddress(
                    f"PCI address {name} {value!r} is out of range (0..{top:#x})"
                )
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "bus", bus)
        object.__setattr__(self, "slot", slot)
        object.__setattr__(self, "function", function)
        object.__setattr__(self, "_key", (domain, bus, slot, function))

    @classmethod
    def parse(cls, text: object) -> PciAddress:
        """Parse ``DDDD:BB:SS.F`` or ``BB:SS.F`` (domain 0), hex in either case.

        The domain has one to eight hex digits (``10000:e1:00.0`` is a VMD domain).
        """
        if isinstance(text, PciAddress):
            return text
        known = _PARSED.get(text) if cls is PciAddress and isinstance(text, str) else None
        if known is not None:
            return known
        if not isinstance(text, str):
            raise InvalidAddress(
                f"PCI address must be a string like 0000:01:00.0, not {type(text).__name__}"
            )
        fields = _address_fields(text)
        if fields is None:
            shown = text if len(text) <= 40 else text[:40] + "..."
            raise InvalidAddress(
                f"invalid PCI address {shown!r}: expected DDDD:BB:SS.F or BB:SS.F in hex"
                " (domain up to 8 digits),"
                " e.g. 0000:01:00.0"
            )
        domain, bus, slot, function = fields
        try:
            address = cls(int(domain or "0", 16), int(bus, 16), int(slot, 16),
                          int(function, 16))
        except InvalidAddress as exc:
            raise InvalidAddress(f"invalid PCI address {text!r}: {exc}") from None
        if cls is PciAddress:
            if len(_PARSED) >= _PARSED_MAX:
                _PARSED.clear()
            _PARSED[text] = address
        return address

    @property
    def pf_bus_devfn(self) -> int:
        """The 16-bit routing id (bus << 8 | devfn) used for SR-IOV VF placement."""
        return (self.bus << 8) | (self.slot << 3) | self.function

    @classmethod
    def from_routing_id(cls, domain: int, rid: int) -> PciAddress:
        """Build an address from a domain and a 16-bit routing id."""
        return cls(domain, (rid >> 8) & 0xFF, (rid >> 3) & 0x1F, rid & 7)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("PciAddress is immutable")

    def __str__(self) -> str:
        try:
            return self._text
        except AttributeError:  # first use: paths are built from it again and again
            text = f"{self.domain:04x}:{self.bus:02x}:{self.slot:02x}.{self.function}"
            object.__setattr__(self, "_text", text)
            return text

    def __repr__(self) -> str:
        return f"PciAddress('{self}')"

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PciAddress):
            return self._key == other._key
        return NotImplemented

    def __lt__(self, other: object) -> bool:
        if isinstance(other, PciAddress):
            return self._key < other._key
        return NotImplemented

    def __le__(self, other: object) -> bool:
        if isinstance(other, PciAddress):
            return self._key <= other._key
        return NotImplemented

    def __gt__(self, other: object) -> bool:
        if isinstance(other, PciAddress):
            return self._key > other._key
        return NotImplemented

    def __ge__(self, other: object) -> bool:
        if isinstance(other, PciAddress):
            return self._key >= other._key
        return NotImplemented

    def __reduce__(self) -> tuple[Any, ...]:
        return (PciAddress, self._key)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        from pydantic_core import core_schema

        def validate(value: object) -> PciAddress:
            try:
                return cls.parse(value)
            except InvalidAddress as exc:
                raise ValueError(str(exc)) from None

        return core_schema.no_info_plain_validator_function(
            validate,
            json_schema_input_schema=core_schema.str_schema(
                pattern=r"^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$"
            ),
            serialization=core_schema.to_string_ser_schema(),
        )


AddressLike = PciAddress | str


def _address_fields(text: str) -> tuple[str, str, str, str] | None:
    """(domain or "", bus, slot, function) of ``[DDDDDDDD:]BB:SS.F`` in hex (1-8, 1-2,
    1-2 and 1 digits), or None."""
    head, dot, function = text.rpartition(".")
    if not dot or len(function) != 1 or function not in _HEX:
        return None
    parts = head.split(":")
    if len(parts) == 2:
        domain = ""
        bus, slot = parts
    elif len(parts) == 3:
        domain, bus, slot = parts
        if not 1 <= len(domain) <= 8 or not set(domain) <= _HEX:
            return None
    else:
        return None
    if not 1 <= len(bus) <= 2 or not 1 <= len(slot) <= 2 or not set(bus + slot) <= _HEX:
        return None
    return domain, bus, slot, function


def validate_driver_name(name: object) -> str:
    """Return ``name`` if it is a safe kernel driver name, else raise InvalidDriverName.

    Safe means one path component: no ``/``, no ``..``, no NUL, no whitespace,
    at most 64 characters, starting with a letter, digit or underscore.
    """
    if not isinstance(name, str):
        raise InvalidDriverName(f"driver name must be a string, not {type(name).__name__}")
    shown = name if len(name) <= 40 else name[:40] + "..."
    if not name:
        raise InvalidDriverName("driver name is empty: give a driver such as vfio-pci")
    if len(name) > DRIVER_NAME_MAX:
        raise InvalidDriverName(
            f"driver name {shown!r} is longer than {DRIVER_NAME_MAX} characters"
        )
    if ".." in name or name[0] not in _DRIVER_FIRST or not set(name) <= _DRIVER_CHARS:
        raise InvalidDriverName(
            f"invalid driver name {shown!r}: use letters, digits and _ . + : - only"
            " (no '/', '..', NUL or whitespace), e.g. vfio-pci"
        )
    return name
