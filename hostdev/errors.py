"""One exception family for everything hostdev reports.

Each error keeps the device address it concerns (when there is one) and, for
kernel refusals, the errno. Messages are one line and say what to do next.
Command-line exit codes come from ``exit_code``: 2 for bad input, 1 otherwise.
Every error pickles (a caller may hand it to another process).

The tree, with each error's exit code::

    HostdevError                  1  base of everything below
    +-- BadInput                  2  the caller's value cannot be used; nothing changed
    |   +-- InvalidAddress        2  a PCI address that does not parse (also a ValueError)
    |   +-- InvalidDriverName     2  a driver name that could leave the tree (also a ValueError)
    |   +-- NotASysfsTree         2  the root has no sys/bus/pci/devices
    |   +-- UnsafePath            2  a link under the root leads out of sys, dev or proc
    |   +-- StateCorrupt          2  the state file or journal cannot be trusted
    |       +-- StateUnusable     2  not a plain file or directory, or not the caller's
    +-- DeviceNotFound            1  not on the host, or vanished mid-operation
    +-- KernelRefused             1  a sysfs read or write failed (keeps errno and path)
    +-- UnexpectedContent         1  an attribute held what the kernel never writes
    +-- DeviceInUse               1  an owner holds the device
    +-- NotAssignable             1  a bridge, a group that is not viable, a PF with VFs
    |   +-- DeviceUsedByHost      1  it carries what the host uses (force overrides)
    |   +-- NotEnoughFreeVfs      1  allocate found fewer free VFs than asked (says why)
    +-- DeviceBusy                1  a VFIO user holds the device (names the holders)
    |   +-- WriteBlocked          1  a write of ours waits in the kernel for that user
    +-- BindFailed                1  a probe left the device on another driver
    +-- RestoreFailed             1  giving a device back left it driverless or off its stub
    +-- ModuleLoadFailed          1  modprobe could not load the stub driver
    +-- StateWriteFailed          1  the disk refused the state file or journal
    +-- StateBusy                 1  another process held the state lock too long
    +-- UeventsUnavailable        1  the kernel's uevents cannot be followed (watch mode)
"""

from __future__ import annotations

import errno as _errno
import os

# typing.TYPE_CHECKING, without importing typing at run time (cold start).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from hostdev.address import PciAddress
    from hostdev.linux.hostuse import HostUse
    from hostdev.linux.vfio import Holder


class HostdevError(Exception):
    """Base of every error raised by hostdev."""

    exit_code = 1

    def __init__(self, message: str, *, address: PciAddress | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.address = address

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        # Subclasses take keyword-only arguments, which Exception's own pickling
        # cannot pass back; rebuild from the instance's attributes instead.
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[HostdevError], message: str, state: dict[str, object]) -> HostdevError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


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

    @classmethod
    def at(cls, address: PciAddress, verb: str | None = None) -> DeviceNotFound:
        """The error for ``address`` (the one wording of "device not found");
        ``verb``: what the caller could not do to it."""
        cannot = f", cannot {verb} it" if verb else ""
        return cls(f"PCI device {address} not found: it is not (or no longer) on this"
                   f" host{cannot}; check the address with 'hostdev list'", address=address)


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
                 uses: Sequence[HostUse] = ()) -> None:
        super().__init__(message, address=address)
        #: What the host uses through the device.
        self.uses: list[HostUse] = list(uses)


class NotEnoughFreeVfs(NotAssignable):
    """:meth:`~hostdev.manager.HostdevManager.allocate` found fewer free VFs than it
    was asked for; nothing was changed."""

    def __init__(self, message: str, *, requested: int, candidates: int,
                 free: Sequence[PciAddress] = (),
                 not_free: dict[PciAddress, str] | None = None) -> None:
        super().__init__(message)
        #: How many VFs were asked for.
        self.requested = requested
        #: How many VFs matched the request's filters.
        self.candidates = candidates
        #: The candidates that were free (fewer than ``requested``).
        self.free: list[PciAddress] = list(free)
        #: Why each other candidate was not free, in a few words.
        self.not_free: dict[PciAddress, str] = dict(not_free or {})


class DeviceBusy(HostdevError):
    """A VFIO user (e.g. QEMU) still holds the device; unbinding would block."""

    def __init__(self, message: str, *, address: PciAddress | None = None,
                 holders: Sequence[Holder] = ()) -> None:
        super().__init__(message, address=address)
        #: The holding processes (or the kernel's count of a user out of view).
        self.holders: list[Holder] = list(holders)


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


class BindFailed(HostdevError):
    """A probe left the device on a different driver than the one asked for."""


class RestoreFailed(HostdevError):
    """Giving a device back left it without a driver, or off the stub it belongs on."""


class ModuleLoadFailed(HostdevError):
    """``modprobe`` could not load a module (missing, failed, or too slow)."""


class UeventsUnavailable(HostdevError):
    """The kernel's uevents cannot be followed here: pyudev or libudev is missing,
    or the netlink socket was refused (watch mode needs it)."""
