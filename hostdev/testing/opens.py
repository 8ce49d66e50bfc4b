"""``open()`` of sysfs attribute files: kernfs's checks at open, one store per ``write()``.

pyfakefs hands a file hook (``side_effect``) the file's whole contents after a
write, not the bytes of that write, and it lets root open any file any way. A
real sysfs attribute behaves differently (docs/kernel-model.md §0, observed on a real 6.1
kernel):

* ``open()`` fails with EACCES, for root too, when it asks to read a write-only
  attribute (no ``show``) or to write a read-only one (no ``store``): kernfs
  checks the file mode at open, before any read or write;
* each ``write()`` reaches the store handler with exactly its own bytes, whatever
  the file offset and whether the file was opened with O_TRUNC (O_TRUNC truncates
  nothing; a zero-byte write never reaches the handler), and the attribute keeps
  reading as the kernel renders it.

:func:`register` wraps pyfakefs's open paths once per process:
``FakeFileOpen.call`` (behind ``open()``, ``io.open``, ``pathlib`` and
``os.open``) and ``FakeOsModule.open``. Only filesystems a FakeKernel registered
are looked at, and there only files whose hook is a :class:`SysfsNode`; every
other open pays one set lookup. A handle opened for writing on an attribute
becomes a :class:`BinaryAttrWriter` or :class:`TextAttrWriter`, whose ``flush``
hands the kernel the bytes written since its previous flush: one ``os.write``
is one store call, and a buffered ``open(path, "w")`` stores what was written
when it is flushed or closed (one store, as Python's own buffered writer makes
one ``write()``).

pyfakefs's ``os.open`` also chmods an existing file to the ``mode`` argument
(0o777 & ~umask by default); for attribute files the mode is put back, as a
real ``open()`` without O_CREAT never changes it.

Not modelled: reading through a handle open for both reading and writing shows
the value as of ``open()`` (pyfakefs keeps one buffer per handle), and
``os.truncate``/``ftruncate`` change the stored text until the next store
(a real attribute ignores them).
"""

from __future__ import annotations

import errno
import io
import threading
import weakref
from typing import Any

from pyfakefs.fake_file import (
    FakeBinaryFileWrapper,
    FakeFileWrapper,
    FakeTextFileWrapper,
)
from pyfakefs.fake_filesystem import FakeFilesystem
from pyfakefs.fake_open import FakeFileOpen
from pyfakefs.fake_os import FakeOsModule
from pyfakefs.helpers import TextBufferIO

from hostdev.testing.dispatch import SysfsNode, write
from hostdev.testing.vfs import ReadError

#: Filesystems with a fake kernel on them (nothing else is ever looked at).
_FILESYSTEMS: weakref.WeakSet[FakeFilesystem] = weakref.WeakSet()
_INSTALL_LOCK = threading.Lock()
_installed = False
#: Handle attribute: the file's mode before pyfakefs's ``os.open`` chmods it.
_MODE_KEY = "_hostdev_mode"


def register(fs: FakeFilesystem) -> None:
    """Give the sysfs attribute files of ``fs`` kernfs's open semantics."""
    _install()
    _FILESYSTEMS.add(fs)


def _install() -> None:
    """Wrap pyfakefs's open paths (once; later calls do nothing)."""
    global _installed
    with _INSTALL_LOCK:
        if _installed:
            return
        call = FakeFileOpen.call
        os_open = FakeOsModule.open

        def wrapped_call(self: FakeFileOpen, *args: Any, **kwargs: Any) -> Any:
            handle = call(self, *args, **kwargs)
            if self.filesystem in _FILESYSTEMS and isinstance(handle, FakeFileWrapper):
                node = handle.file_object._side_effect
                if isinstance(node, SysfsNode):
                    file_ = args[0] if args else kwargs.get("file_")
                    _opened(self.filesystem, handle, node, by_fd=isinstance(file_, int))
                elif isinstance(node, ReadError):
                    _failing_reads(self.filesystem, handle, node.errno)
            return handle

        def wrapped_os_open(self: FakeOsModule, path: Any, flags: int,
                            mode: int | None = None, *, dir_fd: int | None = None) -> int:
            fd = os_open(self, path, flags, mode, dir_fd=dir_fd)
            if self.filesystem in _FILESYSTEMS:
                handle = self.filesystem.get_open_file(fd)
                kept = handle.__dict__.pop(_MODE_KEY, None)
                if kept is not None and isinstance(handle, FakeFileWrapper):
                    handle.file_object.st_mode = kept
            return fd

        wrapped_call.__doc__ = call.__doc__
        wrapped_os_open.__doc__ = os_open.__doc__
        FakeFileOpen.call = wrapped_call  # type: ignore[method-assign]
        FakeOsModule.open = wrapped_os_open  # type: ignore[method-assign]
        _installed = True


