"""The ``hostdev`` command: argument parsing and dispatch in :mod:`.main`, one module
per command group, the tables in :mod:`.tables`.

``main`` is imported lazily so that ``import hostdev.cli.listing`` (the fast ``list``
path) does not pay for the whole parser.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hostdev.cli.main import main as main


def __getattr__(name: str) -> object:
    if name == "main":
        from hostdev.cli.main import main

        return main
    raise AttributeError(f"module 'hostdev.cli' has no attribute {name!r}")
