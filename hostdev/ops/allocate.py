"""Allocate: choose free VFs for an owner (the manager then prepares them).

A request names how many VFs, and optionally a PF, a NUMA node and a
``vendor:device`` id. The PF and the id are filters: a VF of another port may
sit on another network, so it is never handed out in place of the port asked
for. The NUMA node is a preference: VFs on that node come first, and when there
are not enough of them VFs on other nodes make up the count (the report names
them), since locality changes speed, not correctness.

A candidate (a VF matching the filters) is free when it is in neither list,
is not on a user-space I/O driver, its IOMMU group can go to VFIO (the check
prepare makes, :func:`hostdev.ops.common.check_group`, with the VF alone), no
VFIO user holds it, and the host uses nothing it carries. Free VFs are taken in
this order, the same every time for the same host: on the preferred NUMA node
first, then by PF address, then by VF index.

:func:`select` is the choice itself, over scanned devices and the lists (the
kernel's answers about holders and host use come through a callable), so it
is tested without a host; :func:`choose` reads the host and calls it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field

from hostdev.address import AddressLike, PciAddress
from hostdev.errors import BadInput, DeviceNotFound, NotEnoughFreeVfs
from hostdev.linux.device import PciDevice
from hostdev.linux.drivers import USER_SPACE_DRIVERS, is_vfio_driver
from hostdev.linux.hostuse import HostUseScan
from hostdev.linux.modules import AUTO
from hostdev.linux.netlink import pf_interface
from hostdev.linux.scan import scan
from hostdev.linux.sysfs import Sysfs
from hostdev.linux.vfio import holders_of
from hostdev.ops.common import check_group
from hostdev.ops.transaction import Transaction
from hostdev.state.lists import Lists
from hostdev.state.records import Owner

_IDS = re.compile(r"([0-9a-fA-F]{4}):([0-9a-fA-F]{4})")
#: How many addresses of one kind of refusal the error message names.
_NAMED = 3

#: Answers, for the candidates the lists and groups leave free, what the kernel
#: says keeps some of them busy (a VFIO holder, a host use): address -> (kind, detail).
BusyCheck = Callable[[Sequence[PciAddress]], Mapping[PciAddress, tuple[str, str]]]


@dataclass(frozen=True)
class VfRequest:
    """What an allocation asks for (checked by :meth:`parse`)."""

    count: int
    #: Only VFs of this PF.
    pf: PciAddress | None = None
    #: VFs on this NUMA node first.
    numa_node: int | None = None
    #: Only VFs with this (vendor, device) id.
    ids: tuple[int, int] | None = None

    @classmethod
    def parse(cls, count: object, *, pf: AddressLike | None = None,
              numa_node: object = None, vendor_device: object = None) -> VfRequest:
        """Check the caller's values; BadInput naming the first bad one."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise BadInput(f"VF count must be a whole number of at least 1, not {count!r}")
        node: int | None = None
        if numa_node is not None:
            if isinstance(numa_node, bool) or not isinstance(numa_node, int) or numa_node < 0:
                raise BadInput(f"NUMA node must be a whole number >= 0, not {numa_node!r}")
            node = numa_node
        ids: tuple[int, int] | None = None
        if vendor_device is not None:
            match = _IDS.fullmatch(vendor_device) if isinstance(vendor_device, str) else None
            if match is None:
                raise BadInput(f"invalid id {str(vendor_device)[:40]!r}: expected VVVV:DDDD"
                               " in hex, e.g. 8086:154c")
            ids = (int(match[1], 16), int(match[2], 16))
        return cls(count=count, pf=None if pf is None else PciAddress.parse(pf),
                   numa_node=node, ids=ids)

    def matches(self, dev: PciDevice) -> bool:
        """``dev`` is a VF that passes the filters (PF, id)."""
        if dev.vf is None:
            return False
        if self.pf is not None and dev.vf.pf != self.pf:
            return False
        return self.ids is None or (dev.vendor, dev.device) == self.ids

    def filters(self) -> str:
        """The filters in words (empty when none): `` of PF X with id V:D``."""
        text = "" if self.pf is None else f" of PF {self.pf}"
        if self.ids is not None:
            text += f" with id {self.ids[0]:04x}:{self.ids[1]:04x}"
        return text


