"""Is the host's IOMMU on? VFIO cannot hand a device to a guest without one.

A kernel booted without an IOMMU (or with it disabled) creates no IOMMU groups:
``/sys/kernel/iommu_groups`` is empty or absent and no device has an
``iommu_group`` link. vfio-pci then refuses every device at bind time, with a
bare "Invalid argument"; hostdev says why, and how to fix it, before any write.
"""

from __future__ import annotations

from hostdev.address import PciAddress
from hostdev.errors import NotAssignable
from hostdev.linux.sysfs import Sysfs

#: What to do about it, in one clause (appended to the messages below).
HOW_TO_ENABLE = (
    "turn it on with intel_iommu=on (Intel) or amd_iommu=on (AMD) on the kernel command"
    " line and VT-d / AMD-Vi (IOMMU) in the firmware setup, then reboot"
)
#: The one line ``hostdev list`` prints above its table when the IOMMU is off.
LIST_NOTE = "the IOMMU is off (no IOMMU groups): devices cannot be moved to vfio-pci; " \
    + HOW_TO_ENABLE


def iommu_enabled(sysfs: Sysfs) -> bool:
    """True when the kernel has at least one IOMMU group (one directory listing)."""
    return bool(sysfs.list_dir(sysfs.iommu_groups))


def require_iommu(sysfs: Sysfs, address: PciAddress, iommu_group: int | None,
                  driver: str) -> None:
    """Refuse to move a device without an IOMMU group onto vfio ``driver``.

    The message says whether the whole host has no IOMMU (and how to turn it
    on) or only this device sits outside it.
    """
    if iommu_group is not None:
        return
    if not iommu_enabled(sysfs):
        raise NotAssignable(
            f"cannot move PCI device {address} to {driver}: the IOMMU is off on this host"
            f" (no IOMMU groups); {HOW_TO_ENABLE}",
            address=address,
        )
    raise NotAssignable(
        f"cannot move PCI device {address} to {driver}: it has no IOMMU group (it is not"
        " behind the IOMMU), so VFIO cannot isolate it; use pci-stub to keep host drivers"
        " off it instead",
        address=address,
    )
