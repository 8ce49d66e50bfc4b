"""The one boundary to the kernel: every file access under the root goes here.

Paths are built only from validated :class:`PciAddress` values, validated driver
names and fixed attribute names. Every directory read or written through must
resolve, symlinks followed, inside the root's ``sys``, ``dev`` or ``proc``
(sysfs links such as ``bus/pci/devices/X -> ../../../devices/...`` stay inside
``sys``); a path whose links lead elsewhere is refused with UnsafePath naming the
link. Files are opened with ``O_NOFOLLOW``: a kernel attribute is never a
symlink. Each directory is resolved once and remembered until
:meth:`Sysfs.forget_checked_paths` (once per scan and per manager transaction),
so a listing costs one ``readlink`` per device on top of its reads. ``OSError``
becomes a :class:`HostdevError` keeping the errno and the address; ENOENT on a
device that is no longer in ``/sys/bus/pci/devices`` means the device vanished.
"""

from __future__ import annotations

import errno as _errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hostdev.address import PciAddress, validate_driver_name
from hostdev.errors import (
    DeviceNotFound,
    HostdevError,
    KernelRefused,
    NotASysfsTree,
    UnexpectedContent,
    UnsafePath,
)

_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
#: Symlinks followed in one resolution before giving up, as the kernel does.
_MAX_LINKS = 40
_WRITE_FLAGS = os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
#: Attribute names the library uses; anything else is a programming error.
_ATTR_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-/")


