"""``hostdev list`` parsed without argparse: argparse's import and set-up cost the
listing a third of its start-up, and ``list`` is measured against ``lspci``.

Only plain forms are taken here; anything else (another command, help, an
abbreviation, an error) gives None and is left to :mod:`hostdev.cli.parser`, so
messages and exit codes stay argparse's. A test compares the two parsers.
"""

from __future__ import annotations

# typing.TYPE_CHECKING, without importing typing at run time (cold start).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

LIST_HANDLER = "hostdev.cli.listing:cmd_list"
#: The filters of ``hostdev list`` (flag, metavar, help); their values are checked by
#: :mod:`hostdev.cli.listing`, which says what a bad one is (exit 2).
LIST_FILTERS: tuple[tuple[str, str, str], ...] = (
    ("--driver", "NAME", "only functions bound to this driver ('none': to none)"),
    ("--id", "VVVV:DDDD", "only functions with these vendor and device ids (hex)"),
    ("--pf", "ADDR", "only this physical function and its virtual functions"),
    ("--numa", "N", "only functions on this NUMA node"),
    ("--list", "LIST", "only functions in this list: active, inactive or host"),
    ("--class", "KIND", "only functions of this PCI base class: net, storage, display,"
                        " multimedia, bridge, serial, accelerator... (a bad name lists"
                        " them all)"),
)
_LIST_BOOLS = {"--json": "json", "--schema": "schema"}
_LIST_VALUES = {flag: flag[2:] for flag, _, _ in LIST_FILTERS}


class _Args:
    """The parsed command line of the fast path (what argparse's Namespace would hold)."""

    def __init__(self, **values: object) -> None:
        self.__dict__.update(values)


def fast_list_args(argv: Sequence[str]) -> argparse.Namespace | None:
    """``hostdev list ...`` parsed without argparse (whose import and set-up cost
    ``list`` a third of its start-up), or None for anything else: every other
    command, help, an abbreviation or an error is left to argparse, so messages
    and exit codes stay argparse's. Gives exactly what :func:`hostdev.cli.parser.build_parser` would
    (a test compares the two)."""
    values: dict[str, object] = {"root": "/", "state_dir": None, "config_dir": None,
                                 "release_timeout": 10.0, "load_modules": True,
                                 "verbose": 0, "quiet": False}
    i, n = 0, len(argv)
    while i < n and argv[i] != "list":
        flag, eq, value = argv[i].partition("=")
        if flag not in ("--root", "--state-dir", "--config-dir") \
                and argv[i] != "--no-load-modules":
            return None
        if argv[i] == "--no-load-modules":
            values["load_modules"] = False
            i += 1
            continue
        if not eq:
            i += 1
            if i >= n or argv[i].startswith("-"):
                return None
            value = argv[i]
        values[flag[2:].replace("-", "_")] = value
        i += 1
    if i >= n:
        return None
    values.update(command="list", handler=LIST_HANDLER, json=False, schema=False)
    verbose = 0
    values.update({dest: None for dest in _LIST_VALUES.values()})
    i += 1
    while i < n:
        arg = argv[i]
        if arg in _LIST_BOOLS:
            values[_LIST_BOOLS[arg]] = True
        elif arg == "--verbose":
            verbose += 1
        elif arg.startswith("-v") and arg.strip("v") == "-":  # -v, -vv...
            verbose += len(arg) - 1
        else:
            flag, eq, value = arg.partition("=")
            if flag not in _LIST_VALUES:
                return None
            if not eq:
                i += 1
                if i >= n or argv[i].startswith("-"):
                    return None
                value = argv[i]
            values[_LIST_VALUES[flag]] = value
        i += 1
    values["verbose"] = verbose
    # Duck-typed: the handlers read attributes only, as they do of a Namespace.
    return _Args(**values)  # type: ignore[return-value]
