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

from hostdev.errors import HostdevError, NotAssignable
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
    now = netlink.read_vf(txn.sysfs, ifname, index, dev.address)
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
