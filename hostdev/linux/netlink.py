"""The one boundary to rtnetlink: a PF's per-VF network configuration.

A NIC's PF driver keeps, for each of its VFs, an administrative MAC address, a
VLAN with its priority (QoS), spoof checking, trust and a link state. The
kernel reports them in the PF's ``IFLA_VFINFO_LIST`` (``ip -d link show PF``)
and takes new values through the PF (``ip link set PF vf N mac ...``). This
module reads and writes them with pyroute2, imported on first use only (the
``list`` command never gets here).

The values travel as plain dicts with the keys of :data:`VF_FIELDS`. VLAN and
QoS are one kernel attribute (``IFLA_VF_VLAN``), so they are written together
(:data:`WRITE_FIELDS`). A refusal keeps the kernel's errno and becomes a
:class:`~hostdev.errors.KernelRefused` naming the interface, the VF and the
value. Every write is logged at DEBUG on ``hostdev.kernel``.

Some PF drivers (i40e, ice) answer a VF setting with EAGAIN or EBUSY while the
VF is being reset, which happens just after the VF is bound or its driver
changes: those two errnos are retried a few times (:data:`RETRY_DELAYS`, well
under a second in all), each retry logged; any other errno is final.

A PF function may carry several network interfaces: in switchdev mode (mlx5,
ice) the representors of its VFs and subfunctions are netdevs of the PF too,
and the VF settings must go through the uplink; :func:`pf_interface` tells
them apart by ``phys_port_name``.

A fake kernel replaces the socket through :data:`transports` (the same seam
as :data:`hostdev.linux.sysfs.write_starters`): the first hook that returns a
:class:`Transport` for the root serves the call. Without one, netlink is only
used on the real root (``/``): under another root it is refused, since the
kernel's interfaces are not those of the tree.
"""

from __future__ import annotations

import errno as _errno
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from hostdev.address import PciAddress
from hostdev.errors import HostdevError, KernelRefused, NotAssignable
from hostdev.linux.sysfs import Sysfs

#: The per-VF settings hostdev reads and restores, in the order they are applied.
VF_FIELDS = ("mac", "vlan", "qos", "spoofchk", "trust", "link_state")
#: What one netlink write sets: the kernel takes VLAN and QoS in one attribute.
WRITE_FIELDS = {"mac": ("mac",), "vlan": ("vlan", "qos"), "spoofchk": ("spoofchk",),
                "trust": ("trust",), "link_state": ("link_state",)}
#: ``IFLA_VF_LINK_STATE`` values by name (``ip link`` spelling).
LINK_STATES = {"auto": 0, "enable": 1, "disable": 2}
#: The kernel's defaults for a VF nobody configured.
VF_DEFAULTS: dict[str, object] = {"mac": "00:00:00:00:00:00", "vlan": 0, "qos": 0,
                                  "spoofchk": True, "trust": False, "link_state": "auto"}

VfConfig = dict[str, Any]


class Transport(Protocol):
    """What talks to the kernel: pyroute2 on a real host, a fake kernel in tests.

    Both raise ``OSError`` with the kernel's errno."""

    def vf_list(self, ifname: str) -> list[VfConfig]:
        """Every VF of ``ifname`` as its PF reports it (``VF_FIELDS`` plus ``vf``)."""

    def set_vf(self, ifname: str, index: int, values: VfConfig) -> None:
        """Set the fields of one ``WRITE_FIELDS`` entry on VF ``index``."""

    def ipv4_addresses(self) -> dict[str, list[str]]:
        """Every interface's IPv4 addresses (``A.B.C.D/PLEN``), by interface name."""


#: Hooks that may serve a root (a fake kernel registers one); each returns None to pass.
transports: list[Callable[[Sysfs], Transport | None]] = []


#: The errnos a PF driver answers while the VF is being reset (i40e, ice): retried.
TRANSIENT_ERRNOS = frozenset({_errno.EAGAIN, _errno.EBUSY})
#: The waits (s) before each retry of a transiently refused write: 0.38 s in all.
RETRY_DELAYS = (0.01, 0.02, 0.05, 0.1, 0.2)
#: What a retry waits with (a test may replace it).
sleep: Callable[[float], None] = time.sleep

