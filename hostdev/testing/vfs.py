"""Fast building blocks over pyfakefs objects: directories, files and symlinks.

Going through ``fs.create_file`` resolves the whole path each time, which is ten
times slower than adding entries to a directory object already at hand; the fake
kernel builds thousands of device directories, so it keeps directory objects and
adds to them here. None of this triggers write hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from errno import EACCES
from stat import S_IFCHR, S_IFLNK, S_IFREG

from pyfakefs.fake_file import FakeDirectory, FakeFile
from pyfakefs.fake_filesystem import FakeFilesystem

Hook = Callable[[FakeFile], None]


def relpath(target: str, from_dir: str) -> str:
    """Relative path from directory ``from_dir`` to ``target`` (both absolute, normalised)."""
    a = from_dir.strip("/").split("/")
    b = target.strip("/").split("/")
    common = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        common += 1
    return "/".join([".."] * (len(a) - common) + b[common:])


def set_contents(obj: FakeFile, contents: str | bytes) -> None:
    """Replace a file's contents without running its write hook."""
    # two branches so that mypy can bind pyfakefs's AnyStr to one type
    if isinstance(contents, bytes):
        obj.set_initial_contents(contents)
    else:
        obj.set_initial_contents(contents)


class ReadError:
    """The hook of an attribute whose ``show`` fails: it opens, and every read of it
    fails with ``errno`` (as ``phys_port_name`` of a netdev without one: EOPNOTSUPP).
    :mod:`hostdev.testing.opens` arms it on each handle opened for reading. The file
    is read-only: opening it for writing fails with EACCES, for root too, as kernfs
    checks the mode at open (pyfakefs calls this hook as such an open truncates)."""

    __slots__ = ("errno",)

    def __init__(self, errno: int) -> None:
        self.errno = errno

    def __call__(self, fake_file: FakeFile) -> None:
        raise OSError(EACCES, "Permission denied")


class Vfs:
    """Directory-object level access to one fake filesystem."""

    def __init__(self, fs: FakeFilesystem) -> None:
        self.fs = fs

    def ensure_dir(self, path: str) -> FakeDirectory:
        """The directory at ``path``, created with its parents if missing (slow path)."""
        if not self.fs.exists(path):
            self.fs.create_dir(path, perm_bits=0o755)
        obj = self.fs.resolve(path)
        if not isinstance(obj, FakeDirectory):
            raise NotADirectoryError(path)
        return obj

    def mkdir(self, parent: FakeDirectory, name: str) -> FakeDirectory:
        """Create directory ``name`` in ``parent``."""
        directory = FakeDirectory(name, perm_bits=0o755, filesystem=self.fs)
        parent.add_entry(directory)
        return directory

    def file(
        self,
        parent: FakeDirectory,
        name: str,
        contents: str | bytes,
        mode: int,
        hook: Hook | None = None,
    ) -> FakeFile:
        """Create regular file ``name`` in ``parent`` with permission bits ``mode``."""
        text = "" if isinstance(contents, bytes) else contents
        obj = FakeFile(name, S_IFREG | mode, text, filesystem=self.fs, side_effect=hook)
        parent.add_entry(obj)
        if isinstance(contents, bytes):
            obj.set_initial_contents(contents)
        return obj

    def chardev(self, parent: FakeDirectory, name: str, mode: int = 0o600) -> FakeFile:
        """Create a character-device node ``name`` in ``parent`` (reads empty)."""
        obj = FakeFile(name, S_IFCHR | mode, "", filesystem=self.fs)
        parent.add_entry(obj)
        return obj

    def link(self, parent: FakeDirectory, name: str, target: str) -> FakeFile:
        """Create symlink ``name`` in ``parent`` pointing at ``target`` (kept verbatim)."""
        obj = FakeFile(name, S_IFLNK | 0o777, target, filesystem=self.fs)
        parent.add_entry(obj)
        return obj

    @staticmethod
    def remove(parent: FakeDirectory, name: str) -> None:
        """Remove entry ``name`` (a whole tree for a directory) if it exists."""
        if name in parent.entries:
            parent.remove_entry(name)
