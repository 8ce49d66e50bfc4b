"""A NIC PF's per-VF network settings, and the rtnetlink calls that read and set them
(and the one that lists interfaces' IPv4 addresses, for the host-use check).

The PF driver keeps, for each enabled VF, an administrative MAC, a VLAN with
its QoS, spoof checking, trust and a link state (docs/kernel-model.md §10). They
start at the kernel's defaults when the VFs are created and go with them. The
library reaches them through :mod:`hostdev.linux.netlink`; this module serves
its :data:`~hostdev.linux.netlink.transports` seam for the fake kernel's
filesystem, so a netlink call goes through the same pipeline as a sysfs write:
``fail_write`` faults (on ``netlink:IF/vfN/FIELD``), the write records and
``crash_after_writes``.

A VF bound to a host driver (not vfio, not pci-stub) whose PF carries an
interface gets an interface of its own, ``<PF interface>v<index>``; its MAC is
the administrative one when set. It goes when the VF leaves that driver.

A PF interface declared with a representor's ``phys_port_name`` (``pf0vf3``,
``c1pf0``...) answers as a switchdev representor does: no VF list, and
EOPNOTSUPP for a VF setting.
"""

from __future__ import annotations

import errno
import re
import weakref
from typing import Any

from pyfakefs.fake_file import FakeFile
from pyfakefs.fake_filesystem import FakeFilesystem

from hostdev.address import PciAddress
from hostdev.linux import netlink as netlink_module
from hostdev.linux import sysfs as sysfs_module
from hostdev.linux.drivers import USER_SPACE_DRIVERS, is_stub_driver
from hostdev.linux.sysfs import Sysfs
from hostdev.testing import children
from hostdev.testing.events import FakeKernelSetupError, SimulatedCrash, WriteRecord, kerr
from hostdev.testing.model import Device, KernelState
from hostdev.testing.vfs import set_contents

_STATES: weakref.WeakKeyDictionary[FakeFilesystem, KernelState] = weakref.WeakKeyDictionary()
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


def register(state: KernelState) -> None:
    """Serve the library's netlink calls made while ``state``'s filesystem is active."""
    if _transport not in netlink_module.transports:
        netlink_module.transports.append(_transport)
    _STATES[state.fs] = state


def _transport(sysfs: Sysfs) -> FakeNetlink | None:
    fs = getattr(vars(sysfs_module).get("os"), "filesystem", None)
    state = _STATES.get(fs) if isinstance(fs, FakeFilesystem) else None
    return FakeNetlink(state) if state is not None else None


def config(pf: Device, index: int) -> dict[str, Any]:
    """VF ``index``'s settings, kept by the PF (created at the defaults on first use)."""
    assert pf.sriov is not None
    return pf.sriov.vf_net.setdefault(index, dict(netlink_module.VF_DEFAULTS))


def pf_of_interface(state: KernelState, ifname: str) -> Device:
    """The PCI function whose driver made ``ifname`` (ENODEV when there is none)."""
    return _interface(state, ifname)[0]


def _interface(state: KernelState, ifname: str) -> tuple[Device, children.NetSpec]:
    """The PCI function whose driver made ``ifname``, and that interface."""
    if ifname in state.host.netdevs:
        for dev, owned in state.host.owned.items():
            for spec in owned.specs if dev.alive else ():
                if isinstance(spec, children.NetSpec) and spec.ifname == ifname:
                    return dev, spec
    raise kerr(errno.ENODEV)


def check(pf: Device, index: int, values: dict[str, Any]) -> None:
    """The checks of rtnetlink's do_setvfinfo and the PF driver: EOPNOTSUPP from a
    function with no VFs to configure, EINVAL for a VF index it does not have or a
    value out of range (a multicast MAC; an all-zero MAC clears it)."""
    if pf.sriov is None or pf.driver is None or not pf.driver.sriov:
        raise kerr(errno.EOPNOTSUPP)
    if not 0 <= index < len(pf.sriov.vfs):
        raise kerr(errno.EINVAL)
    mac = values.get("mac")
    if mac is not None and (not isinstance(mac, str) or not _MAC.fullmatch(mac)
                            or int(mac[:2], 16) & 1):
        raise kerr(errno.EINVAL)
    if not 0 <= int(values.get("vlan", 0)) <= 4095 or not 0 <= int(values.get("qos", 0)) <= 7:
        raise kerr(errno.EINVAL)
    state = values.get("link_state")
    if state is not None and state not in netlink_module.LINK_STATES:
        raise kerr(errno.EINVAL)


def store(state: KernelState, pf: Device, index: int, values: dict[str, Any]) -> None:
    """Apply checked values; a VF interface shows its new administrative MAC."""
    assert pf.sriov is not None
    config(pf, index).update(values)
    if "mac" in values:
        vf = pf.sriov.vfs[index]
        spec = state.host.vf_netdevs.get(vf)
        if spec is not None and spec.ifname in state.host.netdevs:
            entry = state.host.netdevs[spec.ifname].dir.entries["address"]
            assert isinstance(entry, FakeFile)
            set_contents(entry, _vf_mac(pf, index, spec) + "\n")


