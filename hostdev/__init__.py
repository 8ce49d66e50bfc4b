"""hostdev: manage PCI host devices for VFIO passthrough through sysfs.

Everything a caller needs is importable from here: the manager, the records and
specs it takes, every report it returns and every error it raises. The package
imports lazily (``__getattr__`` below) so that a command such as ``hostdev list``
pays only for what it uses; type checkers see the real types.

The layers, from the caller down: :mod:`hostdev.cli` (the command),
:mod:`hostdev.manager`, :mod:`hostdev.ops` (one module per operation),
:mod:`hostdev.state` (records, lists, state file, journal) and
:mod:`hostdev.linux` (the only code that touches /sys, /dev and /proc), with
:mod:`hostdev.address`, :mod:`hostdev.errors` and :mod:`hostdev.reports` beside
them. :mod:`hostdev.testing` is the fake kernel.
"""

from __future__ import annotations

from hostdev.address import PciAddress, validate_driver_name
from hostdev.errors import (
    BadInput,
    BindFailed,
    DeviceBusy,
    DeviceInUse,
    DeviceNotFound,
    DeviceUsedByHost,
    HostdevError,
    InvalidAddress,
    InvalidDriverName,
    KernelRefused,
    ModuleLoadFailed,
    NotAssignable,
    NotASysfsTree,
    NotEnoughFreeVfs,
    RestoreFailed,
    StateBusy,
    StateCorrupt,
    StateUnusable,
    StateWriteFailed,
    UeventsUnavailable,
    UnexpectedContent,
    UnsafePath,
    WriteBlocked,
)

# typing.TYPE_CHECKING, without importing typing at run time (cold start).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from hostdev.linux.device import PciDevice
    from hostdev.linux.hostuse import HostUse
    from hostdev.linux.scan import list_devices, read_device
    from hostdev.linux.sysfs import Sysfs
    from hostdev.linux.vfio import Holder
    from hostdev.manager import HostdevManager
    from hostdev.reports import (
        AllocationReport,
        DriverChange,
        NodeResult,
        PersistentReport,
        PrepareReport,
        ReattachFailure,
        ReattachReport,
        ReconcileReport,
        SriovReport,
        UpdateReport,
        WatchEvent,
        WishOutcome,
    )
    from hostdev.state.records import DeviceRecord, HostdevSpec, Owner, VfNetConfig, VfNetValues
    from hostdev.state.wishes import DetachWish, DeviceIdentity, VfCountWish, Wishes

__version__ = "0.1.0"

#: Public name -> the module that defines it (imported on first use).
_LAZY = {
    "HostdevManager": "hostdev.manager",
    "Owner": "hostdev.state.records",
    "HostdevSpec": "hostdev.state.records",
    "VfNetConfig": "hostdev.state.records",
    "VfNetValues": "hostdev.state.records",
    "DeviceRecord": "hostdev.state.records",
    "AllocationReport": "hostdev.reports",
    "DriverChange": "hostdev.reports",
    "NodeResult": "hostdev.reports",
    "PersistentReport": "hostdev.reports",
    "WishOutcome": "hostdev.reports",
    "Wishes": "hostdev.state.wishes",
    "DetachWish": "hostdev.state.wishes",
    "VfCountWish": "hostdev.state.wishes",
    "DeviceIdentity": "hostdev.state.wishes",
    "PrepareReport": "hostdev.reports",
    "ReattachFailure": "hostdev.reports",
    "ReattachReport": "hostdev.reports",
    "ReconcileReport": "hostdev.reports",
    "SriovReport": "hostdev.reports",
    "UpdateReport": "hostdev.reports",
    "WatchEvent": "hostdev.reports",
    "Holder": "hostdev.linux.vfio",
    "HostUse": "hostdev.linux.hostuse",
    "PciDevice": "hostdev.linux.device",
    "list_devices": "hostdev.linux.scan",
    "read_device": "hostdev.linux.scan",
    "Sysfs": "hostdev.linux.sysfs",
}

__all__ = [
    "AllocationReport",
    "BadInput",
    "BindFailed",
    "DetachWish",
    "DeviceBusy",
    "DeviceIdentity",
    "DeviceInUse",
    "DeviceNotFound",
    "DeviceRecord",
    "DeviceUsedByHost",
    "DriverChange",
    "Holder",
    "HostUse",
    "HostdevError",
    "HostdevManager",
    "HostdevSpec",
    "InvalidAddress",
    "InvalidDriverName",
    "KernelRefused",
    "ModuleLoadFailed",
    "NodeResult",
    "NotASysfsTree",
    "NotAssignable",
    "NotEnoughFreeVfs",
    "Owner",
    "PciAddress",
    "PciDevice",
    "PersistentReport",
    "PrepareReport",
    "ReattachFailure",
    "ReattachReport",
    "ReconcileReport",
    "RestoreFailed",
    "SriovReport",
    "StateBusy",
    "StateCorrupt",
    "StateUnusable",
    "StateWriteFailed",
    "Sysfs",
    "UeventsUnavailable",
    "UnexpectedContent",
    "UnsafePath",
    "UpdateReport",
    "VfCountWish",
    "VfNetConfig",
    "VfNetValues",
    "WatchEvent",
    "WishOutcome",
    "Wishes",
    "WriteBlocked",
    "list_devices",
    "read_device",
    "validate_driver_name",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hostdev' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
