"""The ``hostdev`` command line as an argparse parser: every global option and
sub-command, each naming its handler as ``module:function`` (imported only when that
command runs, by :mod:`hostdev.cli.main`).

``-v/--verbose`` and ``-q/--quiet`` are accepted before and after the sub-command:
every sub-parser gets them (see :class:`_SubParser`), so a command added later has
them too. ``hostdev list`` is usually parsed without this module
(:mod:`hostdev.cli.listargs`), which gives the same result faster.
"""

from __future__ import annotations

import argparse

from hostdev import __version__
from hostdev.cli.listargs import LIST_FILTERS, LIST_HANDLER


class UsageError(Exception):
    """The command line does not parse (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # Raised, not printed here: main() prints it as text or, with --json, as JSON.
        raise UsageError(f"{message}; see 'hostdev --help'")


def _add_common(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    """-v/--verbose and -q/--quiet on ``parser``.

    On a sub-parser they default to SUPPRESS: argparse copies every attribute of
    the sub-command's namespace over the main one, and a default there would undo
    a ``-v`` given before the sub-command.
    """
    verbose: object = argparse.SUPPRESS if after_command else 0
    quiet: object = argparse.SUPPRESS if after_command else False
    parser.add_argument("-v", "--verbose", action="count", default=verbose,
                        help="log every kernel write (path, value, result) and every VFIO"
                             " holder found, on stderr")
    parser.add_argument("-q", "--quiet", action="store_true", default=quiet,
                        help="log only errors (no warnings, no progress of a wait)")


class _SubParser(_Parser):
    """A sub-command's parser: it takes the common options as well."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        _add_common(self, after_command=True)


_ADDRESS_HELP = "a PCI address: DDDD:BB:SS.F, or BB:SS.F in domain 0000"
_ADDRESSES_HELP = "PCI addresses (DDDD:BB:SS.F, or BB:SS.F in domain 0000)"
_OWNER_HELP = "who holds the devices: the driver and the domain (guest) name, e.g. qemu/vm1"

_DRIVER_HELP = ("stub driver (default vfio-pci; 'auto': the device's vfio variant driver"
                " from modules.alias, else vfio-pci)")

_FORCE_HOST_USE = ("take the device even if the host uses what it carries (a mounted"
                   " disk or swap, an interface with an address or route, a mounted 9p or"
                   " virtiofs tag)")


