"""Kernel verbs on one PCI function: driver_override, unbind, probe, reset, VF count.

Each verb is one or two sysfs writes and knows nothing of owners or lists. The
composite moves (onto a stub, back to the host) check the result: a probe that
"succeeds" with the wrong driver bound is reported, never taken for success.
"""

from __future__ import annotations

from collections.abc import Callable

from hostdev.address import PciAddress, validate_driver_name
from hostdev.errors import (
    BindFailed,
    DeviceNotFound,
    HostdevError,
    InvalidAddress,
    KernelRefused,
    RestoreFailed,
    UnexpectedContent,
    WriteBlocked,
)
from hostdev.linux import vfio
from hostdev.linux.drivers import is_stub_driver, is_vfio_driver
from hostdev.linux.sysfs import Sysfs

#: Called before unbinding a device from a driver; raises to stop the unbind
#: (used to wait until no VFIO user holds the device).
Guard = Callable[[PciAddress, str], None]


def current_driver(sysfs: Sysfs, address: PciAddress) -> str | None:
    """Name of the bound driver, or None; DeviceNotFound if the device is gone."""
    name = sysfs.read_link_name(sysfs.device_path(address, "driver"), address)
    if name is None and not sysfs.device_exists(address):
        raise DeviceNotFound.at(address)
    return name


def set_override(sysfs: Sysfs, address: PciAddress, driver: str | None, *,
                 raw: bool = False) -> None:
    """Set ``driver_override`` (None clears it: the kernel needs a newline, not 0 bytes).

    ``raw`` writes back a value read from the kernel earlier (restoring what an
    administrator had), checking only that it is one line.
    """
    if driver is None:
        value = "\n"
    elif raw:
        if not driver or "\n" in driver or "\x00" in driver:
            raise ValueError(f"internal error: bad override value {driver!r}")
        value = driver + "\n"
    else:
        value = validate_driver_name(driver) + "\n"
    sysfs.write(sysfs.device_path(address, "driver_override"), value, address)


def unbind(sysfs: Sysfs, address: PciAddress, driver: str) -> None:
    """Unbind from ``driver`` through ``drivers/<driver>/unbind``.

    The kernel does not return from this write while a VFIO user holds the
    device (or, for a PF whose driver removes its VFs, one of them), whatever
    was checked before: from a vfio driver, or for a PF with VFs, it is made
    with a deadline (see :meth:`Sysfs.write`). Other unbinds cannot wait for a
    VFIO user and are plain writes (no helper process to pay for).
    """
    path = f"{sysfs.driver_dir(driver)}/unbind"
    vfs = _vfs(sysfs, address)
    if not vfs and not is_vfio_driver(driver) and \
            not sysfs.exists(sysfs.device_path(address, "vfio-dev")):
        sysfs.write(path, f"{address}\n", address)
        return
    try:
        sysfs.write(path, f"{address}\n", address, blocking=[address, *vfs])
    except WriteBlocked as exc:
        exc.message = (f"PCI device {address}: unbind from {driver} is blocked in the kernel"
                       f" until the VFIO user releases it; {_after(sysfs, exc)}")
        raise


def probe(sysfs: Sysfs, address: PciAddress) -> None:
    """Ask the kernel to find a driver for an unbound device (``drivers_probe``)."""
    sysfs.write(sysfs.drivers_probe_path, f"{address}\n", address)


def reset(sysfs: Sysfs, address: PciAddress) -> None:
    """Function reset through the ``reset`` attribute."""
    path = sysfs.device_path(address, "reset")
    if not sysfs.exists(path):
        if not sysfs.device_exists(address):
            raise DeviceNotFound.at(address)
        raise KernelRefused(
            f"unable to reset PCI device {address}: the kernel offers no reset method"
            " (no FLR, PM or bus reset available)",
            errno=2, path=sysfs.relative(path), address=address,
        )
    sysfs.write(path, "1\n", address)


