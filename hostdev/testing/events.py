"""What the fake kernel reports to tests: its exceptions and its records.

Kernel refusals reach the writer as plain ``OSError`` with the kernel's errno,
exactly as on a real host. The exceptions here are different: they signal
things a real kernel cannot report through ``write()`` (a write that would hang,
a simulated power cut, a broken test setup), so library code must not be able
to mistake them for an ordinary refusal.
"""

from __future__ import annotations

import os
from typing import NamedTuple


def kerr(code: int) -> OSError:
    """The ``OSError`` a failing sysfs write raises: errno set, no file name."""
    return OSError(code, os.strerror(code))


class FakeKernelSetupError(RuntimeError):
    """A test asked the fake kernel for something that cannot be built.

    Examples: a device address used twice, a parent that does not exist,
    ``hold_vfio`` on a device that is not bound to a vfio driver.
    """


class VfioWouldBlock(Exception):
    """A write that blocks forever on a real kernel because a VFIO user holds a device.

    Raised instead of hanging: unbinding a held device from its vfio driver,
    ``remove`` of it (or of a bridge above it), ``sriov_numvfs=0`` on its PF,
    unbinding a PF whose VF is held. Nothing was changed. Deliberately not an
    ``OSError``: the real write never fails, it just does not return.
    """

    def __init__(self, operation: str, path: str, addresses: list[str], pids: list[int]) -> None:
        self.operation = operation
        self.path = path
        self.addresses = addresses
        self.pids = pids
        self.address = addresses[0] if addresses else ""
        held = ", ".join(addresses)
        who = ", ".join(str(pid) for pid in pids)
        super().__init__(
            f"{operation} via {path} would block on a real kernel: device(s) {held} "
            f"held open by VFIO user pid(s) {who}; release the holder first"
        )


class WriteParked(Exception):
    """Internal: a write made the bounded way blocks; it waits for the holders to let go.

    Raised by the store handler instead of :class:`VfioWouldBlock` while the fake
    kernel runs a write started through the library's helper seam.
    """

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        super().__init__(f"write blocked until {', '.join(addresses)} are released")


class SimulatedCrash(BaseException):
    """Raised by ``crash_after_writes``: the process "dies" right after a write.

    A ``BaseException`` so that library code catching ``Exception`` cannot
    swallow it, like a real crash it cannot be handled on the way up.
    """

    def __init__(self, write: WriteRecord) -> None:
        self.write = write
        super().__init__(f"simulated crash after write {write.value!r} to {write.path}")


class WriteRecord(NamedTuple):
    """One write that reached the fake kernel (zero-byte writes never do).

    ``path`` is ``/sys/bus/pci/devices/<addr>/<attr>`` for device attributes and
    the file's own path otherwise; ``errno`` is None on success; ``blocked`` is
    True when the write raised :class:`VfioWouldBlock`.
    """

    path: str
    value: str
    errno: int | None
    blocked: bool = False


class WouldBlockEvent(NamedTuple):
    """A write that raised :class:`VfioWouldBlock` (kept even if the test caught it)."""

    operation: str
    path: str
    addresses: tuple[str, ...]
    pids: tuple[int, ...]
