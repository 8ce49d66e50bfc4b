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
import time

from hostdev.address import PciAddress, validate_driver_name
from hostdev.errors import (
    DeviceBusy,
    DeviceNotFound,
    HostdevError,
    KernelRefused,
    NotASysfsTree,
    UnexpectedContent,
    UnsafePath,
    WriteBlocked,
)

# typing.Protocol, without importing typing at run time (cold start).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path
    from typing import Protocol
else:
    Protocol = object

# O_NONBLOCK: a FIFO planted under --root must not hang the open (kernfs ignores it).
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
#: Symlinks followed in one resolution before giving up, as the kernel does.
_MAX_LINKS = 40
#: A device directory, opened once per listing (its last component must not be a link:
#: the bus entry's link was resolved and checked before).
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
#: Attribute names the library uses; anything else is a programming error.
_ATTR_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-/")


#: The logger of every write to the kernel (sysfs here, netlink elsewhere), at DEBUG.
KERNEL_LOGGER = "hostdev.kernel"


def log_write(target: str, value: str, result: str) -> None:
    """Log one write to the kernel at DEBUG on :data:`KERNEL_LOGGER`: what was written
    where, and ``result`` ("ok", or the error). ``logging`` is imported here, on the
    first write: ``hostdev list`` writes nothing and must not load it."""
    import logging

    log = logging.getLogger(KERNEL_LOGGER)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("write %r to %s: %s", value.strip(), printable(target), result)


