"""The sysfs tree of devices: directories, attribute files, links, IOMMU groups.

These functions only lay out and tear down what the kernel shows; deciding
*when* (probe, SR-IOV, hot-plug) is up to the callers. Layout follows docs/kernel-model.md
section 1: real directories under ``/sys/devices/pciDDDD:BB/...``, relative
symlinks everywhere else.
"""

from __future__ import annotations

from pyfakefs.fake_file import FakeDirectory

from hostdev.testing.dispatch import DeviceNode
from hostdev.testing.hostspec import DeviceSpec
from hostdev.testing.model import Change, Device, Driver, KernelState, SriovState
from hostdev.testing.uevents import emit
from hostdev.testing.vfs import relpath, set_contents

_RO = 0o444


def root_bus_dir(state: KernelState, domain: int, bus: int) -> tuple[FakeDirectory, str]:
    """The host bridge directory ``/sys/devices/pciDDDD:BB`` (created on first use)."""
    name = f"pci{domain:04x}:{bus:02x}"
    path = "/sys/devices/" + name
    directory = state.root_buses.get(name)
    if directory is None:
        directory = state.vfs.ensure_dir(path)
        state.root_buses[name] = directory
    return directory, path


def create_device(
    state: KernelState,
    t: DeviceSpec,
    *,
    physfn: Device | None = None,
    vf_index: int | None = None,
) -> Device:
    """Lay out a new device (no driver, no IOMMU group yet) and index it."""
    vfs = state.vfs
    if physfn is not None:
        parent_dev = physfn.parent_dev
        parent_dir = physfn.parent_dir
        parent_path = physfn.path.rsplit("/", 1)[0]
    elif t.parent is not None:
        parent_dev = state.devices[t.parent]
        parent_dir, parent_path = parent_dev.dir, parent_dev.path
    else:
        parent_dev = None
        parent_dir, parent_path = root_bus_dir(state, t.address.domain, t.address.bus)
    name = str(t.address)
    path = f"{parent_path}/{name}"
    directory = vfs.mkdir(parent_dir, name)
    dev = Device(
        t=t, name=name, path=path, dir=directory, parent_dir=parent_dir,
        parent_dev=parent_dev, numa_node=t.numa_node, reset_methods=tuple(t.reset_methods),
        physfn=physfn, vf_index=vf_index,
    )
    if t.sriov is not None and physfn is None:
        dev.sriov = SriovState()
    files = dev.files
    subdirs: dict[str, FakeDirectory] = {}
    for attr in state.attributes.values():  # the registry, in directory order
        if not attr.present(dev):
            continue
        where, slash, base = attr.name.rpartition("/")
        parent = directory
        if slash:
            if where not in subdirs:
                subdirs[where] = vfs.mkdir(directory, where)
            parent = subdirs[where]
        files[attr.name] = vfs.file(parent, base, attr.read(dev), attr.mode,
                                    DeviceNode(state, dev, attr))
    vfs.link(directory, "subsystem", relpath("/sys/bus/pci", path))
    vfs.link(state.bus_devices, name, relpath(path, "/sys/bus/pci/devices"))
    state.devices[t.address] = dev
    state.by_name[name] = dev
    state.index_ids(dev)
    if parent_dev is not None and physfn is None:
        parent_dev.children[t.address] = dev
    if dev.numa_node >= 0:
        state.online_nodes.add(dev.numa_node)
    emit(state, "add", dev.address)
    return dev


def delete_device(state: KernelState, dev: Device) -> None:
    """Remove a device's directory, bus link and group membership (driver already gone)."""
    leave_group(state, dev)
    state.vfs.remove(state.bus_devices, dev.name)
    state.vfs.remove(dev.parent_dir, dev.name)
    state.devices.pop(dev.address, None)
    state.by_name.pop(dev.name, None)
    state.unindex_ids(dev)
    if dev.parent_dev is not None and dev.physfn is None:
        dev.parent_dev.children.pop(dev.address, None)
    dev.alive = False
    emit(state, "remove", dev.address)