class IoStats:
    """Counts of file operations, for benchmarks and the bounded-read tests.

    (A plain class rather than a dataclass: importing dataclasses costs a fifth
    of a cold ``hostdev list``.)
    """

    def __init__(self, reads: int = 0, writes: int = 0, trace: list[str] | None = None,
                 written: list[tuple[str, str]] | None = None) -> None:
        self.reads = reads
        self.writes = writes
        #: When not None, every path read is appended (tests check nothing is read twice).
        self.trace = trace
        self.written: list[tuple[str, str]] = [] if written is None else written

    def __repr__(self) -> str:
        return (f"IoStats(reads={self.reads}, writes={self.writes}, trace={self.trace!r},"
                f" written={self.written!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IoStats):
            return NotImplemented
        return ((self.reads, self.writes, self.trace, self.written)
                == (other.reads, other.writes, other.trace, other.written))

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass was

    def note_read(self, path: str) -> None:
        self.reads += 1
        if self.trace is not None:
            self.trace.append(path)


class Sysfs:
    """File access rooted at ``root`` (``/`` on a real host).

    Holds no cache of what the kernel says: every call reads it anew. Callers that
    need a consistent view take a snapshot (see :mod:`hostdev.pci`). It remembers
    only which directories were found to resolve inside the root, until
    :meth:`forget_checked_paths`.
    """

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        self.root = Path(root)
        base = os.fspath(self.root).rstrip("/")
        self._base = base
        self.pci_devices = f"{base}/sys/bus/pci/devices"
        self.pci_drivers = f"{base}/sys/bus/pci/drivers"
        self.drivers_probe_path = f"{base}/sys/bus/pci/drivers_probe"
        self.iommu_groups = f"{base}/sys/kernel/iommu_groups"
        self.dev_vfio = f"{base}/dev/vfio"
        self.proc = f"{base}/proc"
        self.sys = f"{base}/sys"
        self.class_block = f"{base}/sys/class/block"
        self.class_net = f"{base}/sys/class/net"
        self.stats = IoStats()
        # Directories found to resolve inside the root's trees, and the resolved
        # path of each path component looked at (see _check_dir).
        self._safe_dirs: set[str] = set()
        self._real: dict[str, str] = {}
        self._dirs_real: dict[str, str] = {}
        self._bounds: tuple[str, ...] | None = None

    # ----------------------------------------------------------------- paths
    def device_dir(self, address: PciAddress) -> str:
        """``/sys/bus/pci/devices/<addr>`` under the root."""
        return f"{self.pci_devices}/{address}"

    def device_path(self, address: PciAddress, attr: str) -> str:
        """Path of one attribute of a device."""
        _check_attr(attr)
        return f"{self.pci_devices}/{address}/{attr}"

    def driver_dir(self, driver: str) -> str:
        """``/sys/bus/pci/drivers/<driver>`` (name validated)."""
        return f"{self.pci_drivers}/{validate_driver_name(driver)}"

    def group_devices_dir(self, group: int) -> str:
        """``/sys/kernel/iommu_groups/<N>/devices``."""
        return f"{self.iommu_groups}/{int(group)}/devices"

    def relative(self, path: str) -> str:
        """A path as the kernel would name it (root prefix stripped)."""
        if self._base and path.startswith(self._base):
            return path[len(self._base):] or "/"
        return path

    # ------------------------------------------------------------ containment
    def forget_checked_paths(self) -> None:
        """Resolve every directory anew from now on (links may have changed)."""
        self._safe_dirs.clear()
        self._real.clear()
        self._dirs_real.clear()

    def _check_dir(self, directory: str) -> None:
        """UnsafePath unless ``directory`` resolves inside the root's sys, dev or proc."""
        real = self._realpath(directory)
        if not self._inside(real):
            raise self._unsafe(directory, real)
        if directory in self._dirs_real:  # an absent one is checked again next time
            self._safe_dirs.add(directory)

    def _list_unchecked(self, path: str) -> list[str]:
        """List a directory not checked yet, checking it on the way.

        Its parent and (for a link such as ``bus/pci/devices/X``) the link target's
        parent are resolved; the last component is then opened with
        ``O_NOFOLLOW``, which fails if it is a link too. That makes the check of a
        device directory one ``readlink`` on top of the listing itself.
        """
        real = self._resolve_but_last(path)
        if real is None or not self._inside(real):
            self._check_dir(path)  # the complete resolution: refuses with the link named
            return os.listdir(path)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno not in (_errno.ELOOP, _errno.ENOTDIR):
                raise
            self._check_dir(path)
            return os.listdir(path)
        try:
            names = os.listdir(fd)
        finally:
            os.close(fd)
        self._safe_dirs.add(path)
        return names

    def _resolve_but_last(self, path: str) -> str | None:
        """``path`` resolved except its very last component (the one a listing then
        opens with O_NOFOLLOW); None when that shortcut does not apply."""
        head, _, name = path.rpartition("/")
        if name in ("", ".", ".."):
            return None
        real_head = self._realpath(head)
        candidate = f"{real_head}/{name}"
        known = self._real.get(candidate)
        if known is not None:
            return known
        try:
            target = os.readlink(candidate)
        except OSError:
            return candidate  # not a link (or absent): the O_NOFOLLOW open decides
        t_head, _, t_name = target.rpartition("/")
        if t_name in ("", ".", ".."):
            return None
        # The heads of the devices' links are few (one per bus): remembered by _realpath.
        out = self._realpath(t_head if target.startswith("/") else f"{real_head}/{t_head}")
        return f"{out.rstrip('/')}/{t_name}"

    def _inside(self, real: str) -> bool:
        bounds = self._bounds
        if bounds is None:
            top = self._realpath(self._base or "/").rstrip("/")
            bounds = self._bounds = tuple(f"{top}/{d}" for d in ("sys", "dev", "proc"))
        return any(real == b or real.startswith(b + "/") for b in bounds)

    def _unsafe(self, path: str, real: str) -> UnsafePath:
        """The refusal, naming the link that leads out of the trees."""
        link = self._culprit(path, 0) or path
        return UnsafePath(
            f"{self.relative(link)} under {self.root} leads outside its sys, dev and proc"
            f" trees (to {real}); refusing to follow it: check the --root tree"
        )

    def _culprit(self, path: str, depth: int) -> str | None:
        """The last link met while resolving ``path`` that sits inside the trees but
        resolves outside them (None if there is none: ``path`` itself is outside)."""
        real = ""
        for part in path.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                real = real.rpartition("/")[0]
                continue
            real_parent = real
            candidate = f"{real}/{part}"
            real = self._step(real, part, depth)
            if depth < _MAX_LINKS and os.path.islink(candidate) and self._inside(candidate) \
                    and not self._inside(real):
                target = os.readlink(candidate)
                joined = target if target.startswith("/") else f"{real_parent}/{target}"
                return self._culprit(joined, depth + 1) or candidate
        return None

    def _realpath(self, path: str) -> str:
        known = self._dirs_real.get(path)
        if known is not None:
            return known
        head, _, name = path.rpartition("/")
        real_head = self._realpath(head) if head else ""
        real = self._step(real_head, name, 0)
        if name in ("", ".", "..") or f"{real_head}/{name}" in self._real:
            self._dirs_real[path] = real  # remembered only once seen to exist
        return real

    def _step(self, real: str, part: str, depth: int) -> str:
        """Resolve ``part`` in the already resolved directory ``real``."""
        if part in ("", "."):
            return real
        if part == "..":
            return real.rpartition("/")[0]
        candidate = f"{real}/{part}"
        known = self._real.get(candidate)
        if known is not None:
            return known
        try:
            target = os.readlink(candidate)
        except OSError as exc:
            if exc.errno == _errno.EINVAL:  # there, and not a link: remember it
                self._real[candidate] = candidate
            return candidate  # absent (or unreadable): nothing to follow, not remembered
        if depth >= _MAX_LINKS:
            raise UnsafePath(f"{self.relative(candidate)} under {self.root}: too many levels"
                             " of symbolic links; check the --root tree")
        out = "" if target.startswith("/") else real
        for piece in target.split("/"):
            out = self._step(out, piece, depth + 1)
        self._real[candidate] = out
        return out

    # ---------------------------------------------------------------- checks
    def check_tree(self) -> None:
        """Raise NotASysfsTree unless the root has ``sys/bus/pci/devices``."""
        if not os.path.isdir(self.pci_devices):
            raise NotASysfsTree(
                f"{self.root} is not a sysfs tree: {self.relative(self.pci_devices)} is missing;"
                " pass --root the directory that contains sys/ (default /)"
            )

    def device_exists(self, address: PciAddress) -> bool:
        """True while the device is registered on the PCI bus."""
        return os.path.exists(f"{self.pci_devices}/{address}")

    def identity(self, address: PciAddress) -> int | None:
        """Inode of the device's directory: a re-created device gets a new one."""
        try:
            return os.stat(f"{self.pci_devices}/{address}").st_ino
        except OSError:
            return None

    def exists(self, path: str) -> bool:
        """Existence check that does not count as a read."""
        return os.path.lexists(path)

    # ----------------------------------------------------------------- reads
    # A listing does about ten reads per device, so these keep Python overhead
    # down: one frame between the caller and os.open, counting inlined, and
    # try/except rather than the _translate context manager.
    def read_text(self, path: str, address: PciAddress | None = None) -> str:
        """Whole attribute text with the kernel's one trailing newline removed."""
        try:
            return self._read(path, address)
        except _AttributeMissing:
            raise self._missing(path, address) from None

    def _read(self, path: str, address: PciAddress | None) -> str:
        """Read ``path``; _AttributeMissing when it is absent on a live device."""
        stats = self.stats
        stats.reads += 1
        if stats.trace is not None:
            stats.trace.append(path)
        directory = path[:path.rfind("/")]
        if directory not in self._safe_dirs:
            self._check_dir(directory)
        try:
            fd = os.open(path, _READ_FLAGS)
            try:
                data = os.read(fd, 65536)
            finally:
                os.close(fd)
        except OSError as exc:
            raise self._convert(exc, path, address, None) from None
        text = data.decode("utf-8", "replace")
        return text[:-1] if text.endswith("\n") else text

    def _missing(self, path: str, address: PciAddress | None) -> KernelRefused:
        return KernelRefused(
            f"{self.relative(path)} is missing: {KernelRefused.describe(_errno.ENOENT)}",
            errno=_errno.ENOENT, path=self.relative(path), address=address,
        )

    def read_optional(self, path: str, address: PciAddress | None = None) -> str | None:
        """Like :meth:`read_text`, but None when the attribute is absent."""
        try:
            return self._read(path, address)
        except _AttributeMissing:
            return None

    def read_lines_with(self, path: str, needle: str) -> list[str] | None:
        """The lines of a whole file (read to its end) that contain ``needle``; None if absent.

        For ``/proc`` files longer than one read (``/proc/PID/maps``): only the
        matching lines are kept.
        """
        self.stats.note_read(path)
        chunks: list[bytes] = []
        try:
            fd = os.open(path, _READ_FLAGS)
            try:
                while chunk := os.read(fd, 65536):
                    chunks.append(chunk)
            finally:
                os.close(fd)
        except OSError as exc:
            error = self._convert(exc, path, None, None)
            if isinstance(error, _AttributeMissing):
                return None
            raise error from None
        text = b"".join(chunks).decode("utf-8", "replace")
        return [line for line in text.splitlines() if needle in line]

    def read_hex(self, path: str, address: PciAddress | None = None) -> int:
        """Parse ``0x%04x`` / ``0x%06x`` (or bare ``%x``) attributes."""
        return self._read_number(path, address, 16, "a hex number")

    def read_int(self, path: str, address: PciAddress | None = None) -> int:
        """Parse ``%d`` / ``%u`` attributes."""
        return self._read_number(path, address, 10, "a number")

    def _read_number(self, path: str, address: PciAddress | None, base: int, what: str) -> int:
        try:
            text = self._read(path, address)
        except _AttributeMissing:
            raise self._missing(path, address) from None
        try:
            return int(text, base)
        except ValueError:
            raise UnexpectedContent(
                f"{self.relative(path)} holds {text[:20]!r}, not {what}", address=address
            ) from None

    def read_binary(self, path: str, address: PciAddress | None = None,
                    limit: int = 65536) -> bytes | None:
        """Raw bytes of a binary attribute (``vpd``, ``config``), at most ``limit``;
        None when it is absent. Errors as for :meth:`read_text`."""
        self.stats.note_read(path)
        try:
            fd = os.open(path, _READ_FLAGS | os.O_NONBLOCK)
            try:
                chunks: list[bytes] = []
                size = 0
                while size < limit and (data := os.read(fd, limit - size)):
                    chunks.append(data)
                    size += len(data)
            finally:
                os.close(fd)
        except OSError as exc:
            error = self._convert(exc, path, address, None)
            if isinstance(error, _AttributeMissing):
                return None
            raise error from None
        return b"".join(chunks)

    def read_override(self, address: PciAddress) -> str | None:
        """``driver_override`` or None when unset (the kernel prints ``(null)``)."""
        text = self.read_optional(f"{self.pci_devices}/{address}/driver_override", address)
        if text is None or text in ("(null)", ""):
            return None
        return text

    def read_link_name(self, path: str, address: PciAddress | None = None) -> str | None:
        """Basename of a symlink's target, or None when the link is absent."""
        target = self.read_link(path, address)
        if target is None:
            return None
        return target.rstrip("/").rsplit("/", 1)[-1]

    def read_link(self, path: str, address: PciAddress | None = None) -> str | None:
        """Raw symlink target, or None when absent."""
        stats = self.stats
        stats.reads += 1
        if stats.trace is not None:
            stats.trace.append(path)
        directory = path[:path.rfind("/")]
        if directory not in self._safe_dirs:
            self._check_dir(directory)
        try:
            return os.readlink(path)
        except OSError as exc:
            error = self._convert(exc, path, address, None)
        if isinstance(error, _AttributeMissing):
            return None
        raise error

    def list_dir(self, path: str, address: PciAddress | None = None) -> list[str]:
        """Entry names of a directory (unsorted), empty when it is absent."""
        stats = self.stats
        stats.reads += 1
        if stats.trace is not None:
            stats.trace.append(path)
        try:
            if path in self._safe_dirs:
                return os.listdir(path)
            return self._list_unchecked(path)
        except OSError as exc:
            error = self._convert(exc, path, address, None)
        if isinstance(error, _AttributeMissing):
            return []
        raise error

    def read_table(self, path: str) -> str | None:
        """A whole /proc table (any length, unlike attributes), or None when absent."""
        self.stats.note_read(path)
        try:
            fd = os.open(path, _READ_FLAGS)
            try:
                chunks = []
                while chunk := os.read(fd, 65536):
                    chunks.append(chunk)
            finally:
                os.close(fd)
        except OSError as exc:
            error = self._convert(exc, path, None, None)
            if isinstance(error, _AttributeMissing):
                return None
            raise error from None
        return b"".join(chunks).decode("utf-8", "replace")

    def resolve(self, path: str) -> str:
        """``path`` with every symlink followed (sysfs links are relative, so this stays
        under the root); counts as a read."""
        self.stats.note_read(path)
        return os.path.realpath(path)

    def block_node_number(self, path: str) -> tuple[int, int] | None:
        """(major, minor) of the block device node at ``path`` under the root, or None
        when it is absent or not a block device."""
        self.stats.note_read(path)
        try:
            st = os.stat(f"{self._base}{path}" if path.startswith("/") else path)
        except (OSError, ValueError):
            return None
        if not stat.S_ISBLK(st.st_mode):
            return None
        return os.major(st.st_rdev), os.minor(st.st_rdev)

    # ---------------------------------------------------------------- writes
    def write(self, path: str, value: str, address: PciAddress | None = None) -> None:
        """Write ``value`` in one ``write()`` call, as a shell ``echo >`` does.

        Raises KernelRefused with the kernel's errno, or DeviceNotFound when the
        device's directory is gone.
        """
        data = value.encode()
        self.stats.writes += 1
        self.stats.written.append((self.relative(path), value))
        directory = path[:path.rfind("/")]
        if directory not in self._safe_dirs:
            self._check_dir(directory)
        with self._translate(path, address, writing=value):
            fd = os.open(path, _WRITE_FLAGS)
            try:
                written = os.write(fd, data)
            finally:
                os.close(fd)
        if written != len(data):
            raise KernelRefused(
                f"short write to {self.relative(path)}: {written} of {len(data)} bytes",
                errno=_errno.EIO, path=self.relative(path), address=address,
            )

    # --------------------------------------------------------------- helpers
    @contextmanager
    def _translate(
        self, path: str, address: PciAddress | None, writing: str | None = None
    ) -> Iterator[None]:
        try:
            yield
        except HostdevError:
            raise
        except OSError as exc:
            raise self._convert(exc, path, address, writing) from None

    def _convert(
        self, exc: OSError, path: str, address: PciAddress | None, writing: str | None
    ) -> Exception:
        err = exc.errno or _errno.EIO
        rel = self.relative(path)
        if err == _errno.ELOOP:
            return UnsafePath(f"{rel} under {self.root} is a symlink, which a kernel attribute"
                              " never is; refusing to follow it: check the --root tree")
        gone = err in (_errno.ENOENT, _errno.ENODEV)
        if gone and address is not None and not self.device_exists(address):
            return DeviceNotFound(
                f"PCI device {address} not found: it is not (or no longer) on this host;"
                " check the address with 'hostdev list'",
                address=address,
            )
        if err == _errno.ENOENT and writing is None:
            return _AttributeMissing(rel)
        what = f"writing {writing.strip()!r} to {rel}" if writing is not None else f"reading {rel}"
        hint = ""
        if err in (_errno.EACCES, _errno.EPERM):
            hint = "; run as root"
        return KernelRefused(
            f"the kernel refused {what}: {KernelRefused.describe(err)}{hint}",
            errno=err, path=rel, address=address,
        )


class _AttributeMissing(HostdevError):
    """Internal: an optional attribute is not there (ENOENT on a live device)."""


def _check_attr(attr: str) -> None:
    if not attr or ".." in attr or not set(attr) <= _ATTR_CHARS or attr.startswith("/"):
        raise ValueError(f"internal error: bad sysfs attribute name {attr!r}")