def _as_path_text(path: str | os.PathLike[str]) -> str:
    """``str(pathlib.PurePosixPath(path))`` without importing pathlib: empty and
    ``.`` components dropped, ``..`` kept, two leading slashes kept as POSIX says."""
    text = os.fspath(path)
    lead = "//" if text.startswith("//") and not text.startswith("///") else (
        "/" if text.startswith("/") else "")
    return lead + "/".join(p for p in text.split("/") if p not in ("", ".")) or "."


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n`` as ``\\x0a``): what other
    processes choose (a ``comm``, a mount point) must not break a one-line message."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


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
    need a consistent view take a snapshot (see :mod:`hostdev.linux.device`). It remembers
    only which directories were found to resolve inside the root, until
    :meth:`forget_checked_paths`.
    """

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        self._root_arg = root
        self._root: Path | None = None
        #: Deadline (s) of a write that may block in the kernel (see :meth:`write`).
        self.write_timeout = DEFAULT_WRITE_TIMEOUT
        #: Devices whose lock a blocked write of ours still holds in the kernel:
        #: writing to them, or reading an attribute that may take the device lock,
        #: would block too, so it raises DeviceBusy (links and ids can still be read).
        self.fenced: dict[PciAddress, str] = {}
        #: Every helper started by this object (a manager journals them).
        self.helpers: list[HelperWrite] = []
        #: Called with a helper as soon as it runs, and again when the caller gives up.
        self.on_helper: Callable[[HelperWrite], None] | None = None
        #: The root as messages name it (what ``str(self.root)`` gives).
        self.root_text = _as_path_text(root)
        # Paths are resolved component by component from "/": a relative root is
        # anchored at the working directory first (without folding its "..").
        text = self.root_text
        base = (text if text.startswith("/") else f"{os.getcwd()}/{text}").rstrip("/")
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
        self._below: tuple[str, ...] = ()

    @property
    def root(self) -> Path:
        """The root as a :class:`~pathlib.Path` (built on first use: ``hostdev list``
        does not import pathlib)."""
        if self._root is None:
            from pathlib import Path

            self._root = Path(self._root_arg)
        return self._root

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
            self._below = tuple(f"{b}/" for b in bounds)
        # One C-level test per call: a listing asks once per device.
        return real in bounds or real.startswith(self._below)

    def _unsafe(self, path: str, real: str) -> UnsafePath:
        """The refusal, naming the link that leads out of the trees."""
        link = self._culprit(path, 0) or path
        return UnsafePath(
            f"{self.relative(link)} under {self.root_text} leads outside its sys, dev and proc"
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
            raise UnsafePath(f"{self.relative(candidate)} under {self.root_text}: too many levels"
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
                f"{self.root_text} is not a sysfs tree:"
                f" {self.relative(self.pci_devices)} is missing;"
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

    # ------------------------------------------------------- one device's files
    def open_device(self, address: PciAddress) -> DeviceFiles | None:
        """The device's directory opened once, for reads relative to it (a listing);
        None when the device is not (or no longer) on the bus.

        The bus entry's link is resolved and checked to lead inside the root's
        ``sys`` (one ``readlink``, the link heads being remembered), then the
        directory is opened with ``O_NOFOLLOW``. Every read through the result
        names one component, opened with ``O_NOFOLLOW`` relative to that
        descriptor: nothing read through it can lead out of the checked directory.
        """
        path = f"{self.pci_devices}/{address}"
        stats = self.stats
        stats.reads += 1
        if stats.trace is not None:
            stats.trace.append(path)
        try:
            real = self._resolve_but_last(path)
            if real is None or not self._inside(real):
                self._check_dir(path)  # refuses, naming the link
                real = self._realpath(path)
            try:
                fd = os.open(real, _DIR_FLAGS)
            except OSError as exc:
                if exc.errno not in (_errno.ELOOP, _errno.ENOTDIR):
                    raise
                # A link below the checked head: resolve it all, and check it.
                self._check_dir(path)
                fd = os.open(self._realpath(path), _DIR_FLAGS)
        except OSError as exc:
            if exc.errno in (_errno.ENOENT, _errno.ENODEV):
                return None
            raise self._convert(exc, path, address, None) from None
        return DeviceFiles(self, address, path, fd)

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

    def _before_read(self, path: str) -> None:
        """Count the read, and check that its directory stays inside the root."""
        self.stats.note_read(path)
        directory = path[:path.rfind("/")]
        if directory not in self._safe_dirs:
            self._check_dir(directory)

    def _read(self, path: str, address: PciAddress | None) -> str:
        """Read ``path``; _AttributeMissing when it is absent on a live device."""
        if self.fenced and path.rpartition("/")[2] not in _UNLOCKED_READS:
            self._check_fence(path)
        self._before_read(path)
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
        text = self.read_table(path)
        if text is None:
            return None
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
        self._before_read(path)
        try:
            fd = os.open(path, _READ_FLAGS)
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
        self._before_read(path)
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
        self._before_read(path)
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
        real = os.path.realpath(path)
        if not self._inside(real):
            raise self._unsafe(path, real)
        return real

    def block_node_number(self, path: str) -> tuple[int, int] | None:
        """(major, minor) of the block device node at ``path`` under the root, or None
        when it is absent or not a block device."""
        self.stats.note_read(path)
        full = f"{self._base}{path}" if path.startswith("/") else path
        try:
            if not self._inside(os.path.realpath(full)):
                return None  # a node reached through a link out of the root is not ours
            st = os.stat(full)
        except (OSError, ValueError):
            return None
        if not stat.S_ISBLK(st.st_mode):
            return None
        return os.major(st.st_rdev), os.minor(st.st_rdev)

    # ---------------------------------------------------------------- writes
    def write(self, path: str, value: str, address: PciAddress | None = None, *,
              blocking: Sequence[PciAddress] = ()) -> None:
        """Write ``value`` in one ``write()`` call, as a shell ``echo >`` does.

        Raises KernelRefused with the kernel's errno, or DeviceNotFound when the
        device's directory is gone.

        ``blocking`` names the devices whose lock the kernel holds while this write
        can block until a VFIO user lets go (``unbind``, ``sriov_numvfs`` 0). Such a
        write is made by a helper process (see :func:`start_helper_write`), and the
        caller waits at most :attr:`write_timeout` seconds for it: after that it
        raises :class:`WriteBlocked`, the helper stays blocked in the kernel (and
        exits when its write returns), and ``blocking`` stay fenced.
        """
        if self.fenced:
            self._check_fence(path, address)
        try:
            self._write(path, value, address, blocking)
        except BaseException as exc:
            log_write(self.relative(path), value, f"{type(exc).__name__}: {exc}")
            raise
        log_write(self.relative(path), value, "ok")

    def _write(self, path: str, value: str, address: PciAddress | None,
               blocking: Sequence[PciAddress]) -> None:
        data = value.encode()
        self.stats.writes += 1
        self.stats.written.append((self.relative(path), value))
        directory = path[:path.rfind("/")]
        if directory not in self._safe_dirs:
            self._check_dir(directory)
        if blocking:
            self._write_bounded(path, value, data, address, blocking)
            return
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

    def _write_bounded(self, path: str, value: str, data: bytes, address: PciAddress | None,
                       blocking: Sequence[PciAddress]) -> None:
        with self._translate(path, address, writing=value):
            handle = _start_write(path, data)
        helper = HelperWrite(self.relative(path), value, list(blocking), handle.pid,
                             handle.start)
        # The helper is our child: it shares our PID namespace. A later process in
        # another one (a new pod sharing the state directory) cannot see it in /proc.
        helper.pidns = self.pid_namespace()
        self.helpers.append(helper)
        unjournaled: HostdevError | None = None
        try:
            if self.on_helper is not None:
                try:
                    self.on_helper(helper)
                except HostdevError as exc:
                    # The helper's journal entry matters only if we give up on it; the
                    # write is under way whatever happens, so wait for it all the same.
                    unjournaled = exc
            result = handle.wait(self.write_timeout)
        except BaseException:  # interrupted (^C): the write may still block
            self._give_up(helper)
            raise
        if result is None:
            unjournaled = self._give_up(helper) or unjournaled
            raise WriteBlocked(
                f"{self.fenced[helper.devices[0]]}; gave up waiting after"
                f" {self.write_timeout:g} s. The helper exits once the write returns; "
                + ("the next hostdev call records where the device ended up"
                   if unjournaled is None else
                   f"it could not be journaled ({unjournaled}): run 'hostdev reconcile'"
                   " once the VFIO user has let go"),
                address=helper.devices[0], pid=helper.pid, path=helper.path,
            )
        if unjournaled is not None:
            import logging  # rare: keep logging off the cold listing path

            logging.getLogger("hostdev").warning(
                "the write to %s returned in time, but its helper could not be journaled: %s",
                helper.path, unjournaled)
        helper.done = True
        if result:
            raise self._convert(OSError(result, os.strerror(result)), path, address, value)
        if handle.written != len(data):
            raise KernelRefused(
                f"short write to {self.relative(path)}: {handle.written} of {len(data)} bytes",
                errno=_errno.EIO, path=self.relative(path), address=address,
            )
        _reap()

    def _give_up(self, helper: HelperWrite) -> HostdevError | None:
        """The caller stops waiting: fence the devices and tell whoever journals helpers.

        Returns the error of a journal that could not record it (None when it did)."""
        helper.gave_up = True
        reason = (f"a write of {helper.value.strip()!r} to {helper.path} made by hostdev is"
                  f" still blocked in the kernel (helper pid {helper.pid}) until the VFIO user"
                  " releases the device")
        for addr in helper.devices:
            self.fenced[addr] = reason
        if self.on_helper is not None:
            try:
                self.on_helper(helper)
            except HostdevError as exc:
                return exc
        return None

    def fence(self, addresses: Sequence[PciAddress], reason: str) -> None:
        """Refuse (DeviceBusy) writes to these devices, and reads that may take their lock."""
        for addr in addresses:
            self.fenced[addr] = reason

    def _check_fence(self, path: str, address: PciAddress | None = None) -> None:
        if path.rpartition("/")[2] in _UNLOCKED_WRITES:
            return
        for addr, reason in self.fenced.items():
            if addr == address or path.startswith(f"{self.pci_devices}/{addr}/"):
                raise DeviceBusy(f"PCI device {addr} is not touched: {reason}", address=addr)

    def pid_namespace(self) -> str | None:
        """This process's PID namespace as ``/proc/self/ns/pid`` names it
        (``pid:[4026531836]``), or None when it cannot be read."""
        try:
            return self.read_link(f"{self.proc}/self/ns/pid")
        except HostdevError:
            return None

    def process_alive(self, pid: int, start: int | None) -> bool:
        """Whether process ``pid`` (started at ``start`` clock ticks) still runs.

        Read from ``/proc/PID/stat``: a zombie has finished, and a different start
        time means the pid was reused.
        """
        try:
            text = self.read_optional(f"{self.proc}/{int(pid)}/stat")
        except HostdevError:
            return False
        if text is None:
            return False
        fields = text.rpartition(")")[2].split()
        if not fields or fields[0] in ("Z", "X", "x"):
            return False
        return start is None or fields[19:20] == [str(start)]

    # --------------------------------------------------------------- helpers
    def _translate(self, path: str, address: PciAddress | None,
                   writing: str | None = None) -> _Translate:
        """A context turning ``OSError`` into the matching HostdevError."""
        return _Translate(self, path, address, writing)

    def _convert(
        self, exc: OSError, path: str, address: PciAddress | None, writing: str | None
    ) -> Exception:
        err = exc.errno or _errno.EIO
        rel = self.relative(path)
        if err == _errno.ELOOP:
            return UnsafePath(f"{rel} under {self.root_text} is a symlink, which a kernel attribute"
                              " never is; refusing to follow it: check the --root tree")
        gone = err in (_errno.ENOENT, _errno.ENODEV)
        if gone and address is not None and not self.device_exists(address):
            return DeviceNotFound.at(address)
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


#: Attributes a fenced device may still be read from: their read never takes the
#: device lock. Others may (``driver_override``, ``sriov_numvfs``, and ``uevent`` on
#: kernels with the uevent_show fix), and would wait behind a blocked unbind or VF
#: removal, as every write to such a device would.
_UNLOCKED_READS = frozenset({"vendor", "device", "class", "subsystem_vendor",
                             "subsystem_device", "revision",
                             # Counters read without the lock: what tells whether a
                             # VFIO user still holds a fenced device.
                             "enable", "runtime_usage",
                             # A plain flag of the PF (iov.c), read and written
                             # without the lock.
                             "sriov_drivers_autoprobe"})
#: Attributes of a fenced device that may still be written: the kernel's store
#: takes no lock (a PF's VF count blocked on a VF's user does not stop putting its
#: autoprobe setting back).
_UNLOCKED_WRITES = frozenset({"sriov_drivers_autoprobe"})
#: Default deadline (s) for a write that may block in the kernel.
DEFAULT_WRITE_TIMEOUT = 30.0


class HelperWrite:
    """A possibly-blocking write made by a helper process (see :meth:`Sysfs.write`)."""

    def __init__(self, path: str, value: str, devices: list[PciAddress], pid: int,
                 start: int | None) -> None:
        #: The file written, as the kernel names it.
        self.path = path
        self.value = value
        #: The devices the kernel keeps locked while the write blocks.
        self.devices = devices
        self.pid = pid
        #: The helper's start time (clock ticks after boot), against pid reuse.
        self.start = start
        #: The PID namespace ``pid`` belongs to (see :meth:`Sysfs.pid_namespace`).
        self.pidns: str | None = None
        #: The caller stopped waiting; the helper may still be blocked in the kernel.
        self.gave_up = False
        #: The write returned while the caller waited.
        self.done = False


class WriteHandle(Protocol):
    """A write started by :func:`start_helper_write` (or a fake kernel's replacement)."""

    pid: int
    start: int | None
    #: Bytes the write returned (valid once :meth:`wait` returned 0).
    written: int

    def wait(self, timeout: float) -> int | None:
        """0 when the write succeeded, its errno when it failed, None if still blocked."""


def start_helper_write(path: str, data: bytes) -> WriteHandle:
    """Start a write of ``data`` to ``path`` in a helper process; return at once.

    The helper is a grandchild (double fork): the intermediate child exits at
    once and is reaped here (without waiting, once the helper has answered), so
    the helper belongs to init (or the nearest subreaper) and never becomes a
    zombie of the caller, however long it stays
    blocked and whether or not the caller still runs. It leaves the caller's
    session (no ^C or hang-up reaches it), closes every inherited file but its
    pipe, makes the one write, reports the result on the pipe and exits.
    """
    return _ForkedWrite(path, data)


#: Hooks that may take a write over before a helper is forked (a fake kernel
#: registers one: a helper process cannot see its in-memory filesystem). Each
#: returns None to pass.
write_starters: list[Callable[[str, bytes], WriteHandle | None]] = []


def _start_write(path: str, data: bytes) -> WriteHandle:
    for starter in write_starters:
        handle = starter(path, data)
        if handle is not None:
            return handle
    return start_helper_write(path, data)


#: Intermediate children of helpers not reaped yet (each is, without waiting, once its
#: helper has answered; one still exiting then is reaped at a later write).
_unreaped: set[int] = set()


def _reap() -> None:
    for pid in list(_unreaped):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _unreaped.discard(pid)
    if os.getpid() == 1:
        # PID 1 of a namespace (hostdev as a container's entry point): the helpers'
        # orphans are re-parented to us, and nobody else would ever reap them.
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass


class _ForkedWrite:
    """The real helper (see :func:`start_helper_write`)."""

    def __init__(self, path: str, data: bytes) -> None:
        self.written = 0
        self.start: int | None = None
        self._buffer = b""
        import signal  # here, not in the child: an import there could deadlock

        def ignore_signals() -> None:  # no ^C, hang-up, SIGPIPE or SIGTERM in the helper
            for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)

        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the forked processes
            _helper_main(read_end, write_end, path, data, ignore_signals)
        os.close(write_end)
        self._fd = read_end
        # The intermediate child exits as soon as it has forked the helper. It is
        # reaped once the helper has answered (wait), without blocking: waiting for
        # its exit here would add the teardown of a copy of this process to every
        # write. Until then it is known, so that a later write reaps it anyway.
        _unreaped.add(child)
        line = self._line(5.0)  # the helper's first line: its pid
        if line is None or not line.isdigit():
            self._close()
            _reap()
            raise OSError(_errno.ECHILD, "the write helper did not start")
        self.pid = int(line)
        self.start = _start_time(self.pid)

    def _line(self, timeout: float) -> str | None:
        deadline = time.monotonic() + max(0.0, timeout)
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or self._fd < 0:
                return None
            # poll, not select: a daemon may well hold fds above FD_SETSIZE (1024).
            import select  # here: hostdev list never waits for a helper

            poller = select.poll()
            poller.register(self._fd, select.POLLIN | select.POLLHUP)
            if not poller.poll(max(1, int(left * 1000))):
                return None
            chunk = os.read(self._fd, 256)
            if not chunk:
                self._close()
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def wait(self, timeout: float) -> int | None:
        try:
            line = self._line(timeout)
        except BaseException:
            self._close()
            raise
        finally:
            _reap()  # the intermediate child, long gone by now
        if line is None:
            if self._fd < 0:  # the helper died without a word (killed)
                return _errno.EIO
            self._close()  # given up: the helper's report later hits a closed pipe
            return None
        self._close()
        errno_text, _, written = line.partition(" ")
        self.written = int(written or 0)
        return int(errno_text)


