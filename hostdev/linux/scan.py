"""Reading PCI functions from sysfs into :class:`~hostdev.linux.device.PciDevice`
snapshots: :func:`read_device` (one function) and :func:`list_devices` (the host),
built on :func:`read_facts` and :func:`scan`. No pydantic: ``hostdev list``
prints what :func:`scan` returns.

Reading one device opens its directory once and reads each attribute relative
to it (no listing of the directory): one read of ``uevent`` (driver, class and
ids in one go), one read per other attribute. A scan takes IOMMU group members
from the devices' own links and each PF's VFs (so the VF indexes) from the
routing-id arithmetic of its ``sriov_offset`` and ``sriov_stride``, checked
against the VFs' ``physfn`` links, rather than from one ``virtfnN`` link per VF;
no file is read twice.
"""

from __future__ import annotations

from operator import attrgetter

from hostdev.address import PciAddress
from hostdev.errors import (
    DeviceBusy,
    DeviceNotFound,
    InvalidAddress,
    UnexpectedContent,
    UnsafePath,
)
from hostdev.linux.device import PciDevice, SriovInfo, VfInfo
from hostdev.linux.drivers import STUB_DRIVERS, USER_SPACE_DRIVERS
from hostdev.linux.sysfs import DeviceFiles, Sysfs

#: Sort key of addresses (a tuple, compared in C rather than by PciAddress.__lt__).
_ORDER = attrgetter("_key")
# Completes a snapshot the scan is still building (its attributes are Final for
# everyone else).
_store = object.__setattr__


class GroupCache:
    """IOMMU group members, each group directory listed once per scan."""

    def __init__(self, sysfs: Sysfs) -> None:
        self.sysfs = sysfs
        self.members: dict[int, list[PciAddress]] = {}

    def get(self, group: int) -> list[PciAddress]:
        """Sorted members of ``group``."""
        found = self.members.get(group)
        if found is None:
            names = self.sysfs.list_dir(self.sysfs.group_devices_dir(group))
            found = sorted(parse_names(names), key=_ORDER)
            self.members[group] = found
        return found


def parse_names(names: list[str], warnings: list[str] | None = None,
                where: str = "") -> list[PciAddress]:
    """The entries that are PCI addresses.

    Other names are skipped; with ``warnings``, each skipped name is noted there
    (``where`` names the directory), so that nothing disappears without a word.
    """
    parse = PciAddress.parse
    out = []
    for name in names:
        try:
            out.append(parse(name))
        except ValueError:
            if warnings is not None:
                shown = name if len(name) <= 40 else name[:40] + "..."
                warnings.append(f"{where} has an entry {shown!r} that is not a PCI address"
                                " hostdev can read; it is not listed")
            continue
    return out


def _link_address(sysfs: Sysfs, path: str, addr: PciAddress,
                  warnings: list[str] | None) -> PciAddress | None:
    """The PCI address a ``physfn``/``virtfnN`` link points at; None (and a warning)
    when the link is absent or its target is not a PCI function."""
    name = sysfs.read_link_name(path, addr)
    if name is None:
        return None
    return _parse_link(name, addr, path.rsplit("/", 1)[-1], warnings)


def _parse_link(name: str, addr: PciAddress, link: str,
                warnings: list[str] | None) -> PciAddress | None:
    """The address a link of ``addr`` names; None (and a warning) if it names none."""
    try:
        return PciAddress.parse(name)
    except InvalidAddress:
        if warnings is not None:
            shown = name if len(name) <= 40 else name[:40] + "..."
            warnings.append(f"PCI device {addr}: its {link} link points at {shown!r},"
                            " not a PCI function; that link is ignored")
        return None


