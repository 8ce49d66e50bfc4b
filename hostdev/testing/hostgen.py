"""Generated fake hosts: many SR-IOV physical functions, for scale tests and benchmarks.

:func:`generate_host` builds a :class:`~hostdev.testing.hostspec.HostSpec` with ``pfs``
SR-IOV NICs (modelled on an Intel E810, which allows 256 VFs per function), each alone
behind its own PCIe root port:

* root port ``k`` of a PCI domain sits on that domain's bus 0 at devfn ``8 + k``
  (slot 1 onward; functions are used too, so one domain holds up to 248 root ports);
* its PF is function ``DDDD:BB:00.0`` on the root port's secondary bus ``BB``;
* VF ``i`` of that PF has routing id ``PF routing id + offset + stride * i`` (SR-IOV
  spec, docs/kernel-model.md §3.2). With 256 VFs the last VF spills over into bus ``BB + 1``,
  so each PF gets as many bus numbers as its *total* VFs need (``sriov_totalvfs``, not
  only the VFs enabled at build), and the next root port's bus starts after them;
* when a domain runs out of root-port slots or bus numbers, the next PF opens the
  next domain (``0001``, ``0002``, ...).

PFs alternate between NUMA nodes 0 and 1. Every root port and PF has its own IOMMU
group (0, 1, 2, ...); the fake kernel numbers the VFs' groups when it creates them.
Drivers: ``pcieport`` for the root ports, ``ice`` (``sriov = true``) for the PFs,
``iavf`` for the VFs, plus ``vfio-pci`` and ``pci-stub`` with empty id tables.

:func:`generate_host_of_size` picks the PF and VF counts so that the host has an exact
number of PCI functions.
"""

from __future__ import annotations

from math import isqrt

from hostdev.address import PciAddress
from hostdev.testing.hostspec import DeviceSpec, DriverSpec, HostSpec, SriovSpec

__all__ = [
    "MAX_BUS",
    "MAX_VFS_PER_PF",
    "PF_DEVICE",
    "ROOT_PORT_DEVICE",
    "VENDOR",
    "VF_DEVICE",
    "VF_OFFSET",
    "VF_STRIDE",
    "functions_of",
    "generate_host",
    "generate_host_of_size",
    "pf_bus_span",
]

#: Intel.
VENDOR = 0x8086
#: Intel Ethernet Controller E810-C for QSFP (driver ``ice``).
PF_DEVICE = 0x1592
#: Intel Ethernet Adaptive Virtual Function (driver ``iavf``).
VF_DEVICE = 0x1889
#: A Xeon PCIe root port (driver ``pcieport``).
ROOT_PORT_DEVICE = 0x347A
#: SR-IOV "First VF Offset" and "VF Stride" of every generated PF.
VF_OFFSET = 1
VF_STRIDE = 1
#: Most VFs one generated PF may have (what E810 firmware allows per device).
MAX_VFS_PER_PF = 256
#: Highest bus number of a PCI domain.
MAX_BUS = 0xFF

_ETHERNET_CLASS = 0x020000
_PCI_BRIDGE_CLASS = 0x060400
#: devfn of the first root port on bus 0 (slot 0 is left for a host bridge).
_FIRST_PORT_DEVFN = 8
_LAST_DEVFN = 0xFF
_PF_SUBSYSTEM = (0x8086, 0x0002)
_ROOT_PORT_SUBSYSTEM = (0x8086, 0x0000)


def pf_bus_span(totalvfs: int, offset: int = VF_OFFSET, stride: int = VF_STRIDE) -> int:
    """Return how many bus numbers a PF at ``BB:00.0`` and its ``totalvfs`` VFs occupy.

    The last VF's routing id is ``BB << 8 | (offset + stride * (totalvfs - 1))``, whose
    bus is ``BB + ((offset + stride * (totalvfs - 1)) >> 8)``.
    """
    if totalvfs <= 0:
        return 1
    return ((offset + stride * (totalvfs - 1)) >> 8) + 1


def functions_of(pfs: int, numvfs: int) -> int:
    """Return the PCI functions of a generated host: ``pfs`` root ports, PFs, and VFs."""
    return 2 * pfs + pfs * numvfs


