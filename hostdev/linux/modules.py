"""Kernel modules: loading a missing stub driver, and choosing the vfio variant driver.

Loading: as libvirt and driverctl do, a stub driver that is not registered is
loaded with ``modprobe`` before hostdev gives up (only on the real root: under
another ``root`` the modules of this machine have nothing to do with the tree).
``modprobe`` runs with a time limit, and any failure is one line.

Choosing (``stub_driver="auto"``): the kernel's ``modules.alias`` lists, for
each vfio variant driver (``mlx5_vfio_pci``, ``hisi_acc_vfio_pci``...), the
devices it drives as ``alias vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i* mlx5_vfio_pci``.
A device's ``modalias`` with its ``pci:`` prefix replaced by ``vfio_pci:`` is
matched against them (shell patterns); the most specific match wins, and a
device no variant claims gets plain vfio-pci. That is libvirt's choice since
10.0.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable

from hostdev.address import PciAddress, validate_driver_name
from hostdev.errors import ModuleLoadFailed
from hostdev.linux.sysfs import Sysfs

#: The ``stub_driver`` value that asks for the best vfio driver of each device.
AUTO = "auto"
#: The generic vfio driver (what ``auto`` falls back to).
VFIO_PCI = "vfio-pci"
#: Seconds a ``modprobe`` may take before hostdev gives up on it.
MODPROBE_TIMEOUT = 30.0
#: ``modules.alias`` is about 1.5 MB on a distribution kernel; refuse anything far bigger.
ALIAS_FILE_MAX = 16 << 20
_ALIAS_PREFIX = "alias vfio_pci:"
#: Where modprobe usually lives, searched after PATH (sudo and cron trim PATH).
_SBIN = "/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin"

#: Loads the kernel module of a driver (raises ModuleLoadFailed).
ModuleLoader = Callable[[str], None]


def modprobe(module: str, timeout: float = MODPROBE_TIMEOUT,
             command: str | None = None) -> None:
    """Run ``modprobe -- <module>`` with a time limit; ModuleLoadFailed if it fails.

    ``command`` is the modprobe binary (None: looked up in PATH and the sbin
    directories). The child is killed at the deadline, and hostdev does not
    wait for it more than a second after that (a module stuck loading in the
    kernel cannot be killed; it must not hang the caller).
    """
    name = validate_driver_name(module)
    exe = command or shutil.which("modprobe", path=f"{os.environ.get('PATH', '')}:{_SBIN}")
    if exe is None:
        raise ModuleLoadFailed(
            f"cannot load module {name}: modprobe not found (install kmod),"
            f" or load it yourself with 'modprobe {name}'"
        )
    try:
        child = subprocess.Popen([exe, "--", name], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError as exc:
        raise ModuleLoadFailed(f"cannot load module {name}: cannot run {exe}: {exc.strerror}"
                               ) from None
    try:
        _, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        # A module stuck loading in the kernel cannot be killed: leave it, do not hang.
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.communicate(timeout=1.0)
        raise ModuleLoadFailed(
            f"cannot load module {name}: modprobe did not finish within {timeout:g} s"
            " (killed); check dmesg"
        ) from None
    if child.returncode != 0:
        lines = [line.strip() for line in err.decode("utf-8", "replace").splitlines()
                 if line.strip()]
        detail = lines[-1] if lines else f"exit status {child.returncode}"
        if len(detail) > 200:
            detail = detail[:200] + "..."
        raise ModuleLoadFailed(f"cannot load module {name}: modprobe failed: {detail}")


def modalias_of(sysfs: Sysfs, address: PciAddress) -> str | None:
    """The device's ``modalias`` (``pci:v...d...sv...sd...bc..sc..i..``), None if absent."""
    text = sysfs.read_optional(sysfs.device_path(address, "modalias"), address)
    return text.strip() if text else None


def alias_file(sysfs: Sysfs) -> str:
    """``lib/modules/<release>/modules.alias`` under the root, for the running kernel.

    The release comes from ``proc/sys/kernel/osrelease`` under the root (what
    ``uname -r`` prints), else from this process's kernel.
    """
    release = sysfs.read_optional(f"{sysfs.proc}/sys/kernel/osrelease")
    release = (release or "").strip() or os.uname().release
    if "/" in release or release in (".", ".."):
        release = os.uname().release
    base = os.fspath(sysfs.root).rstrip("/")
    return f"{base}/lib/modules/{release}/modules.alias"