#: The ``phys_port_name`` of a VF's or a subfunction's representor. The kernel
#: builds it from the devlink port (net/devlink/port.c,
#: ``__devlink_port_phys_port_name_get``): ``pf<P>vf<V>`` for a PCI_VF port and
#: ``pf<P>sf<S>`` for a PCI_SF port, each prefixed ``c<C>`` on an external
#: controller (``c1pf0vf3``). An uplink is a PHYSICAL port, ``p<N>`` with an
#: optional ``l<L>`` linecard prefix and ``s<S>`` split suffix (``p0``, ``p1s0``): it
#: never ends in ``vf<N>`` or ``sf<N>``. A netdev with no devlink port and no
#: ``ndo_get_phys_port_name`` (ixgbe; i40e) has none: reading the file fails with
#: EOPNOTSUPP (net/core/net-sysfs.c), and such a netdev is the PF's own interface.
_VF_REPRESENTOR = re.compile(r"(?:vf|sf)\d+$")
#: ``pf<P>`` (``c<C>pf<P>``): a PCI_PF port, the representor of a PF (a SmartNIC's
#: host PF, seen from its embedded CPU). Not a VF's, so still a candidate, but its
#: netdev has no ``ndo_set_vf_*``: an uplink beside it is taken first.
_PF_REPRESENTOR = re.compile(r"(?:c\d+)?pf\d+")
#: The ``dev_port`` of a netdev whose ``dev_port`` cannot be read: after the others.
_NO_DEV_PORT = 1 << 32


def pf_interface(sysfs: Sysfs, pf: PciAddress) -> str | None:
    """The network interface through which the PF's VFs are configured, or None.

    Of the netdevs under the PF's ``net/`` directory, a representor of a VF or a
    subfunction (switchdev mode) is never taken. Of the others, a netdev whose
    ``phys_port_name`` is a port's or none comes first, then one whose name cannot be
    read, then a PF's representor; within each, the lowest ``dev_port``, then name."""
    return _pf_interfaces(sysfs, pf)[0]


def _pf_interfaces(sysfs: Sysfs, pf: PciAddress) -> tuple[str | None, list[str]]:
    """The chosen interface, and the representors left aside (``name (pf0vf3)``)."""
    path = sysfs.device_path(pf, "net")
    if not sysfs.exists(path):
        return None, []
    kept: list[tuple[int, str]] = []
    aside: list[str] = []
    for name in sorted(sysfs.list_dir(path, pf)):
        port = _port_name(sysfs, f"{path}/{name}", pf)
        if isinstance(port, HostdevError):
            # A driver quirk, most likely: no sign of a representor, so still a
            # candidate (as every netdev was before representors were told apart).
            kept.append((1, name))
        elif port is not None and _VF_REPRESENTOR.search(port):
            aside.append(f"{name} ({port})")
        else:
            kept.append((2 if port and _PF_REPRESENTOR.fullmatch(port) else 0, name))
    if len(kept) <= 1:
        return (kept[0][1] if kept else None), aside
    # dev_port is read only when several remain (a function with several ports).
    best = min(kept, key=lambda k: (k[0], _dev_port(sysfs, f"{path}/{k[1]}", pf), k[1]))
    return best[1], aside


def _port_name(sysfs: Sysfs, netdev: str, pf: PciAddress) -> str | HostdevError | None:
    """A netdev's ``phys_port_name``: None when it has none (EOPNOTSUPP; no such
    file before Linux 4.1); the error when it cannot be read otherwise."""
    try:
        text = sysfs.read_optional(f"{netdev}/phys_port_name", pf)
    except KernelRefused as exc:
        return None if exc.errno == _errno.EOPNOTSUPP else exc
    except HostdevError as exc:
        return exc
    if text is None or not text.strip():
        return None
    return text.strip()


def _dev_port(sysfs: Sysfs, netdev: str, pf: PciAddress) -> int:
    """A netdev's ``dev_port`` (which port of the function it is)."""
    try:
        text = sysfs.read_optional(f"{netdev}/dev_port", pf)
        return int(text) if text is not None else _NO_DEV_PORT
    except (HostdevError, ValueError):
        return _NO_DEV_PORT


def require_pf_interface(sysfs: Sysfs, vf: PciAddress, pf: PciAddress | None) -> str:
    """The PF interface through which VF ``vf`` is configured; NotAssignable when
    ``vf`` is not a VF or its PF carries no network interface to do it through."""
    if pf is None:
        raise NotAssignable(
            f"PCI device {vf} is not an SR-IOV VF: a network configuration (MAC, VLAN...)"
            " applies only to a VF of a NIC; drop it from the spec",
            address=vf,
        )
    ifname, aside = _pf_interfaces(sysfs, pf)
    if ifname is None and aside:
        more = f" and {len(aside) - 3} more" if len(aside) > 3 else ""
        raise NotAssignable(
            f"VF {vf} cannot take a network configuration: its PF {pf} carries no network"
            f" interface of its own, only {', '.join(aside[:3])}{more}, and VF settings are"
            " written through the PF's uplink, never a switchdev representor: bring the"
            " uplink back (is it in another network namespace?) or drop the network"
            " configuration",
            address=vf,
        )
    if ifname is None:
        raise NotAssignable(
            f"VF {vf} cannot take a network configuration: its PF {pf} carries no network"
            " interface (not a NIC, or its driver is not bound)",
            address=vf,
        )
    return ifname


