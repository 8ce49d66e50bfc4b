"""The state file: both lists, versioned JSON, replaced atomically under a file lock.

Every transaction holds the lock from load to save. The file is written to a
temporary file, fsynced, renamed over the old one, and the directory fsynced.
A file that does not load is never overwritten: the caller gets StateCorrupt
naming it and must move it aside.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import filelock
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hostdev.address import PciAddress
from hostdev.errors import HostdevError, StateBusy, StateCorrupt
from hostdev.records import DeviceRecord

STATE_FORMAT = "hostdev-state"
STATE_VERSION = 1
STATE_NAME = "state.json"
LOCK_NAME = "state.lock"


class StateFile(BaseModel):
    """What ``state.json`` holds."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["hostdev-state"] = "hostdev-state"
    version: Literal[1] = 1
    active: list[DeviceRecord] = Field(default_factory=list)
    inactive: list[DeviceRecord] = Field(default_factory=list)


class Lists:
    """The two lists in memory, keyed by address for constant-time lookups."""

    def __init__(self, active: dict[PciAddress, DeviceRecord] | None = None,
                 inactive: dict[PciAddress, DeviceRecord] | None = None) -> None:
        self.active: dict[PciAddress, DeviceRecord] = active or {}
        self.inactive: dict[PciAddress, DeviceRecord] = inactive or {}

    @classmethod
    def from_file(cls, data: StateFile) -> Lists:
        """Index a loaded file."""
        return cls({r.address: r for r in data.active}, {r.address: r for r in data.inactive})

    def to_file(self) -> StateFile:
        """The file form, each list sorted by address."""
        return StateFile(
            active=[self.active[a] for a in sorted(self.active)],
            inactive=[self.inactive[a] for a in sorted(self.inactive)],
        )

    def copy(self) -> Lists:
        """A shallow copy (records are immutable)."""
        return Lists(dict(self.active), dict(self.inactive))

    def find(self, address: PciAddress) -> DeviceRecord | None:
        """The record of ``address`` in either list."""
        return self.active.get(address) or self.inactive.get(address)

    def drop(self, address: PciAddress) -> DeviceRecord | None:
        """Remove ``address`` from both lists; return what was there."""
        a = self.active.pop(address, None)
        i = self.inactive.pop(address, None)
        return a or i

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Lists):
            return NotImplemented
        return self.active == other.active and self.inactive == other.inactive


def default_state_dir(root: str | os.PathLike[str] = "/") -> Path:
    """``/run/hostdev`` as root, else ``$XDG_RUNTIME_DIR/hostdev``, under ``root``."""
    if os.geteuid() == 0:
        base = Path("/run/hostdev")
    else:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if not runtime:
            raise StateCorrupt(
                "no state directory: not root and XDG_RUNTIME_DIR is unset;"
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

    @contextmanager
    def locked(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the state lock, or raise StateBusy after ``timeout`` seconds."""
        self._ensure_dir()
        wait = self.lock_timeout if timeout is None else timeout
        lock = filelock.FileLock(str(self.dir / LOCK_NAME), timeout=wait, mode=0o600)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise StateBusy(
                f"state directory {self.dir} is locked by another hostdev process for more"
                f" than {wait:g} s; try again, or raise the lock timeout"
            ) from None
        try:
            yield
        finally:
            lock.release()

    def load(self) -> Lists:
        """Read the lists; an absent file is empty lists."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return Lists()
        except OSError as exc:
            if exc.errno == _errno.ELOOP:
                raise StateCorrupt(
                    f"state file {self.path} is a symlink; refusing to follow it:"
                    " remove it (hostdev never creates one)"
                ) from None
            raise StateCorrupt(f"state file {self.path} cannot be opened: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise StateCorrupt(f"state file {self.path} is not a regular file; move it aside")
            if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise StateCorrupt(
                    f"state file {self.path} is writable by other users"
                    f" (mode {stat.S_IMODE(info.st_mode):04o}); it cannot be trusted:"
                    " check it, then chmod 600 it"
                )
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return Lists.from_file(self._parse(b"".join(chunks)))

    def peek(self) -> Lists:
        """Read the lists without the lock and without creating anything.

        Safe for read-only commands: the file is only ever replaced whole.
        """
        if not os.path.isdir(self.dir):
            return Lists()
        return self.load()

    def _parse(self, raw: bytes) -> StateFile:
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise StateCorrupt(
                f"state file {self.path} is not valid JSON (truncated or damaged);"
                " it was left as it is: move it aside to start empty"
            ) from None
        if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
            raise StateCorrupt(f"state file {self.path} is not a hostdev state file; move it aside")
        if doc.get("version") != STATE_VERSION:
            raise StateCorrupt(
                f"state file {self.path} has version {doc.get('version')!r}, this hostdev"
                f" reads version {STATE_VERSION}; use the hostdev that wrote it"
            )
        try:
            return StateFile.model_validate(doc)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise StateCorrupt(
                f"state file {self.path} is damaged at {where}: {first.get('msg')};"
                " it was left as it is: move it aside to start empty"
            ) from None

    def save(self, lists: Lists) -> None:
        """Atomically replace the file with ``lists``."""
        self._ensure_dir()
        data = lists.to_file().model_dump_json(indent=1).encode() + b"\n"
        tmp = self.dir / f".{STATE_NAME}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dfd = os.open(self.dir, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self.saves += 1

    def _ensure_dir(self) -> None:
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            info = os.lstat(self.dir)
        except OSError as exc:
            raise HostdevError(
                f"cannot create state directory {self.dir}: {exc.strerror};"
                " pass a writable state_dir (or --state-dir)"
            ) from None
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise StateCorrupt(
                f"state directory {self.dir} is not a plain directory; move it aside"
            )
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise StateCorrupt(
                f"state directory {self.dir} is writable by other users"
                f" (mode {stat.S_IMODE(info.st_mode):04o}); chmod 700 it"
            )