def read_facts(sysfs: Sysfs, addr: PciAddress, groups: GroupCache | None,
               brief: bool = False, warnings: list[str] | None = None, *,
               layouts: dict[PciAddress, tuple[int, int]] | None = None) -> PciDevice:
    """Read one function; DeviceNotFound if it vanished.

    The device's directory is opened once and every attribute read relative to it
    (no listing of the directory: an attribute that is absent fails its open).
    A ``physfn`` or ``virtfnN`` link whose target is not a PCI address is ignored
    and noted in ``warnings`` (when given): one broken link does not hide the device.

    A VF's index is left None (:func:`scan` fills it from the PFs, :func:`vf_index`
    for a single device). ``groups`` None: ``iommu_group_members`` is left empty
    for the caller to fill. ``brief``: skip what ``hostdev list`` does not print
    (reset methods read None). ``layouts`` (the scan): a PF's VFs are computed
    from its ``sriov_offset`` and ``sriov_stride`` (recorded there) rather than
    read from its ``virtfnN`` links, which :func:`scan` checks against the VFs'
    own ``physfn`` links.
    """
    files = sysfs.open_device(addr)
    if files is None:
        raise DeviceNotFound.at(addr)
    try:
        return _read_open(sysfs, files, addr, groups, brief, warnings, layouts)
    finally:
        files.close()


def _read_open(sysfs: Sysfs, files: DeviceFiles, addr: PciAddress, groups: GroupCache | None,
               brief: bool, warnings: list[str] | None,
               layouts: dict[PciAddress, tuple[int, int]] | None) -> PciDevice:
    read = files.read
    # One read of ``uevent`` gives the driver, class and ids that would otherwise
    # take five or six (the kernel formats it from what it keeps in memory; no
    # config-space access, so no device is woken up).
    text = read("uevent")
    event = _uevent(text) if text else None
    subsystem_vendor: int | None
    subsystem_device: int | None
    if event is not None:
        driver, class_code, vendor, device, subsystem_vendor, subsystem_device = event
    else:
        if text is None and not sysfs.device_exists(addr):
            raise DeviceNotFound.at(addr)
        class_code = _number(files, "class", 16, 0xFFFFFF)
        vendor = _number(files, "vendor", 16, 0xFFFF)
        device = _number(files, "device", 16, 0xFFFF)
        subsystem_vendor = _optional_number(files, "subsystem_vendor", 16, 0xFFFF)
        subsystem_device = _optional_number(files, "subsystem_device", 16, 0xFFFF)
        driver = files.link("driver")
    group = _to_int(files.link("iommu_group"), addr, "iommu_group")
    numa = _optional_number(files, "numa_node", 10)
    reset_methods = None
    if not brief:
        methods = read("reset_method")
        if methods is not None:
            reset_methods = methods.split()
        elif files.has("reset"):
            reset_methods = []
    vf = None
    pf_name = files.link("physfn")
    if pf_name is not None:
        pf = _parse_link(pf_name, addr, "physfn", warnings)
        if pf is not None:
            vf = VfInfo(pf=pf, index=None)
    sriov = None
    # A VF has no SR-IOV capability of its own (PCIe SR-IOV 3.3): not looked for.
    total = None if pf_name is not None else _optional_number(files, "sriov_totalvfs", 10)
    if total is not None:
        numvfs = _number(files, "sriov_numvfs", 10)
        vfs = None
        if layouts is not None:
            vfs = _computed_vfs(files, addr, numvfs, layouts)
        if vfs is None:
            vfs = _read_vfs(sysfs, addr, files.path + "/", set(files.entries()), warnings)
        sriov = SriovInfo(totalvfs=total, numvfs=numvfs, vfs=vfs)
    override = read("driver_override")
    if override in ("(null)", ""):
        override = None
    # Only a bound driver makes a vfio-dev/ or a netdev: a function without one
    # costs neither lookup. A stub or a uio driver registers no netdev, and a
    # driver that did register one is a network driver, not a VFIO (variant)
    # driver: each bound function costs one of the two lookups, not both.
    netdevs = (sorted(files.names("net")) if driver is not None
               and driver not in STUB_DRIVERS and driver not in USER_SPACE_DRIVERS else [])
    vfio_dev = driver is not None and not netdevs and files.has("vfio-dev")
    members: list[PciAddress] = []
    if group is None:
        members = [addr]
    elif groups is not None:
        members = groups.get(group)
    return PciDevice(address=addr, vendor=vendor, device=device,
                     subsystem_vendor=subsystem_vendor, subsystem_device=subsystem_device,
                     class_code=class_code, driver=driver, driver_override=override,
                     iommu_group=group, iommu_group_members=members, numa_node=numa,
                     sriov=sriov, vf=vf, reset_methods=reset_methods, vfio_dev=vfio_dev,
                     netdevs=netdevs)


