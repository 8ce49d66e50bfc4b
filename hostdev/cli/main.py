"""The ``hostdev`` command: parse, call the library, print, map errors to exit codes.

Exit codes: 0 success, 2 bad input (malformed address or driver name, a
``--root`` that is not a sysfs tree, corrupt state), 1 any other error.
"""

from __future__ import annotations

import sys

from hostdev import __version__
from hostdev.errors import BadInput, HostdevError

# typing.TYPE_CHECKING, without importing typing at run time (cold start).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2


_DRIVER_HELP = ("stub driver (default vfio-pci; 'auto': the device's vfio variant driver"
                " from modules.alias, else vfio-pci)")

_FORCE_HOST_USE = ("take the device even if the host uses what it carries (a mounted"
                   " disk or swap, an interface with an address or route, a mounted 9p or"
                   " virtiofs tag)")


def _seconds(text: str) -> float:
    """A finite number of seconds >= 0 (nan, inf and negatives are refused)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value != value or value in (float("inf"), float("-inf")) or value < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a finite number of seconds >= 0") from None
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    # Imported here: ``hostdev list`` is parsed without it (see fast_list_args).
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            self.exit(EXIT_BAD_INPUT, f"hostdev: {message}; see 'hostdev --help'\n")

    parser = _Parser(prog="hostdev", description="Manage PCI host devices for VFIO passthrough.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--root", default="/", metavar="PATH",
                        help="directory holding sys/, dev/ and proc/ (default /)")
    parser.add_argument("--state-dir", default=None, metavar="DIR",
                        help="state directory (default /run/hostdev as root,"
                             " else $XDG_RUNTIME_DIR/hostdev)")
    parser.add_argument("--release-timeout", type=_seconds, default=10.0, metavar="SECONDS",
                        help="how long to wait for a VFIO user (e.g. QEMU) to let go of a"
                             " device before refusing to unbind it (a finite number >= 0;"
                             " default 10)")
    parser.add_argument("--no-load-modules", dest="load_modules", action="store_false",
                        help="never run modprobe: refuse when the stub driver is not loaded"
                             " (by default it is loaded, on the real root only)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="list PCI functions grouped by driver kind")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=LIST_HANDLER)
    p.add_argument("--schema", action="store_true", help="print the JSON schema of --json")
    p.add_argument("-v", "--verbose", action="count", dest="verbose", default=0,
                   help="add a NAME column: vendor and device names from the system's"
                        " pci.ids, when it has one")
    for flag, metavar, text in LIST_FILTERS:
        p.add_argument(flag, metavar=metavar, default=None, help=text)

    p = sub.add_parser("show", help="every fact of one device")
    p.set_defaults(handler="hostdev.cli.inventory:cmd_show")
    p.add_argument("address")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("detach", help="move free devices onto a stub driver (inactive list)")
    p.set_defaults(handler="hostdev.cli.manage:cmd_detach")
    p.add_argument("addresses", nargs="+", metavar="ADDRESS")
    p.add_argument("--driver", default="vfio-pci", help=_DRIVER_HELP)
    p.add_argument("--force", action="store_true", help=_FORCE_HOST_USE)

    p = sub.add_parser("reattach", help="give free devices back to their host drivers")
    p.set_defaults(handler="hostdev.cli.manage:cmd_reattach")
    p.add_argument("addresses", nargs="+", metavar="ADDRESS")

    p = sub.add_parser("reset", help="reset a device no owner holds")
    p.set_defaults(handler="hostdev.cli.manage:cmd_reset")
    p.add_argument("address")

    p = sub.add_parser("assign", help="prepare devices for an owner (active list)")
    p.set_defaults(handler="hostdev.cli.manage:cmd_assign")
    p.add_argument("--owner", required=True, metavar="DRIVER/DOMAIN")
    p.add_argument("--unmanaged", action="store_true",
                   help="devices are already on a stub; do not detach or give them back")
    p.add_argument("--driver", default="vfio-pci", help=_DRIVER_HELP)
    p.add_argument("--force", action="store_true", help=_FORCE_HOST_USE)
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument("addresses", nargs="+", metavar="ADDRESS")

    p = sub.add_parser("release", help="take an owner's devices back (reattach)")
    p.set_defaults(handler="hostdev.cli.manage:cmd_release")
    p.add_argument("--owner", required=True, metavar="DRIVER/DOMAIN")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument("addresses", nargs="+", metavar="ADDRESS")

    p = sub.add_parser("prune", help="drop records of devices that vanished from the host")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler="hostdev.cli.manage:cmd_prune")

    p = sub.add_parser("sriov", help="set a PF's VF count (refuses to orphan assigned VFs)")
    p.set_defaults(handler="hostdev.cli.manage:cmd_sriov")
    p.add_argument("pf", metavar="PF")
    p.add_argument("count", type=int, metavar="N")
    p.add_argument("--force", action="store_true",
                   help="proceed even if assigned VFs vanish (their records are dropped) or"
                        " the host uses a disk, interface or mount tag a vanishing VF"
                        " carries")
    p.add_argument("--json", action="store_true", help="machine-readable report")

    p = sub.add_parser("reconcile",
                       help="bring the lists in line with the host after a crash or changes")
    p.set_defaults(handler="hostdev.cli.manage:cmd_reconcile")
    p.add_argument("--json", action="store_true", help="machine-readable report")

    p = sub.add_parser("demo", help="narrated walk-through on a bundled fake host")
    p.add_argument("--host", default="two-socket-server", help="fixture host name")
    p.set_defaults(handler="hostdev.cli.demo:cmd_demo")
    return parser


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
    and exit codes stay argparse's. Gives exactly what :func:`build_parser` would
    (a test compares the two)."""
    values: dict[str, object] = {"root": "/", "state_dir": None, "release_timeout": 10.0,
                                 "load_modules": True}
    i, n = 0, len(argv)
    while i < n and argv[i] != "list":
        flag, eq, value = argv[i].partition("=")
        if flag not in ("--root", "--state-dir") and argv[i] != "--no-load-modules":
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    if argv is None:
        argv = sys.argv[1:]
    args = fast_list_args(argv)
    if args is None:
        args = build_parser().parse_args(argv)
    if args.command != "list":  # list logs nothing: keep the logging import off its start-up
        _configure_logging()
    try:
        return _dispatch(args)
    except BadInput as exc:
        print(f"hostdev: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except HostdevError as exc:
        print(f"hostdev: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("hostdev: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        return EXIT_OK


def _configure_logging() -> None:
    """Warnings and errors on stderr; of the INFO messages only those of a release wait
    (whom we wait for, how long is left), so a wait is never silent and nothing else is noisy."""
    import logging

    if not logging.getLogger().handlers:
        logging.basicConfig(format="hostdev: %(levelname)s: %(message)s", level=logging.WARNING)
    ours = logging.getLogger("hostdev")
    if ours.level == logging.NOTSET or ours.level > logging.INFO:
        ours.setLevel(logging.INFO)
    if not any(isinstance(f, _WaitOrWarning) for f in ours.filters):
        ours.addFilter(_WaitOrWarning())


def _wait_flagged(record: object) -> bool:
    # The flag hostdev.linux.vfio.WAIT_LOG_FLAG sets (not imported: it would load pydantic here).
    return bool(getattr(record, "hostdev_wait", False))


class _WaitOrWarning:
    """Logger filter: warnings and up, plus the release-wait messages."""

    def filter(self, record: object) -> bool:
        """Whether ``record`` is shown."""
        return int(getattr(record, "levelno", 0)) >= 30 or _wait_flagged(record)


def _dispatch(args: argparse.Namespace) -> int:
    """Run the command's handler, named ``module:function`` by its sub-parser and
    imported only now (``hostdev list`` must not pay for the other commands)."""
    module, _, function = str(args.handler).partition(":")
    # __import__ rather than importlib.import_module: importlib pulls in warnings.
    handler = getattr(__import__(module, fromlist=[function]), function)
    args.rerun = main  # for commands that run others (the demo), without importing us
    code: int = handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
