"""``hostdev list``: every function, as a table or as JSON, without pydantic.

The listing is read by :func:`hostdev.linux.scan.scan` into plain
:class:`~hostdev.linux.device.PciDevice` snapshots and printed from their field
declaration; pydantic is not imported at all unless a state file exists (its
records are models) or ``--schema`` is asked. The JSON written here is byte for
byte what ``ListOutput(...).model_dump_json(by_alias=True, indent=2)`` of
:mod:`hostdev.cli.documents` describes (the schema ``hostdev.list/1``); a test
holds the two to that. Which list holds a device (:func:`placement`) is decided
here for ``list`` and ``show`` alike.
"""

from __future__ import annotations

import sys  # os is imported where used: see fence_blocked

from hostdev.address import PciAddress
from hostdev.cli.schema_ids import LIST_SCHEMA_ID
from hostdev.cli.tables import BASE_COLUMNS, Column, status_table
from hostdev.errors import BadInput, HostdevError
from hostdev.linux.device import PciDevice, members_writer
from hostdev.linux.scan import scan
from hostdev.linux.sysfs import Sysfs
from hostdev.state.location import default_state_dir_text

# typing.TYPE_CHECKING, without importing typing at run time (cold start).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

    from hostdev.state.lists import Lists
    from hostdev.state.records import Owner

    Quote = Callable[[str], str]
    Members = Callable[[PciDevice, Quote], str]
    Keep = Callable[[PciDevice, "Placement"], bool]


#: (membership, owner) of a device: "active"/"inactive"/"host"/"unknown".
Placement = tuple[str, "Owner | None"]
_HOST: Placement = ("host", None)
_UNKNOWN: Placement = ("unknown", None)


def cmd_list(args: argparse.Namespace) -> int:
    """Print the host's functions as a grouped table or JSON."""
    if args.schema:
        import json

        from hostdev.cli.documents import ListOutput

        print(json.dumps(ListOutput.model_json_schema(by_alias=True), indent=2))
        return 0
    keep = list_filter(args)  # bad filter values: an error before anything is read
    # The table shows no reset methods: do not read them.
    sysfs = Sysfs(args.root)
    fence_blocked(sysfs, args)
    warnings: list[str] = []
    busy: list[str] = []
    # The scan makes thousands of objects that all live until the end: the cyclic
    # collector would only walk them again and again (a few percent of the scan).
    import gc

    collecting = gc.isenabled()
    gc.disable()
    try:
        devices = scan(sysfs, brief=not args.json, warnings=warnings, busy=busy)
    finally:
        if collecting:
            gc.enable()
    iommu = iommu_on(sysfs, devices)
    lists, note = peek_state(args)
    placed = place_all(devices, lists)
    if keep is not None:
        kept = [(d, p) for d, p in zip(devices, placed, strict=True) if keep(d, p)]
        devices, placed = [d for d, _ in kept], [p for _, p in kept]
    if note:
        print(f"hostdev: note: {note}", file=sys.stderr)
    for line in warnings:
        print(f"hostdev: warning: {line}", file=sys.stderr)
    for line in busy:
        print(f"hostdev: warning: left out: {line}", file=sys.stderr)
    if args.json:
        sys.stdout.write(list_json(str(args.root), note, devices, placed, iommu, warnings))
    else:
        if not iommu:
            from hostdev.linux.iommu import LIST_NOTE

            print(f"Note: {LIST_NOTE}\n")
        # Keyed by the snapshot itself (id: a C-level hash, where a PciAddress
        # hashes in Python); the snapshots outlive the table.
        where = {id(d): p for d, p in zip(devices, placed, strict=True)}
        columns: list[Column] = [
            ("LIST", lambda d: where[id(d)][0]),
            ("OWNER", lambda d: _owner_text(where[id(d)][1])),
        ]
        base = list(BASE_COLUMNS)
        if args.verbose:
            base.insert(2, ("NAME", _namer(args.root)))
        width = None
        if sys.stdout.isatty():
            import os
  # a terminal: fit it; a pipe or file: never truncate
            try:
                width = os.get_terminal_size(sys.stdout.fileno()).columns
            except (OSError, ValueError):
                width = None
        sys.stdout.write(status_table(devices, [*base, *columns], width=width))
    return 0


