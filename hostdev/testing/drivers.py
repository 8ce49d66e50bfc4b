"""Drivers: registration, matching, probe, bind and unbind (docs/kernel-model.md §1.1, 2.1-2.6).

Probe results follow the driver core: ``really_probe`` returns 0 when bound, a
positive errno when the driver's probe failed (the next driver may try), and a
negative errno when the attach path itself failed (``dma_configure`` EBUSY for a
host driver into a group a VFIO user owns), which stops the attach.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable

from hostdev.address import validate_driver_name
from hostdev.testing import children, vfconfig
from hostdev.testing.dispatch import DriverNode
from hostdev.testing.events import FakeKernelSetupError, kerr
from hostdev.testing.kparse import c_string, device_name, scan_hex
from hostdev.testing.model import (
    LEAVES_VFS_DRIVERS,
    OVERRIDE_ONLY_DRIVERS,
    Change,
    Device,
    Driver,
    DynId,
    KernelState,
    is_vfio_driver_name,
)
from hostdev.testing.tree import (
    delete_device,
    link_driver,
    refresh,
    unlink_driver,
    unlink_vf,
)
from hostdev.testing.uevents import emit
from hostdev.testing.vfio_users import ensure_not_blocking, group_claimed, register, unregister

EPROBE_DEFER = 517
PCI_ANY_ID = 0xFFFFFFFF
#: vfio_pci_is_denylisted: Intel QAT PFs and VFs.
VFIO_DENYLIST = frozenset(
    (0x8086, device) for device in (0x0435, 0x0443, 0x37C8, 0x37C9, 0x19E2, 0x19E3)
)


def register_driver(
    state: KernelState,
    name: str,
    ids: Iterable[tuple[int, int]] = (),
    *,
    sriov: bool = False,
    leaves_vfs_on_remove: bool | None = None,
    placeholder: bool = False,
    vfio: bool | None = None,
) -> Driver:
    """Register a driver and, if the bus autoprobes, attach it to matching devices.

    vfio drivers and pci-stub have no real id table: ``ids`` given for them become
    dynamic ids, as their ``ids=`` module parameter does. ``leaves_vfs_on_remove``
    None: only the drivers known to (nvme) leave SR-IOV enabled when unbound.
    """
    if leaves_vfs_on_remove is None:
        leaves_vfs_on_remove = name in LEAVES_VFS_DRIVERS
    validate_driver_name(name)
    pairs = [(int(v), int(d)) for v, d in ids]
    drv = state.drivers.get(name)
    if drv is not None and not drv.placeholder:
        raise FakeKernelSetupError(f"driver {name!r} is already registered")
    dynamic = (is_vfio_driver_name(name) if vfio is None else vfio) \
        or name in OVERRIDE_ONLY_DRIVERS
    if drv is None:
        path = f"/sys/bus/pci/drivers/{name}"
        directory = state.vfs.mkdir(state.bus_drivers, name)
        drv = Driver(name=name, ids=frozenset(), sriov=sriov, dir=directory, path=path)
        for attr in state.driver_attributes.values():
            state.vfs.file(directory, attr.name, "", attr.mode, DriverNode(state, drv, attr))
        state.drivers[name] = drv
    drv.placeholder = placeholder
    drv.sriov = sriov
    if vfio is not None:
        drv.registers_vfio = vfio
    drv.leaves_vfs_on_remove = leaves_vfs_on_remove
    if dynamic:
        drv.dynids.extend(DynId(v, d) for v, d in pairs)
    else:
        drv.ids = frozenset(pairs)
    if state.drivers_autoprobe and not placeholder:
        driver_attach(state, drv, list(state.devices.values()))
    return drv


def matches(drv: Driver, dev: Device) -> bool:
    """``pci_match_device``: override first, then dynamic ids, static ids, catch-all."""
    override = dev.override
    if override is not None and override != drv.name:
        return False
    t = dev.t
    if (t.vendor, t.device) in drv.ids:
        return True
    if any(dynid.matches(t) for dynid in drv.dynids):
        return True
    return override is not None


def can_probe(dev: Device) -> bool:
    """``pci_device_can_probe``: a VF of a PF with sriov_drivers_autoprobe=0 needs an override."""
    pf = dev.physfn
    if pf is None or pf.sriov is None or pf.sriov.drivers_autoprobe:
        return True
    return dev.override is not None


def vfio_probe_error(dev: Device) -> int:
    """Why vfio-pci's probe refuses ``dev`` (0: it does not)."""
    t = dev.t
    if (t.vendor, t.device) in VFIO_DENYLIST or t.is_bridge:
        return errno.EINVAL
    if dev.sriov is not None and dev.sriov.vfs:
        return errno.EBUSY
    if dev.iommu_group is None:
        return errno.EINVAL
    return 0


