"""How the kernel reads what user space wrote to a sysfs file.

Each function mirrors one kernel helper (``kstrtoull`` and friends, ``kstrtobool``,
``sysfs_streq`` name lookup, ``sscanf("%x ...")``) and raises the ``OSError`` the
store handler would return. The buffer is cut at the first NUL first, since the
kernel treats it as a C string.
"""

from __future__ import annotations

import errno

from hostdev.testing.events import kerr

_U64_MAX = (1 << 64) - 1
_HEX = "0123456789abcdefABCDEF"


def c_string(data: bytes) -> str:
    """The buffer as the kernel's string functions see it (up to the first NUL)."""
    return data.split(b"\0", 1)[0].decode("latin-1")


def _digits(text: str, base: int) -> int:
    """Number of leading characters of ``text`` that are digits in ``base``."""
    count = 0
    for char in text:
        value = int(char, 16) if char in _HEX else 99
        if value >= base:
            break
        count += 1
    return count


def kstrtoull(data: bytes | str, *, allow_plus: bool = True) -> int:
    """``kstrtoull(s, 0)``: base from the prefix, one trailing newline, nothing else.

    EINVAL for no digits or trailing junk, ERANGE above 2**64-1.
    """
    text = c_string(data) if isinstance(data, bytes) else data
    if allow_plus and text.startswith("+"):
        text = text[1:]
    base = 10
    if text.startswith("0"):
        if text[1:2] in ("x", "X") and text[2:3] != "" and text[2] in _HEX:
            base, text = 16, text[2:]
        else:
            base = 8
    count = _digits(text, base)
    if count and int(text[:count], base) > _U64_MAX:
        raise kerr(errno.ERANGE)
    if count == 0:
        raise kerr(errno.EINVAL)
    rest = text[count:]
    if rest.startswith("\n"):
        rest = rest[1:]
    if rest:
        raise kerr(errno.EINVAL)
    return int(text[:count], base)


def kstrtoul(data: bytes) -> int:
    """``kstrtoul(s, 0)`` (64-bit): see :func:`kstrtoull`."""
    return kstrtoull(data)


def kstrtou16(data: bytes) -> int:
    """``kstrtou16(s, 0)``: EINVAL for bad text, ERANGE above 65535."""
    value = kstrtoull(data)
    if value > 0xFFFF:
        raise kerr(errno.ERANGE)
    return value


def kstrtoint(data: bytes) -> int:
    """``kstrtoint(s, 0)``: a signed 32-bit number, optional leading ``-``."""
    text = c_string(data)
    negative = text.startswith("-")
    value = -kstrtoull(text[1:], allow_plus=False) if negative else kstrtoull(text)
    if not -(1 << 31) <= value < (1 << 31):
        raise kerr(errno.ERANGE)
    return value


def kstrtobool(data: bytes) -> bool:
    """``kstrtobool``: only the first one or two characters count (1/y/on, 0/n/off)."""
    text = c_string(data)
    first = text[:1]
    if first in ("1", "y", "Y"):
        return True
    if first in ("0", "n", "N"):
        return False
    if first in ("o", "O"):
        second = text[1:2]
        if second in ("n", "N"):
            return True
        if second in ("f", "F"):
            return False
    raise kerr(errno.EINVAL)


def device_name(data: bytes) -> str:
    """The device name a ``bind``-style write asks for (``sysfs_streq``: one ``\\n`` ignored)."""
    text = c_string(data)
    return text[:-1] if text.endswith("\n") else text


def override_value(data: bytes) -> str | None:
    """What ``driver_set_override`` stores: text before the first newline, None if empty."""
    text = c_string(data).split("\n", 1)[0]
    return text or None


def scan_hex(data: bytes, limit: int) -> list[int]:
    """``sscanf(buf, "%x %x ...")`` with up to ``limit`` fields: the fields converted.

    Whitespace between fields, an optional ``0x`` prefix; scanning stops at the
    first field that has no hex digit. Values wrap to 32 bits except the 7th
    (``%lx``, 64 bits).
    """
    text = c_string(data)
    values: list[int] = []
    pos = 0
    while len(values) < limit:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        start = pos
        if text[pos:pos + 2] in ("0x", "0X") and text[pos + 2:pos + 3] != "" \
                and text[pos + 2] in _HEX:
            start = pos + 2
        count = _digits(text[start:], 16)
        if count == 0:
            break
        bits = 64 if len(values) == 6 else 32
        values.append(int(text[start:start + count], 16) & ((1 << bits) - 1))
        pos = start + count
    return values
