"""A NIC VF's network settings (MAC, VLAN...): saved, set for a guest, given back.

libvirt's virHostdevNetConfigReplace / Restore. The settings live in the PF's
driver, so they are read and written through the PF's interface (see
:mod:`hostdev.linux.netlink`). Prepare reads what it will change (journaled
before the first write, saved in the record), applies the guest's values after
the PCI move and pushes their undo; reattach gives the saved values back before
the VF leaves its stub (so the VF's own driver starts with them); recovery puts
back what a dead transaction journaled; reconcile reports a VF whose settings
no longer match its record.
"""

from __future__ import annotations

from collections.abc import Callable

from hostdev.address import PciAddress
from hostdev.errors import BadInput, HostdevError, NotAssignable
from hostdev.linux import netlink
from hostdev.linux.device import PciDevice
from hostdev.ops.transaction import Transaction, UndoStep
from hostdev.state.journal import VfNetBefore
from hostdev.state.records import DeviceRecord, VfNetConfig, VfNetValues


def before(txn: Transaction, dev: PciDevice, config: VfNetConfig) -> VfNetBefore:
    """The current values of every setting ``config`` changes (read before any write).

    NotAssignable when ``dev`` is not a VF of a PF that carries an interface."""
    pf = dev.vf.pf if dev.vf is not None else None
    ifname = netlink.require_pf_interface(txn.sysfs, dev.address, pf)
    index = dev.vf.index if dev.vf is not None else None
    if pf is None or index is None:
        raise NotAssignable(f"cannot tell which VF of its PF {dev.address} is: its PF does"
                            " not list it", address=dev.address)
    entries = netlink.read_vfs(txn.sysfs, ifname, dev.address)
    now = netlink.vf_entry(entries, ifname, index, dev.address)
    if config.mac is not None:
        _refuse_shared_mac(txn, dev.address, pf, ifname, index, config.mac, entries)
    wanted = _with_partner(config.fields())
    unknown = [key for key in wanted if now[key] is None]
    if unknown:
        raise NotAssignable(
            f"VF {dev.address}: the driver of its PF {pf} does not report its {unknown[0]}"
            " setting, so hostdev could not give it back after the guest: leave"
            f" {unknown[0]} out of the network configuration", address=dev.address)
    return VfNetBefore(address=dev.address, pf=pf, index=index,
                       identity=txn.sysfs.identity(dev.address),
                       values=VfNetValues(**{key: now[key] for key in wanted}))


def _refuse_shared_mac(txn: Transaction, vf: PciAddress, pf: PciAddress, ifname: str,
                       index: int, mac: str, entries: list[netlink.VfConfig]) -> None:
    """BadInput when another VF of the PF already carries ``mac``: the PF's switch
    would deliver that address's frames to one of the two only. All zeros is no MAC."""
    if mac == netlink.VF_DEFAULTS["mac"]:
        return
    for entry in entries:
        if entry["vf"] == index or str(entry["mac"]).lower() != mac:
            continue
        other = _vf_address(txn, pf, int(entry["vf"]))
        record = txn.lists.active.get(other) if other is not None else None
        owner = record.owner if record is not None else None
        named = f"VF {entry['vf']}" + (f" ({other})" if other is not None else "")
        if owner is not None:
            named = f"VF {entry['vf']} ({other}, assigned to {owner.driver}/{owner.domain})"
            free = f"reattach it from {owner.driver}/{owner.domain} first"
        else:
            free = f"clear it first: ip link set {ifname} vf {entry['vf']} mac 00:00:00:00:00:00"
        raise BadInput(
            f"MAC address {mac} for VF {vf} is already the MAC of {named} of the same PF"
            f" {pf} ({ifname}), and two VFs of one PF cannot share a MAC: give VF {vf}"
            f" another MAC, or {free}", address=vf)


def refuse_shared_macs(specs: dict[PciAddress, VfNetConfig],
                       saved: dict[PciAddress, VfNetBefore]) -> None:
    """BadInput when two VFs of one PF in the same batch ask for the same MAC."""
    seen: dict[tuple[PciAddress, str], PciAddress] = {}
    for address, config in specs.items():
        if config.mac is None or address not in saved:
            continue
        key = (saved[address].pf, config.mac)
        if key in seen:
            raise BadInput(
                f"MAC address {config.mac} is asked for both VF {seen[key]} and VF {address}"
                f" of PF {key[0]}: two VFs of one PF cannot share a MAC; give each its own",
                address=address)
        seen[key] = address


def _vf_address(txn: Transaction, pf: PciAddress, index: int) -> PciAddress | None:
    """The PCI address of VF ``index`` of ``pf`` (its ``virtfnN`` link), if it reads."""
    try:
        name = txn.sysfs.read_link_name(f"{txn.sysfs.device_dir(pf)}/virtfn{index}", pf)
        return PciAddress.parse(name) if name is not None else None
    except HostdevError:
        return None


