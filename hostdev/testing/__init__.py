"""A fake Linux kernel for tests: PCI sysfs, driver binding, SR-IOV and VFIO on pyfakefs.

Build a host with :class:`FakeKernel` (or the ``fake_kernel`` pytest fixture),
then drive it like a real one, with plain ``open``/``os.write`` on ``/sys``:
writes move ``driver`` links, create and delete VF directories, and fail with the
kernel's errno (docs/kernel-model.md is the contract). Tests can also inject failures
(``fail_write``, ``fail_probe``, ``crash_after_writes``, and ``watch_writes`` to act
just before the k-th write reaches the kernel), fake VFIO users
(``hold_vfio``), and give drivers disks, interfaces and mount tags that the host
uses (``add_block``, ``add_netdev``, ``add_mount_tag``, ``add_mount``, ``add_swap``...).
It sends add, remove, bind and unbind uevents for what it does (``uevents``), which
the library's watch mode hears as it would a real kernel's.

The names below are imported on first use, so importing this package (as the
pytest plugin does for every project) needs no pyfakefs; only using them does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hostdev.testing.events import (
        FakeKernelSetupError,
        SimulatedCrash,
        VfioWouldBlock,
        WouldBlockEvent,
        WriteRecord,
    )
    from hostdev.testing.faults import ProbeFault, WriteFault, WriteWatch
    from hostdev.testing.fixtures import fixture_names, hosts_dir, read_host_spec
    from hostdev.testing.hostspec import DeviceSpec, DriverSpec, HostSpec, SriovSpec
    from hostdev.testing.kernel import FakeKernel
    from hostdev.testing.vfio_users import VfioHolder
    from hostdev.testing.views import DeviceState

#: Public name -> the module that defines it.
_LAZY = {
    "FakeKernelSetupError": "hostdev.testing.events",
    "SimulatedCrash": "hostdev.testing.events",
    "VfioWouldBlock": "hostdev.testing.events",
    "WouldBlockEvent": "hostdev.testing.events",
    "WriteRecord": "hostdev.testing.events",
    "ProbeFault": "hostdev.testing.faults",
    "WriteFault": "hostdev.testing.faults",
    "WriteWatch": "hostdev.testing.faults",
    "fixture_names": "hostdev.testing.fixtures",
    "hosts_dir": "hostdev.testing.fixtures",
    "read_host_spec": "hostdev.testing.fixtures",
    "DeviceSpec": "hostdev.testing.hostspec",
    "DriverSpec": "hostdev.testing.hostspec",
    "HostSpec": "hostdev.testing.hostspec",
    "SriovSpec": "hostdev.testing.hostspec",
    "FakeKernel": "hostdev.testing.kernel",
    "VfioHolder": "hostdev.testing.vfio_users",
    "DeviceState": "hostdev.testing.views",
}

__all__ = [
    "DeviceSpec",
    "DeviceState",
    "DriverSpec",
    "FakeKernel",
    "FakeKernelSetupError",
    "HostSpec",
    "ProbeFault",
    "SimulatedCrash",
    "SriovSpec",
    "VfioHolder",
    "VfioWouldBlock",
    "WouldBlockEvent",
    "WriteFault",
    "WriteRecord",
    "WriteWatch",
    "fixture_names",
    "hosts_dir",
    "read_host_spec",
]


def __getattr__(name: str) -> object:
    """Import a public name from its module on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    """The module's names, the not yet imported public ones included."""
    return sorted(set(globals()) | set(__all__))
