"""The device model: one PCI function as sysfs showed it, and the one declaration
of its facts.

A :class:`PciDevice` is a read-only snapshot taken at one moment, built with
keyword arguments by :mod:`hostdev.linux.scan` (which reads it). :data:`FIELDS`
declares each fact once: its attribute name (also its JSON key), how the JSON
documents write it, and how ``hostdev show`` and the ``hostdev list`` table render
it. The table, ``show``, both JSON documents and :meth:`PciDevice.to_dict` iterate
that declaration, so a new fact is one ``__init__`` argument and one :class:`Field`.

Plain slotted classes rather than pydantic models: ``hostdev list`` builds one per
function and must start fast, so this module imports neither pydantic nor typing
at run time. The attributes are ``Final``: type checkers refuse an assignment (a
frozen class's run-time guard would cost ``hostdev list`` about 1 µs per device);
a changed copy is made with ``replace()``. The JSON Schema of the documents is in
:mod:`hostdev.cli.documents` (a test holds it to :data:`FIELDS`).
"""

from __future__ import annotations

from hostdev.linux.pciclass import class_name

# typing.TYPE_CHECKING, without importing typing at run time (cold start).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Final, TypeVar

    from hostdev.address import PciAddress

    _T = TypeVar("_T", bound="_ReadOnly")

    #: Renders a value in JSON: (value, indentation of the enclosing member, quote).
    JsonWriter = Callable[[object, str, Callable[[str], str]], str]

#: Class codes (class << 8 | subclass) whose header is not an endpoint's.
BRIDGE_CLASSES = frozenset({0x0604, 0x0607, 0x0609})