def vfio_aliases(path: str) -> list[tuple[str, str]]:
    """The ``(pattern, module)`` pairs of the ``alias vfio_pci:...`` lines of ``path``.

    An absent or unreadable file gives none (hostdev then falls back to
    vfio-pci); a file that is not a regular file or is too big is ignored too.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return []
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > ALIAS_FILE_MAX:
            return []
        chunks = []
        while data := os.read(fd, 1 << 20):
            chunks.append(data)
    except OSError:
        return []
    finally:
        os.close(fd)
    out = []
    for line in b"".join(chunks).decode("utf-8", "replace").splitlines():
        if line.startswith(_ALIAS_PREFIX):
            parts = line.split()
            if len(parts) == 3:
                out.append((parts[1], parts[2]))
    return out


def best_variant(modalias: str, aliases: list[tuple[str, str]]) -> str | None:
    """The module whose ``vfio_pci:`` alias matches ``modalias`` most specifically.

    Most specific: fewest wildcards (a variant driver's ``v...d...`` pattern beats
    vfio-pci's own catch-all ``v*d*sv*sd*bc*sc*i*``); ties go to the first line.
    """
    if not modalias.startswith("pci:"):
        return None
    target = "vfio_pci:" + modalias[len("pci:"):]
    best: tuple[int, str] | None = None
    for pattern, module in aliases:
        if fnmatch.fnmatchcase(target, pattern):
            score = pattern.count("*") + pattern.count("?")
            if best is None or score < best[0]:
                best = (score, module)
    return None if best is None else best[1]


def choose_stub(sysfs: Sysfs, address: PciAddress) -> str:
    """The vfio driver for ``address``: a matching variant driver, else vfio-pci."""
    modalias = modalias_of(sysfs, address)
    if modalias is None:
        return VFIO_PCI
    module = best_variant(modalias, root_aliases(sysfs))
    if module is None or module.replace("-", "_") == "vfio_pci":
        return VFIO_PCI
    try:
        return validate_driver_name(module)
    except ValueError:
        return VFIO_PCI


def root_aliases(sysfs: Sysfs) -> list[tuple[str, str]]:
    """The ``vfio_pci:`` aliases of :func:`alias_file`, if it stays inside the root.

    A ``lib/modules`` tree (or ``modules.alias``) linked out of ``--root`` is not
    read: it is treated as absent, with a warning naming the link.
    """
    path = alias_file(sysfs)
    base = os.path.realpath(os.fspath(sysfs.root))
    real = os.path.realpath(path)
    if base != "/" and not real.startswith(base.rstrip("/") + "/"):
        import logging

        logging.getLogger("hostdev").warning(
            "%s leads outside --root %s (to %s); not read: vfio-pci is used",
            _link_out(os.fspath(sysfs.root), path, base), sysfs.root, real)
        return []
    return _cached_aliases(path)


def _link_out(root: str, path: str, base: str) -> str:
    """The first component of ``path`` (under ``root``) whose resolution leaves ``base``."""
    top = root.rstrip("/")
    parts = path[len(top):].strip("/").split("/")
    for i in range(1, len(parts) + 1):
        part = "/".join([top, *parts[:i]])
        real = os.path.realpath(part)
        if real != base and not real.startswith(base.rstrip("/") + "/"):
            return part
    return path


_CACHE: dict[str, tuple[tuple[int, int, float], list[tuple[str, str]]]] = {}


def _cached_aliases(path: str) -> list[tuple[str, str]]:
    """:func:`vfio_aliases`, parsed again only when the file changed (a batch reads it once)."""
    try:
        info = os.stat(path)
    except OSError:
        return []
    key = (info.st_ino, info.st_size, info.st_mtime)
    cached = _CACHE.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    aliases = vfio_aliases(path)
    _CACHE[path] = (key, aliases)
    return aliases


def is_real_root(sysfs: Sysfs) -> bool:
    """The tree is this machine's own (``/``): only then may hostdev load modules."""
    return os.path.realpath(sysfs.root) == "/"


def wait_for_driver(sysfs: Sysfs, driver: str, timeout: float = 2.0) -> bool:
    """After a load: the driver's directory appears (modprobe returns once it does)."""
    deadline = time.monotonic() + timeout
    path = sysfs.driver_dir(driver)
    while True:
        if sysfs.exists(path):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
