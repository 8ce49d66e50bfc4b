"""Text tables for the command line, grouped like ``dpdk-devbind --status``."""

from __future__ import annotations

from hostdev.linux.device import FIELDS, PciDevice
from hostdev.linux.drivers import is_stub_driver
from hostdev.linux.pciclass import class_name

# collections.abc only for type checkers (it imports collections: a cold start cost).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    Column = tuple[str, Callable[[PciDevice], str]]
    Section = tuple[str, Callable[[PciDevice], bool]]
else:
    Column = Section = tuple  # (header, cell) and (title, test): precise for type checkers

#: The columns of ``hostdev list`` before LIST and OWNER: the facts that declare one.
BASE_COLUMNS: list[Column] = [(f.header, f.cell) for f in FIELDS
                              if f.header is not None and f.cell is not None]

SECTIONS: tuple[Section, ...] = (
    ("Devices on a VFIO or stub driver", lambda d: is_stub_driver(d.driver, d.vfio_dev)),
    ("Devices on a host driver", lambda d: d.driver is not None
     and not is_stub_driver(d.driver, d.vfio_dev)),
    ("Devices with no driver", lambda d: d.driver is None),
)


def _section(dev: PciDevice) -> int:
    """The index in :data:`SECTIONS` of the one section ``dev`` belongs to."""
    if dev.driver is None:
        return 2
    return 0 if is_stub_driver(dev.driver, dev.vfio_dev) else 1


#: Columns of free text that may be shortened to fit a terminal (never addresses,
#: ids or numbers).
SHRINKABLE = frozenset({"NAME", "CLASS", "OWNER", "NETDEV"})
#: A shortened column keeps at least this many characters.
MIN_WIDTH = 8


def table(rows: Sequence[Sequence[str]], width: int | None = None,
          shrinkable: Sequence[int] = ()) -> list[str]:
    """Left-aligned columns separated by two spaces; trailing blanks trimmed.

    ``width``: the lines must fit it; the widest of the ``shrinkable`` columns are
    shortened in turn (down to :data:`MIN_WIDTH`, their cells cut with ``~``) until
    they do, or until none can give more (the others are never cut).
    """
    if not rows:
        return []
    widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
    if width is not None and shrinkable:
        cut = _fit(widths, width, shrinkable)
        if cut:
            rows = [[_cut(cell, cut[i]) if i in cut else cell for i, cell in enumerate(row)]
                    for row in rows]
    line = "  ".join(f"{{:<{w}}}" for w in widths)  # one C-level format per row
    return [line.format(*row).rstrip() for row in rows]


def _fit(widths: list[int], width: int, shrinkable: Sequence[int]) -> dict[int, int]:
    """Shorten ``widths`` (in place) to fit ``width``; the columns cut and their width."""
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    cut: dict[int, int] = {}
    while excess > 0:
        candidates = [i for i in shrinkable if widths[i] > MIN_WIDTH]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: widths[i])
        widths[widest] -= 1
        cut[widest] = widths[widest]
        excess -= 1
    return cut


def _cut(cell: str, width: int) -> str:
    return cell if len(cell) <= width else cell[:width - 1] + "~"


def status_table(devices: Sequence[PciDevice], columns: Sequence[Column] = BASE_COLUMNS,
                 width: int | None = None) -> str:
    """The grouped listing printed by ``hostdev list``; ``width``: fit the lines to it
    (a terminal's), shortening free-text columns only (see :func:`table`)."""
    shrinkable = [i for i, (name, _) in enumerate(columns) if name in SHRINKABLE]
    out: list[str] = []
    # One classification per device (the sections do not overlap) rather than a
    # test per section: ``hostdev list`` prints thousands.
    grouped: tuple[list[PciDevice], ...] = ([], [], [])
    for d in devices:
        grouped[_section(d)].append(d)
    for (title, _), members in zip(SECTIONS, grouped, strict=True):
        out.append(title)
        out.append("=" * len(title))
        if members:
            header = [name for name, _ in columns]
            out.extend(table([header] + [[get(d) for _, get in columns] for d in members],
                             width, shrinkable))
        else:
            out.append("(none)")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def device_details(dev: PciDevice, members: Sequence[PciDevice], vfs: Sequence[PciDevice],
                   extra: Sequence[tuple[str, str]] = ()) -> str:
    """Every fact of one device for ``hostdev show`` (the facts that declare a
    line, then ``extra``), its IOMMU group ``members`` and its ``vfs``."""
    facts: list[tuple[str, str]] = []
    for field in FIELDS:
        if field.label is not None and field.show is not None:
            text = field.show(dev)
            if text is not None:
                facts.append((field.label, text))
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
