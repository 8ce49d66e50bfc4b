"""``hostdev install-units``: write the systemd unit and the udev rule shipped in
the package (``hostdev/data/``) under a root directory.

The files name the ``hostdev`` command by absolute path (udev and systemd run
with a minimal ``PATH``) and the configuration directory whose ``wishes.json``
they wait for. Nothing is enabled or reloaded: the root may be an image being
built; the command prints what to run on the live system.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import sys
from importlib import resources
from pathlib import Path

from hostdev.errors import BadInput, HostdevError
from hostdev.state.wishes import default_config_dir

#: Shipped file -> where it goes under the root.
UNITS = {
    "hostdev-boot.service": "etc/systemd/system/hostdev-boot.service",
    "hostdev-apply@.service": "etc/systemd/system/hostdev-apply@.service",
    "hostdev-apply-vfs@.service": "etc/systemd/system/hostdev-apply-vfs@.service",
    "90-hostdev.rules": "etc/udev/rules.d/90-hostdev.rules",
}
DEFAULT_CONFIG_DIR = str(default_config_dir())
#: What the udev rule runs to start a unit without waiting (udev needs a full path).
SYSTEMCTL = "/usr/bin/systemctl"
#: Characters a path written into a unit or a rule must not hold: blanks and quotes
#: split it, '%' and '$' are expanded by systemd and udev, a newline ends the line
#: (and so may a carriage return or a NUL: no character that is not printable is
#: taken, see _unsafe).
_UNSAFE = "\"' \t\n\\%$"


def _unsafe(path: str) -> bool:
    """Whether ``path`` cannot be written as it is into a unit or a rule."""
    return not os.path.isabs(path) or not path.isprintable() or any(c in path for c in _UNSAFE)


def render(name: str, command: str, config_dir: str = DEFAULT_CONFIG_DIR) -> str:
    """The text of a shipped file with its placeholders filled in."""
    text = resources.files("hostdev").joinpath("data", name).read_text(encoding="utf-8")
    invoke = shlex.quote(command)
    if config_dir != DEFAULT_CONFIG_DIR:
        invoke += f" --config-dir {shlex.quote(config_dir)}"
    return (text.replace("@HOSTDEV@", invoke).replace("@CONFIG_DIR@", config_dir)
            .replace("@SYSTEMCTL@", SYSTEMCTL))


def default_command() -> str:
    """The absolute path of the ``hostdev`` script running now (or found on PATH)."""
    beside = Path(sys.executable).parent / "hostdev"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("hostdev")
    if found is None:
        raise BadInput("cannot find the hostdev command to start at boot; pass --command PATH")
    return os.path.abspath(found)


def cmd_install_units(args: argparse.Namespace) -> int:
    """Write the unit and the rule under ``--root``; print the next steps."""
    command = args.command_path or default_command()
    if not os.path.isabs(command):
        raise BadInput(f"--command {command!r} must be an absolute path: udev and systemd"
                       " run with a minimal PATH")
    config_dir = args.config_dir or DEFAULT_CONFIG_DIR
    for option, path in (("--command", command), ("--config-dir", config_dir)):
        if _unsafe(path):
            raise BadInput(f"{option} {path!r} must be an absolute path without blanks,"
                           " quotes, backslashes, '%', '$' or control characters to be"
                           " written in a unit")
    root = Path(args.unit_root)
    if not root.is_dir():
        raise BadInput(f"--root {root} is not a directory; create it or name the system root")
    written: list[str] = []
    for name, where in UNITS.items():
        target = root / where
        text = render(name, command, config_dir)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text, encoding="utf-8")
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise HostdevError(f"cannot write {target}: {exc.strerror}; run as root or"
                               " choose another --root") from None
        written.append(str(target.absolute()))
    step = ("systemctl daemon-reload && systemctl enable hostdev-boot.service"
            " && udevadm control --reload-rules")
    if args.json:
        from hostdev.cli.documents import UnitsOutput

        print(UnitsOutput(written=written, next_step=step).model_dump_json(by_alias=True,
                                                                           indent=2))
        return 0
    for path in written:
        print(f"wrote {path}")
    print(f"on that system, run: {step}")
    return 0