def read_vfs(sysfs: Sysfs, ifname: str, address: PciAddress | None = None) -> list[VfConfig]:
    """Every VF as PF ``ifname`` reports it (keys: ``vf`` and ``VF_FIELDS``)."""
    try:
        entries = _transport(sysfs).vf_list(ifname)
    except OSError as exc:
        raise _refused(exc, f"reading the VF list of {ifname}", ifname, address) from None
    return [{"vf": entry.get("vf"), **{key: entry[key] for key in VF_FIELDS}}
            for entry in entries]


def read_vf(sysfs: Sysfs, ifname: str, index: int,
            address: PciAddress | None = None) -> VfConfig:
    """VF ``index``'s configuration as PF ``ifname`` reports it (keys: ``VF_FIELDS``)."""
    return vf_entry(read_vfs(sysfs, ifname, address), ifname, index, address)


def vf_entry(entries: list[VfConfig], ifname: str, index: int,
             address: PciAddress | None = None) -> VfConfig:
    """VF ``index``'s configuration among ``entries`` (:func:`read_vfs`); KernelRefused
    (EINVAL) when the PF does not list it."""
    for entry in entries:
        if entry["vf"] == index:
            return {key: entry[key] for key in VF_FIELDS}
    raise KernelRefused(
        f"the kernel reports no VF {index} on {ifname}: {KernelRefused.describe(_errno.EINVAL)}",
        errno=_errno.EINVAL, path=f"netlink:{ifname}/vf{index}", address=address,
    )


def write_vf(sysfs: Sysfs, ifname: str, index: int, field: str, values: VfConfig,
             address: PciAddress | None = None) -> None:
    """Write one ``WRITE_FIELDS`` entry of VF ``index`` through PF ``ifname``.

    EAGAIN and EBUSY (the VF is being reset) are retried after each wait of
    :data:`RETRY_DELAYS`; the last refusal, or any other, raises KernelRefused."""
    wanted = {key: values[key] for key in WRITE_FIELDS[field]}
    shown = " ".join(f"{key} {value}" for key, value in wanted.items())
    import logging  # off the cold listing path

    log = logging.getLogger("hostdev.kernel")
    transport = _transport(sysfs)
    attempts = len(RETRY_DELAYS) + 1
    for attempt, delay in enumerate((*RETRY_DELAYS, None), start=1):
        try:
            transport.set_vf(ifname, index, wanted)
        except OSError as exc:
            error = _refused(exc, f"setting {shown} on VF {index} of {ifname}", ifname,
                             address, index)
            if delay is None or error.errno not in TRANSIENT_ERRNOS:
                log.debug("netlink: %s vf %d %s: %s", ifname, index, shown, error.errno_name)
                if delay is None:
                    error.message += (f" (still after {attempts} attempts over"
                                      f" {sum(RETRY_DELAYS):g} s: is the VF stuck in a reset?)")
                raise error from None
            # The PF driver is resetting the VF (just bound, or its driver changed).
            log.debug("netlink: %s vf %d %s: %s, retrying in %d ms (attempt %d of %d)",
                      ifname, index, shown, error.errno_name, round(delay * 1000), attempt,
                      attempts)
            sleep(delay)
            continue
        log.debug("netlink: %s vf %d %s: ok", ifname, index, shown)
        return


def ipv4_addresses(sysfs: Sysfs) -> dict[str, list[str]] | None:
    """IPv4 addresses by interface (``RTM_GETADDR``), which ``/proc`` cannot tell;
    None when netlink cannot serve this root or would not answer."""
    try:
        return _transport(sysfs).ipv4_addresses()
    except KernelRefused:
        return None
    except OSError:
        return None


def write_path(ifname: str, index: int, field: str) -> str:
    """How a netlink write is named in errors, logs and the fake kernel's records."""
    return f"netlink:{ifname}/vf{index}/{field}"


def _refused(exc: OSError, what: str, ifname: str, address: PciAddress | None,
             index: int | None = None) -> KernelRefused:
    err = exc.errno or _errno.EIO
    hint = "; run as root" if err in (_errno.EPERM, _errno.EACCES) else \
        "; the PF driver does not support it" if err == _errno.EOPNOTSUPP else ""
    path = f"netlink:{ifname}" + (f"/vf{index}" if index is not None else "")
    return KernelRefused(f"the kernel refused {what}: {KernelRefused.describe(err)}{hint}",
                         errno=err, path=path, address=address)


