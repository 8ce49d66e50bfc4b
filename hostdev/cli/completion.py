"""``hostdev completion bash|zsh|fish``: a completion script made from the parser.

shtab writes it from :func:`hostdev.cli.main.build_parser`, so every sub-command
and option is completed as it is declared; shtab is imported only here.
"""

from __future__ import annotations

import argparse
import sys


def completion_script(shell: str) -> str:
    """The completion script of ``hostdev`` for ``shell`` (bash, zsh or fish)."""
    import shtab

    from hostdev.cli.main import build_parser

    script: str = shtab.complete(build_parser(), shell=shell)
    return script if script.endswith("\n") else script + "\n"


def cmd_completion(args: argparse.Namespace) -> int:
    """Print the completion script of ``args.shell``."""
    sys.stdout.write(completion_script(args.shell))
    return 0
