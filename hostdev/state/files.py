"""Files of the state directory: checked reads, the one atomic writer, the lock,
and an appender for the audit log.

The state file, the intent journal, the audit log and the wishes file all go
through here, so all get the same rules:

* Nothing is followed or opened blindly. A file is ``lstat``-ed first (a FIFO,
  socket, device, directory or symlink in its place is refused without opening
  it, so nothing hangs and no device is opened), then opened with
  ``O_NOFOLLOW | O_NONBLOCK`` and checked again with ``fstat``.
* The directory and every file in it must be owned by the caller (for root:
  by root) and not writable by group or others; anything else is refused with
  :class:`StateUnusable`, even when its mode bits look private. A file that is
  only read (the wishes, outside ``--persistent``) may be root's too
  (``root_ok``): root's configuration is what every user may trust. Writing
  always wants the caller's own directory.
* Reads are capped at :data:`MAX_FILE_SIZE`, so a huge file is refused, not read
  whole.
* A write goes to a temporary file that is fsynced, renamed over the old file,
  and the directory fsynced. A failure before the rename (disk full, quota, I/O
  error) removes the temporary file, leaves the old file as it was, and raises
  :class:`StateWriteFailed`.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hostdev.errors import StateBusy, StateCorrupt, StateUnusable, StateWriteFailed

# typing.TYPE_CHECKING, without importing typing at run time (cold start).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Largest state or journal file read. A record is about 350 bytes of JSON (well
#: under 1 KiB with a long owner name), so 4,096 tracked devices take under 4 MiB;
#: 16 MiB leaves four times that and still bounds what a damaged or hostile file
#: can make us read and parse.
MAX_FILE_SIZE = 16 << 20


def fault_hook(step: str, path: Path) -> None:
    """Called before each step of :func:`replace_file` (``"write"``, ``"fsync"``,
    ``"rename"``, ``"dirsync"``). Does nothing; fault-injection tests replace it
    with one that raises the ``OSError`` a full or failing disk would."""


#: The files of the configuration directory, which another option relocates.
_CONFIG_FILES = frozenset({"wishes file", "configuration directory"})


def _option(what: str) -> str:
    """The command-line option that puts ``what`` elsewhere."""
    return "--config-dir" if what in _CONFIG_FILES else "--state-dir"


def _owner_problem(info: os.stat_result, what: str, root_ok: bool) -> str | None:
    uid = os.geteuid()
    if info.st_uid != uid and not (root_ok and info.st_uid == 0):
        owners = f"by root or by uid {uid}" if root_ok and uid else f"by uid {uid}"
        return (f"is owned by uid {info.st_uid}, not {owners} running hostdev;"
                f" use a directory of your own ({_option(what)})")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"is writable by other users (mode {stat.S_IMODE(info.st_mode):04o});"
                " it cannot be trusted: check it, then chmod go-w it")
    return None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def _require(info: os.stat_result, what: str, path: Path, *, directory: bool = False,
             root_ok: bool = False) -> None:
    """StateUnusable unless ``info`` is a plain directory (or a regular file) owned by
    the caller (``root_ok``: or by root) and writable by no one else."""
    if not (stat.S_ISDIR if directory else stat.S_ISREG)(info.st_mode):
        kind = "plain directory" if directory else "regular file"
        raise StateUnusable(f"{what} {path} is {_kind(info.st_mode)}, not a {kind};"
                            " move it aside")
    problem = _owner_problem(info, what, root_ok)
    if problem:
        raise StateUnusable(f"{what} {path} {problem}")


def check_dir(directory: Path, what: str = "state directory", *, root_ok: bool = False) -> bool:
    """False when ``directory`` does not exist; StateUnusable unless it is a plain
    directory owned by the caller and writable by no one else.

    ``root_ok``: the directory is only read from, and may be root's too (see
    :func:`read_file`).
    """
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        return False
    except OSError as exc:
        hint = "run hostdev as root, or " if _root_would_read(exc, root_ok) else ""
        raise StateUnusable(f"{what} {directory} cannot be examined: {exc.strerror};"
                            f" {hint}pass a directory of your own ({_option(what)})") from None
    _require(info, what, directory, directory=True, root_ok=root_ok)
    return True


def _root_would_read(exc: OSError, root_ok: bool) -> bool:
    """Whether ``exc`` is a user kept out of a file that root may read (``root_ok``)."""
    return root_ok and os.geteuid() != 0 and exc.errno in (_errno.EACCES, _errno.EPERM)


#: (dev, inode, size, mtime, ctime) of a file: the files are only ever replaced
#: by rename, so an unchanged key means unchanged content, type, owner and mode.
FileKey = tuple[int, int, int, int, int]


def _key(info: os.stat_result) -> FileKey:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def read_file(path: Path, what: str, *, root_ok: bool = False) -> tuple[bytes, FileKey] | None:
    """The bytes of ``path`` (``what``: "state file", "intent journal") and its
    :data:`FileKey` as read, or None when it does not exist. StateUnusable for
    anything but a regular file owned by the caller; StateCorrupt when it exceeds
    :data:`MAX_FILE_SIZE`.

    ``root_ok``: a file that is only read (never written by this caller) may be
    root's as well: a user may read root's wishes, still refused when anyone
    but root or the caller could have written them. A user that root's modes
    keep out is told to run hostdev as root.
    """
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        hint = "; run hostdev as root" if _root_would_read(exc, root_ok) else ""
        raise StateUnusable(f"{what} {path} cannot be examined: {exc.strerror}{hint}") from None
    if not stat.S_ISREG(before.st_mode):
        raise StateUnusable(f"{what} {path} is {_kind(before.st_mode)}, not a regular file;"
                            " hostdev never creates one: move it aside")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None  # replaced (by rename) and removed since: as good as absent
    except OSError as exc:
        hint = ("; run hostdev as root" if _root_would_read(exc, root_ok)
                else "; run hostdev as the user that owns it"
                if exc.errno in (_errno.EACCES, _errno.EPERM) else "")
        raise StateUnusable(f"{what} {path} cannot be opened: {exc.strerror}{hint}") from None
    try:
        info = os.fstat(fd)
        # The type and owner again: it may have been swapped since the lstat.
        _require(info, what, path, root_ok=root_ok)
        if info.st_size > MAX_FILE_SIZE:
            raise _too_big(path, what)
        chunks = []
        size = 0
        while chunk := os.read(fd, 1 << 20):
            size += len(chunk)
            if size > MAX_FILE_SIZE:  # grew while being read
                raise _too_big(path, what)
            chunks.append(chunk)
    except OSError as exc:
        raise StateUnusable(f"{what} {path} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    return b"".join(chunks), _key(info)


def file_key(path: Path) -> FileKey | None:
    """The :data:`FileKey` of ``path``, None if it cannot be stat-ed."""
    try:
        return _key(os.lstat(path))
    except OSError:
        return None


def _too_big(path: Path, what: str) -> StateCorrupt:
    return StateCorrupt(f"{what} {path} is larger than {MAX_FILE_SIZE >> 20} MiB, far more"
                        " than hostdev ever writes; it was left as it is: move it aside")


def parse_json(raw: bytes, path: Path, what: str) -> object:
    """``json.loads`` that reports damage (including absurd nesting) as StateCorrupt."""
    import json

    try:
        return json.loads(raw)
    except RecursionError:
        raise StateCorrupt(f"{what} {path} is nested too deeply to be a hostdev file;"
                           " it was left as it is: move it aside") from None
    except (ValueError, UnicodeDecodeError):
        raise StateCorrupt(f"{what} {path} is not valid JSON (truncated or damaged);"
                           " it was left as it is: move it aside") from None


def check_header(doc: object, path: Path, what: str, fmt: str, version: int) -> dict[str, Any]:
    """``doc`` (a parsed file) if it is an object whose ``format`` is ``fmt`` and whose
    ``version`` is ``version``; StateCorrupt naming ``what`` otherwise."""
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise StateCorrupt(f"{what} {path} is not a hostdev {what}; move it aside")
    # JSON true equals 1 in Python, and pydantic takes it for Literal[1]: refused.
    if doc.get("version") != version or isinstance(doc.get("version"), bool):
        raise StateCorrupt(f"{what} {path} has version {shown(doc.get('version'))}, this"
                           f" hostdev reads version {version}; use the hostdev that wrote it")
    return doc


def shown(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters: a value read from a damaged file,
    quoted in a one-line message (repr escapes newlines and NUL; a huge value is cut)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def damage(errors: list[Any]) -> str:
    """``at LOCATION: WHAT`` for the first of a pydantic ValidationError's ``errors()``,
    on one line: the location's keys come from the damaged file (an unknown key may
    hold a newline or NUL), so each is escaped as repr does, and cut."""
    first = errors[0] if errors else {}
    keys = [str(part) if isinstance(part, int) else repr(str(part))[1:-1]
            for part in first.get("loc", ())]
    where = ".".join(key if len(key) <= 40 else key[:40] + "..." for key in keys)
    return f"at {where or 'the top'}: {first.get('msg', 'invalid')}"


def replace_file(path: Path, data: bytes, what: str, mode: int = 0o600) -> None:
    """Atomically replace ``path`` with ``data``: write a temporary file next to
    it, fsync it, rename it over ``path``, fsync the directory. The new file gets
    ``mode`` whatever the umask (the state files are private; the wishes file
    of the configuration directory is readable by all).

    On any failure up to and including the rename, the temporary file is
    removed, ``path`` keeps its old content, and StateWriteFailed is raised. A
    failure of the final directory fsync is only logged: the new file is
    already in place and is what every later reader sees.
    """
    directory = path.parent
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    step = "create"
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            if mode != 0o600:
                os.fchmod(fd, mode)
            step = "write"
            fault_hook(step, tmp)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            step = "fsync"
            fault_hook(step, tmp)
            os.fsync(fd)
        finally:
            os.close(fd)
        step = "rename"
        fault_hook(step, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        err = exc.errno or _errno.EIO
        hint = {_errno.ENOSPC: "free space on its file system",
                _errno.EDQUOT: "free space within your quota",
                _errno.EROFS: f"remount it read-write or pass another {_option(what)}",
                _errno.EACCES: f"run as its owner or pass another {_option(what)}"}.get(
                    err, "check the disk and the kernel log")
        raise StateWriteFailed(
            f"cannot write {what} {path} ({step}): {_errno.errorcode.get(err, str(err))}"
            f" ({os.strerror(err)}); it was left as it was: {hint}", errno=err) from None
    try:
        fault_hook("dirsync", directory)
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        import logging

        logging.getLogger("hostdev").warning(
            "%s %s was replaced, but its directory could not be synced: %s", what, path,
            exc.strerror)


def append_line(path: Path, line: bytes, what: str) -> int:
    """Append ``line`` to ``path`` (created 0600 if absent) in one ``write()`` and
    return the file's size before it; for append-only logs.

    The file gets the checks of every file here: anything but a regular file owned
    by the caller and writable by no one else is refused (StateUnusable) without
    being written, and the open never follows a symlink nor waits on a FIFO. A
    write the disk refuses raises StateWriteFailed.
    """
    _refuse_non_regular(path, what)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise StateUnusable(f"{what} {path} cannot be opened: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        _require(info, what, path)  # it may have been swapped since the lstat
        try:
            written = os.write(fd, line)
        except OSError as exc:
            err = exc.errno or _errno.EIO
            raise StateWriteFailed(f"cannot append to {what} {path}:"
                                   f" {_errno.errorcode.get(err, str(err))}"
                                   f" ({os.strerror(err)})", errno=err) from None
        if written != len(line):
            raise StateWriteFailed(f"cannot append to {what} {path}: short write ({written}"
                                   f" of {len(line)} bytes)", errno=_errno.EIO)
    finally:
        os.close(fd)
    return info.st_size


def _refuse_non_regular(path: Path, what: str) -> None:
    """StateUnusable when something other than a regular file sits at ``path`` (looked
    at without following a link); nothing there is fine (it will be created)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StateUnusable(f"{what} {path} cannot be examined: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise StateUnusable(f"{what} {path} is {_kind(info.st_mode)}, not a regular file;"
                            " hostdev never creates one: move it aside")


@contextmanager
def locked(path: Path, timeout: float, directory: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created 0600 if absent), or raise
    StateBusy after ``timeout`` seconds. The lock file gets the same checks as
    the other files: a FIFO, directory, symlink or foreign file there is refused."""
    import fcntl

    _refuse_non_regular(path, "lock file")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     0o600)
    except OSError as exc:
        hint = ("; run as the owner of the state directory or pass a state directory of your"
                " own (--state-dir)" if exc.errno in (_errno.EACCES, _errno.EPERM, _errno.EROFS)
                else "")
        raise StateUnusable(f"lock file {path} cannot be opened: {exc.strerror}{hint}") from None
    try:
        info = os.fstat(fd)
        _require(info, "lock file", path)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StateBusy(
                        f"state directory {directory} is locked by another hostdev process for"
                        f" more than {timeout:g} s; try again, or raise the lock timeout"
                    ) from None
                time.sleep(min(0.02, left))
            except OSError as exc:
                raise StateUnusable(f"lock file {path} cannot be locked: {exc.strerror}") from None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
