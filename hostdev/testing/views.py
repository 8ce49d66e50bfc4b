"""Read-only snapshots of fake-kernel state for test assertions."""

from __future__ import annotations

from dataclasses import dataclass

from hostdev.testing.model import Device
from hostdev.testing.readout import enable_count


@dataclass(frozen=True)
class DeviceState:
    """What the fake kernel knows about one device, at the time of the call."""

    address: str
    path: str
    vendor: int
    device: int
    class_code: int
    driver: str | None
    driver_override: str | None
    iommu_group: int | None
    numa_node: int
    is_vf: bool
    physfn: str | None
    vf_index: int | None
    numvfs: int
    vfs: tuple[str, ...]
    sriov_drivers_autoprobe: bool | None
    reset_methods: tuple[str, ...]
    reset_count: int
    enable_count: int
    vfio_index: int | None
    holder_pids: tuple[int, ...]


def device_state(dev: Device) -> DeviceState:
    """Snapshot ``dev``."""
    sriov = dev.sriov
    return DeviceState(
        address=dev.name,
        path=dev.path,
        vendor=dev.t.vendor,
        device=dev.t.device,
        class_code=dev.t.class_code,
        driver=dev.driver.name if dev.driver else None,
        driver_override=dev.override,
        iommu_group=dev.iommu_group,
        numa_node=dev.numa_node,
        is_vf=dev.is_vf,
        physfn=dev.physfn.name if dev.physfn else None,
        vf_index=dev.vf_index,
        numvfs=len(sriov.vfs) if sriov else 0,
        vfs=tuple(vf.name for vf in sriov.vfs) if sriov else (),
        sriov_drivers_autoprobe=sriov.drivers_autoprobe if sriov else None,
        reset_methods=dev.reset_methods,
        reset_count=dev.reset_count,
        enable_count=enable_count(dev),
        vfio_index=dev.vfio_index,
        holder_pids=tuple(sorted({h.pid for h in dev.holders})),
    )