def _opened(fs: FakeFilesystem, handle: FakeFileWrapper, node: SysfsNode, *,
            by_fd: bool) -> None:
    """kernfs's checks on a new handle of attribute ``node``; writers get their class."""
    modes = handle.open_modes
    if not by_fd:  # open(fd) / os.fdopen re-wrap an fd: no open() reaches the kernel
        if (modes.can_read and not node.readable()) or (
            modes.can_write and not node.writable()
        ):
            assert handle.filedes is not None
            fs.close_open_file(handle.filedes)  # no flush: nothing may reach the kernel
            fs.raise_os_error(errno.EACCES, handle.file_path)
        if handle.raw_io:  # made by os.open, which chmods the file next
            setattr(handle, _MODE_KEY, handle.file_object.st_mode)
    if modes.can_write and handle.allow_update:
        if isinstance(handle, FakeTextFileWrapper):
            handle.__class__ = TextAttrWriter
        elif isinstance(handle, FakeBinaryFileWrapper):
            handle.__class__ = BinaryAttrWriter
        else:  # pragma: no cover - pyfakefs makes only these two
            return
        handle.__dict__["_hostdev_node"] = node
        handle.__dict__["_hostdev_from"] = _raw(handle).tell()


def _failing_reads(fs: FakeFilesystem, handle: FakeFileWrapper, err: int) -> None:
    """Every read through ``handle`` fails with ``err``, as the attribute's ``show``
    returns ``-err``: the open itself succeeds, as kernfs's does. Set on the instance,
    which pyfakefs's wrappers look at before their own ``__getattr__``."""
    if handle.open_modes.can_write:  # a read-only attribute, for root too
        assert handle.filedes is not None
        fs.close_open_file(handle.filedes)
        fs.raise_os_error(errno.EACCES, handle.file_path)

    def refuse(*args: object, **kwargs: object) -> None:
        fs.raise_os_error(err, handle.file_path)

    for name in ("read", "read1", "readline", "readlines", "readinto"):
        handle.__dict__[name] = refuse


def _raw(handle: FakeFileWrapper) -> io.BytesIO:
    """The byte stream under a handle's buffer (text handles encode into one)."""
    stream = handle._io
    if isinstance(stream, TextBufferIO):
        stream.flush()
        return stream._bytestream
    return stream


class _AttrWriter(FakeFileWrapper):
    """A handle open for writing on a sysfs attribute (see the module docstring).

    Only methods FakeFileWrapper also defines are overridden: pyfakefs's wrappers
    look everything else up through ``__getattr__``.
    """

    def flush(self) -> None:
        """Hand the kernel the bytes written since the last flush, if any."""
        self._check_open_file()
        state = self.__dict__
        raw = _raw(self)
        end = raw.tell()
        start: int = state["_hostdev_from"]
        state["_hostdev_from"] = end
        self.update_flush_pos()
        if end > start:
            node: SysfsNode = state["_hostdev_node"]
            write(node, self.file_object, raw.getvalue()[start:end])

    def _sync_io(self) -> None:
        """Never reload the buffer: it holds what this handle wrote, not the value."""

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move the offset; what was written before is stored first (nothing after)."""
        self.flush()
        if self.open_modes.append:  # pyfakefs's way: appends go to the end anyway
            self._read_seek = offset
            self._read_whence = whence
        else:
            self._io.seek(offset, whence)
        self.__dict__["_hostdev_from"] = _raw(self).tell()
        return self.tell()

    def close_fd(self, fd: int | None) -> None:
        """Flush (a store that fails raises here) and close the fd in any case."""
        if not self._is_open():
            return
        try:
            if not self.raw_io:
                self.flush()
        finally:
            self.raw_io = True  # already flushed: the base class must not flush again
            super().close_fd(fd)


class BinaryAttrWriter(_AttrWriter, FakeBinaryFileWrapper):  # type: ignore[misc]
    """Binary (and ``os.open``) handle open for writing on a sysfs attribute."""


class TextAttrWriter(_AttrWriter, FakeTextFileWrapper):  # type: ignore[misc]
    """Text handle open for writing on a sysfs attribute."""