class FakeNetlink:
    """The fake kernel's side of :class:`hostdev.linux.netlink.Transport`."""

    def __init__(self, state: KernelState) -> None:
        self.state = state

    def vf_list(self, ifname: str) -> list[dict[str, Any]]:
        with self.state.lock:
            pf, spec = _interface(self.state, ifname)
            # No IFLA_VFINFO_LIST for a function without VFs, nor through a switchdev
            # representor: its netdev ops have no ndo_get_vf_config.
            if pf.sriov is None or children.is_representor(spec):
                return []
            return [{"vf": i, **config(pf, i)} for i in range(len(pf.sriov.vfs))]

    def ipv4_addresses(self) -> dict[str, list[str]]:
        """RTM_GETADDR: the IPv4 addresses given to each interface (``add_address``)."""
        with self.state.lock:
            return {dev.ifname: [str(a) for a in dev.addresses if a.version == 4]
                    for dev in self.state.host.netdevs.values()
                    if any(a.version == 4 for a in dev.addresses)}

    def _vf_address(self, ifname: str, index: int) -> PciAddress | None:
        """The VF a netlink write through ``ifname`` concerns (None if there is none)."""
        with self.state.lock:
            try:
                pf = pf_of_interface(self.state, ifname)
            except OSError:
                return None
            vfs = pf.sriov.vfs if pf.sriov is not None else []
            return vfs[index].address if 0 <= index < len(vfs) else None

    def set_vf(self, ifname: str, index: int, values: dict[str, Any]) -> None:
        state = self.state
        field = next(f for f, keys in netlink_module.WRITE_FIELDS.items()
                     if set(keys) == set(values))
        path = netlink_module.write_path(ifname, index, field)
        shown = " ".join(f"{k} {v}" for k, v in values.items())
        # Watched like a sysfs write (FakeKernel.watch_writes), before it takes effect.
        state.faults.before_write(path, path, lambda: self._vf_address(ifname, index))
        with state.lock:
            record = WriteRecord(path, shown, None)
            try:
                injected = state.faults.write_error(path)
                if injected is not None:
                    raise kerr(injected)
                pf, spec = _interface(state, ifname)
                if children.is_representor(spec):
                    raise kerr(errno.EOPNOTSUPP)  # a representor has no ndo_set_vf_*
                check(pf, index, values)
            except OSError as exc:
                state.writes.append(record._replace(errno=exc.errno))
                raise
            store(state, pf, index, values)
            state.writes.append(record)
            if state.faults.count_success():
                raise SimulatedCrash(record)


def admin_set(state: KernelState, pf: Device, index: int, values: dict[str, Any]) -> None:
    """``ip link set PF vf N ...`` by an administrator (FakeKernelSetupError if refused)."""
    unknown = sorted(set(values) - set(netlink_module.VF_FIELDS))
    if unknown:
        raise FakeKernelSetupError(f"unknown VF setting {unknown[0]!r}")
    try:
        check(pf, index, values)
    except OSError as exc:
        raise FakeKernelSetupError(
            f"{pf.name}: the kernel refuses {values} on VF {index}: {exc.strerror}") from None
    store(state, pf, index, values)


def _vf_mac(pf: Device, index: int, spec: children.NetSpec) -> str:
    """A VF driver takes the administrative MAC, or makes up one when it is all zeros."""
    mac = str(config(pf, index)["mac"])
    return spec.mac if mac == netlink_module.VF_DEFAULTS["mac"] else mac


def on_bind(state: KernelState, dev: Device) -> None:
    """A NIC VF's host driver made its interface (named after the PF's)."""
    pf, drv = dev.physfn, dev.driver
    # Stubs (vfio, pci-stub, pciback) and user-space I/O drivers make no interface.
    if pf is None or dev.vf_index is None or drv is None or drv.vfio \
            or is_stub_driver(drv.name) or drv.name in USER_SPACE_DRIVERS:
        return
    pf_name = next((s.ifname for s in _pf_specs(state, pf)
                    if s.ifname in state.host.netdevs and not children.is_representor(s)),
                   None)
    if pf_name is None:
        return
    spec = state.host.vf_netdevs.get(dev)
    if spec is None:
        spec = state.host.vf_netdevs[dev] = children.new_net_spec(
            state, f"{pf_name}v{dev.vf_index}")
    if spec.ifname in state.host.netdevs:
        return  # made already (the PF got another interface)
    children.make_netdev(state, dev, spec, _vf_mac(pf, dev.vf_index, spec))


def on_unbind(state: KernelState, dev: Device) -> None:
    """The VF's host driver took its interface away."""
    spec = state.host.vf_netdevs.get(dev)
    if spec is not None and spec.ifname in state.host.netdevs:
        children.unmake_netdev(state, dev, spec)


def forget(state: KernelState, pf: Device) -> None:
    """The PF's VFs are gone: so are their settings and interfaces' names."""
    assert pf.sriov is not None
    pf.sriov.vf_net.clear()
    for vf in pf.sriov.vfs:
        state.host.vf_netdevs.pop(vf, None)


def _pf_specs(state: KernelState, pf: Device) -> list[children.NetSpec]:
    owned = state.host.owned.get(pf)
    if owned is None or pf.driver is None or owned.driver != pf.driver.name:
        return []
    return [s for s in owned.specs if isinstance(s, children.NetSpec)]
