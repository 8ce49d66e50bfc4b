"""Text tables for the command line, grouped like ``dpdk-devbind --status``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hostdev.linux.drivers import is_stub_driver
from hostdev.linux.pciclass import class_name

# typing.TYPE_CHECKING, without importing typing at run time (cold start).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    from hostdev.address import PciAddress
    from hostdev.linux.device import PciDevice

    # Structural types for mypy only (building Protocol classes at run time costs a
    # few percent of a cold ``hostdev list``).

    class _SriovView(Protocol):
        @property
        def totalvfs(self) -> int: ...
        @property
        def numvfs(self) -> int: ...

    class _VfView(Protocol):
        @property
        def pf(self) -> PciAddress: ...
        @property
        def index(self) -> int | None: ...

    class DeviceView(Protocol):
        """What the tables read of a device: a :class:`~hostdev.linux.device.PciDevice`, or the
        :class:`~hostdev.linux.scan.DeviceFacts` that ``hostdev list`` prints without
        building models."""

        @property
        def address(self) -> PciAddress: ...
        @property
        def ids(self) -> str: ...
        @property
        def class_code(self) -> int: ...
        @property
        def driver(self) -> str | None: ...
        @property
        def driver_override(self) -> str | None: ...
        @property
        def iommu_group(self) -> int | None: ...
        @property
        def numa_node(self) -> int | None: ...
        @property
        def vfio_dev(self) -> bool: ...
        @property
        def sriov(self) -> _SriovView | None: ...
        @property
        def vf(self) -> _VfView | None: ...


Column = tuple[str, Callable[["DeviceView"], str]]
Section = tuple[str, Callable[["DeviceView"], bool]]


def relation(dev: DeviceView) -> str:
    """``PF (4/64 VFs)``, ``VF 2 of 0000:3b:00.0``, or empty."""
    if dev.sriov is not None:
        return f"PF ({dev.sriov.numvfs}/{dev.sriov.totalvfs} VFs)"
    if dev.vf is not None:
        index = "?" if dev.vf.index is None else str(dev.vf.index)
        return f"VF {index} of {dev.vf.pf}"
    return ""


BASE_COLUMNS: list[Column] = [
    ("ADDRESS", lambda d: str(d.address)),
    ("VENDOR:DEV", lambda d: d.ids),
    ("CLASS", lambda d: class_name(d.class_code)),
    ("DRIVER", lambda d: d.driver or "-"),
    ("OVERRIDE", lambda d: d.driver_override or "-"),
    ("GROUP", lambda d: "-" if d.iommu_group is None else str(d.iommu_group)),
    ("NUMA", lambda d: "-" if d.numa_node is None or d.numa_node < 0 else str(d.numa_node)),
    ("SR-IOV", relation),
]

SECTIONS: tuple[Section, ...] = (
    ("Devices on a VFIO or stub driver", lambda d: is_stub_driver(d.driver, d.vfio_dev)),
    ("Devices on a host driver", lambda d: d.driver is not None
     and not is_stub_driver(d.driver, d.vfio_dev)),
    ("Devices with no driver", lambda d: d.driver is None),
)


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces; trailing blanks trimmed."""
    if not rows:
        return []
    widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)  # one C-level format per row
    return [line.format(*row).rstrip() for row in rows]


def status_table(devices: Sequence[DeviceView], columns: Sequence[Column] = BASE_COLUMNS) -> str:
    """The grouped listing printed by ``hostdev list``."""
    out: list[str] = []
    for title, belongs in SECTIONS:
        members = [d for d in devices if belongs(d)]
        out.append(title)
        out.append("=" * len(title))
        if members:
            header = [name for name, _ in columns]
            out.extend(table([header] + [[get(d) for _, get in columns] for d in members]))
        else:
            out.append("(none)")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def device_details(dev: PciDevice, members: Sequence[PciDevice], vfs: Sequence[PciDevice],
                   extra: Sequence[tuple[str, str]] = ()) -> str:
    """Every fact of one device for ``hostdev show``."""
    def ids(v: int | None) -> str:
        return "-" if v is None else f"{v:04x}"

    facts: list[tuple[str, str]] = [
        ("address", str(dev.address)),
        ("vendor:device", dev.ids),
        ("subsystem", f"{ids(dev.subsystem_vendor)}:{ids(dev.subsystem_device)}"),
        ("class", f"{dev.class_code:06x} ({class_name(dev.class_code)})"),
        ("bridge", "yes" if dev.is_bridge else "no"),
        ("driver", dev.driver or "(none)"),
        ("driver_override", dev.driver_override or "(none)"),
        ("iommu group", "(no IOMMU)" if dev.iommu_group is None else str(dev.iommu_group)),
        ("numa node", "-" if dev.numa_node is None else str(dev.numa_node)),
        ("reset methods", "(no reset)" if dev.reset_methods is None
         else " ".join(dev.reset_methods) or "(all disabled)"),
        ("vfio-dev", "yes" if dev.vfio_dev else "no"),
    ]
    if dev.sriov is not None:
        facts.append(("sr-iov", f"PF, {dev.sriov.numvfs} of {dev.sriov.totalvfs} VFs enabled"))
    if dev.vf is not None:
        facts.append(("sr-iov", relation(dev)))
    facts.extend(extra)
    width = max(len(k) for k, _ in facts)
    lines = [f"{k.ljust(width)}  {v}" for k, v in facts]
    if members:
        lines += ["", f"IOMMU group {dev.iommu_group} members:"]
        lines += ["  " + line for line in table(
            [[str(m.address), m.ids, class_name(m.class_code), m.driver or "-"] for m in members])]
    if vfs:
        lines += ["", "Virtual functions:"]
        lines += ["  " + line for line in table(
            [[f"virtfn{i}", str(v.address), v.ids, v.driver or "-", v.driver_override or "-"]
             for i, v in enumerate(vfs)])]
    return "\n".join(lines) + "\n"