def vf_autoprobe(sysfs: Sysfs, pf: PciAddress) -> bool:
    """The PF's ``sriov_drivers_autoprobe``: whether its new VFs are bound to a driver
    as they appear (docs/kernel-model.md §3.3)."""
    text = sysfs.read_text(sysfs.device_path(pf, "sriov_drivers_autoprobe"), pf).strip()
    if text not in ("0", "1"):
        raise UnexpectedContent(f"PCI device {pf}: sriov_drivers_autoprobe holds {text[:20]!r},"
                                " not 0 or 1", address=pf)
    return text == "1"


def set_vf_autoprobe(sysfs: Sysfs, pf: PciAddress, on: bool) -> None:
    """Write the PF's ``sriov_drivers_autoprobe`` (checked by the kernel at every later
    probe of one of its VFs; a VF with a driver override is probed anyway)."""
    sysfs.write(sysfs.device_path(pf, "sriov_drivers_autoprobe"), "1\n" if on else "0\n", pf)


def set_num_vfs(sysfs: Sysfs, pf: PciAddress, count: int) -> None:
    """Write ``sriov_numvfs`` (the kernel refuses nonzero to nonzero: go through 0).

    Writing 0 unbinds and removes every VF, which blocks while a VFIO user holds
    one: that write is made with a deadline (see :meth:`Sysfs.write`).
    """
    path = sysfs.device_path(pf, "sriov_numvfs")
    if count:
        sysfs.write(path, f"{int(count)}\n", pf)
        return
    try:
        sysfs.write(path, "0\n", pf, blocking=[pf, *_vfs(sysfs, pf)])
    except WriteBlocked as exc:
        exc.message = (f"PCI device {pf}: removing its VFs (sriov_numvfs 0) is blocked in the"
                       f" kernel until the VFIO user of a VF releases it; {_after(sysfs, exc)}")
        raise


def _vfs(sysfs: Sysfs, pf: PciAddress) -> list[PciAddress]:
    """The VFs of ``pf`` now (from its ``virtfnN`` links; none for other functions)."""
    out = []
    for name in sysfs.list_dir(sysfs.device_dir(pf), pf):
        if name.startswith("virtfn"):
            target = sysfs.read_link_name(f"{sysfs.device_dir(pf)}/{name}", pf)
            if target is None:
                continue
            try:
                out.append(PciAddress.parse(target))
            except InvalidAddress:
                raise UnexpectedContent(
                    f"PCI device {pf}: its link {name} points to {target!r}, not to a PCI"
                    " function; the sysfs tree is damaged (check --root)",
                    address=pf,
                ) from None
    return out


def _after(sysfs: Sysfs, exc: WriteBlocked) -> str:
    return (f"gave up waiting after {sysfs.write_timeout:g} s. Its helper process (pid"
            f" {exc.pid}) finishes the write and exits once the device is released; the"
            " intent stays journaled and the next hostdev call (or 'hostdev reconcile')"
            " records where the device ended up")


def driver_loaded(sysfs: Sysfs, driver: str) -> bool:
    """``/sys/bus/pci/drivers/<driver>`` exists."""
    return sysfs.exists(sysfs.driver_dir(driver))


def move_to(sysfs: Sysfs, address: PciAddress, driver: str, before: str | None,
            guard: Guard | None = None) -> None:
    """Move the device from ``before`` onto ``driver``: override, unbind, probe, check.

    The caller records the device's previous driver and override first, so that
    :func:`restore` can undo a move that stopped half-way.
    """
    if before is not None and guard is not None:
        guard(address, before)  # before any write: a refusal leaves the device as it was
    set_override(sysfs, address, driver)
    if before is not None:
        unbind(sysfs, address, before)
    probe(sysfs, address)
    now = current_driver(sysfs, address)
    if now != driver:
        raise BindFailed(
            f"PCI device {address} did not bind to {driver} (driver is now"
            f" {now or 'none'}); check that {driver} can take it (dmesg)",
            address=address,
        )


def restore(sysfs: Sysfs, address: PciAddress, driver: str | None, override: str | None,
            guard: Guard | None = None) -> str | None:
    """Put the device back on ``driver`` with ``override``, as it was before we came.

    Idempotent: it looks at the device first and does only what is missing, so
    it also repairs a move that stopped half-way. Returns the driver bound
    afterwards (the kernel may pick another one than ``driver``).
    """
    now = current_driver(sysfs, address)
    if now == driver:
        if sysfs.read_override(address) != override:
            set_override(sysfs, address, override, raw=True)
        return now
    return reprobe(sysfs, address, now, override, guard)


