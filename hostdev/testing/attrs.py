"""Store handlers of plain device attributes (docs/kernel-model.md §1.1, 5 and the 7.1 table).

``driver_override``, ``reset``, ``reset_method``, ``enable``, ``numa_node``; and
``config``/``uevent``, which accept writes without visible effect here.
"""

from __future__ import annotations

import errno

from pyfakefs.helpers import is_root

from hostdev.testing.events import kerr
from hostdev.testing.hostspec import RESET_METHODS
from hostdev.testing.kparse import c_string, kstrtoint, kstrtoul, override_value
from hostdev.testing.model import Change, Device, KernelState
from hostdev.testing.readout import enable_count
from hostdev.testing.tree import refresh

PAGE_SIZE = 4096
MAX_NUMNODES = 1024


def _ulong(data: bytes) -> int:
    try:
        return kstrtoul(data)
    except OSError:
        raise kerr(errno.EINVAL) from None


def driver_override_store(state: KernelState, dev: Device, data: bytes, path: str) -> None:
    """``driver_set_override``: text before the first newline; empty clears; no rebind."""
    if len(data) >= PAGE_SIZE - 1:
        raise kerr(errno.EINVAL)
    dev.override = override_value(data)


def reset_store(state: KernelState, dev: Device, data: bytes, path: str) -> None:
    """``reset``: only "1"; ENOTTY when every reset method was disabled."""
    if _ulong(data) != 1:
        raise kerr(errno.EINVAL)
    if not dev.reset_methods:
        raise kerr(errno.ENOTTY)
    dev.reset_count += 1


def sort_methods(methods: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Reset methods in the kernel's default priority order."""
    return tuple(m for m in RESET_METHODS if m in methods)


def reset_method_store(state: KernelState, dev: Device, data: bytes, path: str) -> None:
    """``reset_method``: "\\n" clears, "default" re-probes, else a list of supported names."""
    text = c_string(data)
    stripped = text[:-1] if text.endswith("\n") else text
    if stripped == "":
        dev.reset_methods = ()
        return
    if stripped == "default":
        dev.reset_methods = sort_methods(dev.t.reset_methods)
        return
    chosen: list[str] = []
    for token in text.split(" "):
        if token in ("", "\n"):
            continue
        name = token.strip()
        if name not in RESET_METHODS or name not in dev.t.reset_methods:
            raise kerr(errno.EINVAL)
        if len(chosen) == len(RESET_METHODS):
            raise kerr(errno.EINVAL)
        chosen.append(name)
    if not chosen:
        raise kerr(errno.EINVAL)
    dev.reset_methods = tuple(chosen)


def enable_store(state: KernelState, dev: Device, data: bytes, path: str) -> None:
    """``enable``: EINVAL bad number, EPERM non-root, EBUSY while bound, EIO 0 when disabled."""
    value = _ulong(data)
    if not is_root():
        raise kerr(errno.EPERM)
    if dev.driver is not None:
        raise kerr(errno.EBUSY)
    if value:
        dev.user_enable += 1
        dev.power_known = True  # pci_enable_device puts it in D0
    elif enable_count(dev) > 0:
        dev.user_enable = max(0, dev.user_enable - 1)
    else:
        raise kerr(errno.EIO)
    refresh(state, dev, Change.ENABLE)


def numa_node_store(state: KernelState, dev: Device, data: bytes, path: str) -> None:
    """``numa_node``: EPERM non-root; EINVAL bad or offline node (-1 is allowed)."""
    if not is_root():
        raise kerr(errno.EPERM)
    node = kstrtoint(data)
    if (node < 0 and node != -1) or node >= MAX_NUMNODES:
        raise kerr(errno.EINVAL)
    if node != -1 and node not in state.online_nodes:
        raise kerr(errno.EINVAL)
    dev.numa_node = node


def accept_store(state: KernelState, dev: Device, data: bytes, path: str) -> None:
    """``config`` and ``uevent``: accepted, nothing the fake models changes."""
