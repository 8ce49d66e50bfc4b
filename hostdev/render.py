"""Text tables for the command line, grouped like ``dpdk-devbind --status``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hostdev.classes import class_name
from hostdev.pci import PciDevice
from hostdev.stubs import is_stub_driver

Column = tuple[str, Callable[[PciDevice], str]]
Section = tuple[str, Callable[[PciDevice], bool]]


def relation(dev: PciDevice) -> str:
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
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def status_table(devices: Sequence[PciDevice], columns: Sequence[Column] = BASE_COLUMNS) -> str:
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
