"""Every attribute file of the fake kernel, each declared once: a device's, a
driver's and the PCI bus's.

An entry (:class:`~hostdev.testing.model.Attr` for a device, ``DriverAttr`` for a
driver, ``BusAttr`` for ``/sys/bus/pci``) gives the file's name and mode, what it
reads as, the store handler a write runs, and, for a device, which devices have
it and the state changes after which it reads anew. The tree builder lays out the
files from these tables, the read path renders them from them, the write path
dispatches to their handlers; nothing else lists attributes. Layout and modes
follow docs/kernel-model.md §1, contents §7.2, the store handlers §7.1.

Write-only files (no ``show``) cannot be opened for reading: kernfs refuses the
open with EACCES, for root too; files without a ``store`` refuse opening for
writing the same way (see :mod:`hostdev.testing.opens`).
"""

from __future__ import annotations

from collections.abc import Mapping

from hostdev.testing import attrs, drivers, hotplug, readout, sriov
from hostdev.testing.hostspec import SriovSpec
from hostdev.testing.model import Attr, BusAttr, Change, Device, DriverAttr, KernelState

_RO = 0o444
_RW = 0o644
_WO = 0o200

#: A driver binding or a VFIO user changes these (plus what ``enable`` changes).
_BINDING = frozenset({Change.BINDING})
_POWER = frozenset({Change.BINDING, Change.ENABLE})


def _has_reset(dev: Device) -> bool:
    return bool(dev.t.reset_methods)


def _not_vf(dev: Device) -> bool:
    return not dev.is_vf


def _is_vf(dev: Device) -> bool:
    return dev.is_vf


def _is_pf(dev: Device) -> bool:
    return dev.sriov is not None


def _has_vpd(dev: Device) -> bool:
    return dev.t.vpd is not None


def _sriov(dev: Device) -> SriovSpec:
    sriov = dev.t.sriov
    assert sriov is not None  # only PFs have these files
    return sriov


def _vpd(dev: Device) -> bytes:
    return dev.t.vpd.encode() if dev.t.vpd is not None else b""


def _numvfs(dev: Device) -> str:
    return f"{len(dev.sriov.vfs) if dev.sriov else 0}\n"


def _vf_autoprobe(dev: Device) -> str:
    return f"{int(dev.sriov.drivers_autoprobe) if dev.sriov else 1}\n"


def _override(dev: Device) -> str:
    return f"{dev.override if dev.override is not None else '(null)'}\n"


def _reset_method(dev: Device) -> str:
    return " ".join(dev.reset_methods) + "\n" if dev.reset_methods else ""


#: In the order the files appear in a device directory.
ATTRIBUTES: tuple[Attr, ...] = (
    Attr("vendor", _RO, lambda d: f"0x{d.t.vendor:04x}\n"),
    Attr("device", _RO, lambda d: f"0x{d.t.device:04x}\n"),
    Attr("subsystem_vendor", _RO, lambda d: f"0x{d.t.subsystem_vendor:04x}\n"),
    Attr("subsystem_device", _RO, lambda d: f"0x{d.t.subsystem_device:04x}\n"),
    Attr("class", _RO, lambda d: f"0x{d.t.class_code:06x}\n"),
    Attr("revision", _RO, lambda d: f"0x{d.t.revision:02x}\n"),
    Attr("modalias", _RO, readout.modalias),
    Attr("power_state", _RO, readout.power_state, refresh_on=_POWER),
    Attr("config", _RW, readout.config_space, attrs.accept_store),
    Attr("uevent", _RW, readout.uevent, attrs.accept_store, refresh_on=_BINDING),
    Attr("driver_override", _RW, _override, attrs.driver_override_store,
         refresh_on=frozenset({Change.OVERRIDE})),
    Attr("numa_node", _RW, lambda d: f"{d.numa_node}\n", attrs.numa_node_store),
    Attr("enable", _RW, lambda d: f"{readout.enable_count(d)}\n", attrs.enable_store,
         refresh_on=_POWER),
    Attr("reset", _WO, None, attrs.reset_store, present=_has_reset),
    Attr("reset_method", _RW, _reset_method, attrs.reset_method_store, present=_has_reset),
    Attr("remove", _WO, None, hotplug.remove_store, present=_not_vf),
    Attr("rescan", _WO, None, hotplug.dev_rescan_store, present=_not_vf),
    Attr("sriov_vf_msix_count", _WO, None, sriov.sriov_vf_msix_count_store, present=_is_vf),
    Attr("sriov_totalvfs", _RO, lambda d: f"{_sriov(d).totalvfs}\n", present=_is_pf),
    Attr("sriov_offset", _RO, lambda d: f"{_sriov(d).offset}\n", present=_is_pf),
    Attr("sriov_stride", _RO, lambda d: f"{_sriov(d).stride}\n", present=_is_pf),
    Attr("sriov_vf_device", _RO, lambda d: f"{_sriov(d).vf_device:x}\n", present=_is_pf),
    Attr("sriov_numvfs", 0o664, _numvfs, sriov.sriov_numvfs_store,
         refresh_on=frozenset({Change.NUMVFS}), present=_is_pf),
    Attr("sriov_drivers_autoprobe", 0o664, _vf_autoprobe, sriov.sriov_drivers_autoprobe_store,
         refresh_on=frozenset({Change.VF_AUTOPROBE}), present=_is_pf),
    Attr("sriov_vf_total_msix", _RO, lambda d: "0\n", present=_is_pf),
    # binary, root only, as pci-sysfs makes it
    Attr("vpd", 0o600, _vpd, present=_has_vpd),
    # Runtime PM (``runtime_usage`` needs CONFIG_PM_ADVANCED_DEBUG, which the
    # real-kernel tier's distribution kernel has).
    Attr("power/runtime_status", _RO, readout.runtime_status, refresh_on=_BINDING),
    Attr("power/runtime_usage", _RO, readout.runtime_usage, refresh_on=_BINDING),
)

#: The registry the fake kernel installs, by file name.
DEVICE_ATTRIBUTES: Mapping[str, Attr] = {attr.name: attr for attr in ATTRIBUTES}

#: The files of every driver's directory.
DRIVER_ATTRIBUTES: Mapping[str, DriverAttr] = {attr.name: attr for attr in (
    DriverAttr("bind", _WO, drivers.bind_store),
    DriverAttr("unbind", _WO, drivers.unbind_store),
    DriverAttr("new_id", _WO, drivers.new_id_store),
    DriverAttr("remove_id", _WO, drivers.remove_id_store),
)}


def _autoprobe(state: KernelState) -> str:
    return f"{int(state.drivers_autoprobe)}\n"


#: The files of ``/sys/bus/pci``.
BUS_ATTRIBUTES: Mapping[str, BusAttr] = {attr.name: attr for attr in (
    BusAttr("drivers_probe", _WO, drivers.drivers_probe_store),
    BusAttr("drivers_autoprobe", _RW, drivers.drivers_autoprobe_store, _autoprobe),
    BusAttr("rescan", _WO, hotplug.bus_rescan_store),
)}
