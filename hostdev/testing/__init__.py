"""A fake Linux kernel for tests: PCI sysfs, driver binding, SR-IOV and VFIO on pyfakefs.

Build a host with :class:`FakeKernel` (or the ``fake_kernel`` pytest fixture),
then drive it like a real one, with plain ``open``/``os.write`` on ``/sys``:
writes move ``driver`` links, create and delete VF directories, and fail with the
kernel's errno (KERNEL.md is the contract). Tests can also inject failures
(``fail_write``, ``fail_probe``, ``crash_after_writes``), fake VFIO users
(``hold_vfio``), and give drivers disks, interfaces and mount tags that the host
uses (``add_block``, ``add_netdev``, ``add_mount_tag``, ``add_mount``, ``add_swap``...).
"""

from hostdev.testing.events import (
    FakeKernelSetupError,
    SimulatedCrash,
    VfioWouldBlock,
    WouldBlockEvent,
    WriteRecord,
)
from hostdev.testing.faults import ProbeFault, WriteFault
from hostdev.testing.fixtures import fixture_names, hosts_dir, read_host_spec
from hostdev.testing.hostspec import DeviceSpec, DriverSpec, HostSpec, SriovSpec
from hostdev.testing.kernel import FakeKernel
from hostdev.testing.vfio_users import VfioHolder
from hostdev.testing.views import DeviceState

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
    "fixture_names",
    "hosts_dir",
    "read_host_spec",
]
