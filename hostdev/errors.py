"""One exception family for everything hostdev reports.

Each error keeps the device address it concerns (when there is one) and, for
kernel refusals, the errno. Messages are one line and say what to do next.
Command-line exit codes come from ``exit_code``: 2 for bad input, 1 otherwise.
"""

from __future__ import annotations

import errno as _errno
import os
from collections.abc import Sequence

# typing.TYPE_CHECKING, without importing typing at run time (cold start).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from hostdev.address import PciAddress


class HostdevError(Exception):
    """Base of every error raised by hostdev."""

    exit_code = 1

    def __init__(self, message: str, *, address: PciAddress | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.address = address

    def __str__(self) -> str:
        return self.message


class BadInput(HostdevError):
    """The caller gave a value that cannot be used; nothing was changed."""

    exit_code = 2


class InvalidAddress(BadInput, ValueError):
    """A PCI address that does not parse or is out of range."""


class InvalidDriverName(BadInput, ValueError):
    """A driver name that could escape the sysfs tree or is not a kernel name."""


class NotASysfsTree(BadInput):
    """The configured root has no ``sys/bus/pci/devices`` directory."""


class DeviceNotFound(HostdevError):
    """The device is not on the host (absent, or vanished mid-operation)."""


class KernelRefused(HostdevError):
    """A sysfs write or read failed; keeps the errno and the path."""

    def __init__(
        self,
        message: str,
        *,
        errno: int,
        path: str,
        address: PciAddress | None = None,
    ) -> None:
        super().__init__(message, address=address)
        self.errno = errno
        self.path = path

    @property
    def errno_name(self) -> str:
        """Symbolic errno name such as ``EBUSY``."""
        return _errno.errorcode.get(self.errno, str(self.errno))

    @staticmethod
    def describe(err: int) -> str:
        """``EBUSY (Device or resource busy)`` style text for an errno."""
        return f"{_errno.errorcode.get(err, str(err))} ({os.strerror(err)})"


class UnexpectedContent(HostdevError):
    """A sysfs attribute held something the kernel never writes there."""


class DeviceInUse(HostdevError):
    """The device is assigned to an owner (or otherwise busy in the lists)."""


class NotAssignable(HostdevError):
    """The device cannot be given to a guest (bridge, IOMMU group not viable...)."""


class DeviceUsedByHost(NotAssignable):
    """The function carries something the host is using (a mounted disk, swap, a
    routed network interface, a mounted 9p/virtiofs tag); ``force`` overrides."""

    def __init__(self, message: str, *, address: PciAddress | None = None,
                 uses: Sequence[object] = ()) -> None:
        super().__init__(message, address=address)
        #: What the host uses (:class:`hostdev.linux.hostuse.HostUse`).
        self.uses = list(uses)


class DeviceBusy(HostdevError):
    """A VFIO user (e.g. QEMU) still holds the device; unbinding would block."""

    def __init__(self, message: str, *, address: PciAddress | None = None,
                 holders: Sequence[object] = ()) -> None:
        super().__init__(message, address=address)
        #: The holding processes (:class:`hostdev.linux.vfio.Holder`).
        self.holders = list(holders)


class WriteBlocked(DeviceBusy):
    """A write of ours is blocked in the kernel until a VFIO user releases the device.

    The caller got control back at the deadline; a helper process finishes the
    write (and exits) once the device is released. ``pid`` is that helper.
    """

    def __init__(self, message: str, *, address: PciAddress | None = None, pid: int,
                 path: str) -> None:
        super().__init__(message, address=address)
        self.pid = pid
        self.path = path


class StateCorrupt(BadInput):
    """The state file cannot be trusted; it is left untouched."""


class StateUnusable(StateCorrupt):
    """A state directory, file or lock that hostdev must not use as it is: not a
    plain directory or regular file, owned by another user, writable by others, or
    not readable or writable by the caller. Nothing is read from it or written to it.
    (A StateCorrupt, so callers that catch that keep working.)"""


class StateWriteFailed(HostdevError):
    """Writing the state file or the intent journal failed (disk full, quota, I/O
    error). The file was not replaced and no temporary file is left behind; keeps
    the errno."""

    def __init__(self, message: str, *, errno: int) -> None:
        super().__init__(message)
        self.errno = errno


class UnsafePath(BadInput):
    """A path under the root leads outside its ``sys``, ``dev`` or ``proc`` tree
    through a symlink; hostdev refuses to read or write through it."""


class StateBusy(HostdevError):
    """Another process holds the state lock past the timeout."""