def attach_now(state: KernelState, dev: Device, drv: Driver) -> None:
    """Record a successful probe: links, vfio nodes, attribute refresh."""
    dev.driver = drv
    if drv.enables_device or drv.vfio:  # pci_enable_device / vfio's pci_set_power_state
        dev.power_known = True
    drv.bound[dev.address] = dev
    link_driver(state, dev, drv)
    if drv.vfio:
        register(state, dev)
    refresh(state, dev, Change.BINDING)
    children.on_bind(state, dev)
    vfconfig.on_bind(state, dev)  # the probe registers a NIC VF's interface
    emit(state, "bind", dev.address, drv.name)  # the kernel sends it once probe returned


def really_probe(state: KernelState, dev: Device, drv: Driver) -> int:
    """Try to bind ``dev`` to ``drv`` (already matched and unbound); see module doc."""
    if not drv.managed_dma and group_claimed(state, dev.iommu_group):
        return -errno.EBUSY
    if not can_probe(dev):
        return errno.ENODEV
    injected = state.faults.probe_error(drv.name)
    if injected is not None:
        return injected
    if drv.vfio:
        refused = vfio_probe_error(dev)
        if refused:
            return refused
    attach_now(state, dev, drv)
    return 0


def device_attach(state: KernelState, dev: Device) -> int:
    """``device_attach``: try the drivers in registration order; negative on attach error."""
    if dev.driver is not None:
        return 0
    for drv in list(state.drivers.values()):
        if not matches(drv, dev):
            continue
        result = really_probe(state, dev, drv)
        if result <= 0:
            return result
    return 0


def driver_attach(state: KernelState, drv: Driver, devices: Iterable[Device]) -> None:
    """``driver_attach``: probe every unbound matching device; errors are ignored."""
    for dev in devices:
        if dev.alive and dev.driver is None and matches(drv, dev):
            really_probe(state, dev, drv)


def release_disables_vfs(dev: Device) -> bool:
    """Whether unbinding ``dev``'s driver removes its VFs (vfio, or an SR-IOV PF driver)."""
    drv = dev.driver
    if drv is None or dev.sriov is None or not dev.sriov.vfs:
        return False
    return drv.vfio or (drv.sriov and not drv.leaves_vfs_on_remove)


def release_closure(dev: Device) -> list[Device]:
    """The devices whose driver goes away when ``dev`` is unbound."""
    if release_disables_vfs(dev) and dev.sriov is not None:
        return [dev, *dev.sriov.vfs]
    return [dev]


def release(state: KernelState, dev: Device) -> None:
    """``device_release_driver``: links first, then the driver's remove, then vfio nodes."""
    drv = dev.driver
    if drv is None:
        return
    disable = release_disables_vfs(dev)
    unlink_driver(state, dev, drv)
    children.on_unbind(state, dev)  # the driver's remove tears down its disks and netdevs
    vfconfig.on_unbind(state, dev)
    if disable:
        disable_vfs(state, dev)
    if drv.vfio:
        unregister(state, dev)
    dev.driver = None
    drv.bound.pop(dev.address, None)
    refresh(state, dev, Change.BINDING)
    emit(state, "unbind", dev.address)


def disable_vfs(state: KernelState, pf: Device) -> None:
    """``sriov_del_vfs``: for each VF in index order drop links, unbind, delete."""
    assert pf.sriov is not None
    for index, vf in enumerate(list(pf.sriov.vfs)):
        unlink_vf(state, pf, vf, index)
        release(state, vf)
        delete_device(state, vf)
    vfconfig.forget(state, pf)
    pf.sriov.vfs.clear()
    refresh(state, pf, Change.NUMVFS)


# --------------------------------------------------------------------------- handlers


