"""The VF choice of allocate() as a pure function: scanned devices and lists in, VFs out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from hostdev.address import PciAddress
from hostdev.errors import NotEnoughFreeVfs
from hostdev.linux.device import PciDevice, SriovInfo, VfInfo
from hostdev.ops.allocate import VfRequest, select
from hostdev.state.lists import Lists
from hostdev.state.records import DeviceRecord, Owner

VM1 = Owner(driver="qemu", domain="vm1")
VM2 = Owner(driver="qemu", domain="vm2")
PF_A = PciAddress.parse("0000:10:00.0")  # NUMA node 0
PF_B = PciAddress.parse("0000:20:00.0")  # NUMA node 1


def _a(text: str) -> PciAddress:
    return PciAddress.parse(text)


def _vf(address: str, pf: PciAddress, index: int | None, *, node: int | None,
        group: int | None, members: Sequence[str] = (), driver: str | None = "iavf",
        device: int = 0x154C) -> PciDevice:
    addr = _a(address)
    return PciDevice(address=addr, vendor=0x8086, device=device, class_code=0x020000,
                     driver=driver, iommu_group=group,
                     iommu_group_members=sorted([addr, *map(_a, members)]),
                     numa_node=node, vf=VfInfo(pf=pf, index=index))


def _pf(address: PciAddress, node: int, vfs: list[PciDevice]) -> PciDevice:
    return PciDevice(address=address, vendor=0x8086, device=0x1572, class_code=0x020000,
                     driver="i40e", iommu_group=address.bus, iommu_group_members=[address],
                     numa_node=node,
                     sriov=SriovInfo(totalvfs=8, numvfs=len(vfs), vfs=[v.address for v in vfs]))


def _host() -> list[PciDevice]:
    a = [_vf(f"0000:10:02.{i}", PF_A, i, node=0, group=100 + i) for i in range(3)]
    b = [_vf(f"0000:20:02.{i}", PF_B, i, node=1, group=200 + i) for i in range(3)]
    return [_pf(PF_A, 0, a), *a, _pf(PF_B, 1, b), *b]


def _never_busy(addresses: Sequence[PciAddress]) -> Mapping[PciAddress, tuple[str, str]]:
    return {}


def _record(address: str, owner: Owner | None) -> DeviceRecord:
    return DeviceRecord(address=_a(address), owner=owner, vendor=0x8086, device=0x154C)


def _pick(devices: list[PciDevice], count: int, lists: Lists | None = None,
          **filters: object) -> list[str]:
    request = VfRequest.parse(count, **filters)  # type: ignore[arg-type]
    chosen = select(devices, lists or Lists(), VM1, request, stub="vfio-pci",
                    busy=_never_busy).chosen
    return [str(a) for a in chosen]


def test_order_is_node_then_pf_then_index() -> None:
    host = _host()
    assert _pick(host, 4) == ["0000:10:02.0", "0000:10:02.1", "0000:10:02.2", "0000:20:02.0"]
    assert _pick(host, 4, numa_node=1) == [
        "0000:20:02.0", "0000:20:02.1", "0000:20:02.2", "0000:10:02.0"]
    # The same input always gives the same answer, whatever the scan's order.
    assert _pick(list(reversed(host)), 4, numa_node=1) == _pick(host, 4, numa_node=1)


def test_vf_index_orders_within_a_pf_and_unknown_indexes_go_last() -> None:
    vfs = [_vf("0000:10:02.0", PF_A, None, node=0, group=1),
           _vf("0000:10:02.1", PF_A, 1, node=0, group=2),
           _vf("0000:10:02.2", PF_A, 0, node=0, group=3)]
    assert _pick(vfs, 3) == ["0000:10:02.2", "0000:10:02.1", "0000:10:02.0"]


def test_unknown_numa_node_is_off_node() -> None:
    vfs = [_vf("0000:10:02.0", PF_A, 0, node=None, group=1),
           _vf("0000:20:02.0", PF_B, 0, node=0, group=2)]
    selection = select(vfs, Lists(), VM1, VfRequest.parse(2, numa_node=0), stub="vfio-pci",
                       busy=_never_busy)
    assert [str(a) for a in selection.chosen] == ["0000:20:02.0", "0000:10:02.0"]
    assert selection.off_node == [_a("0000:10:02.0")]


def test_filters() -> None:
    host = _host()
    assert _pick(host, 1, pf=PF_B, numa_node=0) == ["0000:20:02.0"]
    host.append(_vf("0000:30:02.0", _a("0000:30:00.0"), 0, node=0, group=300,
                    device=0x1889))
    assert _pick(host, 1, vendor_device="8086:1889") == ["0000:30:02.0"]


def test_group_not_viable_or_shared_with_another_owner() -> None:
    host = _host()
    # 10:02.0 shares its group with a function on a host driver; 10:02.1 with an
    # active device of vm2; 10:02.2 with one of vm1 (the same owner: fine).
    shared = {"0000:10:02.0": "0000:10:04.0", "0000:10:02.1": "0000:10:05.0",
              "0000:10:02.2": "0000:10:06.0"}
    host = [d for d in host if str(d.address) not in shared]
    for i, (vf, other) in enumerate(shared.items()):
        host.append(_vf(vf, PF_A, i, node=0, group=400 + i, members=[other]))
        host.append(PciDevice(address=_a(other), vendor=0x8086, device=0x1234,
                              class_code=0x020000, driver="e1000e" if i == 0 else "vfio-pci",
                              iommu_group=400 + i, iommu_group_members=sorted(
                                  [_a(vf), _a(other)])))
    lists = Lists(active={_a("0000:10:05.0"): _record("0000:10:05.0", VM2),
                          _a("0000:10:06.0"): _record("0000:10:06.0", VM1)})
    request = VfRequest.parse(6, pf=PF_A)
    with pytest.raises(NotEnoughFreeVfs) as info:
        select(host, lists, VM1, request, stub="vfio-pci", busy=_never_busy)
    assert info.value.free == [_a("0000:10:02.2")]
    assert info.value.not_free == {
        _a("0000:10:02.0"): "IOMMU group not viable: 0000:10:04.0 on e1000e",
        _a("0000:10:02.1"): "IOMMU group not viable: 0000:10:05.0 assigned to qemu/vm2",
    }


def test_kernel_is_asked_only_about_vfs_still_free() -> None:
    host = _host()
    asked: list[PciAddress] = []

    def busy(addresses: Sequence[PciAddress]) -> Mapping[PciAddress, tuple[str, str]]:
        asked.extend(addresses)
        return {_a("0000:10:02.1"): ("held by a VFIO user", "qemu (pid 7, group 101)")}

    lists = Lists(active={_a("0000:10:02.0"): _record("0000:10:02.0", VM2)},
                  inactive={_a("0000:20:02.0"): _record("0000:20:02.0", None)})
    selection = select(host, lists, VM1, VfRequest.parse(2), stub="vfio-pci", busy=busy)
    assert _a("0000:10:02.0") not in asked and _a("0000:20:02.0") not in asked
    assert len(asked) == 4
    assert [str(a) for a in selection.chosen] == ["0000:10:02.2", "0000:20:02.1"]
    assert selection.candidates == 6 and len(selection.free) == 3
    assert selection.not_free[_a("0000:10:02.1")][0] == "held by a VFIO user"


def test_no_iommu_group_is_fine_for_pci_stub_only() -> None:
    vfs = [_vf("0000:10:02.0", PF_A, 0, node=0, group=None)]
    for stub in ("vfio-pci", "auto", "mlx5_vfio_pci"):
        with pytest.raises(NotEnoughFreeVfs, match="1 no IOMMU group"):
            select(vfs, Lists(), VM1, VfRequest.parse(1), stub=stub, busy=_never_busy)
    assert select(vfs, Lists(), VM1, VfRequest.parse(1), stub="pci-stub",
                  busy=_never_busy).chosen == [vfs[0].address]


def test_long_lists_of_refusals_are_cut_short() -> None:
    vfs = [_vf(f"0000:10:{2 + i // 8:02x}.{i % 8}", PF_A, i, node=0, group=i)
           for i in range(10)]
    lists = Lists(active={v.address: _record(str(v.address), VM2) for v in vfs})
    with pytest.raises(NotEnoughFreeVfs) as info:
        select(vfs, lists, VM1, VfRequest.parse(1), stub="vfio-pci", busy=_never_busy)
    assert str(info.value).endswith(
        "0 of 10 candidate VFs are free; not free: 10 assigned (0000:10:02.0, 0000:10:02.1,"
        " 0000:10:02.2, 7 more)")
    assert len(info.value.not_free) == 10