def _number(files: DeviceFiles, name: str, base: int, top: int | None = None) -> int:
    """A number attribute the device must have."""
    value = _optional_number(files, name, base, top)
    if value is None:
        if not files.sysfs.device_exists(files.address):
            raise DeviceNotFound.at(files.address)
        path = f"{files.path}/{name}"
        raise files.sysfs._missing(path, files.address)
    return value


def _optional_number(files: DeviceFiles, name: str, base: int,
                     top: int | None = None) -> int | None:
    """A number attribute (``%d``, ``%u``, ``0x%x``); None when absent. ``top``: an id
    the kernel keeps in that many bits (0 to ``top``; anything else is damage)."""
    text = files.read(name)
    if text is None:
        return None
    try:
        value = int(text, base)
    except ValueError:
        value = None
    if value is None or (top is not None and not 0 <= value <= top):
        what = "a hex number" if base == 16 else "a number"
        if value is not None:
            what += f" from 0 to {top:#x}"
        raise UnexpectedContent(
            f"{files.sysfs.relative(files.path)}/{name} holds {text[:20]!r}, not {what}",
            address=files.address) from None
    return value


def _computed_vfs(files: DeviceFiles, addr: PciAddress, numvfs: int,
                  layouts: dict[PciAddress, tuple[int, int]]) -> list[PciAddress] | None:
    """The PF's VFs by routing-id arithmetic, as the kernel places them: VF ``n`` is
    at routing id ``PF + sriov_offset + n * sriov_stride``, carrying into the next
    bus numbers (docs/kernel-model.md §3.2). None when the PF does not say (no
    offset or stride, or one that is not a number) or the result leaves the bus
    range: the links decide then."""
    if numvfs <= 0:
        return []
    try:
        offset = files.read("sriov_offset")
        stride = files.read("sriov_stride")
        if offset is None or stride is None:
            return None
        first, step = addr.pf_bus_devfn + int(offset, 10), int(stride, 10)
    except ValueError:
        return None
    last = first + (numvfs - 1) * step
    if step <= 0 or first <= addr.pf_bus_devfn or last > 0xFFFF:
        return None
    layouts[addr] = (first, step)
    parse = PciAddress.parse  # the bus entries were parsed already: a dictionary hit
    domain = addr.domain
    return [parse(f"{domain:04x}:{rid >> 8:02x}:{(rid >> 3) & 0x1F:02x}.{rid & 7}")
            for rid in range(first, last + 1, step)]


def _uevent(text: str) -> tuple[str | None, int, int, int, int, int] | None:
    """Driver, class, vendor, device and subsystem ids from ``uevent``; None if unusable.

    Four searches rather than a dictionary of every line: a listing parses one
    per device."""
    text = "\n" + text + "\n"
    try:
        ids = _value(text, "\nPCI_ID=")
        subsys = _value(text, "\nPCI_SUBSYS_ID=")
        vendor, _, device = ids.partition(":")
        sub_vendor, _, sub_device = subsys.partition(":")
        found = (_hex(_value(text, "\nPCI_CLASS="), 6), _hex(vendor, 4), _hex(device, 4),
                 _hex(sub_vendor, 4), _hex(sub_device, 4))
    except ValueError:
        return None
    start = text.find("\nDRIVER=")
    driver = text[start + 8:text.index("\n", start + 8)] if start >= 0 else ""
    if "/" in driver or not driver.isprintable() or driver in (".", ".."):
        return None  # not a driver's name: the ``driver`` link says which it is
    return (driver or None, *found)


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _hex(text: str, digits: int) -> int:
    """An id as the kernel prints it in ``uevent`` (``%04X``: 1 to ``digits`` hex digits);
    ValueError for anything else (``int`` alone takes a sign, blanks, ``_`` and other
    scripts' digits, and any size)."""
    if not 0 < len(text) <= digits or not _HEX_DIGITS.issuperset(text):
        raise ValueError(text)
    return int(text, 16)