@dataclass
class Selection:
    """The outcome of :func:`select`."""

    #: The VFs to prepare, in preference order.
    chosen: list[PciAddress]
    #: How many VFs matched the filters.
    candidates: int
    #: Every free candidate, in preference order (``chosen`` is its head).
    free: list[PciAddress]
    #: Why each other candidate is not free: (kind, detail).
    not_free: dict[PciAddress, tuple[str, str]] = field(default_factory=dict)
    #: Chosen VFs that are not on the NUMA node asked for.
    off_node: list[PciAddress] = field(default_factory=list)


def select(devices: Sequence[PciDevice], lists: Lists, owner: Owner, request: VfRequest,
           *, stub: str, busy: BusyCheck,
           nic_pfs: Set[PciAddress] | None = None) -> Selection:
    """Choose ``request.count`` free VFs among ``devices`` (a scan of the host).

    ``stub``: the driver they will be moved to (a vfio one needs an IOMMU
    group). ``busy`` is asked once, about the candidates still free after the
    checks that need no kernel read. ``nic_pfs``: when the VFs get a network
    configuration, the PFs that carry a network interface (a VF of another PF
    cannot take one). Raises :class:`NotEnoughFreeVfs` (nothing
    chosen) when fewer than ``request.count`` are free.
    """
    by_address = {d.address: d for d in devices}
    candidates = [d for d in devices if request.matches(d)]
    not_free: dict[PciAddress, tuple[str, str]] = {}
    for dev in candidates:
        reason = _refusal(dev, lists, owner, stub, by_address)
        if reason is None and nic_pfs is not None and dev.vf is not None \
                and dev.vf.pf not in nic_pfs:
            reason = ("no network interface on its PF", "a network configuration needs one")
        if reason is not None:
            not_free[dev.address] = reason
    remaining = [d.address for d in candidates if d.address not in not_free]
    found = busy(remaining) if remaining else {}
    not_free.update((a, found[a]) for a in remaining if a in found)
    free = sorted((d for d in candidates if d.address not in not_free),
                  key=lambda d: _preference(d, request))
    if len(free) < request.count:
        raise _not_enough(request, owner, candidates, free, not_free, by_address)
    chosen = free[:request.count]
    return Selection(
        chosen=[d.address for d in chosen], candidates=len(candidates),
        free=[d.address for d in free], not_free=not_free,
        off_node=[d.address for d in chosen if _off_node(d, request)],
    )


def choose(txn: Transaction, owner: Owner, request: VfRequest, stub: str, *,
           needs_interface: bool = False) -> Selection:
    """Read the host and :func:`select` among its VFs (no write).

    ``needs_interface``: the VFs get a network configuration, so only VFs of a PF
    that carries a network interface are candidates for it.

    A device a write of ours is still blocked on is left out of the scan (reading
    it would block too), so it is never a candidate.
    """
    devices = scan(txn.sysfs, warnings=[], busy=[])
    if request.pf is not None:
        pf = next((d for d in devices if d.address == request.pf), None)
        if pf is None:
            raise DeviceNotFound.at(request.pf, "allocate its VFs")
        if pf.sriov is None:
            raise BadInput(f"PCI device {request.pf} is not an SR-IOV PF: name a PF"
                           " (a device 'hostdev list' shows as 'PF (n/m VFs)')")
    # The scan read each function's interfaces already (its ``net/`` directory); of a PF
    # with VFs, one must be its own interface, not only switchdev representors.
    nic_pfs = {d.address for d in devices
               if d.netdevs and d.sriov is not None and d.sriov.vfs
               and pf_interface(txn.sysfs, d.address) is not None} if needs_interface else None
    return select(devices, txn.lists, owner, request, stub=stub,
                  busy=lambda addresses: kernel_busy(txn.sysfs, addresses), nic_pfs=nic_pfs)


