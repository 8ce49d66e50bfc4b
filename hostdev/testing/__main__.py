"""``python -m hostdev.testing``: tools around the fake kernel.

``materialize HOST DIR``
    write the host's ``/sys`` as a static tree at ``DIR/sys`` (HOST: a fixture
    name or TOML path, ``gen:N`` for exactly N functions, ``gen:PxV`` for P PFs
    with V VFs each);
``run DIR -- COMMAND...``
    run a command that reads ``/sys`` on that tree, inside a private mount
    namespace with ``DIR/sys`` bind-mounted over ``/sys`` (needs root and
    ``unshare``); the machine's own ``/sys`` is never touched.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m hostdev.testing",
                                     description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("materialize", help="write a host as a static sysfs tree at DIR/sys")
    p.add_argument("host", metavar="HOST",
                   help="fixture name or TOML path, gen:N, gen:PxV or gen:PxV/E")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--force", action="store_true",
                   help="replace a tree materialized earlier at DIR/sys")
    p = sub.add_parser("run", help="run COMMAND with DIR/sys bind-mounted over /sys")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND")
    args = parser.parse_args(argv)

    from hostdev.testing.events import FakeKernelSetupError
    from hostdev.testing.materialize import MaterializeError, materialize, namespace_argv

    try:
        if args.command == "materialize":
            done = materialize(args.host, args.dir, replace=args.force)
            print(f"{done.sys}: host {done.host}, {done.functions} PCI functions"
                  f" ({done.directories} directories, {done.files} files, {done.links} links)")
            return 0
        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not command:
            parser.error("run needs a COMMAND")
        full = namespace_argv(args.dir, command)
    except (MaterializeError, OSError) as exc:
        print(f"python -m hostdev.testing: {exc}", file=sys.stderr)
        return 1
    except (FakeKernelSetupError, ValueError) as exc:  # unknown host, bad fixture or size
        print(f"python -m hostdev.testing: {exc}", file=sys.stderr)
        return 2
    os.execvp(full[0], full)


if __name__ == "__main__":
    sys.exit(main())