def _value(text: str, key: str) -> str:
    """The value of ``key`` (``\nNAME=``) in a newline-framed uevent; ValueError if absent."""
    start = text.index(key) + len(key)
    return text[start:text.index("\n", start)]


def read_device(sysfs: Sysfs, address: PciAddress | str,
                warnings: list[str] | None = None) -> PciDevice:
    """Snapshot one function; DeviceNotFound if it is not on the host.

    ``warnings`` receives a line per link that could not be read (see
    :func:`read_facts`)."""
    addr = PciAddress.parse(address)
    if not sysfs.device_exists(addr):
        raise DeviceNotFound.at(addr)
    dev = read_facts(sysfs, addr, GroupCache(sysfs), warnings=warnings)
    if dev.vf is not None:
        _store(dev.vf, "index", vf_index(sysfs, dev))
    return dev


def list_devices(sysfs: Sysfs, warnings: list[str] | None = None) -> list[PciDevice]:
    """Snapshot every function on the host, sorted by address.

    A device that vanishes while the listing runs is left out; ``warnings``
    receives a line per entry that could not be read (see :func:`scan`).
    """
    return scan(sysfs, warnings=warnings)


def present(sysfs: Sysfs) -> set[PciAddress]:
    """The addresses of the functions on the host now: one listing of the bus's
    devices, nothing read from them (names that are not addresses are skipped)."""
    return set(parse_names(sysfs.list_dir(sysfs.pci_devices)))


def scan(sysfs: Sysfs, *, brief: bool = False,
         warnings: list[str] | None = None, busy: list[str] | None = None,
         ) -> list[PciDevice]:
    """Read every function on the host, sorted by address.

    VF indexes come from the PFs' ``virtfnN`` links, and IOMMU group members from
    the devices' own ``iommu_group`` links (every PCI function of a group is on
    the bus, so listing each group directory again would only repeat them). A
    device that vanishes meanwhile is left out. ``brief``: see :func:`read_facts`.
    ``warnings`` (when given) receives one line per entry that could not be read
    as it should (a name that is not a PCI address, a broken SR-IOV link, and a
    device left out for garbage or a link out of the root).
    A device fenced in ``sysfs`` (a write of ours is blocked in the kernel on it,
    and reading it would wait too) is left out, and why is added to ``busy``.
    """
    sysfs.check_tree()
    # Each device directory's links are resolved (and checked to stay inside the
    # root's sys) once, by its directory listing; its attribute reads reuse that.
    sysfs.forget_checked_paths()
    found: list[PciDevice] = []
    names = sysfs.list_dir(sysfs.pci_devices)
    addresses = sorted(parse_names(names, warnings, sysfs.relative(sysfs.pci_devices)),
                       key=_ORDER)
    layouts: dict[PciAddress, tuple[int, int]] = {}
    for addr in addresses:
        try:
            found.append(read_facts(sysfs, addr, None, brief, warnings, layouts=layouts))
        except DeviceNotFound:
            continue
        except DeviceBusy as exc:
            if busy is None:
                raise
            busy.append(str(exc))
        except (UnexpectedContent, UnsafePath) as exc:
            # One device's garbage (an iommu_group link that is not a number, a
            # directory or attribute leading out of the root) does not hide the rest.
            if warnings is None:
                raise
            text = str(exc)
            warnings.append(text if str(addr) in text else f"PCI device {addr}: {text}")
            warnings[-1] += "; the device is left out"
    if layouts:
        _check_layouts(sysfs, found, layouts, warnings)
    # (parent, index) of each VF a PF lists: an index counts only from the VF's own PF.
    index_of: dict[PciAddress, tuple[PciAddress, int]] = {}
    members: dict[int, list[PciAddress]] = {}
    for facts in found:
        if facts.sriov is not None:
            for i, vf in enumerate(facts.sriov.vfs):
                index_of[vf] = (facts.address, i)
        if facts.iommu_group is not None:
            group = members.get(facts.iommu_group)
            if group is None:
                members[facts.iommu_group] = facts.iommu_group_members
            else:
                _store(facts, "iommu_group_members", group)
            members[facts.iommu_group].append(facts.address)  # in address order already
    for facts in found:
        if facts.vf is not None:
            listed = index_of.get(facts.address)
            _store(facts.vf, "index",
                   listed[1] if listed is not None and listed[0] == facts.vf.pf else None)
    return found