def kernel_busy(sysfs: Sysfs, addresses: Sequence[PciAddress]
                ) -> dict[PciAddress, tuple[str, str]]:
    """The devices among ``addresses`` a VFIO user holds or that carry what the host
    uses, with who or what (one pass over ``/proc`` and the host's tables)."""
    out: dict[PciAddress, tuple[str, str]] = {}
    for address, found in holders_of(sysfs, list(addresses)).items():
        if found:
            out[address] = ("held by a VFIO user", ", ".join(str(h) for h in found))
    uses = HostUseScan(sysfs)
    for address in addresses:
        if address not in out:
            used = uses.of(address)
            if used:
                out[address] = ("used by the host", ", ".join(str(u) for u in used))
    return out


def _refusal(dev: PciDevice, lists: Lists, owner: Owner, stub: str,
             by_address: Mapping[PciAddress, PciDevice]) -> tuple[str, str] | None:
    """Why ``dev`` is not free, from the lists and the scan alone (None: it may be)."""
    record = lists.active.get(dev.address)
    if record is not None:
        who = "" if record.owner is None else f"{record.owner.driver}/{record.owner.domain}"
        return ("assigned", who)
    if dev.address in lists.inactive:
        return ("detached (inactive list)", "")
    if dev.driver in USER_SPACE_DRIVERS:
        return ("on a user-space I/O driver", str(dev.driver))
    if dev.iommu_group is None:
        if stub == AUTO or is_vfio_driver(stub):
            return ("no IOMMU group", "is the IOMMU on?")
        return None
    group = check_group(lists, owner, dev, (), by_address.get)
    if group.taken is not None:
        member, other = group.taken
        whose = "" if other.owner is None else f" to {other.owner.driver}/{other.owner.domain}"
        return ("IOMMU group not viable", f"{member} assigned{whose}")
    if group.on_host:
        return ("IOMMU group not viable", ", ".join(group.on_host))
    return None


def _off_node(dev: PciDevice, request: VfRequest) -> bool:
    return request.numa_node is not None and dev.numa_node != request.numa_node


def _preference(dev: PciDevice, request: VfRequest) -> tuple[bool, PciAddress, int, PciAddress]:
    assert dev.vf is not None
    index = dev.vf.index if dev.vf.index is not None else 1 << 16
    return (_off_node(dev, request), dev.vf.pf, index, dev.address)


def _not_enough(request: VfRequest, owner: Owner, candidates: list[PciDevice],
                free: list[PciDevice], not_free: Mapping[PciAddress, tuple[str, str]],
                by_address: Mapping[PciAddress, PciDevice]) -> NotEnoughFreeVfs:
    asked = f"{request.count} VF{'s' if request.count != 1 else ''}{request.filters()}"
    head = f"cannot allocate {asked} for {owner}"
    if not candidates:
        message = f"{head}: no VF on this host matches"
        pf = by_address.get(request.pf) if request.pf is not None else None
        if pf is not None and pf.sriov is not None and pf.sriov.numvfs == 0:
            message += (f"; PF {pf.address} has no VFs enabled: enable some with"
                        f" 'hostdev sriov {pf.address} N'")
        elif not any(d.vf is not None for d in by_address.values()):
            message += "; no PF has VFs enabled: enable some with 'hostdev sriov PF N'"
    else:
        verb = "is" if len(free) == 1 else "are"
        message = f"{head}: {len(free)} of {len(candidates)} candidate VFs {verb} free"
        if free:
            message += f" ({', '.join(str(d.address) for d in free)})"
        kinds: dict[str, list[PciAddress]] = {}
        for address in sorted(not_free):
            kinds.setdefault(not_free[address][0], []).append(address)
        parts = []
        for kind, addresses in kinds.items():
            named = ", ".join(str(a) for a in addresses[:_NAMED])
            more = f", {len(addresses) - _NAMED} more" if len(addresses) > _NAMED else ""
            parts.append(f"{len(addresses)} {kind} ({named}{more})")
        if parts:
            message += "; not free: " + "; ".join(parts)
    return NotEnoughFreeVfs(
        message, requested=request.count, candidates=len(candidates),
        free=[d.address for d in free],
        not_free={a: (f"{k}: {d}" if d else k) for a, (k, d) in not_free.items()},
    )
