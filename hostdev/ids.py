"""Vendor, device and class ids as pydantic types: ints in Python, lower-case hex
strings in JSON (``"8086"``, ``"020000"``), as the kernel prints them.

Beside :mod:`hostdev.address` in the bottom layer, so that the device model and
the state records share one definition.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema


def _hex_in(value: Any) -> Any:
    if isinstance(value, str):
        return int(value, 16)
    return value


def _hex4(value: int) -> str:
    return f"{value:04x}"


def _hex6(value: int) -> str:
    return f"{value:06x}"


#: A 16-bit id (vendor, device): an int in Python, ``"8086"`` in JSON.
Hex16 = Annotated[
    int,
    BeforeValidator(_hex_in),
    Field(ge=0, le=0xFFFF),  # a file holding "-1" or "123456" is damaged, not printed
    PlainSerializer(_hex4, return_type=str),
    WithJsonSchema({"type": "string", "pattern": "^[0-9a-f]{4}$"}),
]
#: A 24-bit class code: an int in Python, ``"020000"`` in JSON.
Hex24 = Annotated[
    int,
    BeforeValidator(_hex_in),
    Field(ge=0, le=0xFFFFFF),
    PlainSerializer(_hex6, return_type=str),
    WithJsonSchema({"type": "string", "pattern": "^[0-9a-f]{6}$"}),
]