def _namer(root: str) -> Callable[[PciDevice], str]:
    """The NAME cell: vendor and device names from the system's pci.ids ("-" unknown)."""
    from hostdev.linux.pciids import load_pci_ids

    ids = load_pci_ids(root)
    return lambda d: ids.name(d.vendor, d.device) or "-"


def list_filter(args: argparse.Namespace) -> Keep | None:
    """The test a device must pass to be listed, from the filter options (None: no
    filter). A bad value is BadInput (exit 2), naming the option and what it takes."""
    tests: list[Keep] = []
    driver = args.driver
    if driver is not None:
        if driver == "none":
            tests.append(lambda d, p: d.driver is None)
        else:
            tests.append(lambda d, p: d.driver == driver)
    if args.id is not None:
        vendor, sep, device = str(args.id).partition(":")
        try:
            if not sep or not 1 <= len(vendor) <= 4 or not 1 <= len(device) <= 4:
                raise ValueError
            ids = (int(vendor, 16), int(device, 16))
        except ValueError:
            raise BadInput(f"--id {args.id!r} is not vendor:device ids: give VVVV:DDDD in"
                           " hex, e.g. 8086:1593") from None
        tests.append(lambda d, p: (d.vendor, d.device) == ids)
    if args.pf is not None:
        try:
            pf = PciAddress.parse(args.pf)
        except HostdevError as exc:
            raise BadInput(f"--pf: {exc}") from None
        tests.append(lambda d, p: d.address == pf or (d.vf is not None and d.vf.pf == pf))
    if args.numa is not None:
        try:
            node = int(args.numa, 10)
            if node < -1:
                raise ValueError
        except ValueError:
            raise BadInput(f"--numa {args.numa!r} is not a NUMA node: give a number >= 0"
                           " (-1: functions with no node)") from None
        tests.append(lambda d, p: (-1 if d.numa_node is None else d.numa_node) == node)
    if args.list is not None:
        if args.list not in ("active", "inactive", "host"):
            raise BadInput(f"--list {args.list!r} is not a list: give active, inactive or host")
        membership = args.list
        tests.append(lambda d, p: p[0] == membership)
    kind = getattr(args, "class")
    if kind is not None:
        from hostdev.linux.pciclass import CLASS_KINDS

        base = CLASS_KINDS.get(str(kind).lower())
        if base is None:
            raise BadInput(f"--class {kind!r} is not a kind of PCI function: give one of"
                           f" {', '.join(CLASS_KINDS)}")
        tests.append(lambda d, p: d.class_code >> 16 == base)
    if not tests:
        return None
    return lambda d, p: all(test(d, p) for test in tests)


def iommu_on(sysfs: Sysfs, devices: Sequence[PciDevice]) -> bool:
    """False when the host has PCI devices but no IOMMU group at all (IOMMU off)."""
    if not devices or any(d.iommu_group is not None for d in devices):
        return True
    from hostdev.linux.iommu import iommu_enabled

    return iommu_enabled(sysfs)


def fence_blocked(sysfs: Sysfs, args: argparse.Namespace) -> None:
    """Fence the devices a write of ours is still blocked on in the kernel.

    Reading such a device's ``uevent`` or ``driver_override`` would wait until the
    VFIO user lets go; the journal of the state directory names them (read here
    without a lock and without pydantic; anything unreadable is ignored).
    """
    # Imported here, not at the top: :mod:`hostdev.cli.inventory` reaches this module
    # as an attribute of hostdev.cli, so a module-level os first bound under a test's
    # fake file system (pyfakefs) would outlive that test.
    import os

    directory = _state_dir(args)
    if directory is None:
        from hostdev.state.store import default_state_dir

        try:
            directory = str(default_state_dir(args.root))
        except HostdevError:
            return
    try:
        path = os.path.join(directory, "intent.json")
        if not os.path.exists(path):
            return
        import json
        import stat

        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return
            doc = json.loads(os.read(fd, 1 << 20))
        finally:
            os.close(fd)
        from hostdev.linux.binding import WRITE_DONE, pending_write

        for entry in doc.get("pending", []):
            pid, start, pidns = int(entry["pid"]), entry.get("start"), entry.get("pidns")
            devices = [PciAddress.parse(a) for a in entry["devices"]]
            if pending_write(sysfs, pid, start if isinstance(start, int) else None,
                             pidns if isinstance(pidns, str) else None, devices) != WRITE_DONE:
                sysfs.fence(devices,
                            f"a write of ours ({str(entry['value']).strip()!r} to"
                            f" {entry['path']}) is still blocked in the kernel (helper pid"
                            f" {pid}) until the VFIO user releases it")
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError,
            HostdevError):
        return


