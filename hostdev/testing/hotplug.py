"""Hot-plug: ``remove`` and ``rescan`` (docs/kernel-model.md §2.7 and 6).

``remove`` unbinds and deletes a device with everything below it (a PF's VFs
vanish with it) and remembers it; a rescan brings remembered devices back as new
objects (NULL driver_override, probed normally). VFs are never brought back by
a rescan, only by enabling SR-IOV again.
"""

from __future__ import annotations

import errno

from hostdev.address import PciAddress
from hostdev.testing.drivers import device_attach, disable_vfs, release
from hostdev.testing.events import kerr
from hostdev.testing.hostspec import DeviceSpec
from hostdev.testing.kparse import kstrtoul
from hostdev.testing.model import Device, KernelState, RemovedDevice
from hostdev.testing.tree import create_device, delete_device, join_group, pick_group, subtree
from hostdev.testing.vfio_users import ensure_not_blocking

ScopeKey = PciAddress | tuple[int, int]


def remove(state: KernelState, dev: Device, path: str) -> None:
    """``pci_stop_and_remove_bus_device``; VfioWouldBlock if anything below is held."""
    ensure_not_blocking(state, subtree(dev), "remove", path)
    _remove(state, dev)


def _remove(state: KernelState, dev: Device) -> None:
    for child in reversed(list(dev.children.values())):
        _remove(state, child)
    release(state, dev)
    if dev.sriov is not None and dev.sriov.vfs:
        disable_vfs(state, dev)
    if not dev.is_vf:
        state.removed[dev.address] = RemovedDevice(dev.t, dev.group_origin, dev.iommu_group)
    delete_device(state, dev)


def _scope_chain(state: KernelState, t: DeviceSpec) -> list[ScopeKey]:
    """The buses above a (present or removed) device: parent bridges, then the root bus."""
    chain: list[ScopeKey] = []
    parent = t.parent
    while parent is not None:
        chain.append(parent)
        above = state.devices.get(parent)
        if above is not None:
            t = above.t
        else:
            record = state.removed.get(parent)
            if record is None:
                break
            t = record.template
        parent = t.parent
    chain.append((t.address.domain, t.address.bus))
    return chain


def rescan(state: KernelState, scope: Device | None = None) -> list[Device]:
    """Bring back removed devices (all, or those on ``scope``'s bus and below); probe them."""
    if scope is None:
        key: ScopeKey | None = None
    else:
        key = _scope_chain(state, scope.t)[0]
    added: list[Device] = []
    progress = True
    while progress:
        progress = False
        for address in sorted(state.removed):
            record = state.removed[address]
            t = record.template
            if t.parent is not None and t.parent not in state.devices:
                continue
            if key is not None and key not in _scope_chain(state, t):
                continue
            del state.removed[address]
            if address in state.devices:
                continue
            dev = create_device(state, t)
            if record.iommu_group is not None:
                number = pick_group(state, record.group_origin, record.iommu_group)
                join_group(state, dev, number, record.group_origin)
            added.append(dev)
            progress = True
    for dev in added:
        device_attach(state, dev)
    return added


def _parse(data: bytes) -> int:
    try:
        return kstrtoul(data)
    except OSError:
        raise kerr(errno.EINVAL) from None


def remove_store(state: KernelState, dev: Device, data: bytes, path: str) -> None:
    """Device ``remove``: EINVAL for a bad number, 0 does nothing."""
    if _parse(data):
        remove(state, dev, path)


def dev_rescan_store(state: KernelState, dev: Device, data: bytes, path: str) -> None:
    """Device ``rescan``: rescan the bus the device sits on."""
    if _parse(data):
        rescan(state, dev)


def bus_rescan_store(state: KernelState, data: bytes, path: str) -> None:
    """``/sys/bus/pci/rescan``: rescan every bus."""
    if _parse(data):
        rescan(state)
