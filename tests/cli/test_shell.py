"""Shell completion and the manual page, both made from the argument parser."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import pytest

from hostdev.cli.completion import completion_script
from hostdev.cli.main import main
from hostdev.cli.manpage import SHIPPED, escape, render
from hostdev.cli.parser import build_parser

COMMANDS = sorted(next(a for a in build_parser()._actions
                       if isinstance(a, argparse._SubParsersAction)).choices)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_names_every_command(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert script == completion_script(shell)
    for command in COMMANDS:
        assert command in script, (shell, command)
    assert "/sys/bus/pci/devices" in script  # addresses complete from the host


def test_an_unknown_shell_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["completion", "tcsh"])
    assert info.value.code == 2 and "invalid choice: 'tcsh'" in capsys.readouterr().err


def _bash_complete(script: Path, *words: str) -> list[str]:
    """What bash offers for the last of ``words`` (``hostdev`` first)."""
    line = " ".join(words)
    program = (f"source {script}\nCOMP_WORDS=({' '.join(repr(w) for w in words)})\n"
               f"COMP_CWORD={len(words) - 1}\nCOMP_LINE={line!r}\nCOMP_POINT={len(line)}\n"
               "_shtab_hostdev\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    done = subprocess.run(["bash", "--norc", "-c", program], capture_output=True, text=True,
                          timeout=30, check=True)
    return done.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completes_commands_options_and_choices(tmp_path: Path) -> None:
    script = tmp_path / "hostdev.bash"
    script.write_text(completion_script("bash"))
    assert _bash_complete(script, "hostdev", "de") == ["detach", "demo"]
    assert _bash_complete(script, "hostdev", "detach", "--f") == ["--force"]
    assert "--verbose" in _bash_complete(script, "hostdev", "sriov", "--")
    assert _bash_complete(script, "hostdev", "completion", "") == ["bash", "zsh", "fish"]


def test_the_shipped_manual_page_is_up_to_date() -> None:
    assert SHIPPED.read_text() == render(), (
        "hostdev/data/hostdev.1 is out of date with the parser: run"
        " 'python -m hostdev.cli.manpage --write' and commit it")


def test_the_manual_page_documents_every_command_and_option() -> None:
    page = render()
    parser = build_parser()
    for command in COMMANDS:
        troff = command.replace("-", "\\-")  # a hyphen in a troff name is escaped
        assert f".SS {troff}\n" in page, command
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for sub in [parser, *subs.choices.values()]:
        for action in sub._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"\\fB{escape(option)}\\fR" in page, option
    for section in ("NAME", "SYNOPSIS", "GLOBAL OPTIONS", "COMMANDS", "JSON OUTPUT",
                    "EXIT STATUS", "FILES"):
        assert f".SH {section}\n" in page
    # No line of text starts with a control character (it would be read as a request).
    for line in page.splitlines():
        assert not line.startswith("'")


def test_escape_keeps_text_literal() -> None:
    assert escape("a-b\\c") == "a\\-b\\ec"
    assert escape(".start\n'quote") == "\\&.start\n\\&'quote"


@pytest.mark.skipif(shutil.which("groff") is None, reason="no groff")
def test_groff_reads_the_page_without_a_warning() -> None:
    done = subprocess.run(["groff", "-man", "-ww", "-z"], input=render(), capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_the_page_ships_in_the_package() -> None:
    import importlib.resources

    page = importlib.resources.files("hostdev") / "data" / "hostdev.1"
    assert page.is_file()
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"hostdev/data/hostdev.1" = "share/man/man1/hostdev.1"' in pyproject