class _ReadOnly:
    """Slotted, read-only (``Final`` attributes), compared, hashed, pickled and
    printed by its fields (:attr:`_fields`)."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self._fields)

    def __hash__(self) -> int:
        return hash(tuple(_hashable(getattr(self, n)) for n in self._fields))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._fields)
        return f"{type(self).__name__}({inner})"

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), {n: getattr(self, n) for n in self._fields}))

    def replace(self: _T, **changes: object) -> _T:
        """A copy with ``changes`` applied (keyword arguments of the constructor)."""
        unknown = set(changes) - set(self._fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        values = {n: getattr(self, n) for n in self._fields}
        values.update(changes)
        return type(self)(**values)


def _rebuild(cls: type[_ReadOnly], values: dict[str, object]) -> _ReadOnly:
    return cls(**values)


def _hashable(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


class SriovInfo(_ReadOnly):
    """SR-IOV facts of a physical function."""

    __slots__ = ("numvfs", "totalvfs", "vfs")
    _fields = ("totalvfs", "numvfs", "vfs")

    def __init__(self, *, totalvfs: int, numvfs: int, vfs: list[PciAddress]) -> None:
        self.totalvfs: Final[int] = totalvfs
        self.numvfs: Final[int] = numvfs
        #: VF addresses from ``virtfn0``, ``virtfn1``... in index order.
        self.vfs: Final[list[PciAddress]] = vfs


class VfInfo(_ReadOnly):
    """What a virtual function knows of its parent."""

    __slots__ = ("index", "pf")
    _fields = ("pf", "index")

    def __init__(self, *, pf: PciAddress, index: int | None) -> None:
        self.pf: Final[PciAddress] = pf
        #: Position in the PF's ``virtfnN`` links; None if the PF no longer lists it.
        self.index: Final[int | None] = index


class PciDevice(_ReadOnly):
    """One PCI function as sysfs showed it when read (its facts: :data:`FIELDS`)."""

    __slots__ = (
        "address", "class_code", "device", "driver", "driver_override", "iommu_group",
        "iommu_group_members", "is_bridge", "netdevs", "numa_node", "reset_methods", "sriov",
        "subsystem_device", "subsystem_vendor", "vendor", "vf", "vfio_dev",
    )

    def __init__(
        self, *, address: PciAddress, vendor: int, device: int,
        subsystem_vendor: int | None = None, subsystem_device: int | None = None,
        class_code: int, driver: str | None = None, driver_override: str | None = None,
        iommu_group: int | None = None, iommu_group_members: list[PciAddress] | None = None,
        numa_node: int | None = None, is_bridge: bool | None = None,
        sriov: SriovInfo | None = None, vf: VfInfo | None = None,
        reset_methods: list[str] | None = None, vfio_dev: bool = False,
        netdevs: list[str] | None = None,
    ) -> None:
        """``is_bridge`` None: taken from the class code; ``iommu_group_members``
        and ``netdevs`` None: an empty list."""
        self.address: Final[PciAddress] = address
        self.vendor: Final[int] = vendor
        self.device: Final[int] = device
        self.subsystem_vendor: Final[int | None] = subsystem_vendor
        self.subsystem_device: Final[int | None] = subsystem_device
        #: ``class << 16 | subclass << 8 | prog-if``.
        self.class_code: Final[int] = class_code
        self.driver: Final[str | None] = driver
        self.driver_override: Final[str | None] = driver_override
        #: Network interfaces the function carries (the names under its ``net/``), sorted.
        self.netdevs: Final[list[str]] = [] if netdevs is None else netdevs
        self.iommu_group: Final[int | None] = iommu_group
        #: Every function of the IOMMU group, this one included, sorted.
        self.iommu_group_members: Final[list[PciAddress]] = (
            [] if iommu_group_members is None else iommu_group_members)
        self.numa_node: Final[int | None] = numa_node
        self.is_bridge: Final[bool] = ((class_code >> 8) in BRIDGE_CLASSES
                                       if is_bridge is None else is_bridge)
        self.sriov: Final[SriovInfo | None] = sriov
        self.vf: Final[VfInfo | None] = vf
        #: Enabled reset methods in priority order; None when the device has no ``reset``.
        self.reset_methods: Final[list[str] | None] = reset_methods
        #: A ``vfio-dev/`` directory exists (bound to vfio-pci or a vfio variant driver).
        self.vfio_dev: Final[bool] = vfio_dev

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

    def to_dict(self, *, json: bool = False) -> dict[str, object]:
        """The facts as a dict keyed like the JSON documents (``sriov`` and ``vf``
        as dicts too); ``json``: the values as JSON writes them (ids in hex,
        addresses as strings)."""
        if not json:
            return {f.name: _plain(getattr(self, f.name)) for f in FIELDS}
        from json import loads
        from json.encoder import encode_basestring

        return {f.name: loads(f.json(getattr(self, f.name), "", encode_basestring))
                for f in FIELDS}


def _plain(value: object) -> object:
    if isinstance(value, _ReadOnly):
        return {n: getattr(value, n) for n in value._fields}
    if isinstance(value, list):
        return list(value)
    return value


def relation(dev: PciDevice) -> str:
    """``PF (4/64 VFs)``, ``VF 2 of 0000:3b:00.0``, or empty."""
    if dev.sriov is not None:
        return f"PF ({dev.sriov.numvfs}/{dev.sriov.totalvfs} VFs)"
    if dev.vf is not None:
        index = "?" if dev.vf.index is None else str(dev.vf.index)
        return f"VF {index} of {dev.vf.pf}"
    return ""


# ------------------------------------------------------------- JSON, by kind
# Two-space indentation as pydantic (serde_json) pretty-prints it, so that the
# documents read the same whichever writes them; ``quote`` is the json module's C
# string encoder (it escapes what serde_json does). Each writer gets the
# indentation of the member it is the value of.

# The writers of values that are never null are str.format methods (C code; they
# ignore the indent and quote arguments): a listing calls one per fact and device.
_address: JsonWriter = '"{0}"'.format
_hex4: JsonWriter = '"{0:04x}"'.format
_hex6: JsonWriter = '"{0:06x}"'.format


def _hex4_or_null(value: object, indent: str, quote: Callable[[str], str]) -> str:
    return "null" if value is None else f'"{value:04x}"'


def _str_or_null(value: object, indent: str, quote: Callable[[str], str]) -> str:
    return "null" if value is None else quote(str(value))


def _int_or_null(value: object, indent: str, quote: Callable[[str], str]) -> str:
    return "null" if value is None else str(value)


def _bool(value: object, indent: str, quote: Callable[[str], str]) -> str:
    return "true" if value else "false"


def _list_or_null(value: object, indent: str, quote: Callable[[str], str]) -> str:
    """A list of strings (or of addresses, written as strings); None is ``null``."""
    if value is None:
        return "null"
    assert isinstance(value, list)
    if not value:
        return "[]"
    inner = ",\n".join(f"{indent}  {quote(str(v))}" for v in value)
    return f"[\n{inner}\n{indent}]"


def _strings(value: object, indent: str, quote: Callable[[str], str]) -> str:
    """A list of strings, never null."""
    assert isinstance(value, list)
    return _list_or_null(value, indent, quote)


def _sriov_or_null(value: object, indent: str, quote: Callable[[str], str]) -> str:
    if value is None:
        return "null"
    assert isinstance(value, SriovInfo)
    i = indent + "  "
    return (f'{{\n{i}"totalvfs": {value.totalvfs},\n{i}"numvfs": {value.numvfs},'
            f'\n{i}"vfs": {_list_or_null(value.vfs, i, quote)}\n{indent}}}')


def _vf_or_null(value: object, indent: str, quote: Callable[[str], str]) -> str:
    if value is None:
        return "null"
    assert isinstance(value, VfInfo)
    i = indent + "  "
    index = _int_or_null(value.index, i, quote)
    return f'{{\n{i}"pf": "{value.pf}",\n{i}"index": {index}\n{indent}}}'


# ------------------------------------------------------- the one declaration

def _ids_or_dash(v: int | None) -> str:
    return "-" if v is None else f"{v:04x}"


def _show_sriov(dev: PciDevice) -> str | None:
    if dev.sriov is not None:
        return f"PF, {dev.sriov.numvfs} of {dev.sriov.totalvfs} VFs enabled"
    return relation(dev) if dev.vf is not None else None


class Field:
    """One fact of a :class:`PciDevice`.

    ``name`` is the attribute and the JSON key; ``json`` writes the value (see the
    writers above; :mod:`hostdev.cli.documents` gives each the matching schema
    type); ``label``/``show`` make the line of ``hostdev show`` (``show`` returns
    None: no line); ``header``/``cell`` make the column of the ``hostdev list``
    table. A fact shown together with another (``device`` with ``vendor``) has
    neither.
    """

    __slots__ = ("cell", "header", "json", "label", "name", "show")

    def __init__(self, name: str, json: JsonWriter, *, label: str | None = None,
                 show: Callable[[PciDevice], str | None] | None = None,
                 header: str | None = None,
                 cell: Callable[[PciDevice], str] | None = None) -> None:
        self.name = name
        self.json = json
        self.label = label
        self.show = show
        self.header = header
        self.cell = cell


#: Every fact of a device, in the order of the JSON documents.
FIELDS: tuple[Field, ...] = (
    Field("address", _address, label="address", show=lambda d: str(d.address),
          header="ADDRESS", cell=lambda d: str(d.address)),
    Field("vendor", _hex4, label="vendor:device", show=lambda d: d.ids,
          header="VENDOR:DEV", cell=lambda d: d.ids),
    Field("device", _hex4),
    Field("subsystem_vendor", _hex4_or_null, label="subsystem",
          show=lambda d: f"{_ids_or_dash(d.subsystem_vendor)}:"
                         f"{_ids_or_dash(d.subsystem_device)}"),
    Field("subsystem_device", _hex4_or_null),
    Field("class_code", _hex6, label="class",
          show=lambda d: f"{d.class_code:06x} ({class_name(d.class_code)})",
          header="CLASS", cell=lambda d: class_name(d.class_code)),
    Field("driver", _str_or_null, label="driver", show=lambda d: d.driver or "(none)",
          header="DRIVER", cell=lambda d: d.driver or "-"),
    Field("driver_override", _str_or_null, label="driver_override",
          show=lambda d: d.driver_override or "(none)",
          header="OVERRIDE", cell=lambda d: d.driver_override or "-"),
    Field("netdevs", _strings, label="netdev", show=lambda d: ", ".join(d.netdevs) or None,
          header="NETDEV", cell=lambda d: ",".join(d.netdevs) or "-"),
    Field("iommu_group", _int_or_null, label="iommu group",
          show=lambda d: "(no IOMMU)" if d.iommu_group is None else str(d.iommu_group),
          header="GROUP", cell=lambda d: "-" if d.iommu_group is None else str(d.iommu_group)),
    # Shown by ``hostdev show`` as a table of its own.
    Field("iommu_group_members", _list_or_null),
    Field("numa_node", _int_or_null, label="numa node",
          show=lambda d: "-" if d.numa_node is None else str(d.numa_node),
          header="NUMA",
          cell=lambda d: "-" if d.numa_node is None or d.numa_node < 0 else str(d.numa_node)),
    Field("is_bridge", _bool, label="bridge", show=lambda d: "yes" if d.is_bridge else "no"),
    Field("sriov", _sriov_or_null, label="sr-iov", show=_show_sriov,
          header="SR-IOV", cell=relation),
    Field("vf", _vf_or_null),  # shown with sriov
    Field("reset_methods", _list_or_null, label="reset methods",
          show=lambda d: "(no reset)" if d.reset_methods is None
          else " ".join(d.reset_methods) or "(all disabled)"),
    Field("vfio_dev", _bool, label="vfio-dev", show=lambda d: "yes" if d.vfio_dev else "no"),
)

PciDevice._fields = tuple(f.name for f in FIELDS)


#: The simple writers as f-string pieces (``@``: the value; ``Q``: a double quote;
#: ``quote``: the string encoder), so that the generated writer formats them without
#: a Python call. Each writes what the function does (a test compares the two).
_INLINE: dict[JsonWriter, str] = {
    _address: '"{@}"', _hex4: '"{@:04x}"', _hex6: '"{@:06x}"',
    _bool: '{"true" if @ else "false"}',
    _hex4_or_null: '{"null" if @ is None else Q + format(@, "04x") + Q}',
    _str_or_null: '{"null" if @ is None else quote(@)}',
    _int_or_null: '{"null" if @ is None else @}',
}
_members: dict[str, Callable[[PciDevice, Callable[[str], str]], str]] = {}


def json_members(dev: PciDevice, indent: str, quote: Callable[[str], str]) -> str:
    """The device's JSON object members (``"key": value`` at ``indent``), joined by
    ``,`` and newlines."""
    return members_writer(indent)(dev, quote)


def members_writer(indent: str) -> Callable[[PciDevice, Callable[[str], str]], str]:
    """:func:`json_members` at ``indent`` as one function (for a loop over devices)."""
    write = _members.get(indent)
    if write is None:
        write = _members[indent] = _compile_members(indent)
    return write


def _compile_members(indent: str) -> Callable[[PciDevice, Callable[[str], str]], str]:
    """One function writing every member of :data:`FIELDS` at ``indent``.

    Generated from the declaration (as :mod:`dataclasses` generates ``__init__``):
    a listing calls it once per device, and one f-string (the never-null values
    formatted inline, the writers bound as defaults) is cheaper than a loop over
    the fields.
    """
    names: dict[str, object] = {f"w{n}": f.json for n, f in enumerate(FIELDS)
                                if f.json not in _INLINE}
    names["i"] = indent
    names["Q"] = '"'

    def member(n: int, field: Field) -> str:
        inline = _INLINE.get(field.json)
        value = (inline.replace("@", f"dev.{field.name}") if inline is not None
                 else f"{{w{n}(dev.{field.name}, i, quote)}}")
        return f'{indent}"{field.name}": {value}'

    # Field names are identifiers and the indent is spaces: nothing to escape but
    # the newline between members (kept as the two characters of ``\\n``).
    body = ",\\n".join(member(n, f) for n, f in enumerate(FIELDS))
    defaults = ", ".join(f"{name}={name}" for name in names)
    source = f"def members(dev, quote, {defaults}):\n    return f'{body}'\n"
    space: dict[str, object] = {}
    exec(compile(source, "<hostdev.linux.device json_members>", "exec"), dict(names), space)
    return space["members"]  # type: ignore[return-value]
