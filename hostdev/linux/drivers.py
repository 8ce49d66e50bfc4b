"""Which drivers are stubs (park a device for a guest) and which are safe in a VFIO group."""

from __future__ import annotations

#: Drivers that hold a device for user space without driving it.
STUB_DRIVERS = frozenset({"vfio-pci", "pci-stub", "pciback", "xen-pciback"})
#: Drivers that hand a device to a user-space program outside VFIO (DPDK's uio
#: drivers): nothing in ``/proc`` tells whether a program is using it.
USER_SPACE_DRIVERS = frozenset({"uio_pci_generic", "igb_uio"})


def is_vfio_driver(name: str | None, has_vfio_dev: bool = False) -> bool:
    """A driver that registers its devices with vfio.

    A device bound to a driver is vfio-managed if it has a ``vfio-dev/`` child
    (``has_vfio_dev``), whatever the driver's name. For a name alone:
    ``vfio-pci`` (also spelt ``vfio_pci``, as modprobe does) and the variant
    drivers ``*-vfio-pci`` and ``*_vfio_pci`` (``mlx5_vfio_pci``,
    ``hisi_acc_vfio_pci``, ``pds_vfio_pci``...).
    """
    if name is None:
        return False
    return (
        has_vfio_dev
        or name in ("vfio-pci", "vfio_pci")
        or name.endswith("-vfio-pci")
        or name.endswith("_vfio_pci")
    )


def is_stub_driver(name: str | None, has_vfio_dev: bool = False) -> bool:
    """True for drivers that park a device for a guest (vfio family, pci-stub, pciback)."""
    return name in STUB_DRIVERS or is_vfio_driver(name, has_vfio_dev)


def is_group_safe(name: str | None, has_vfio_dev: bool = False) -> bool:
    """A group member on this driver does not stop VFIO from using the group.

    These are the kernel's ``driver_managed_dma`` drivers (vfio family,
    pci-stub, pcieport) and no driver at all (docs/kernel-model.md §4.2).
    """
    return name is None or name in ("pci-stub", "pcieport") or is_vfio_driver(name, has_vfio_dev)
