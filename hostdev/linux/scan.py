"""Reading PCI functions from sysfs into :class:`~hostdev.linux.device.PciDevice`
snapshots: :func:`read_device` (one function) and :func:`list_devices` (the host),
built on :func:`read_facts` and :func:`scan`. No pydantic: ``hostdev list``
prints what :func:`scan` returns.

Reading one device costs one directory listing, one read of ``uevent`` (driver,
class and ids in one go), and one read per other attribute present (a PF adds
one ``readlink`` per VF). A scan shares the IOMMU-group
directory reads and takes VF indexes from the PFs' ``virtfnN`` links, so no
file is read twice.
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
from hostdev.linux.sysfs import Sysfs

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
    try:
        return PciAddress.parse(name)
    except InvalidAddress:
        if warnings is not None:
            link = path.rsplit("/", 1)[-1]
            shown = name if len(name) <= 40 else name[:40] + "..."
            warnings.append(f"PCI device {addr}: its {link} link points at {shown!r},"
                            " not a PCI function; that link is ignored")
        return None


def read_facts(sysfs: Sysfs, addr: PciAddress, groups: GroupCache | None,
               brief: bool = False, warnings: list[str] | None = None) -> PciDevice:
    """Read one function; DeviceNotFound if it vanished.

    A ``physfn`` or ``virtfnN`` link whose target is not a PCI address is ignored
    and noted in ``warnings`` (when given): one broken link does not hide the device.

    A VF's index is left None (:func:`scan` fills it from the PFs, :func:`vf_index`
    for a single device). ``groups`` None: ``iommu_group_members`` is left empty
    for the caller to fill. ``brief``: skip what ``hostdev list`` does not print
    (subsystem ids and reset methods read None).
    """
    base = sysfs.device_dir(addr)
    names = sysfs.list_dir(base, addr)
    if not names:
        raise DeviceNotFound.at(addr)
    entries = set(names)
    prefix = base + "/"
    read_hex = sysfs.read_hex
    read_int = sysfs.read_int
    read_link_name = sysfs.read_link_name

    # One read of ``uevent`` gives the driver, class and ids that would otherwise
    # take five or six (the kernel formats it from what it keeps in memory; no
    # config-space access, so no device is woken up).
    event = _uevent(sysfs, prefix, addr) if "uevent" in entries else None
    subsystem_vendor: int | None = None
    subsystem_device: int | None = None
    if event is not None:
        driver, class_code, vendor, device, sub_vendor, sub_device = event
        if not brief:
            subsystem_vendor, subsystem_device = sub_vendor, sub_device
    else:
        class_code = read_hex(prefix + "class", addr)
        vendor = read_hex(prefix + "vendor", addr)
        device = read_hex(prefix + "device", addr)
        if not brief:
            if "subsystem_vendor" in entries:
                subsystem_vendor = read_hex(prefix + "subsystem_vendor", addr)
            if "subsystem_device" in entries:
                subsystem_device = read_hex(prefix + "subsystem_device", addr)
        driver = read_link_name(prefix + "driver", addr) if "driver" in entries else None
    group = None
    if "iommu_group" in entries:
        group = _to_int(read_link_name(prefix + "iommu_group", addr), addr, "iommu_group")
    numa = read_int(prefix + "numa_node", addr) if "numa_node" in entries else None
    reset_methods = None
    if "reset" in entries and not brief:
        reset_methods = []
        if "reset_method" in entries:
            text = sysfs.read_optional(prefix + "reset_method", addr) or ""
            reset_methods = text.split()
    sriov = None
    if "sriov_totalvfs" in entries:
        sriov = SriovInfo(
            totalvfs=read_int(prefix + "sriov_totalvfs", addr),
            numvfs=read_int(prefix + "sriov_numvfs", addr),
            vfs=_read_vfs(sysfs, addr, prefix, entries, warnings),
        )
    vf = None
    if "physfn" in entries:
        pf = _link_address(sysfs, prefix + "physfn", addr, warnings)
        if pf is not None:
            vf = VfInfo(pf=pf, index=None)
    override = sysfs.read_override(addr) if "driver_override" in entries else None
    members: list[PciAddress] = []
    if group is None:
        members = [addr]
    elif groups is not None:
        members = groups.get(group)
    return PciDevice(address=addr, vendor=vendor, device=device,
                     subsystem_vendor=subsystem_vendor, subsystem_device=subsystem_device,
                     class_code=class_code, driver=driver, driver_override=override,
                     iommu_group=group, iommu_group_members=members, numa_node=numa,
                     sriov=sriov, vf=vf, reset_methods=reset_methods,
                     vfio_dev="vfio-dev" in entries)


def _uevent(sysfs: Sysfs, prefix: str, addr: PciAddress
            ) -> tuple[str | None, int, int, int, int, int] | None:
    """Driver, class, vendor, device and subsystem ids from ``uevent``; None if unusable."""
    text = sysfs.read_optional(prefix + "uevent", addr)
    if not text:
        return None
    values = dict(line.partition("=")[::2] for line in text.split("\n") if line)
    try:
        vendor, device = (int(x, 16) for x in values["PCI_ID"].split(":"))
        sub_vendor, sub_device = (int(x, 16) for x in values["PCI_SUBSYS_ID"].split(":"))
        class_code = int(values["PCI_CLASS"], 16)
    except (KeyError, ValueError):
        return None
    return values.get("DRIVER") or None, class_code, vendor, device, sub_vendor, sub_device


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
    for addr in addresses:
        try:
            found.append(read_facts(sysfs, addr, None, brief, warnings))
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
    index_of: dict[PciAddress, int] = {}
    members: dict[int, list[PciAddress]] = {}
    for facts in found:
        if facts.sriov is not None:
            for i, vf in enumerate(facts.sriov.vfs):
                index_of[vf] = i
        if facts.iommu_group is not None:
            group = members.get(facts.iommu_group)
            if group is None:
                members[facts.iommu_group] = facts.iommu_group_members
            else:
                _store(facts, "iommu_group_members", group)
            members[facts.iommu_group].append(facts.address)  # in address order already
    for facts in found:
        if facts.vf is not None:
            _store(facts.vf, "index", index_of.get(facts.address))
    return found


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