def _seconds(text: str) -> float:
    """A finite number of seconds >= 0 (nan, inf and negatives are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value != value or value in (float("inf"), float("-inf")) or value < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a finite number of seconds >= 0") from None
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (the man page and the completion scripts are made from it)."""
    from hostdev.cli.netargs import add_net_arguments

    parser = _Parser(prog="hostdev", description="Manage PCI host devices for VFIO passthrough.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_common(parser, after_command=False)
    parser.add_argument("--root", default="/", metavar="PATH",
                        help="directory holding sys/, dev/ and proc/ (default /)")
    parser.add_argument("--state-dir", default=None, metavar="DIR",
                        help="state directory (default /run/hostdev as root,"
                             " else $XDG_RUNTIME_DIR/hostdev)")
    parser.add_argument("--config-dir", default=None, metavar="DIR",
                        help="where persistent wishes are kept (default /etc/hostdev, under"
                             " --root when it is not /)")
    parser.add_argument("--release-timeout", type=_seconds, default=10.0, metavar="SECONDS",
                        help="how long to wait for a VFIO user (e.g. QEMU) to let go of a"
                             " device before refusing to unbind it (a finite number >= 0;"
                             " default 10)")
    parser.add_argument("--no-load-modules", dest="load_modules", action="store_false",
                        help="never run modprobe: refuse when the stub driver is not loaded"
                             " (by default it is loaded, on the real root only)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_SubParser)

    p = sub.add_parser("list", help="list PCI functions grouped by driver kind (-v: with"
                                    " vendor and device names from the system's pci.ids)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=LIST_HANDLER)
    p.add_argument("--schema", action="store_true", help="print the JSON schema of --json")
    for flag, metavar, text in LIST_FILTERS:
        p.add_argument(flag, metavar=metavar, default=None, help=text)

    p = sub.add_parser("show", help="every fact of one device")
    p.set_defaults(handler="hostdev.cli.inventory:cmd_show")
    p.add_argument("address", metavar="ADDRESS", help=_ADDRESS_HELP)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("detach", help="move free devices onto a stub driver (inactive list)")
    p.set_defaults(handler="hostdev.cli.manage:cmd_detach")
    p.add_argument("addresses", nargs="+", metavar="ADDRESS", help=_ADDRESSES_HELP)
    p.add_argument("--driver", default="vfio-pci", help=_DRIVER_HELP)
    p.add_argument("--force", action="store_true", help=_FORCE_HOST_USE)
    p.add_argument("--persistent", action="store_true",
                   help="also keep them on the stub after a reboot (see 'hostdev boot')")
    p.add_argument("--json", action="store_true", help="machine-readable report")

    p = sub.add_parser("reattach", help="give free devices back to their host drivers")
    p.set_defaults(handler="hostdev.cli.manage:cmd_reattach")
    p.add_argument("addresses", nargs="+", metavar="ADDRESS", help=_ADDRESSES_HELP)
    p.add_argument("--persistent", action="store_true",
                   help="also drop their persistent detach (works for a device no longer"
                        " present)")
    p.add_argument("--json", action="store_true", help="machine-readable report")

    p = sub.add_parser("reset", help="reset a device no owner holds")
    p.set_defaults(handler="hostdev.cli.manage:cmd_reset")
    p.add_argument("address", metavar="ADDRESS", help=_ADDRESS_HELP)
    p.add_argument("--json", action="store_true", help="machine-readable report")

    p = sub.add_parser("assign", help="prepare devices for an owner (active list), or"
                                      " --count N free VFs chosen by hostdev")
    p.set_defaults(handler="hostdev.cli.manage:cmd_assign")
    p.add_argument("--owner", required=True, metavar="DRIVER/DOMAIN", help=_OWNER_HELP)
    p.add_argument("--unmanaged", action="store_true",
                   help="devices are already on a stub; do not detach or give them back")
    p.add_argument("--driver", default="vfio-pci", help=_DRIVER_HELP)
    p.add_argument("--force", action="store_true", help=_FORCE_HOST_USE)
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument("--count", type=int, metavar="N",
                   help="instead of addresses: N free VFs (untracked, not held, not used by"
                        " the host, in a viable IOMMU group), all or none")
    p.add_argument("--pf", metavar="ADDR", help="with --count: only VFs of this PF")
    p.add_argument("--numa", type=int, metavar="NODE",
                   help="with --count: VFs on this NUMA node first (others make up the count)")
    p.add_argument("--id", dest="vendor_device", metavar="VVVV:DDDD",
                   help="with --count: only VFs with this vendor:device id")
    p.add_argument("addresses", nargs="*", metavar="ADDRESS", help=_ADDRESSES_HELP)
    add_net_arguments(p)

    p = sub.add_parser("release", help="take an owner's devices back (reattach)")
    p.set_defaults(handler="hostdev.cli.manage:cmd_release")
    p.add_argument("--owner", required=True, metavar="DRIVER/DOMAIN", help=_OWNER_HELP)
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument("addresses", nargs="+", metavar="ADDRESS", help=_ADDRESSES_HELP)

    p = sub.add_parser("prune", help="drop records of devices that vanished from the host")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler="hostdev.cli.manage:cmd_prune")

    p = sub.add_parser("sriov", help="set a PF's VF count (refuses to orphan assigned VFs)")
    p.set_defaults(handler="hostdev.cli.manage:cmd_sriov")
    p.add_argument("pf", metavar="PF", help="the physical function's PCI address")
    p.add_argument("count", type=int, metavar="N", help="the VF count wanted (0 removes them)")
    p.add_argument("--force", action="store_true",
                   help="proceed even if assigned VFs vanish (their records are dropped) or"
                        " the host uses a disk, interface or mount tag a vanishing VF"
                        " carries")
    p.add_argument("--persistent", action="store_true",
                   help="also give the PF N VFs after a reboot (0 drops that wish; with"
                        " --stub, the new VFs are also kept on the stub)")
    p.add_argument("--stub", metavar="DRIVER",
                   help="create the VFs straight onto this stub driver (vfio-pci, or auto:"
                        " a VF's vfio variant driver if one claims it), tracked inactive,"
                        " never bound to the host's VF driver; VFs that exist already stay"
                        " where they are")
    p.add_argument("--json", action="store_true", help="machine-readable report")

    p = sub.add_parser("reconcile",
                       help="bring the lists in line with the host after a crash or changes")
    p.set_defaults(handler="hostdev.cli.manage:cmd_reconcile")
    p.add_argument("--json", action="store_true", help="machine-readable report")

    p = sub.add_parser("watch", help="follow PCI uevents: prune vanished devices' records,"
                                     " report drift, until SIGTERM or Ctrl-C")
    p.set_defaults(handler="hostdev.cli.watching:cmd_watch")
    p.add_argument("--json", action="store_true",
                   help="print each event acted on as one JSON line (the log stays on stderr)")
    p = sub.add_parser("boot", help="apply the persistent wishes: VF counts, then detaches"
                                    " (exit 1 if one could not be applied)")
    p.set_defaults(handler="hostdev.cli.persistent:cmd_boot")
    p.add_argument("--only", action="append", metavar="ADDRESS",
                   help="apply only the wishes of this device (repeatable)")
    p.add_argument("--vf-counts-only", action="store_true",
                   help="apply only VF count wishes (what the udev rule runs when a PF's"
                        " driver binds)")
    p.add_argument("--json", action="store_true", help="machine-readable report")

    p = sub.add_parser("wishes", help="list the persistent wishes")
    p.set_defaults(handler="hostdev.cli.persistent:cmd_wishes")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("install-units",
                       help="write the systemd unit and udev rule that apply the wishes at"
                            " boot and on hot-plug")
    p.set_defaults(handler="hostdev.cli.units:cmd_install_units")
    p.add_argument("--root", dest="unit_root", default="/", metavar="DIR",
                   help="install under this directory (an image being built; default /)")
    p.add_argument("--command", dest="command_path", default=None, metavar="PATH",
                   help="absolute path of the hostdev command the unit runs (default: this"
                        " one)")
    p.add_argument("--json", action="store_true", help="machine-readable report")

    p = sub.add_parser("demo", help="narrated walk-through on a bundled fake host")
    p.add_argument("--host", default="two-socket-server", help="fixture host name")
    p.set_defaults(handler="hostdev.cli.demo:cmd_demo")

    p = sub.add_parser("schema", help="print the JSON Schema of a document --json prints")
    p.set_defaults(handler="hostdev.cli.schemas:cmd_schema")
    p.add_argument("name", nargs="?", metavar="NAME",
                   help="document name (without it: list the names and schema ids)")
    p.add_argument("--json", action="store_true",
                   help="the list of names as a document (a schema is JSON already)")

    p = sub.add_parser("completion", help="print a shell completion script")
    p.set_defaults(handler="hostdev.cli.completion:cmd_completion")
    p.add_argument("shell", choices=["bash", "zsh", "fish"],
                   help="the shell the script is for (bash: source it, or install it as"
                        " /etc/bash_completion.d/hostdev)")
    return parser
