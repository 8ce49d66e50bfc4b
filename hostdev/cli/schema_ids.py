"""The schema id of each JSON document (one definition; light enough for the fast
``list`` path, which imports no pydantic)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final, Literal

LIST_SCHEMA_ID: Final[Literal["hostdev.list/1"]] = "hostdev.list/1"
SHOW_SCHEMA_ID: Final[Literal["hostdev.show/1"]] = "hostdev.show/1"
