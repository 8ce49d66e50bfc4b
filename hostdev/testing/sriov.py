"""SR-IOV: ``sriov_numvfs`` and ``sriov_drivers_autoprobe`` (docs/kernel-model.md §3).

VF i of a PF sits at routing id ``PF + offset + stride * i`` (the bus number may
carry over), is a sibling of the PF in ``/sys/devices``, gets a new IOMMU group
(lowest free number) when the PF has one, and is probed right away unless the
PF's ``sriov_drivers_autoprobe`` is 0. Under a PF bound to a vfio driver each new
VF gets that driver as its ``driver_override`` (vfio's bus notifier).
"""

from __future__ import annotations

import errno

from hostdev.address import PciAddress
from hostdev.testing.drivers import device_attach, disable_vfs
from hostdev.testing.events import kerr
from hostdev.testing.hostspec import DeviceSpec, SriovSpec
from hostdev.testing.kparse import kstrtobool, kstrtoint, kstrtou16
from hostdev.testing.model import Change, Device, KernelState
from hostdev.testing.tree import create_device, join_group, link_vf, refresh
from hostdev.testing.vfio_users import ensure_not_blocking

#: Reset methods a VF offers (function-level reset; no bus reset for a VF).
VF_RESET_METHODS = ("flr",)


def capability(pf: Device) -> SriovSpec:
    """The PF's SR-IOV capability (only PFs have SR-IOV state)."""
    facts = pf.t.sriov
    assert facts is not None and pf.sriov is not None
    return facts


def vf_addresses(pf: Device, count: int) -> list[PciAddress]:
    """Addresses of VFs 0..count-1; ENOMEM when they run past bus 0xff or collide."""
    t = pf.t
    cap = capability(pf)
    base = t.address.pf_bus_devfn
    out = []
    for index in range(count):
        rid = base + cap.offset + cap.stride * index
        if rid > 0xFFFF:
            raise kerr(errno.ENOMEM)
        out.append(PciAddress.from_routing_id(t.address.domain, rid))
    return out


def enable_vfs(state: KernelState, pf: Device, count: int, addresses: list[PciAddress]) -> None:
    """``sriov_add_vfs``: create, link and probe VFs 0..count-1 in order."""
    assert pf.sriov is not None
    t = pf.t
    vfio_override = pf.driver.name if pf.driver is not None and pf.driver.vfio else None
    for index, address in enumerate(addresses[:count]):
        # A VF repeats its PF's ids except the device id; it has no SR-IOV
        # capability, VPD, children or fixed group of its own.
        vt = DeviceSpec(
            address=address, vendor=t.vendor, device=capability(pf).vf_device,
            class_code=t.class_code, subsystem_vendor=t.subsystem_vendor,
            subsystem_device=t.subsystem_device, revision=t.revision,
            numa_node=pf.numa_node, parent=t.parent, reset_methods=list(VF_RESET_METHODS),
        )
        vf = create_device(state, vt, physfn=pf, vf_index=index)
        if pf.iommu_group is not None:
            join_group(state, vf, state.group_ids.alloc(), object())
        if vfio_override is not None:
            vf.override = vfio_override
            refresh(state, vf, Change.OVERRIDE)
        link_vf(state, pf, vf, index)
        pf.sriov.vfs.append(vf)
        device_attach(state, vf)
    refresh(state, pf, Change.NUMVFS)


def configure(state: KernelState, pf: Device, count: int, path: str) -> None:
    """``sriov_numvfs_store`` after parsing: checks in kernel order, then act."""
    sriov = pf.sriov
    assert sriov is not None
    if count > capability(pf).totalvfs:
        raise kerr(errno.ERANGE)
    current = len(sriov.vfs)
    if count == current:
        return
    drv = pf.driver
    if drv is None or not (drv.sriov or drv.vfio):
        raise kerr(errno.ENOENT)
    if drv.vfio and not state.options.vfio_enable_sriov:
        raise kerr(errno.ENOENT)
    if count == 0:
        ensure_not_blocking(state, sriov.vfs, "sriov_numvfs=0", path)
        disable_vfs(state, pf)
        return
    if current:
        raise kerr(errno.EBUSY)
    addresses = vf_addresses(pf, count)
    if any(address in state.devices for address in addresses):
        raise kerr(errno.ENOMEM)
    enable_vfs(state, pf, count, addresses)


def sriov_numvfs_store(state: KernelState, dev: Device, data: bytes, path: str) -> None:
    """``sriov_numvfs``: not a u16 gives EINVAL; see :func:`configure`."""
    try:
        count = kstrtou16(data)
    except OSError:
        raise kerr(errno.EINVAL) from None
    configure(state, dev, count, path)


def sriov_vf_msix_count_store(state: KernelState, dev: Device, data: bytes, path: str) -> None:
    """VF ``sriov_vf_msix_count``: no fake PF driver can set MSI-X counts (EOPNOTSUPP)."""
    try:
        count = kstrtoint(data)
    except OSError:
        raise kerr(errno.EINVAL) from None
    if count < 0:
        raise kerr(errno.EINVAL)
    raise kerr(errno.EOPNOTSUPP)


def sriov_drivers_autoprobe_store(
    state: KernelState, dev: Device, data: bytes, path: str
) -> None:
    """``sriov_drivers_autoprobe``: kstrtobool, checked at every later VF probe."""
    assert dev.sriov is not None
    dev.sriov.drivers_autoprobe = kstrtobool(data)
    refresh(state, dev, Change.VF_AUTOPROBE)
