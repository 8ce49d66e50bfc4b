"""hostdev: manage PCI host devices for VFIO passthrough through sysfs.

The package imports lazily so that a command such as ``hostdev list`` pays
only for what it uses.
"""

from __future__ import annotations

from hostdev.address import PciAddress, validate_driver_name
from hostdev.errors import (
    BadInput,
    DeviceBusy,
    DeviceInUse,
    DeviceNotFound,
    DeviceUsedByHost,
    HostdevError,
    InvalidAddress,
    InvalidDriverName,
    KernelRefused,
    NotAssignable,
    NotASysfsTree,
    StateBusy,
    StateCorrupt,
    StateUnusable,
    StateWriteFailed,
    UnsafePath,
)

# typing.TYPE_CHECKING, without importing typing at run time (cold start).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from hostdev.linux.device import PciDevice, list_devices, read_device
    from hostdev.linux.hostuse import HostUse
    from hostdev.linux.sysfs import Sysfs
    from hostdev.linux.vfio import Holder
    from hostdev.manager import HostdevManager
    from hostdev.reports import NodeResult, PrepareReport, ReattachReport, UpdateReport
    from hostdev.state.records import DeviceRecord, HostdevSpec, Owner

__version__ = "0.1.0"

_LAZY = {
    "HostdevManager": "hostdev.manager",
    "Owner": "hostdev.state.records",
    "HostdevSpec": "hostdev.state.records",
    "DeviceRecord": "hostdev.state.records",
    "ReattachReport": "hostdev.state.records",
    "PrepareReport": "hostdev.state.records",
    "UpdateReport": "hostdev.state.records",
    "NodeResult": "hostdev.ops.node",
    "Holder": "hostdev.linux.vfio",
    "HostUse": "hostdev.linux.hostuse",
    "PciDevice": "hostdev.linux.device",
    "list_devices": "hostdev.linux.device",
    "read_device": "hostdev.linux.device",
    "Sysfs": "hostdev.linux.sysfs",
}

__all__ = [
    "BadInput",
    "DeviceBusy",
    "DeviceInUse",
    "DeviceNotFound",
    "DeviceRecord",
    "DeviceUsedByHost",
    "Holder",
    "HostUse",
    "HostdevError",
    "HostdevManager",
    "HostdevSpec",
    "InvalidAddress",
    "InvalidDriverName",
    "KernelRefused",
    "NodeResult",
    "NotASysfsTree",
    "NotAssignable",
    "Owner",
    "PciAddress",
    "PciDevice",
    "PrepareReport",
    "ReattachReport",
    "StateBusy",
    "StateCorrupt",
    "StateUnusable",
    "StateWriteFailed",
    "Sysfs",
    "UnsafePath",
    "UpdateReport",
    "list_devices",
    "read_device",
    "validate_driver_name",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hostdev' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