def restored_badly(wanted: str | None, now: str | None) -> bool:
    """Whether a device that should be back on ``wanted`` is lost on ``now``.

    Lost: it should have a driver and has none, it landed on a stub it was not
    meant for, or it should be on a stub and is not. Another host driver than
    ``wanted`` is not lost (the kernel chose it; callers report it).
    """
    if now == wanted:
        return False
    return now is None or is_stub_driver(now) or is_stub_driver(wanted)


def give_back(sysfs: Sysfs, address: PciAddress, driver: str | None, override: str | None,
              guard: Guard | None = None) -> str | None:
    """:func:`restore`, then check the result: RestoreFailed if the device is lost
    (see :func:`restored_badly`). Returns the driver bound afterwards."""
    now = restore(sysfs, address, driver, override, guard)
    if restored_badly(driver, now):
        hint = f"check that {driver} can take it (dmesg)" if driver else \
            "check its driver_override"
        raise RestoreFailed(
            f"PCI device {address} did not come back on {driver or 'no driver'} (driver is"
            f" now {now or 'none'}); {hint}",
            address=address,
        )
    return now


def reprobe(sysfs: Sysfs, address: PciAddress, current: str | None, override: str | None,
            guard: Guard | None = None) -> str | None:
    """Leave ``current`` (the bound driver, or None) with ``override`` set, and let the
    kernel pick a driver. Returns the driver bound afterwards."""
    if current is not None and guard is not None:
        guard(address, current)  # before any write: a refusal leaves the device as it was
    if sysfs.read_override(address) != override:
        set_override(sysfs, address, override, raw=True)
    if current is not None:
        unbind(sysfs, address, current)
    probe(sysfs, address)
    return current_driver(sysfs, address)


#: :func:`pending_write` results.
WRITE_RUNNING = "running"
WRITE_UNSEEN = "unseen"
WRITE_DONE = "done"


def pending_write(sysfs: Sysfs, pid: int, start: int | None, pidns: str | None,
                  devices: list[PciAddress]) -> str:
    """Whether a journaled helper write (``unbind``, ``sriov_numvfs`` 0) has returned.

    :data:`WRITE_RUNNING`: its helper still runs (seen in ``/proc``).
    :data:`WRITE_DONE`: it has returned. :data:`WRITE_UNSEEN`: its helper is in
    another PID namespace (``pidns`` is not ours), so ``/proc`` cannot tell, and
    the kernel still reports one of ``devices`` open by a VFIO user: the write
    may still be blocked, and the devices must be left alone.

    Without the helper, only the kernel can tell: the write waits for the last
    VFIO user of the devices, and the ``driver`` link goes at the start of a
    blocked unbind (docs/kernel-model.md §4.4), so a device counts as possibly
    held when it is on a vfio driver that reports it open, or has no driver
    and its ``enable`` count is above 0 (or unreadable). A device on another
    driver, or gone, holds nothing up.
    """
    if pidns is None or pidns == sysfs.pid_namespace():
        return WRITE_RUNNING if sysfs.process_alive(pid, start) else WRITE_DONE
    for address in devices:
        if _may_be_held(sysfs, address):
            return WRITE_UNSEEN
    return WRITE_DONE


def _may_be_held(sysfs: Sysfs, address: PciAddress) -> bool:
    try:
        if not sysfs.device_exists(address):
            return False
        count = vfio.kernel_count(sysfs, address)
        if count is not None:  # on a vfio driver: the rule every holder check uses
            return count.open
        if sysfs.read_link_name(sysfs.device_path(address, "driver"), address) is not None:
            return False
        # No driver: the link goes at the start of a blocked unbind, while vfio-pci
        # keeps the device enabled until its last user lets go.
        enable = vfio.read_count(sysfs, sysfs.device_path(address, "enable"), address)
        return enable is None or enable > 0
    except DeviceNotFound:
        return False
    except HostdevError:
        return True  # cannot tell: do not assume the write returned