def peek_state(args: argparse.Namespace) -> tuple[Lists | None, str | None]:
    """The lists if they can be read without writing anything, else a note why not."""
    import os

    known = _state_dir(args)
    if known is not None and not os.path.lexists(known):
        return _NO_LISTS, None  # nothing recorded yet: every device is the host's
    from hostdev.state.store import StateStore, default_state_dir

    try:
        directory = args.state_dir or default_state_dir(args.root)
        return StateStore(directory).peek(), None
    except HostdevError as exc:
        return None, f"lists not shown: {exc}"
    except OSError as exc:
        return None, f"lists not shown: cannot read the state: {exc.strerror}"


def _state_dir(args: argparse.Namespace) -> str | None:
    """The state directory as text, when it can be told without the state store."""
    if args.state_dir is not None:
        return str(args.state_dir)
    return default_state_dir_text(args.root)


class _NoLists:
    """Empty lists, for a host without a state directory (without importing them)."""

    def __init__(self) -> None:
        self.active: dict[PciAddress, object] = {}
        self.inactive: frozenset[PciAddress] = frozenset()


_NO_LISTS: Lists = _NoLists()  # type: ignore[assignment]


def placement(address: PciAddress, lists: Lists | None) -> Placement:
    """Which list holds ``address`` ("host": none), and the owner of an active one."""
    if lists is None:
        return _UNKNOWN
    record = lists.active.get(address)
    if record is not None:
        return ("active", record.owner)
    if address in lists.inactive:
        return ("inactive", None)
    return _HOST


def place_all(devices: Sequence[PciDevice], lists: Lists | None) -> list[Placement]:
    """:func:`placement` of each device (without a lookup per device when no list
    holds anything: the usual host)."""
    if lists is None:
        return [_UNKNOWN] * len(devices)
    if not lists.active and not lists.inactive:
        return [_HOST] * len(devices)
    return [placement(d.address, lists) for d in devices]


def _owner_text(owner: Owner | None) -> str:
    return "-" if owner is None else f"{owner.driver}/{owner.domain}"


# ---------------------------------------------------------------- JSON, by hand
# Two-space indentation as pydantic (serde_json) pretty-prints it; strings are
# escaped by the json module's C encoder (``quote``), which escapes what
# serde_json does. json is imported only here: the table does not need it.

def _str(value: str | None, quote: Quote) -> str:
    return "null" if value is None else quote(value)


def _strings(values: Sequence[str], indent: str, quote: Quote) -> str:
    if not values:
        return "[]"
    inner = ",\n".join(f"{indent}  {quote(v)}" for v in values)
    return f"[\n{inner}\n{indent}]"


def _device(dev: PciDevice, place: Placement, quote: Quote, members: Members) -> str:
    i = "      "
    owner = place[1]
    if owner is None:
        owner_text = "null"
    else:
        owner_text = (f'{{\n{i}  "driver": {quote(owner.driver)},\n'
                      f'{i}  "domain": {quote(owner.domain)}\n{i}}}')
    return (f'    {{\n{members(dev, quote)},\n{i}"list": "{place[0]}",\n'
            f'{i}"owner": {owner_text}\n    }}')


def list_json(root: str, note: str | None, devices: Sequence[PciDevice],
              placed: Sequence[Placement], iommu_enabled: bool = True,
              warnings: Sequence[str] = ()) -> str:
    """What ``hostdev list --json`` prints (schema ``hostdev.list/1``), newline included."""
    try:  # the json package's own C encoder, without importing the package (and re)
        from _json import encode_basestring as quote
    except ImportError:  # pragma: no cover - an interpreter without the C module
        from json.encoder import encode_basestring as quote

    members = members_writer("      ")
    body = ",\n".join(_device(d, p, quote, members)
                      for d, p in zip(devices, placed, strict=True))
    listing = f"[\n{body}\n  ]" if devices else "[]"
    return (f'{{\n  "schema": "{LIST_SCHEMA_ID}",\n  "root": {_str(root, quote)},\n'
            f'  "state_note": {_str(note, quote)},\n'
            f'  "iommu_enabled": {"true" if iommu_enabled else "false"},\n'
            f'  "warnings": {_strings(warnings, "  ", quote)},\n'
            f'  "devices": {listing}\n}}\n')
