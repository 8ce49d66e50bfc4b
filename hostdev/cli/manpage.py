"""The manual page ``hostdev(1)``, written in troff from the argument parser.

The page shipped in the package (``hostdev/data/hostdev.1``) is this module's
output; a test fails when the parser changed and the page was not remade::

    python -m hostdev.cli.manpage --write     # remake hostdev/data/hostdev.1
    python -m hostdev.cli.manpage | man -l -  # read it

The output depends on nothing but the parser and the version (no date, no
terminal width), so the same code gives the same page everywhere.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hostdev import __version__
from hostdev.cli.main import EXIT_BAD_INPUT, EXIT_ERROR, EXIT_OK
from hostdev.cli.parser import build_parser
from hostdev.state.audit import AUDIT_NAME, KEEP_ROTATED, MAX_AUDIT_SIZE
from hostdev.state.journal import INTENT_NAME
from hostdev.state.store import STATE_NAME

#: Where the page is shipped, inside the package.
SHIPPED = Path(__file__).resolve().parent.parent / "data" / "hostdev.1"

#: Options every command takes (documented once, under GLOBAL OPTIONS).
_COMMON = frozenset({"help", "verbose", "quiet"})

_FIXED_SECTIONS = f"""\
.SH JSON OUTPUT
Every command that prints takes \\fB\\-\\-json\\fR and then prints one JSON document
on standard output; its member \\fBschema\\fR names its schema (\\fBhostdev.list/1\\fR,
\\fBhostdev.node/1\\fR...).
\\fBhostdev schema\\fR lists the documents, \\fBhostdev schema\\fR \\fINAME\\fR prints
the JSON Schema of one.
With \\fB\\-\\-json\\fR an error is a document too (schema \\fBhostdev.error/1\\fR:
\\fBerror\\fR with \\fBtype\\fR, \\fBmessage\\fR, \\fBexit_code\\fR and \\fBdevice\\fR,
and \\fBdone\\fR, what a command acting on several devices did before the error),
printed on standard output as well as on standard error; the exit status is the same.
.SH EXIT STATUS
.TP
.B {EXIT_OK}
Success.
.TP
.B {EXIT_ERROR}
The operation failed (a device is busy, in use, missing; the kernel refused a
write; a release left a device behind).
.TP
.B {EXIT_BAD_INPUT}
Bad input: a malformed address or driver name, a root that is not a sysfs tree,
a state file that cannot be trusted, a command line that does not parse.
Nothing was changed.
.SH FILES
.TP
.I /run/hostdev/{STATE_NAME}
The active and inactive lists (as root; otherwise under
\\fI$XDG_RUNTIME_DIR/hostdev\\fR; see \\fB\\-\\-state\\-dir\\fR).
.TP
.I /run/hostdev/{INTENT_NAME}
The intent journal of a transaction under way.
.TP
.I /run/hostdev/{AUDIT_NAME}
One JSON line per transaction (schema \\fBhostdev.audit/1\\fR): time, pid, uid,
user, verb, devices, result. Rotated at {MAX_AUDIT_SIZE >> 20} MiB to \\fI{AUDIT_NAME}.1\\fR
(the newest) to \\fI{AUDIT_NAME}.{KEEP_ROTATED}\\fR.
.SH ENVIRONMENT
.TP
.B XDG_RUNTIME_DIR
Parent of the state directory when not run as root.
.SH SEE ALSO
.BR lspci (8),
.BR driverctl (8),
.BR virsh (1)
"""


def escape(text: str) -> str:
    """``text`` safe in troff running text: backslashes and hyphens escaped, and
    no line that starts with a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(f"\\&{line}" if line[:1] in (".", "'") else line
                     for line in text.split("\n"))


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return str(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return str(action.dest).upper() if action.option_strings else str(action.dest)


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def _synopsis_item(action: argparse.Action) -> str:
    """One argument as the SYNOPSIS shows it, in troff."""
    if action.option_strings:
        text = f"\\fB{escape(action.option_strings[-1])}\\fR"
        if _takes_value(action):
            text += f" \\fI{escape(_metavar(action))}\\fR"
        return text if action.required else f"[{text}]"
    name = f"\\fI{escape(_metavar(action))}\\fR"
    if action.nargs == "+":
        return f"{name}..."
    if action.nargs == "?":
        return f"[{name}]"
    return name


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = parser._get_formatter()
    return escape(formatter._expand_help(action)) if action.help else ""


def _option_entry(parser: argparse.ArgumentParser, action: argparse.Action) -> list[str]:
    """A ``.TP`` entry for one argument."""
    if action.option_strings:
        names = ", ".join(f"\\fB{escape(o)}\\fR" for o in action.option_strings)
        if _takes_value(action):
            names += f" \\fI{escape(_metavar(action))}\\fR"
    else:
        names = f"\\fI{escape(_metavar(action))}\\fR"
    return [".TP", names, _help(parser, action)]


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each sub-command, in declaration order."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                found.append((name, helps.get(name, ""), sub))
    return found


def render(parser: argparse.ArgumentParser | None = None) -> str:
    """The whole page, in troff."""
    parser = parser or build_parser()
    lines = [f'.TH HOSTDEV 1 "" "hostdev {__version__}" "User Commands"',
             ".SH NAME",
             "hostdev \\- manage PCI host devices for VFIO passthrough",
             ".SH SYNOPSIS",
             ".B hostdev",
             "[\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGUMENTS\\fR]",
             ".SH DESCRIPTION",
             escape(parser.description or ""),
             "hostdev is the host half of libvirt's PCI passthrough: it moves devices between"
             " their host drivers and a VFIO or stub driver, tracks which owner holds each,"
             " and refuses what would hang or hurt the host.",
             ".SH GLOBAL OPTIONS",
             "\\fB\\-v\\fR and \\fB\\-q\\fR may also be given after the command.",
             ]
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            lines += _option_entry(parser, action)
    lines.append(".SH COMMANDS")
    for name, summary, sub in _subcommands(parser):
        shown = [a for a in sub._actions if a.dest not in _COMMON]
        lines += [f".SS {escape(name)}",
                  ".B hostdev " + escape(name),
                  " ".join(_synopsis_item(a) for a in _ordered(shown)),
                  ".br",
                  escape(summary[:1].upper() + summary[1:]) + ("." if summary else "")]
        for action in _ordered(shown):
            lines += _option_entry(sub, action)
    return "\n".join(lines) + "\n" + _FIXED_SECTIONS


def _ordered(actions: Sequence[argparse.Action]) -> list[argparse.Action]:
    """Options first, then positional arguments, each in declaration order."""
    return ([a for a in actions if a.option_strings]
            + [a for a in actions if not a.option_strings])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hostdev.cli.manpage [--write]``: print the page, or remake the shipped one."""
    cli = argparse.ArgumentParser(prog="python -m hostdev.cli.manpage",
                                  description="Print the hostdev(1) manual page.")
    cli.add_argument("--write", action="store_true", help=f"write it to {SHIPPED}")
    args = cli.parse_args(argv)
    page = render()
    if args.write:
        SHIPPED.parent.mkdir(exist_ok=True)
        SHIPPED.write_text(page)
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
