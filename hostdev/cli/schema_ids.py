"""The schema id of each JSON document (one definition; light enough for the fast
``list`` path, which imports no pydantic)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final, Literal

LIST_SCHEMA_ID: Final[Literal["hostdev.list/1"]] = "hostdev.list/1"
SHOW_SCHEMA_ID: Final[Literal["hostdev.show/1"]] = "hostdev.show/1"
NODE_SCHEMA_ID: Final[Literal["hostdev.node/1"]] = "hostdev.node/1"
ASSIGN_SCHEMA_ID: Final[Literal["hostdev.assign/1"]] = "hostdev.assign/1"
RELEASE_SCHEMA_ID: Final[Literal["hostdev.release/1"]] = "hostdev.release/1"
PRUNE_SCHEMA_ID: Final[Literal["hostdev.prune/1"]] = "hostdev.prune/1"
SRIOV_SCHEMA_ID: Final[Literal["hostdev.sriov/1"]] = "hostdev.sriov/1"
RECONCILE_SCHEMA_ID: Final[Literal["hostdev.reconcile/1"]] = "hostdev.reconcile/1"
ALLOCATE_SCHEMA_ID: Final[Literal["hostdev.allocate/1"]] = "hostdev.allocate/1"
BOOT_SCHEMA_ID: Final[Literal["hostdev.boot/1"]] = "hostdev.boot/1"
WISHES_SCHEMA_ID: Final[Literal["hostdev.wishes/1"]] = "hostdev.wishes/1"
#: One line per event of ``hostdev watch --json``.
WATCH_SCHEMA_ID: Final[Literal["hostdev.watch/1"]] = "hostdev.watch/1"
UNITS_SCHEMA_ID: Final[Literal["hostdev.units/1"]] = "hostdev.units/1"
#: ``hostdev schema --json``: the document names and their schema ids.
SCHEMAS_SCHEMA_ID: Final[Literal["hostdev.schemas/1"]] = "hostdev.schemas/1"
#: What any command prints with ``--json`` when it fails.
ERROR_SCHEMA_ID: Final[Literal["hostdev.error/1"]] = "hostdev.error/1"