def _check_layouts(sysfs: Sysfs, found: list[PciDevice],
                   layouts: dict[PciAddress, tuple[int, int]],
                   warnings: list[str] | None) -> None:
    """Hold each PF's computed VFs to the VFs' own ``physfn`` links (read anyway):
    the computed addresses must be exactly the functions that name that PF. Where
    they are not (odd hardware, a tree changed under the scan), the PF's
    ``virtfnN`` links are read instead, as :func:`read_device` does."""
    pf_of: dict[PciAddress, PciAddress] = {}
    count: dict[PciAddress, int] = {}
    for facts in found:
        if facts.vf is not None:
            pf = facts.vf.pf
            pf_of[facts.address] = pf
            count[pf] = count.get(pf, 0) + 1
    for facts in found:
        sriov = facts.sriov
        if sriov is None or facts.address not in layouts:
            continue
        pf = facts.address
        if count.get(pf, 0) == len(sriov.vfs) and all(pf_of.get(v) == pf for v in sriov.vfs):
            continue
        prefix = sysfs.device_dir(pf) + "/"
        try:
            entries = set(sysfs.list_dir(prefix[:-1], pf))
            vfs = _read_vfs(sysfs, pf, prefix, entries, warnings)
        except DeviceNotFound:
            continue
        _store(facts, "sriov", SriovInfo(totalvfs=sriov.totalvfs, numvfs=sriov.numvfs,
                                         vfs=vfs))


def _read_vfs(sysfs: Sysfs, addr: PciAddress, prefix: str, entries: set[str],
              warnings: list[str] | None) -> list[PciAddress]:
    indexes = sorted(int(e[6:]) for e in entries if e.startswith("virtfn") and e[6:].isdecimal())
    vfs: list[PciAddress] = []
    # Numeric order up to the first gap: directory order is not index order.
    for expected, index in enumerate(indexes):
        if index != expected:
            break
        vf = _link_address(sysfs, f"{prefix}virtfn{index}", addr, warnings)
        if vf is None:
            break
        vfs.append(vf)
    return vfs


def vf_index(sysfs: Sysfs, facts: PciDevice) -> int | None:
    """A VF's index, computed from the PF's offset and stride and confirmed by
    the PF's ``virtfnN`` link (three reads, whatever the number of VFs)."""
    assert facts.vf is not None
    pf = facts.vf.pf
    base = sysfs.device_dir(pf)
    try:
        offset = sysfs.read_optional(f"{base}/sriov_offset", pf)
        stride = sysfs.read_optional(f"{base}/sriov_stride", pf)
        if offset is None or stride is None or int(stride) <= 0:
            return None
        distance = facts.address.pf_bus_devfn - pf.pf_bus_devfn - int(offset)
        if facts.address.domain != pf.domain or distance < 0 or distance % int(stride):
            return None
        index = distance // int(stride)
        name = sysfs.read_link_name(f"{base}/virtfn{index}", pf)
    except (DeviceNotFound, ValueError):
        return None
    return index if name == str(facts.address) else None


def _to_int(name: str | None, addr: PciAddress, what: str) -> int | None:
    if name is None:
        return None
    try:
        return int(name, 10)
    except ValueError:
        raise UnexpectedContent(
            f"PCI device {addr}: {what} link points at {name!r}, not a number", address=addr
        ) from None