def apply(txn: Transaction, record: DeviceRecord, saved: VfNetBefore,
          config: VfNetConfig) -> DeviceRecord:
    """Set ``config`` on the VF, each write's undo pushed first; the record says both."""
    applied = {**saved.values.fields(), **config.fields()}
    # A record still holding values to give back (a reattach failed to) keeps them:
    # they are what the VF had before any guest, unlike what it shows now.
    original = {**saved.values.fields(),
                **(record.net_saved.fields() if record.net_saved is not None else {})}
    done = record.model_copy(update={"net": VfNetValues(**applied),
                                     "net_saved": VfNetValues(**original)})
    # If an undo fails, the VF must not go back to the host with a guest's settings:
    # it stays on its stub, tracked with what to give back (the rollback then skips
    # the device's other undo steps), and a reattach finishes the job.
    keep = done.model_copy(update={"owner": None})
    for field, keys in netlink.WRITE_FIELDS.items():
        if not any(key in config.fields() for key in keys):
            continue
        old = {key: saved.values.fields()[key] for key in keys}
        txn.push(UndoStep(what=f"set {_shown(old)} back on VF {saved.index} of {saved.pf}",
                          run=_writer(txn, saved, field, old), keep_if_failed=keep,
                          address=saved.address))
        _writer(txn, saved, field, {key: applied[key] for key in keys})()
    return done


def _settings_of(record: DeviceRecord, values: VfNetValues | None) -> VfNetBefore | None:
    """``values`` as settings of the record's VF (None: nothing, or not a VF)."""
    if values is None or record.pf is None or record.vf_index is None:
        return None
    return VfNetBefore(address=record.address, pf=record.pf, index=record.vf_index,
                       identity=record.identity, values=values)


def restore(txn: Transaction, record: DeviceRecord) -> None:
    """Give the VF the settings it had before we changed them (HostdevError if not)."""
    saved = _settings_of(record, record.net_saved)
    if saved is not None:
        put_back(txn, saved)


def journaled(record: DeviceRecord) -> VfNetBefore | None:
    """What a transaction about to give the record's VF its settings back journals: the
    settings the record says the VF has now (None: nothing to give back)."""
    if record.net_saved is None:
        return None
    return _settings_of(record, record.net if record.net is not None else record.net_saved)


def give_back(txn: Transaction, record: DeviceRecord, journaled: VfNetBefore) -> None:
    """Restore the record's saved settings, pushing how to undo that first."""
    if record.pf is None or record.vf_index is None:
        return
    now = VfNetBefore(address=record.address, pf=record.pf, index=record.vf_index,
                      identity=journaled.identity,
                      values=VfNetValues(**netlink.read_vf(
                          txn.sysfs, _interface(txn, journaled), record.vf_index,
                          record.address)))
    txn.push(UndoStep(what=f"set the network settings of VF {record.address} back",
                      run=lambda: put_back(txn, now)))
    restore(txn, record)


def reapply(txn: Transaction, record: DeviceRecord) -> None:
    """Give the VF the guest's settings again (the record's ``net``): a reattach gave
    the host's back, then found a VFIO user still holding the VF."""
    guest = _settings_of(record, record.net)
    if guest is not None:
        put_back(txn, guest)


def put_back(txn: Transaction, saved: VfNetBefore) -> list[str]:
    """Write every saved setting that differs from what the PF reports; what changed."""
    ifname = _interface(txn, saved)
    now = netlink.read_vf(txn.sysfs, ifname, saved.index, saved.address)
    values = saved.values.fields()
    done = []
    for field, keys in netlink.WRITE_FIELDS.items():
        if not any(key in values for key in keys):
            continue
        want = {key: values.get(key, now[key]) for key in keys}
        if all(now[key] == want[key] for key in keys):
            continue
        netlink.write_vf(txn.sysfs, ifname, saved.index, field, want, saved.address)
        done.append(_shown(want))
    return done


def drift(txn: Transaction, record: DeviceRecord) -> list[str]:
    """Settings of the record's VF that differ from what the record says ('KEY A, not B')."""
    if record.net is None or record.pf is None or record.vf_index is None:
        return []
    ifname = netlink.pf_interface(txn.sysfs, record.pf)
    if ifname is None:
        return [f"its PF {record.pf} carries no network interface any more"]
    now = netlink.read_vf(txn.sysfs, ifname, record.vf_index, record.address)
    # A setting the driver does not report (None) cannot be said to have drifted.
    return [f"{key} {now[key]}, not {value}" for key, value in record.net.fields().items()
            if now[key] is not None and now[key] != value]


def _with_partner(fields: dict[str, object]) -> list[str]:
    """The keys a change of ``fields`` writes (VLAN and QoS go together)."""
    keys = set(fields)
    for written in netlink.WRITE_FIELDS.values():
        if keys & set(written):
            keys |= set(written)
    return [key for key in netlink.VF_FIELDS if key in keys]


def _interface(txn: Transaction, saved: VfNetBefore) -> str:
    ifname = netlink.pf_interface(txn.sysfs, saved.pf)
    if ifname is None:
        raise HostdevError(
            f"cannot set the network settings of VF {saved.address} back: its PF {saved.pf}"
            " carries no network interface now; bind the PF's driver and run"
            " 'hostdev reconcile'",
            address=saved.address,
        )
    return ifname


def _writer(txn: Transaction, saved: VfNetBefore, field: str,
            values: dict[str, object]) -> Callable[[], None]:
    def run() -> None:
        netlink.write_vf(txn.sysfs, _interface(txn, saved), saved.index, field, values,
                         saved.address)

    return run


def _shown(values: dict[str, object]) -> str:
    return " ".join(f"{key} {value}" for key, value in values.items())
