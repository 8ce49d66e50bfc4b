"""Raw sysfs I/O that reports what happened instead of raising.

Shared by the guest helpers (real kernel) and the differential replays (fake
kernel), so both sides observe a scenario in exactly the same way. Neither
checks where it runs: callers guard their writes (in the guest only, or under
pyfakefs only).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


def errname(code: int | None) -> str:
    """Return the symbolic name of an errno value (``"EBUSY"``)."""
    if code is None:
        return "E?"
    return errno.errorcode.get(code, f"E{code}")


def write_detail(path: Path | str, data: str | bytes, flags: int = os.O_WRONLY) -> str:
    """One ``os.write``: ``"ok"``, ``"short:N"``, or which call failed (``"open:EACCES"``)."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        return f"open:{errname(exc.errno)}"
    try:
        written = os.write(fd, raw)
    except OSError as exc:
        return f"write:{errname(exc.errno)}"
    finally:
        os.close(fd)
    return "ok" if written == len(raw) else f"short:{written}"


def write(path: Path | str, data: str | bytes, flags: int = os.O_WRONLY) -> str:
    """Like :func:`write_detail`, with a bare errno name for a failure (``"EBUSY"``)."""
    result = write_detail(path, data, flags)
    return result.split(":", 1)[1] if result.startswith(("open:", "write:")) else result


def read(path: Path | str) -> str:
    """The whole attribute, or ``"!ENAME"`` if reading failed."""
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"!{errname(exc.errno)}"


def read_detail(path: Path | str) -> str:
    """Read and say which call failed: ``"open:EACCES"``, ``"read:EIO"``, else ``"ok"``."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        return f"open:{errname(exc.errno)}"
    try:
        os.read(fd, 4096)
    except OSError as exc:
        return f"read:{errname(exc.errno)}"
    finally:
        os.close(fd)
    return "ok"
