"""The ``hostdev`` command: parse, call the library, print, map errors to exit codes.

Exit codes: 0 success, 2 bad input (malformed address or driver name, a
``--root`` that is not a sysfs tree, corrupt state, a command line that does not
parse), 1 any other error. With ``--json`` an error is also a JSON document on
stdout (schema ``hostdev.error/1``), with the same exit code.

The parser is :mod:`hostdev.cli.parser`; ``hostdev list`` is parsed by
:mod:`hostdev.cli.listargs` (no argparse import on its start-up) when it can be.
"""

from __future__ import annotations

import sys

from hostdev.cli.listargs import fast_list_args
from hostdev.errors import BadInput, HostdevError

# typing.TYPE_CHECKING, without importing typing at run time (cold start).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    args = fast_list_args(words)
    if args is None:
        args = _parse(words)
    wants_json = bool(getattr(args, "json", False))
    if args.command != "list" or args.verbose:  # keep logging off list's start-up
        _configure_logging(args.verbose, args.quiet)
    try:
        return _dispatch(args)
    except HostdevError as exc:
        code = EXIT_BAD_INPUT if isinstance(exc, BadInput) else EXIT_ERROR
        return _fail(wants_json, type(exc).__name__, str(exc), code, exc.address,
                     getattr(exc, DONE_ATTRIBUTE, None))
    except KeyboardInterrupt:
        return _fail(wants_json, "Interrupted", "interrupted", EXIT_ERROR)
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        # A bug of ours, not the host's fault: one line (and the error document) by
        # default; HOSTDEV_TRACEBACK=1 shows where.
        import os

        if os.environ.get("HOSTDEV_TRACEBACK"):
            raise
        return _fail(wants_json, "InternalError",
                     f"internal error: {type(exc).__name__}: {exc} (a bug in hostdev:"
                     " rerun with HOSTDEV_TRACEBACK=1 and report the traceback)", EXIT_ERROR)


def _parse(words: list[str]) -> argparse.Namespace:
    """The command line through argparse; a usage error exits 2 as argparse does
    (SystemExit), printed as text or, with ``--json``, also as a document."""
    from hostdev.cli.parser import UsageError, build_parser

    try:
        args = build_parser().parse_args(words)
        if args.verbose and args.quiet:
            raise UsageError("--verbose and --quiet cannot be used together; choose one")
    except UsageError as exc:
        # Whether --json was asked is known only from the words (parsing failed).
        wants_json = "--json" in words[:words.index("--")] if "--" in words else "--json" in words
        # Exits as argparse does (SystemExit), so callers of main() see no difference.
        raise SystemExit(_fail(wants_json, "UsageError", str(exc), EXIT_BAD_INPUT)) from None
    return args


#: Set on an error by a command that acts on several devices in turn: the document of
#: what it did before the error (printed as the error document's ``done``).
DONE_ATTRIBUTE = "hostdev_cli_done"


def _fail(wants_json: bool, kind: str, message: str, code: int,
          device: object | None = None, done: object | None = None) -> int:
    """Report an error on stderr and, with ``--json``, as a document on stdout."""
    message = one_line(message)
    print(f"hostdev: {message}", file=sys.stderr)
    if wants_json:
        import json

        from hostdev.cli.schema_ids import ERROR_SCHEMA_ID

        error = {"type": kind, "message": message, "exit_code": code,
                 "device": None if device is None else str(device)}
        document = {"schema": ERROR_SCHEMA_ID, "error": error, "done": done}
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return code


def one_line(message: str) -> str:
    """``message`` with every character that is not printable (a newline, a NUL, a lone
    surrogate of an undecodable argument) escaped as repr writes it: an error quotes
    paths and names the user gave (``--root`` with a newline in it), and its report
    stays one line whatever they hold."""
    if message.isprintable():
        return message
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)


def _configure_logging(verbose: int, quiet: bool) -> None:
    """What the "hostdev" loggers show on stderr.

    By default warnings and errors, and of the INFO messages only those of a
    release wait (whom we wait for, how long is left), so a wait is never silent
    and nothing else is noisy. ``--verbose``: everything down to DEBUG (each kernel
    write, each holder found). ``--quiet``: errors only.
    """
    import logging

    if not logging.getLogger().handlers:
        logging.basicConfig(format="hostdev: %(levelname)s: %(message)s")
    ours = logging.getLogger("hostdev")
    for old in [f for f in ours.filters if isinstance(f, _WaitOrWarning)]:
        ours.removeFilter(old)
    if verbose:
        ours.setLevel(logging.DEBUG)
    elif quiet:
        ours.setLevel(logging.ERROR)
    else:
        ours.setLevel(logging.INFO)
        ours.addFilter(_WaitOrWarning())


def _wait_flagged(record: object) -> bool:
    # The flags hostdev.linux.vfio.WAIT_LOG_FLAG and hostdev.ops.watch.EVENT_LOG_FLAG set
    # (not imported: it would load pydantic here).
    return bool(getattr(record, "hostdev_wait", False) or getattr(record, "hostdev_event", False))


class _WaitOrWarning:
    """Logger filter: warnings and up, plus the release-wait messages and what watch
    mode acts on."""

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
