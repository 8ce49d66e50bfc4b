"""Helpers for the fake-kernel tests: plain os-level I/O and the small host's names.

Tests drive the fake only as a user program would: ``os.open``/``os.write`` and
reads under /sys, /dev and /proc.
"""

from __future__ import annotations

import os

import pytest

from tests import smallhost

DEVICES = "/sys/bus/pci/devices"
DRIVERS = "/sys/bus/pci/drivers"

# The small host's names (tests/smallhost.py) as text, for os-level calls.
ROOT_PORT = str(smallhost.ROOT_PORT)
PF = str(smallhost.PF)
GPU = str(smallhost.GPU)
GPU_AUDIO = str(smallhost.GPU_AUDIO)
ROOT_PORT2 = str(smallhost.ROOT_PORT2)
NIC = str(smallhost.NIC)
NOGROUP = str(smallhost.NOGROUP)
NVME = str(smallhost.NVME)
build_host = smallhost.build_host


class Sys:
    """Reads and writes the way the library (or a shell) does."""

    def write(self, path: str, data: str | bytes) -> int:
        """One write() on a fresh O_TRUNC fd; returns the byte count."""
        raw = data.encode() if isinstance(data, str) else data
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            return os.write(fd, raw)
        finally:
            os.close(fd)

    def errno(self, path: str, data: str | bytes) -> int:
        """The errno the write fails with (the test fails if it succeeds)."""
        with pytest.raises(OSError) as info:
            self.write(path, data)
        assert info.value.errno is not None
        return info.value.errno

    def read(self, path: str) -> str:
        """Whole file as text."""
        with open(path) as handle:
            return handle.read()

    def link(self, path: str) -> str:
        """Symlink target as stored."""
        return os.readlink(path)

    def ls(self, path: str) -> list[str]:
        """Sorted directory listing."""
        return sorted(os.listdir(path))

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists (no link following at the end)."""
        return os.path.lexists(path)

    def driver(self, address: str) -> str | None:
        """Name of the driver ``address`` is bound to (from the ``driver`` link)."""
        link = f"{DEVICES}/{address}/driver"
        return os.path.basename(os.readlink(link)) if os.path.lexists(link) else None

    def dev(self, address: str, attr: str = "") -> str:
        """``/sys/bus/pci/devices/<address>[/<attr>]``."""
        return f"{DEVICES}/{address}" + (f"/{attr}" if attr else "")

    def drv(self, driver: str, attr: str) -> str:
        """``/sys/bus/pci/drivers/<driver>/<attr>``."""
        return f"{DRIVERS}/{driver}/{attr}"


def vf_addresses(count: int) -> list[str]:
    """Addresses of the PF's first ``count`` VFs (offset 128, stride 2)."""
    return [str(a) for a in smallhost.vf_addresses(count)]