def _check_count(name: str, value: int, top: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
    if top is not None and value > top:
        raise ValueError(f"{name} must be at most {top}, not {value}")


def _build(name: str, description: str, vfs: list[tuple[int, int]]) -> HostSpec:
    """Build the host; ``vfs`` holds (totalvfs, numvfs) for each PF, in order."""
    devices: list[DeviceSpec] = []
    domain = 0
    next_bus = 1
    next_port_devfn = _FIRST_PORT_DEVFN
    group = 0
    for index, (totalvfs, numvfs) in enumerate(vfs):
        span = pf_bus_span(totalvfs)
        if next_bus + span - 1 > MAX_BUS or next_port_devfn > _LAST_DEVFN:
            domain += 1
            next_bus = 1
            next_port_devfn = _FIRST_PORT_DEVFN
        if domain > 0xFFFF:  # pragma: no cover - needs about 16 million PFs
            raise ValueError("too many PFs: the generated host ran out of PCI domains")
        node = index % 2
        port = PciAddress(domain, 0, next_port_devfn >> 3, next_port_devfn & 7)
        pf = PciAddress(domain, next_bus, 0, 0)
        devices.append(
            DeviceSpec(
                address=port,
                vendor=VENDOR,
                device=ROOT_PORT_DEVICE,
                class_code=_PCI_BRIDGE_CLASS,
                subsystem_vendor=_ROOT_PORT_SUBSYSTEM[0],
                subsystem_device=_ROOT_PORT_SUBSYSTEM[1],
                revision=0x04,
                iommu_group=group,
                driver="pcieport",
                numa_node=node,
                reset_methods=["pm"],
                label=f"root port of PF {index}",
            )
        )
        devices.append(
            DeviceSpec(
                address=pf,
                vendor=VENDOR,
                device=PF_DEVICE,
                class_code=_ETHERNET_CLASS,
                subsystem_vendor=_PF_SUBSYSTEM[0],
                subsystem_device=_PF_SUBSYSTEM[1],
                revision=0x02,
                iommu_group=group + 1,
                driver="ice",
                numa_node=node,
                parent=port,
                reset_methods=["flr", "bus"],
                sriov=(
                    SriovSpec(
                        totalvfs=totalvfs,
                        vf_device=VF_DEVICE,
                        offset=VF_OFFSET,
                        stride=VF_STRIDE,
                        numvfs=numvfs,
                    )
                    if totalvfs
                    else None
                ),
                label=f"PF {index}",
            )
        )
        group += 2
        next_bus += span
        next_port_devfn += 1
    drivers = [
        DriverSpec(name="pcieport", ids=[(VENDOR, ROOT_PORT_DEVICE)]),
        DriverSpec(name="ice", ids=[(VENDOR, PF_DEVICE)], sriov=True),
        DriverSpec(name="iavf", ids=[(VENDOR, VF_DEVICE)]),
        DriverSpec(name="vfio-pci"),
        DriverSpec(name="pci-stub"),
    ]
    return HostSpec(name=name, description=description, drivers=drivers, devices=devices)


def generate_host(
    pfs: int, vfs_per_pf: int, *, numvfs: int | None = None, name: str | None = None
) -> HostSpec:
    """Build a host with ``pfs`` SR-IOV PFs, each behind its own root port.

    Each PF reports ``sriov_totalvfs = vfs_per_pf`` (0: the PF has no SR-IOV
    capability) and has ``numvfs`` VFs enabled when the fake kernel builds the host
    (default: all of them). The host then has ``2 * pfs + pfs * numvfs`` PCI
    functions (see :func:`functions_of`). Raises :class:`ValueError` for negative
    counts, more than :data:`MAX_VFS_PER_PF` VFs, or ``numvfs > vfs_per_pf``.
    """
    _check_count("pfs", pfs)
    _check_count("vfs_per_pf", vfs_per_pf, MAX_VFS_PER_PF)
    enabled = vfs_per_pf if numvfs is None else numvfs
    _check_count("numvfs", enabled, vfs_per_pf)
    description = (
        f"Generated: {pfs} SR-IOV PFs (ice, {vfs_per_pf} VFs each, {enabled} enabled),"
        f" each behind its own root port; {functions_of(pfs, enabled)} PCI functions."
    )
    return _build(
        name or f"generated-{pfs}pf-{vfs_per_pf}vf",
        description,
        [(vfs_per_pf, enabled)] * pfs,
    )


def _split(functions: int) -> tuple[int, int]:
    """Return (pfs, vfs_per_pf) with ``pfs * (vfs_per_pf + 2) == functions``, or (0, 0)."""
    for pfs in range(isqrt(functions), 0, -1):
        if functions % pfs == 0 and functions // pfs - 2 <= MAX_VFS_PER_PF:
            return pfs, functions // pfs - 2
    return 0, 0


def generate_host_of_size(functions: int) -> HostSpec:
    """Build a generated host with exactly ``functions`` PCI functions (all VFs enabled).

    Formula: ``functions = pfs * (2 + vfs)`` (one root port, one PF and ``vfs`` VFs
    per PF). ``pfs`` is the largest divisor of ``functions`` not above its square root
    for which ``vfs = functions / pfs - 2`` is at most :data:`MAX_VFS_PER_PF`, so the
    host is about as wide as deep: 64 = 8 x (2 + 6), 512 = 16 x (2 + 30),
    4096 = 64 x (2 + 62). When no divisor fits (say a large prime), ``pfs`` is
    ``max(ceil(functions / 258), isqrt(functions))``, the ``functions - 2 * pfs`` VFs
    are shared out as evenly as possible, and the first PFs get one VF more.
    Raises :class:`ValueError` below 2 functions (a root port and a PF).
    """
    _check_count("functions", functions)
    if functions < 2:
        raise ValueError(f"a generated host needs at least 2 PCI functions, not {functions}")
    name = f"generated-{functions}-functions"
    pfs, vfs = _split(functions)
    if pfs:
        return generate_host(pfs, vfs, name=name)
    pfs = max(-(-functions // (MAX_VFS_PER_PF + 2)), isqrt(functions))
    # Keep at least 2 functions per PF (its root port and itself).
    pfs = min(pfs, functions // 2)
    total_vfs = functions - 2 * pfs
    base, extra = divmod(total_vfs, pfs)
    counts = [(base + 1, base + 1)] * extra + [(base, base)] * (pfs - extra)
    description = (
        f"Generated: {pfs} SR-IOV PFs (ice) with {base} or {base + 1} VFs each, all enabled,"
        f" each behind its own root port; {functions} PCI functions."
    )
    return _build(name, description, counts)
