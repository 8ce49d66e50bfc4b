"""Prepare: give devices to an owner (libvirt's virHostdevPreparePCIDevices, fixed).

Order: check every device, read the network settings a NIC VF's spec changes,
detach managed ones to their stub (adopt unmanaged ones already there), reset
all once all are detached, set the VFs' network settings through their PFs,
then move them to the active list with their owner. Any failure undoes every
step in reverse.
"""

from __future__ import annotations

from collections.abc import Sequence

from hostdev.address import PciAddress
from hostdev.errors import DeviceInUse, NotAssignable
from hostdev.linux import binding
from hostdev.linux.device import PciDevice
from hostdev.linux.drivers import is_stub_driver, is_vfio_driver
from hostdev.linux.hostuse import check_host_use
from hostdev.ops import vf_net
from hostdev.ops.common import (
    check_group,
    check_pf,
    drop_stale,
    in_use_message,
    read_if_present,
    snapshot,
    unique_specs,
)
from hostdev.ops.stub import detach_to_stub, new_record, require_stub_loaded
from hostdev.ops.transaction import Transaction
from hostdev.reports import PrepareReport
from hostdev.state.records import DeviceRecord, HostdevSpec, Owner


def prepare(txn: Transaction, owner: Owner, specs: Sequence[HostdevSpec], *,
            force: bool = False) -> PrepareReport:
    """Run a prepare inside ``txn`` (the caller rolls back on exception).

    ``force``: take devices even when the host uses what they carry (see
    :mod:`hostdev.linux.hostuse`)."""
    specs = unique_specs(specs)
    report = PrepareReport()
    devices: dict[PciAddress, PciDevice] = {}
    for spec in specs:
        dev = snapshot(txn, spec.address, "prepare")
        drop_stale(txn, dev, report.pruned)
        devices[spec.address] = dev
    # A PF is taken before its VFs (and given back after them, see reattach).
    specs.sort(key=lambda s: _is_vf_of(devices[s.address], devices))
    for spec in specs:
        _check(txn, owner, spec, devices[spec.address], devices)
    check_host_use(txn.sysfs, [s.address for s in specs if s.managed], verb="prepare",
                   force=force)
    # Read before the first write, so that the journal holds what a crash must restore.
    nets = {s.address: vf_net.before(txn, devices[s.address], s.net)
            for s in specs if s.net is not None}
    vf_net.refuse_shared_macs({s.address: s.net for s in specs if s.net is not None}, nets)
    txn.declare("prepare", list(devices.values()), vf_nets=list(nets.values()))
    records: list[DeviceRecord] = []
    for spec in specs:
        dev = devices[spec.address]
        if spec.managed:
            records.append(detach_to_stub(txn, dev, stub=spec.stub_driver, managed=True))
        else:
            records.append(_adopt_unmanaged(txn, dev, spec))
    # Only now: a bus reset hits every function on the bus.
    for record in records:
        _reset_if_needed(txn, record)
    for i, spec in enumerate(specs):
        if spec.net is not None:
            records[i] = vf_net.apply(txn, records[i], nets[spec.address], spec.net)
    for record in records:
        txn.lists.inactive.pop(record.address, None)
        active = record.model_copy(update={"owner": owner})
        txn.lists.active[record.address] = active
        report.prepared.append(active)
    return report


def _is_vf_of(dev: PciDevice, batch: dict[PciAddress, PciDevice]) -> bool:
    return dev.vf is not None and dev.vf.pf in batch


def _check(txn: Transaction, owner: Owner, spec: HostdevSpec, dev: PciDevice,
           batch: dict[PciAddress, PciDevice]) -> None:
    addr = dev.address
    if dev.is_bridge:
        raise NotAssignable(
            f"Non-endpoint PCI devices cannot be assigned to guests: {addr} is a bridge",
            address=addr,
        )
    check_pf(txn, dev, "prepare")
    record = txn.lists.active.get(addr)
    if record is not None:
        raise DeviceInUse(in_use_message(addr, record), address=addr)
    group = check_group(txn.lists, owner, dev, batch, lambda m: read_if_present(txn, m))
    if group.taken is not None:
        member, other = group.taken
        raise DeviceInUse(
            f"{in_use_message(member, other)} (IOMMU group {dev.iommu_group} of {addr})",
            address=member,
        )
    if group.on_host:
        raise NotAssignable(
            f"PCI device {addr} cannot be assigned: its IOMMU group {dev.iommu_group} is not"
            f" viable, members still on host drivers: {', '.join(group.on_host)};"
            " detach them first or assign them in the same call",
            address=addr,
        )
    if spec.managed:
        require_stub_loaded(txn, spec.stub_driver, dev)
    elif addr not in txn.lists.inactive and not is_stub_driver(dev.driver, dev.vfio_dev):
        raise _not_detached(dev)


def _not_detached(dev: PciDevice) -> NotAssignable:
    return NotAssignable(
        f"Unmanaged PCI device {dev.address} must be manually detached from the host first"
        f" (driver is {dev.driver or 'none'}): run 'hostdev detach {dev.address}'",
        address=dev.address,
    )


def _adopt_unmanaged(txn: Transaction, dev: PciDevice, spec: HostdevSpec) -> DeviceRecord:
    existing = txn.lists.inactive.get(dev.address)
    if existing is not None and dev.driver == existing.stub_driver:
        return existing
    if dev.driver is None or not is_stub_driver(dev.driver, dev.vfio_dev):
        # Tracked inactive, but taken off its stub behind our back since.
        raise _not_detached(dev)
    record = new_record(txn, dev, stub=dev.driver, managed=False, original_driver=dev.driver,
                        original_override=dev.driver_override, unbind_from_stub=False)
    txn.lists.inactive[dev.address] = record
    return record


def _reset_if_needed(txn: Transaction, record: DeviceRecord) -> None:
    # vfio-pci resets the device itself when the guest opens it (as libvirt relies on).
    driver = binding.current_driver(txn.sysfs, record.address)
    if is_vfio_driver(driver) or txn.sysfs.exists(
            txn.sysfs.device_path(record.address, "vfio-dev")):
        return
    binding.reset(txn.sysfs, record.address)