def _transport(sysfs: Sysfs) -> Transport:
    for hook in transports:
        found = hook(sysfs)
        if found is not None:
            return found
    # The real root shows our network namespace; a tree under --root, or a fake
    # filesystem without a fake kernel, does not, and netlink must not answer for it.
    if str(sysfs.root.resolve()) != "/" or not sysfs.exists(f"{sysfs.proc}/self/ns/net"):
        raise KernelRefused(
            f"netlink serves the host's own interfaces, not those under --root {sysfs.root}:"
            " a VF network configuration needs the real root",
            errno=_errno.EOPNOTSUPP, path="netlink",
        )
    return _Pyroute2()


#: RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS (include/uapi/linux/rtnetlink.h).
_VF_NO_STATS = 1 | 8
#: What rtnetlink reports for a switch the driver does not tell (-1 as a u32).
_UNKNOWN = 0xFFFFFFFF


def _switch(value: object) -> bool | None:
    """An on/off setting as the kernel reports it; None when the driver cannot tell."""
    number = int(str(value))
    return None if number in (_UNKNOWN, -1) else number == 1


class _Pyroute2:
    """rtnetlink through pyroute2 (a new socket per call: calls are rare)."""

    def vf_list(self, ifname: str) -> list[VfConfig]:
        from pyroute2 import IPRoute

        with _as_oserror(), IPRoute() as ipr:
            index = _index(ipr, ifname)
            # RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS: the VF list without per-VF
            # statistics, which hostdev never reads and which make the answer for a
            # PF with hundreds of VFs outgrow a netlink attribute.
            links = ipr.get_links(index, ext_mask=_VF_NO_STATS)
        out: list[VfConfig] = []
        vfinfo = links[0].get_attr("IFLA_VFINFO_LIST") if links else None
        for info in vfinfo.get_attrs("IFLA_VF_INFO") if vfinfo is not None else []:
            mac = info.get_attr("IFLA_VF_MAC") or {}
            vlan = info.get_attr("IFLA_VF_VLAN") or {}
            spoof = info.get_attr("IFLA_VF_SPOOFCHK") or {}
            trust = info.get_attr("IFLA_VF_TRUST") or {}
            state = info.get_attr("IFLA_VF_LINK_STATE") or {}
            names = {v: k for k, v in LINK_STATES.items()}
            out.append({
                "vf": int(mac.get("vf", vlan.get("vf", -1))),
                "mac": str(mac.get("mac", VF_DEFAULTS["mac"])).lower(),
                "vlan": int(vlan.get("vlan", 0)), "qos": int(vlan.get("qos", 0)),
                # The kernel reports -1 (as u32) for a setting the driver cannot
                # tell: unknown (None), never "off".
                "spoofchk": _switch(spoof.get("spoofchk", 1)),
                "trust": _switch(trust.get("trust", 0)),
                "link_state": names.get(int(state.get("link_state", 0)), "auto"),
            })
        return out

    def set_vf(self, ifname: str, index: int, values: VfConfig) -> None:
        from pyroute2 import IPRoute

        spec: dict[str, object] = {"vf": index}
        for key, value in values.items():
            if key == "vlan":
                spec["vlan"] = {"vlan": value, "qos": values.get("qos", 0)}
            elif key == "link_state":
                spec["link_state"] = LINK_STATES[str(value)]
            elif key in ("spoofchk", "trust"):
                spec[key] = 1 if value else 0
            elif key == "mac":
                spec["mac"] = value
        with _as_oserror(), IPRoute() as ipr:
            ipr.link("set", index=_index(ipr, ifname), vf=spec)

    def ipv4_addresses(self) -> dict[str, list[str]]:
        import socket

        from pyroute2 import IPRoute

        with _as_oserror(), IPRoute() as ipr:
            names = {int(link["index"]): str(link.get_attr("IFLA_IFNAME"))
                     for link in ipr.get_links()}
            out: dict[str, list[str]] = {}
            for msg in ipr.get_addr(family=socket.AF_INET):
                addr = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
                name = names.get(int(msg["index"]))
                if addr and name:
                    out.setdefault(name, []).append(f"{addr}/{int(msg['prefixlen'])}")
        return out


@contextmanager
def _as_oserror() -> Iterator[None]:
    """pyroute2's NetlinkError carries the kernel's errno as ``code``: make it an OSError."""
    try:
        yield
    except OSError:
        raise
    except Exception as exc:
        code = getattr(exc, "code", None)
        if not isinstance(code, int):
            raise
        raise OSError(code, str(exc)) from None


def _index(ipr: Any, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise OSError(_errno.ENODEV, f"no network interface {ifname}")
    return int(found[0])