def _start_time(pid: int) -> int | None:
    """Start time of a process (``/proc/PID/stat`` field 22), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rpartition(b")")[2].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _helper_main(read_end: int, write_end: int, path: str, data: bytes,
                 ignore_signals: Callable[[], None]) -> None:  # pragma: no cover - forked
    """Body of the intermediate child and the helper; never returns.

    Only system calls here (no import): the caller may have other threads, whose
    locks the forked copies inherit held.
    """
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        # The helper announces itself: were the intermediate child to write the pid,
        # the helper's result could reach the pipe first (a write that fails at once).
        os.write(write_end, f"{os.getpid()}\n".encode())
        ignore_signals()
        os.close(read_end)
        os.closerange(0, write_end)
        os.closerange(write_end + 1, 1 << 20)
        err, written = 0, 0
        try:
            fd = os.open(path, _WRITE_FLAGS)
            try:
                written = os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            err = exc.errno or _errno.EIO
        try:  # noqa: SIM105 - contextlib stays off hostdev list's start-up
            os.write(write_end, f"{err} {written}\n".encode())
        except OSError:  # EPIPE: the caller gave up waiting
            pass
    finally:
        os._exit(0)


class _Translate:
    """Context of :meth:`Sysfs._translate` (a class: contextlib costs a cold start)."""

    __slots__ = ("address", "path", "sysfs", "writing")

    def __init__(self, sysfs: Sysfs, path: str, address: PciAddress | None,
                 writing: str | None) -> None:
        self.sysfs = sysfs
        self.path = path
        self.address = address
        self.writing = writing

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if isinstance(exc, OSError):
            raise self.sysfs._convert(exc, self.path, self.address, self.writing) from None


class DeviceFiles:
    """One device's directory, open for reads relative to it (see
    :meth:`Sysfs.open_device`); close it with :meth:`close`.

    Reads count in the owner's :class:`IoStats` like path reads (the path is
    built only when a trace is kept). An absent attribute reads None, as for
    :meth:`Sysfs.read_optional`; any other failure raises what a path read would.
    """

    __slots__ = ("address", "fd", "fenced", "path", "stats", "sysfs")

    def __init__(self, sysfs: Sysfs, address: PciAddress, path: str, fd: int) -> None:
        self.sysfs = sysfs
        self.stats = sysfs.stats
        self.address = address
        self.path = path
        self.fd = fd
        #: Why reads that may take the device lock are refused (a write of ours is
        #: blocked on it), or None.
        self.fenced = sysfs.fenced.get(address) if sysfs.fenced else None

    def close(self) -> None:
        """Close the directory (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _count(self, name: str) -> None:
        stats = self.stats
        stats.reads += 1
        if stats.trace is not None:
            stats.trace.append(f"{self.path}/{name}")

    def read(self, name: str) -> str | None:
        """The attribute's text without its trailing newline; None when absent."""
        stats = self.stats
        stats.reads += 1
        if stats.trace is not None:
            stats.trace.append(f"{self.path}/{name}")
        if self.fenced is not None and name not in _UNLOCKED_READS:
            raise DeviceBusy(f"PCI device {self.address} is not touched: {self.fenced}",
                             address=self.address)
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=self.fd)
            try:
                data = os.read(fd, 65536)
            finally:
                os.close(fd)
        except OSError as exc:
            if exc.errno == _errno.ENOENT:
                return None
            raise self._error(exc, name) from None
        text = data.decode("utf-8", "replace")
        return text[:-1] if text.endswith("\n") else text

    def link(self, name: str) -> str | None:
        """The last component of a link's target; None when the link is absent."""
        stats = self.stats
        stats.reads += 1
        if stats.trace is not None:
            stats.trace.append(f"{self.path}/{name}")
        try:
            target = os.readlink(name, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == _errno.ENOENT:
                return None
            raise self._error(exc, name) from None
        return target.rstrip("/").rpartition("/")[2]

    def names(self, name: str) -> list[str]:
        """The entries of a subdirectory (unsorted); empty when it is absent."""
        self._count(name)
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno in (_errno.ENOENT, _errno.ENOTDIR):
                return []
            raise self._error(exc, name) from None
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)

    def entries(self) -> list[str]:
        """The names in the directory itself (unsorted)."""
        stats = self.stats
        stats.reads += 1
        if stats.trace is not None:
            stats.trace.append(self.path)
        try:
            return os.listdir(self.fd)
        except OSError as exc:
            raise self.sysfs._convert(exc, self.path, self.address, None) from None

    def has(self, name: str) -> bool:
        """Whether an entry exists (a file, directory or link; not counted as a read)."""
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except OSError:
            return False
        return True

    def _error(self, exc: OSError, name: str) -> Exception:
        return self.sysfs._convert(exc, f"{self.path}/{name}", self.address, None)


class _AttributeMissing(HostdevError):
    """Internal: an optional attribute is not there (ENOENT on a live device)."""


def _check_attr(attr: str) -> None:
    if not attr or ".." in attr or not set(attr) <= _ATTR_CHARS or attr.startswith("/"):
        raise ValueError(f"internal error: bad sysfs attribute name {attr!r}")
