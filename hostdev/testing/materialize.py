"""Write a fake host as a static directory tree on the real file system.

:func:`materialize` builds the host in the fake kernel (an in-memory pyfakefs
file system, no patching of ``os``), then copies its ``/sys`` out to
``DIR/sys``: real directories, regular files with the same bytes and
permission bits, and the same relative symlinks. Every attribute is therefore
rendered by the fake kernel's own code (``hostdev.testing.registry``); this
module only adds the few read-only files that tools other than hostdev read and
the fake kernel has no use for:

* per function: ``resource`` (13 empty BAR lines), ``irq``, ``local_cpulist``,
  ``local_cpus`` (read by ``lspci``);
* ``sys/module/<name>/`` for every loaded driver, and its ``drivers/<drv>/module``
  link (``dpdk-devbind.py`` lists ``/sys/module``);
* an empty ``sys/bus/pci/slots/``;
* the marker ``sys/hostdev-materialized`` holding a random token.

The tree is static: writing ``bind`` or ``sriov_numvfs`` in it changes a file,
nothing else. Tools that only read ``/sys`` run on it inside a private mount
namespace with the tree bind-mounted over ``/sys`` (:func:`namespace_argv`);
the machine's own ``/sys`` is never touched. The marker lets the command check,
inside the namespace, that ``/sys`` really is the tree before it runs.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pyfakefs.fake_file import FakeDirectory, FakeFile
from pyfakefs.fake_filesystem import FakeFilesystem

from hostdev.testing.fixtures import read_host_spec
from hostdev.testing.hostgen import generate_host, generate_host_of_size
from hostdev.testing.hostspec import HostSpec
from hostdev.testing.kernel import FakeKernel

#: Name of the marker file at the top of a materialized ``sys``.
MARKER = "hostdev-materialized"

#: ``resource`` of a function with no BARs: 6 BARs, the ROM, 6 bridge/IOV windows.
_RESOURCE = "0x0000000000000000 0x0000000000000000 0x0000000000000000\n" * 13
#: CPUs per NUMA node in the made-up topology behind ``local_cpulist``.
_CPUS_PER_NODE = 32
_NODES = 2
_GENERATED = re.compile(r"^gen(?:erated)?:(?:(\d+)x(\d+)(?:/(\d+))?|(\d+))$")
#: Real paths a tree must never be written into.
_FORBIDDEN = ("/sys", "/proc", "/dev")


class MaterializeError(Exception):
    """The tree cannot be written where asked (the message says why)."""


@dataclass(frozen=True)
class Materialized:
    """What :func:`materialize` wrote."""

    #: The directory given; the tree is ``root / "sys"``.
    root: Path
    #: The host's name (fixture or generated).
    host: str
    #: PCI functions in the tree.
    functions: int
    #: Contents of the marker file (a new random token per tree).
    token: str
    directories: int
    files: int
    links: int

    @property
    def sys(self) -> Path:
        """The tree to bind-mount over ``/sys``."""
        return self.root / "sys"


def parse_host(text: str | os.PathLike[str]) -> HostSpec:
    """A host by name: a fixture name or TOML path, ``gen:N`` (exactly N functions),
    ``gen:PxV`` (P PFs with V VFs each, all enabled) or ``gen:PxV/E`` (E enabled)."""
    match = _GENERATED.match(os.fspath(text))
    if match is None:
        return read_host_spec(text)
    pfs, vfs, enabled, size = match.groups()
    if size is not None:
        return generate_host_of_size(int(size))
    return generate_host(int(pfs), int(vfs), numvfs=None if enabled is None else int(enabled))


def build_fake(spec: HostSpec) -> tuple[FakeFilesystem, FakeKernel]:
    """The host built by the fake kernel in a private in-memory file system."""
    fs = FakeFilesystem()
    kernel = FakeKernel(fs)
    kernel.load_spec(spec)
    return fs, kernel


def _check_destination(root: Path) -> Path:
    resolved = root.resolve()
    if resolved == Path("/"):
        raise MaterializeError("refusing to write a tree into / (its sys would be /sys)")
    for forbidden in _FORBIDDEN:
        if resolved == Path(forbidden) or resolved.is_relative_to(forbidden):
            raise MaterializeError(f"refusing to write a tree under {forbidden}")
    if resolved.is_file():
        raise MaterializeError(f"{root} is a file")
    return resolved


def _clear_old(target: Path) -> None:
    """Remove an earlier tree at ``target``; anything else there is left alone."""
    if not os.path.lexists(target):
        return
    if target.is_symlink() or not (target / MARKER).is_file():
        raise MaterializeError(
            f"{target} exists and is not a tree written by materialize; remove it first"
        )
    shutil.rmtree(target)


class _Writer:
    """Copies pyfakefs objects to the real file system, counting what it writes."""

    def __init__(self) -> None:
        self.directories = 0
        self.files = 0
        self.links = 0

    def directory(self, path: str, mode: int = 0o755) -> None:
        os.mkdir(path, mode)
        os.chmod(path, mode)
        self.directories += 1

    def file(self, path: str, data: bytes, mode: int = 0o444) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            if data:
                os.write(fd, data)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        self.files += 1

    def link(self, path: str, target: str) -> None:
        os.symlink(target, path)
        self.links += 1

    def copy_tree(self, directory: FakeDirectory, path: str) -> None:
        """Copy the contents of fake ``directory`` into the existing real ``path``."""
        stack: list[tuple[FakeDirectory, str]] = [(directory, path)]
        while stack:
            fake_dir, real_dir = stack.pop()
            for name, obj in fake_dir.entries.items():
                target = f"{real_dir}/{name}"
                mode = obj.st_mode
                if stat.S_ISDIR(mode):
                    assert isinstance(obj, FakeDirectory)
                    self.directory(target, stat.S_IMODE(mode))
                    stack.append((obj, target))
                elif stat.S_ISLNK(mode):
                    self.link(target, str(obj.contents))
                elif stat.S_ISREG(mode):
                    assert isinstance(obj, FakeFile)
                    self.file(target, obj.byte_contents or b"", stat.S_IMODE(mode))
                # character devices live in /dev, not under /sys


def _cpulist(node: int) -> tuple[str, str]:
    """``local_cpulist`` and ``local_cpus`` of a device on NUMA ``node`` (-1: all)."""
    if node < 0:
        first, last = 0, _CPUS_PER_NODE * _NODES - 1
    else:
        first = (node % _NODES) * _CPUS_PER_NODE
        last = first + _CPUS_PER_NODE - 1
    mask = ((1 << (last + 1)) - 1) ^ ((1 << first) - 1)
    words = [f"{(mask >> (32 * i)) & 0xFFFFFFFF:08x}" for i in range(_NODES - 1, -1, -1)]
    return f"{first}-{last}\n", ",".join(words) + "\n"


def _add_extras(writer: _Writer, kernel: FakeKernel, sys_dir: str) -> None:
    state = kernel.state
    for dev in state.devices.values():
        base = sys_dir + dev.path[len("/sys"):]
        cpulist, cpus = _cpulist(dev.numa_node)
        writer.file(f"{base}/resource", _RESOURCE.encode())
        writer.file(f"{base}/irq", b"0\n")
        writer.file(f"{base}/local_cpulist", cpulist.encode())
        writer.file(f"{base}/local_cpus", cpus.encode())
    writer.directory(f"{sys_dir}/module")
    for name in sorted(state.drivers):
        module = name.replace("-", "_")
        module_dir = f"{sys_dir}/module/{module}"
        if not os.path.isdir(module_dir):
            writer.directory(module_dir)
            writer.directory(f"{module_dir}/drivers")
        writer.link(f"{module_dir}/drivers/pci:{name}", f"../../../bus/pci/drivers/{name}")
        writer.link(f"{sys_dir}/bus/pci/drivers/{name}/module", f"../../../../module/{module}")
    slots = f"{sys_dir}/bus/pci/slots"
    if not os.path.isdir(slots):
        writer.directory(slots)


def materialize(
    host: HostSpec | str | os.PathLike[str],
    root: str | os.PathLike[str],
    *,
    replace: bool = False,
) -> Materialized:
    """Write ``host`` (a HostSpec, or a name for :func:`parse_host`) to ``root/sys``.

    ``root`` is created if missing. An existing ``root/sys`` is an error unless
    ``replace`` is true and it holds the marker of an earlier tree. Refuses any
    ``root`` whose ``sys`` would be (or be under) the real ``/sys``, ``/proc`` or
    ``/dev``. The tree is written to a temporary name and renamed into place.
    """
    spec = host if isinstance(host, HostSpec) else parse_host(host)
    destination = _check_destination(Path(root))
    target = destination / "sys"
    if os.path.lexists(target) and not replace:
        raise MaterializeError(f"{target} already exists (replace it with --force)")
    fs, kernel = build_fake(spec)
    destination.mkdir(parents=True, exist_ok=True)
    staging = destination / f".sys.{secrets.token_hex(4)}"
    writer = _Writer()
    token = secrets.token_hex(16)
    try:
        writer.directory(str(staging))
        fake_sys = fs.resolve("/sys")
        assert isinstance(fake_sys, FakeDirectory)
        writer.copy_tree(fake_sys, str(staging))
        _add_extras(writer, kernel, str(staging))
        writer.file(f"{staging}/{MARKER}", f"{token}\n".encode())
        if replace:
            _clear_old(target)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Materialized(
        root=destination, host=spec.name, functions=len(kernel.state.devices), token=token,
        directories=writer.directories - 1, files=writer.files, links=writer.links,
    )


def read_token(root: str | os.PathLike[str]) -> str:
    """The marker token of the tree at ``root/sys`` (MaterializeError if there is none)."""
    try:
        return (Path(root) / "sys" / MARKER).read_text().strip()
    except OSError as exc:
        raise MaterializeError(f"{root} holds no materialized tree ({exc.strerror})") from None


#: Run inside the new namespace by :func:`namespace_argv`: $1 tree, $2 token, then argv.
_IN_NAMESPACE = (
    'mount --bind "$1" /sys || exit 125; '
    'if [ "$(cat /sys/' + MARKER + ' 2>/dev/null)" != "$2" ]; then '
    'echo "hostdev.testing: /sys is not the materialized tree; not running" >&2; exit 125; fi; '
    'shift 2; exec "$@"'
)


def namespace_argv(root: str | os.PathLike[str], argv: Sequence[str]) -> list[str]:
    """An argv that runs ``argv`` with the tree at ``root/sys`` over ``/sys``.

    It needs root: ``unshare --mount --propagation private`` makes a private mount
    namespace, bind-mounts the tree over ``/sys`` there, checks the marker token
    and only then execs ``argv``; the mount disappears with the namespace, and
    the machine's own ``/sys`` is never written. Exit status 125: the mount or the
    check failed and ``argv`` did not run.
    """
    tree = (Path(root) / "sys").resolve()
    token = read_token(root)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _IN_NAMESPACE,
            "sh", str(tree), token, *argv]
