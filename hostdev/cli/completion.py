"""``hostdev completion bash|zsh|fish``: a completion script made from the parser.

shtab writes it from :func:`hostdev.cli.parser.build_parser`, so every sub-command
and option is completed as it is declared; shtab is imported only here. An
argument that takes a PCI address (metavar ``ADDRESS`` or ``PF``, or named
``address``) completes with the functions of this host's ``/sys/bus/pci/devices``.
"""

from __future__ import annotations

import argparse
import sys


def completion_script(shell: str) -> str:
    """The completion script of ``hostdev`` for ``shell`` (bash, zsh or fish)."""
    import shtab

    from hostdev.cli.parser import build_parser

    parser = build_parser()
    addresses = shtab.cmd(f"ls {PCI_DEVICES} 2>/dev/null")
    for action in _actions(parser):
        if action.metavar in ("ADDRESS", "PF") or action.dest in ("address", "addresses"):
            action.complete = addresses  # type: ignore[attr-defined]
    script: str = shtab.complete(parser, shell=shell)
    return script if script.endswith("\n") else script + "\n"


#: Where the completion looks for PCI addresses (the host's, whatever ``--root`` says).
PCI_DEVICES = "/sys/bus/pci/devices"


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Every argument of ``parser`` and of its sub-commands."""
    found = []
    for action in parser._actions:
        found.append(action)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_actions(sub))
    return found


def cmd_completion(args: argparse.Namespace) -> int:
    """Print the completion script of ``args.shell``."""
    sys.stdout.write(completion_script(args.shell))
    return 0