def refresh(state: KernelState, dev: Device, change: Change) -> None:
    """Re-render the attribute files of ``dev`` that read anew after ``change``."""
    for name, obj in dev.files.items():
        attr = state.attributes[name]
        if change in attr.refresh_on:
            set_contents(obj, attr.read(dev))


def link_driver(state: KernelState, dev: Device, drv: Driver) -> None:
    """``driver_sysfs_add``: ``dev/driver`` and ``drivers/D/<addr>`` links."""
    state.vfs.link(dev.dir, "driver", relpath(drv.path, dev.path))
    state.vfs.link(drv.dir, dev.name, relpath(dev.path, drv.path))


def unlink_driver(state: KernelState, dev: Device, drv: Driver) -> None:
    """``driver_sysfs_remove``: drop both driver links."""
    state.vfs.remove(dev.dir, "driver")
    state.vfs.remove(drv.dir, dev.name)


def link_vf(state: KernelState, pf: Device, vf: Device, index: int) -> None:
    """``pci_iov_sysfs_link``: ``PF/virtfnN`` and ``VF/physfn``."""
    state.vfs.link(pf.dir, f"virtfn{index}", relpath(vf.path, pf.path))
    state.vfs.link(vf.dir, "physfn", relpath(pf.path, vf.path))


def unlink_vf(state: KernelState, pf: Device, vf: Device, index: int) -> None:
    """Drop ``PF/virtfnN`` then ``VF/physfn``."""
    state.vfs.remove(pf.dir, f"virtfn{index}")
    state.vfs.remove(vf.dir, "physfn")


def pick_group(state: KernelState, origin: object, preferred: int | None) -> int:
    """IOMMU group number for a (re)added device.

    A device whose original group mates are still present joins them; otherwise
    it gets ``preferred`` if free, else the lowest free number.
    """
    current = state.origin_group.get(origin)
    if current is not None and current in state.groups:
        return current
    if preferred is not None and preferred not in state.groups:
        return preferred
    return state.group_ids.alloc()


def join_group(state: KernelState, dev: Device, number: int, origin: object) -> None:
    """Put ``dev`` in IOMMU group ``number`` (the group directory appears if new)."""
    vfs = state.vfs
    members = state.groups.get(number)
    if members is None:
        members = state.groups[number] = {}
        state.group_ids.take(number)
        gdir = vfs.mkdir(state.groups_dir, str(number))
        state.group_dirs[number] = vfs.mkdir(gdir, "devices")
        vfs.file(gdir, "type", "DMA\n", _RO)
    state.origin_group[origin] = number
    members[dev.address] = dev
    dev.iommu_group = number
    dev.group_origin = origin
    group_path = f"/sys/kernel/iommu_groups/{number}"
    vfs.link(state.group_dirs[number], dev.name, relpath(dev.path, group_path + "/devices"))
    vfs.link(dev.dir, "iommu_group", relpath(group_path, dev.path))


def leave_group(state: KernelState, dev: Device) -> None:
    """Take ``dev`` out of its group; an empty group directory disappears."""
    number = dev.iommu_group
    if number is None:
        return
    members = state.groups[number]
    members.pop(dev.address, None)
    state.vfs.remove(state.group_dirs[number], dev.name)
    state.vfs.remove(dev.dir, "iommu_group")
    dev.iommu_group = None
    if not members:
        del state.groups[number]
        del state.group_dirs[number]
        state.vfs.remove(state.groups_dir, str(number))
        state.group_ids.free(number)
        if state.origin_group.get(dev.group_origin) == number:
            del state.origin_group[dev.group_origin]


def subtree(dev: Device) -> list[Device]:
    """``dev``, everything below it, and the VFs of every PF among them (children first)."""
    out: list[Device] = []
    stack: list[tuple[Device, bool]] = [(dev, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            out.append(node)
            continue
        stack.append((node, True))
        if node.sriov is not None:
            stack.extend((vf, False) for vf in node.sriov.vfs)
        stack.extend((child, False) for child in node.children.values())
    return out