def _lookup(state: KernelState, data: bytes) -> Device | None:
    return state.by_name.get(device_name(data))


def bind_store(state: KernelState, drv: Driver, data: bytes, path: str) -> None:
    """``drivers/D/bind``."""
    dev = _lookup(state, data)
    if dev is None or not matches(drv, dev):
        raise kerr(errno.ENODEV)
    if dev.driver is not None:
        raise kerr(errno.EBUSY)
    result = really_probe(state, dev, drv)
    if result == EPROBE_DEFER:
        raise kerr(errno.EAGAIN)
    if result:
        raise kerr(abs(result))


def unbind_store(state: KernelState, drv: Driver, data: bytes, path: str) -> None:
    """``drivers/D/unbind`` (blocks, here raises VfioWouldBlock, while a VFIO user holds it)."""
    dev = _lookup(state, data)
    if dev is None or dev.driver is not drv:
        raise kerr(errno.ENODEV)
    ensure_not_blocking(state, release_closure(dev), "unbind", path)
    release(state, dev)


def _static_or_dynamic_match(
    drv: Driver, vendor: int, device: int, subvendor: int, subdevice: int, class_code: int
) -> bool:
    if (vendor, device) in drv.ids:
        return True
    return any(
        i.vendor in (PCI_ANY_ID, vendor) and i.device in (PCI_ANY_ID, device)
        and i.subvendor in (PCI_ANY_ID, subvendor) and i.subdevice in (PCI_ANY_ID, subdevice)
        and not ((i.class_code ^ class_code) & i.class_mask)
        for i in drv.dynids
    )


def new_id_store(state: KernelState, drv: Driver, data: bytes, path: str) -> None:
    """``drivers/D/new_id``: add a dynamic id and probe the unbound devices it matches."""
    fields = scan_hex(data, 7)
    if len(fields) < 2:
        raise kerr(errno.EINVAL)
    padded = fields + [PCI_ANY_ID, PCI_ANY_ID, 0, 0, 0][len(fields) - 2:]
    vendor, device, subvendor, subdevice, class_code, class_mask, driver_data = padded
    if len(fields) != 7 and _static_or_dynamic_match(
        drv, vendor, device, subvendor, subdevice, class_code
    ):
        raise kerr(errno.EEXIST)
    if drv.has_id_table and driver_data != 0:
        raise kerr(errno.EINVAL)
    dynid = DynId(vendor, device, subvendor, subdevice, class_code, class_mask, driver_data)
    drv.dynids.append(dynid)
    if PCI_ANY_ID in (vendor, device):
        candidates = list(state.devices.values())
    else:
        candidates = list(state.by_ids.get((vendor, device), {}).values())
    driver_attach(state, drv, sorted(candidates, key=lambda d: d.address))


def remove_id_store(state: KernelState, drv: Driver, data: bytes, path: str) -> None:
    """``drivers/D/remove_id``: delete the first matching dynamic id."""
    fields = scan_hex(data, 6)
    if len(fields) < 2:
        raise kerr(errno.EINVAL)
    padded = fields + [PCI_ANY_ID, PCI_ANY_ID, 0, 0][len(fields) - 2:]
    vendor, device, subvendor, subdevice, class_code, class_mask = padded
    for dynid in drv.dynids:
        if (
            dynid.vendor == vendor and dynid.device == device
            and subvendor in (PCI_ANY_ID, dynid.subvendor)
            and subdevice in (PCI_ANY_ID, dynid.subdevice)
            and not ((dynid.class_code ^ class_code) & class_mask)
        ):
            drv.dynids.remove(dynid)
            return
    raise kerr(errno.ENODEV)


def drivers_probe_store(state: KernelState, data: bytes, path: str) -> None:
    """``/sys/bus/pci/drivers_probe``: attach an unbound device; no match is not an error."""
    dev = _lookup(state, data)
    if dev is None:
        raise kerr(errno.ENODEV)
    if device_attach(state, dev) < 0:
        raise kerr(errno.EINVAL)


def drivers_autoprobe_store(state: KernelState, data: bytes, path: str) -> None:
    """``/sys/bus/pci/drivers_autoprobe``: a leading '0' turns it off, anything else on."""
    state.drivers_autoprobe = not c_string(data).startswith("0")
