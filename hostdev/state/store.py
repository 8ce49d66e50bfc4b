"""The state file: both lists, versioned JSON, replaced atomically under a file lock.

Every transaction holds the lock from load to save. The file is written to a
temporary file, fsynced, renamed over the old one, and the directory fsynced.
A file that does not load is never overwritten: the caller gets StateCorrupt
naming it and must move it aside.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from operator import attrgetter
from pathlib import Path

from hostdev.address import PciAddress
from hostdev.errors import StateCorrupt, StateUnusable
from hostdev.state import files as statedir
from hostdev.state.lists import Lists, RecordMap

# typing.TYPE_CHECKING, without importing typing at run time (cold start).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    # The models (and pydantic) are imported where a file is parsed,
    # built or locked: ``hostdev list`` with no state file imports none of them.
    from hostdev.state.records import DeviceRecord
    from hostdev.state.schema import StateFile

STATE_FORMAT = "hostdev-state"
STATE_VERSION = 1
STATE_NAME = "state.json"
LOCK_NAME = "state.lock"


def __getattr__(name: str) -> Any:
    if name == "StateFile":  # moved to hostdev.state.schema; still importable from here
        from hostdev.state.schema import StateFile

        return StateFile
    raise AttributeError(f"module 'hostdev.state.store' has no attribute {name!r}")


class _Encoded:
    """One list as last written: its token, its JSON, and its records in address
    order with their JSON fragments (to patch rather than redo the next time)."""

    __slots__ = ("blob", "keys", "parts", "records", "token")

    def __init__(self, token: object, blob: bytes, keys: list[tuple[int, int, int, int]],
                 records: list[DeviceRecord], parts: list[bytes]) -> None:
        self.token = token
        self.blob = blob
        self.keys = keys
        self.records = records
        self.parts = parts


#: Sort key of an address: (domain, bus, slot, function), read from the address.
_ORDER: Callable[[PciAddress], tuple[int, int, int, int]] = attrgetter("_key")


def default_state_dir(root: str | os.PathLike[str] = "/") -> Path:
    """``/run/hostdev`` as root, else ``$XDG_RUNTIME_DIR/hostdev``, under ``root``.

    A relative ``XDG_RUNTIME_DIR`` is ignored, as the XDG base directory
    specification says to do, and counts as unset.
    """
    if os.geteuid() == 0:
        base = Path("/run/hostdev")
    else:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if not runtime or not os.path.isabs(runtime):
            why = "is unset" if not runtime else f"is a relative path ({runtime!r}), so ignored"
            raise StateCorrupt(
                f"no state directory: not root and XDG_RUNTIME_DIR {why};"
                " pass state_dir (or --state-dir)"
            )
        base = Path(runtime) / "hostdev"
    root_path = Path(root)
    if root_path != Path("/"):
        return root_path / base.relative_to("/")
    return base


class StateStore:
    """The state directory: its lock, its file, and atomic replacement."""

    def __init__(self, directory: str | os.PathLike[str], lock_timeout: float = 10.0) -> None:
        self.dir = Path(directory)
        self.path = self.dir / STATE_NAME
        self.lock_timeout = lock_timeout
        #: Number of times the file was written (benchmarks check one per transaction).
        self.saves = 0
        # The file as this process last loaded or wrote it, keyed by its identity:
        # the file is only ever replaced by rename, so an unchanged (dev, inode,
        # size, mtime) means unchanged content and parsing can be skipped.
        self._cached: tuple[statedir.FileKey, Lists] | None = None
        # Each list as last encoded (see _encode): reused while unchanged, patched
        # where it changed.
        self._encoded: dict[str, _Encoded] = {}

    @contextmanager
    def locked(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the state lock, or raise StateBusy after ``timeout`` seconds."""
        self._ensure_dir()
        wait = self.lock_timeout if timeout is None else timeout
        with statedir.locked(self.dir / LOCK_NAME, wait, self.dir):
            yield

    def load(self) -> Lists:
        """Read the lists; an absent file is empty lists.

        The file must be a regular file owned by the caller and writable by no
        one else (see :mod:`hostdev.state.files`); anything else raises
        StateUnusable or StateCorrupt and is left untouched.
        """
        key = statedir.file_key(self.path)
        if key is not None and self._cached is not None and self._cached[0] == key:
            # Same identity as last loaded or written: the file is only ever
            # replaced by rename, so its content is unchanged; the type and owner
            # checks were made on this very inode.
            return self._cached[1].copy()
        found = statedir.read_file(self.path, "state file")
        if found is None:
            return Lists()
        raw, key = found
        lists = Lists.from_file(self._parse(raw))
        self._cached = (key, lists.copy())
        return lists.copy()

    def peek(self) -> Lists:
        """Read the lists without the lock and without creating anything.

        Safe for read-only commands: the file is only ever replaced whole.
        """
        if not statedir.check_dir(self.dir):
            return Lists()
        return self.load()

    def _parse(self, raw: bytes) -> StateFile:
        from pydantic import ValidationError

        from hostdev.state.schema import StateFile

        doc = statedir.check_header(statedir.parse_json(raw, self.path, "state file"),
                                    self.path, "state file", STATE_FORMAT, STATE_VERSION)
        try:
            return StateFile.model_validate(doc)
        except ValidationError as exc:
            raise StateCorrupt(
                f"state file {self.path} is damaged {statedir.damage(exc.errors())};"
                " it was left as it is: move it aside to start empty"
            ) from None

    def save(self, lists: Lists) -> None:
        """Atomically replace the file with ``lists``; StateWriteFailed (file
        unchanged, no temporary file left) when the disk refuses."""
        self._ensure_dir()
        data = self._serialise(lists)
        try:
            statedir.replace_file(self.path, data, "state file")
        except BaseException:
            self._encoded.clear()  # encoded as written, but it was not: start over next time
            raise
        self.saves += 1
        key = statedir.file_key(self.path)
        self._cached = None if key is None else (key, lists.copy())

    def _serialise(self, lists: Lists) -> bytes:
        """The file's bytes. A list unchanged since the last load or save is reused;
        one changed since (``RecordMap.origin``) is patched where it changed, so a
        transaction on one device costs the same with 16 or 4,096 tracked."""
        import json

        active = self._encode("active", lists.active)
        inactive = self._encode("inactive", lists.inactive)
        stamp = json.dumps(lists.last_transaction).encode()
        return (b'{"format": "%s", "version": %d, "last_transaction": %s,\n "active": %s,\n'
                b' "inactive": %s\n}\n'
                % (STATE_FORMAT.encode(), STATE_VERSION, stamp, active, inactive))

    def _encode(self, name: str, records: RecordMap) -> bytes:
        cached = self._encoded.get(name)
        if cached is not None and cached.token is records.token:
            return cached.blob
        if cached is not None and cached.token is records.origin:
            keys, recs, parts = list(cached.keys), list(cached.records), list(cached.parts)
            for addr in records.dirty:
                key = _ORDER(addr)
                at = bisect.bisect_left(keys, key)
                found = at < len(keys) and keys[at] == key
                record = records.get(addr)
                if record is None:
                    if found:
                        del keys[at], recs[at], parts[at]
                elif not found:
                    keys.insert(at, key)
                    recs.insert(at, record)
                    parts.insert(at, record.model_dump_json().encode())
                elif recs[at] is not record:
                    recs[at] = record
                    parts[at] = record.model_dump_json().encode()
        else:
            keys, recs, parts = [], [], []
            known = {id(r): p for r, p in zip(cached.records, cached.parts, strict=True)} \
                if cached is not None else {}
            for addr in sorted(records, key=_ORDER):
                record = records[addr]
                keys.append(_ORDER(addr))
                recs.append(record)
                part = known.get(id(record))
                parts.append(part if part is not None else record.model_dump_json().encode())
        blob = b"[\n  " + b",\n  ".join(parts) + b"\n ]" if parts else b"[]"
        self._encoded[name] = _Encoded(records.token, blob, keys, recs, parts)
        records.rebase()
        return blob

    def _ensure_dir(self) -> None:
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            if not os.path.lexists(self.dir):
                raise StateUnusable(
                    f"cannot create state directory {self.dir}: {exc.strerror};"
                    " pass a writable state_dir (or --state-dir)"
                ) from None
        statedir.check_dir(self.dir)  # refuses a symlink, a file, or another user's
