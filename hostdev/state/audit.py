"""The audit log: one JSON line per manager transaction, in the state directory.

Each line (schema ``hostdev.audit/1``) says when a transaction ended, which
process and user ran it, the manager method (``verb``), the devices it named or
changed, and its result: ``ok``, or ``error`` with the error's type and message.

The file is ``audit.log``; once appending a line would take it past
:data:`MAX_AUDIT_SIZE` (1 MiB, some 4,000 lines) it is renamed ``audit.log.1``
(``.1`` to ``.2`` and so on), and the oldest beyond :data:`KEEP_ROTATED` (3) is
dropped: at most 4 MiB in all. A line is appended in one ``write()`` with
``O_APPEND`` (lines of concurrent processes never mix), with the checks every
state file gets (:func:`hostdev.state.files.append_line`).

The audit log never fails an operation: a line that cannot be written (a full
disk, an unsafe file in its place) is dropped with one warning per
:class:`AuditLog`, and nothing in it can block (no FIFO is opened, no lock is
waited for beyond the state lock the transaction already holds).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from hostdev.address import PciAddress
from hostdev.errors import HostdevError
from hostdev.state.files import append_line

# typing.TYPE_CHECKING without importing typing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final, Literal

AUDIT_SCHEMA_ID: Final[Literal["hostdev.audit/1"]] = "hostdev.audit/1"
AUDIT_NAME = "audit.log"
#: Size past which the log is rotated.
MAX_AUDIT_SIZE = 1 << 20
#: Rotated files kept (``audit.log.1`` is the newest).
KEEP_ROTATED = 3

log = logging.getLogger("hostdev")


@functools.lru_cache(maxsize=8)
def _user(uid: int) -> str | None:
    """The name of ``uid`` (looked up once per process: a name service may be slow)."""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OSError):
        return None


class AuditLog:
    """The audit log of one state directory."""

    def __init__(self, directory: Path, *, max_size: int = MAX_AUDIT_SIZE,
                 keep: int = KEEP_ROTATED) -> None:
        self.path = directory / AUDIT_NAME
        self.max_size = max_size
        self.keep = keep
        #: A write failed and was warned about: later failures are silent.
        self.warned = False

    def record(self, verb: str, devices: Iterable[PciAddress],
               error: BaseException | None = None) -> None:
        """Append the line of one transaction; never raises (warns once instead)."""
        try:
            self._append(self.line(verb, devices, error))
        except (HostdevError, OSError, ValueError) as exc:
            if not self.warned:
                self.warned = True
                log.warning("audit log %s not written (the operation itself is not"
                            " affected): %s", self.path, exc)

    @staticmethod
    def line(verb: str, devices: Iterable[PciAddress], error: BaseException | None) -> bytes:
        """The JSON line of one transaction, newline included."""
        uid = os.getuid()
        entry: dict[str, object] = {
            "schema": AUDIT_SCHEMA_ID,
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "pid": os.getpid(), "uid": uid, "user": _user(uid), "verb": verb,
            "devices": [str(a) for a in sorted(set(devices))],
            "result": "ok" if error is None else "error",
            "error": None if error is None else {"type": type(error).__name__,
                                                 "message": str(error) or type(error).__name__},
        }
        # A path that is not UTF-8 (a state directory named with such bytes) reaches the
        # message as lone surrogates, which strict UTF-8 cannot write: they go as the
        # JSON escape "\udcff" instead of losing the line.
        return (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8",
                                                                     "backslashreplace")

    def _append(self, line: bytes) -> None:
        with contextlib.suppress(FileNotFoundError):
            if os.lstat(self.path).st_size + len(line) > self.max_size:
                self._rotate()
        append_line(self.path, line, "audit log")

    def _rotate(self) -> None:
        """``audit.log`` becomes ``.1``, ``.1`` becomes ``.2``...; the oldest goes."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{self.path}.{self.keep}")
        for n in range(self.keep - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.rename(f"{self.path}.{n}", f"{self.path}.{n + 1}")
        # Another process may have rotated it a moment ago: then there is nothing to move.
        with contextlib.suppress(FileNotFoundError):
            if self.keep:
                os.rename(self.path, f"{self.path}.1")
            else:
                os.unlink(self.path)
