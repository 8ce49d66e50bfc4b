"""Snapshots of PCI functions as sysfs shows them, and the host-wide listing.

A :class:`PciDevice` is a frozen view taken at one moment; nothing here changes
the host. The reading is done by :mod:`hostdev.linux.scan` (one directory listing plus
one read per attribute present; a listing reads no file twice); this module
turns what it read into validated models.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from hostdev.address import PciAddress
from hostdev.errors import DeviceNotFound
from hostdev.ids import Hex16, Hex24
from hostdev.linux.scan import DeviceFacts, GroupCache, read_facts, scan, vf_index
from hostdev.linux.sysfs import Sysfs


class SriovInfo(BaseModel):
    """SR-IOV facts of a physical function."""

    model_config = ConfigDict(frozen=True)

    totalvfs: int
    numvfs: int
    #: VF addresses from ``virtfn0``, ``virtfn1``... in index order.
    vfs: list[PciAddress]


class VfInfo(BaseModel):
    """What a virtual function knows of its parent."""

    model_config = ConfigDict(frozen=True)

    pf: PciAddress
    #: Position in the PF's ``virtfnN`` links; None if the PF no longer lists it.
    index: int | None


class PciDevice(BaseModel):
    """One PCI function as sysfs showed it when read."""

    model_config = ConfigDict(frozen=True)

    address: PciAddress
    vendor: Hex16
    device: Hex16
    subsystem_vendor: Hex16 | None = None
    subsystem_device: Hex16 | None = None
    class_code: Hex24
    driver: str | None = None
    driver_override: str | None = None
    iommu_group: int | None = None
    #: Every function of the IOMMU group, this one included, sorted.
    iommu_group_members: list[PciAddress] = []
    numa_node: int | None = None
    is_bridge: bool = False
    sriov: SriovInfo | None = None
    vf: VfInfo | None = None
    #: Enabled reset methods in priority order; None when the device has no ``reset``.
    reset_methods: list[str] | None = None
    #: A ``vfio-dev/`` directory exists (bound to vfio-pci or a vfio variant driver).
    vfio_dev: bool = False

    @property
    def ids(self) -> str:
        """``vvvv:dddd`` in lower-case hex."""
        return f"{self.vendor:04x}:{self.device:04x}"

    @property
    def is_pf(self) -> bool:
        """The function has SR-IOV capability."""
        return self.sriov is not None

    @property
    def is_vf(self) -> bool:
        """The function is an SR-IOV virtual function."""
        return self.vf is not None


def _model(facts: DeviceFacts) -> PciDevice:
    sriov = facts.sriov
    vf = facts.vf
    return PciDevice(
        address=facts.address,
        vendor=facts.vendor,
        device=facts.device,
        subsystem_vendor=facts.subsystem_vendor,
        subsystem_device=facts.subsystem_device,
        class_code=facts.class_code,
        driver=facts.driver,
        driver_override=facts.driver_override,
        iommu_group=facts.iommu_group,
        iommu_group_members=facts.iommu_group_members,
        numa_node=facts.numa_node,
        is_bridge=facts.is_bridge,
        sriov=None if sriov is None else SriovInfo(
            totalvfs=sriov.totalvfs, numvfs=sriov.numvfs, vfs=sriov.vfs),
        vf=None if vf is None else VfInfo(pf=vf.pf, index=vf.index),
        reset_methods=facts.reset_methods,
        vfio_dev=facts.vfio_dev,
    )


def read_device(sysfs: Sysfs, address: PciAddress | str,
                warnings: list[str] | None = None) -> PciDevice:
    """Snapshot one function; DeviceNotFound if it is not on the host.

    ``warnings`` receives a line per link that could not be read (see
    :func:`hostdev.linux.scan.read_facts`)."""
    addr = PciAddress.parse(address)
    if not sysfs.device_exists(addr):
        raise DeviceNotFound(
            f"PCI device {addr} not found: it is not on this host;"
            " check the address with 'hostdev list'",
            address=addr,
        )
    facts = read_facts(sysfs, addr, GroupCache(sysfs), warnings=warnings)
    if facts.vf is not None:
        facts.vf.index = vf_index(sysfs, facts)
    return _model(facts)


def list_devices(sysfs: Sysfs, warnings: list[str] | None = None) -> list[PciDevice]:
    """Snapshot every function on the host, sorted by address.

    A device that vanishes while the listing runs is left out; ``warnings``
    receives a line per entry that could not be read (see :func:`hostdev.linux.scan.scan`).
    """
    return [_model(facts) for facts in scan(sysfs, warnings=warnings)]
