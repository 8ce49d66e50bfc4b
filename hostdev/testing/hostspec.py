"""The description of a fake host: what a fixture file (TOML) holds.

A fixture lists drivers and devices; the fake kernel builds the sysfs tree from
it the way Linux lays it out. Ids are integers (TOML accepts ``0x8086``).
Devices are listed parents first; a device's ``parent`` is the bridge above it
(absent: on a root bus ``pciDDDD:BB``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from hostdev.address import PciAddress

#: Reset methods the kernel knows, in its default priority order.
RESET_METHODS = ("device_specific", "acpi", "flr", "af_flr", "pm", "bus", "cxl_bus")


class DriverSpec(BaseModel):
    """A PCI driver the fake host has loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    #: (vendor, device) pairs of the driver's static id table.
    ids: list[tuple[int, int]] = Field(default_factory=list)
    #: The driver implements ``sriov_configure`` (PF drivers such as i40e, nvme).
    sriov: bool = False


class ModuleSpec(BaseModel):
    """A driver module installed on disk but not loaded: ``modprobe`` loads it.

    Its ``aliases`` (``vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i*`` and the like)
    go to the kernel's ``modules.alias``, as depmod writes them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    #: The PCI driver it registers (default: the module name).
    driver: str | None = None
    ids: list[tuple[int, int]] = Field(default_factory=list)
    sriov: bool = False
    #: Alias patterns (without the module name) listed in ``modules.alias``.
    aliases: list[str] = Field(default_factory=list)
    #: The driver registers with vfio whatever its name (None: decided by the name).
    vfio: bool | None = None


class VpdSpec(BaseModel):
    """Vital Product Data of a device (its ``vpd`` attribute)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Identifier string (product name).
    name: str | None = None
    #: VPD-R keywords (``PN``, ``SN``, ``EC``, ``V0``...); a checksum ``RV`` is added.
    read_only: dict[str, str] = Field(default_factory=dict)
    read_write: dict[str, str] = Field(default_factory=dict)
    #: Raw bytes in hex instead of the fields above (for malformed VPD).
    raw_hex: str | None = None

    def encode(self) -> bytes:
        """The bytes the ``vpd`` attribute reads."""
        from hostdev.linux.vpd import build_vpd

        if self.raw_hex is not None:
            return bytes.fromhex(self.raw_hex)
        return build_vpd(self.name, self.read_only, self.read_write or None)


class SriovSpec(BaseModel):
    """SR-IOV capability of a physical function."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    totalvfs: int = Field(ge=1, le=65535)
    vf_device: int = Field(ge=0, le=0xFFFF)
    offset: int = Field(default=1, ge=1)
    stride: int = Field(default=1, ge=1)
    #: VFs enabled when the host is built (needs a PF driver with ``sriov``).
    numvfs: int = Field(default=0, ge=0)
    drivers_autoprobe: bool = True


class DiskSpec(BaseModel):
    """A disk the device's driver makes (``FakeKernel.add_block``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    partitions: int = Field(default=0, ge=0)
    #: Path inside the function (default ``nvme/nvmeX`` for ``nvmeXnY``, else ``block``).
    under: str | None = None


class MountTagSpec(BaseModel):
    """A virtio 9p or virtiofs mount tag the function carries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tag: str
    fs: str = "9p"


class DeviceSpec(BaseModel):
    """One PCI function: what a fixture lists, what ``FakeKernel.add_device`` takes
    (as keywords), and the facts the fake kernel keeps for a present device."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: PciAddress
    vendor: int = Field(ge=0, le=0xFFFF)
    device: int = Field(ge=0, le=0xFFFF)
    class_code: int = Field(ge=0, le=0xFFFFFF)
    subsystem_vendor: int = Field(default=0, ge=0, le=0xFFFF)
    subsystem_device: int = Field(default=0, ge=0, le=0xFFFF)
    revision: int = Field(default=0, ge=0, le=0xFF)
    #: None: no IOMMU (no ``iommu_group`` link).
    iommu_group: int | None = None
    #: None: autoprobed against the drivers' id tables at build time.
    driver: str | None = None
    numa_node: int = -1
    parent: PciAddress | None = None
    reset_methods: list[str] = Field(default_factory=lambda: ["flr", "bus"])
    sriov: SriovSpec | None = None
    vpd: VpdSpec | None = None
    #: Human note shown nowhere by the kernel (e.g. "GPU audio function").
    label: str = ""
    #: Children its driver makes: disks, network interfaces, virtio mount tags.
    disks: list[DiskSpec] = Field(default_factory=list)
    netdevs: list[str] = Field(default_factory=list)
    mount_tags: list[MountTagSpec] = Field(default_factory=list)

    @property
    def is_bridge(self) -> bool:
        """Header type 1 (PCI-to-PCI bridge) or 2 (CardBus)."""
        return (self.class_code >> 8) in (0x0604, 0x0607)


class StackedSpec(BaseModel):
    """A device-mapper (``dm-N``) or md (``mdN``) device over other block devices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    over: list[str]
    dm_name: str | None = None


class InterfaceSpec(BaseModel):
    """Link state, addresses and routes of a network interface."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    up: bool = True
    #: ``ADDRESS/PLEN`` (IPv4 or IPv6).
    addresses: list[str] = Field(default_factory=list)
    #: ``DEST`` or ``DEST via GATEWAY`` (``default`` for 0.0.0.0/0).
    routes: list[str] = Field(default_factory=list)


class MountSpec(BaseModel):
    """A mount: a block device name, ``MAJ:MIN``, or a mount tag / pseudo source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    target: str
    fstype: str = "ext4"


class HostSpec(BaseModel):
    """A whole fake host."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    #: False: booted without an IOMMU (no IOMMU groups; ``iommu_group`` of devices ignored).
    iommu: bool = True
    drivers: list[DriverSpec] = Field(default_factory=list)
    #: Modules on disk that are not loaded at boot (``modprobe`` loads them).
    modules: list[ModuleSpec] = Field(default_factory=list)
    devices: list[DeviceSpec] = Field(default_factory=list)
    #: How the host uses what the devices carry (applied after every device and VF).
    stacked: list[StackedSpec] = Field(default_factory=list)
    interfaces: list[InterfaceSpec] = Field(default_factory=list)
    mounts: list[MountSpec] = Field(default_factory=list)
    swaps: list[str] = Field(default_factory=list)
