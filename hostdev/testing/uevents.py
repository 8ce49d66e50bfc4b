"""The uevents the fake kernel sends, and the monitors that hear them.

A real kernel announces a PCI function when it adds it (``device_add``) and
deletes it (``device_del``), and every driver binding when it is made
(``driver_bound``) and undone (``__device_release_driver``, once the driver's
remove has run). The fake sends the same four from the same four places
(:func:`hostdev.testing.tree.create_device` and ``delete_device``,
:func:`hostdev.testing.drivers.attach_now` and ``release``), all through
:func:`emit`, so whatever makes the change (a write under ``/sys``, a VF count
change, a hot-unplug, the facade building a host) is heard alike. Like the
real kernel's, an unbind names no driver (it is gone when the message is made).

A monitor is what :func:`hostdev.linux.uevents.open_events` returns while a
fake kernel is behind the library's sysfs boundary (the seam
:data:`hostdev.linux.uevents.event_openers`): a queue filled by :func:`emit`.
With a capacity (:meth:`hostdev.testing.FakeKernel.limit_uevents`) it
overflows as a netlink socket's buffer does: later messages are dropped and
the next batch says some were lost.
"""

from __future__ import annotations

import threading
from collections import deque

from hostdev.address import PciAddress
from hostdev.linux import uevents as boundary
from hostdev.linux.sysfs import Sysfs
from hostdev.linux.uevents import BATCH_LIMIT, Batch, Uevent
from hostdev.testing.active import active_state
from hostdev.testing.model import KernelState

_INSTALL_LOCK = threading.Lock()


def register() -> None:
    """Answer :func:`hostdev.linux.uevents.open_events` for every fake kernel."""
    with _INSTALL_LOCK:
        if _open not in boundary.event_openers:
            boundary.event_openers.append(_open)


def _open(sysfs: Sysfs) -> FakeMonitor | None:
    state = active_state()
    return None if state is None else FakeMonitor(state)


def emit(state: KernelState, action: str, address: PciAddress,
         driver: str | None = None) -> None:
    """Send one uevent to every open monitor (and keep it in ``state.uevents``)."""
    event = Uevent(action, address, driver if action == "bind" else None)
    state.uevents.append(event)
    for monitor in tuple(state.monitors):
        monitor.put(event)


class FakeMonitor:
    """An open subscription to a fake kernel's uevents; implements
    :class:`hostdev.linux.uevents.EventSource`."""

    def __init__(self, state: KernelState) -> None:
        self.state = state
        self._queue: deque[Uevent] = deque()
        self._lost = False
        self._ready = threading.Condition()
        self.closed = False
        with state.lock:
            state.monitors.append(self)

    def put(self, event: Uevent) -> None:
        """Queue one event, or drop it when the buffer is full."""
        with self._ready:
            capacity = self.state.uevent_capacity
            if capacity is not None and len(self._queue) >= capacity:
                self._lost = True
            else:
                self._queue.append(event)
            self._ready.notify_all()

    def drain(self, timeout: float, limit: int = BATCH_LIMIT) -> Batch:
        """See :meth:`hostdev.linux.uevents.EventSource.drain`."""
        with self._ready:
            self._ready.wait_for(lambda: bool(self._queue) or self._lost, max(0.0, timeout))
            count = min(limit, len(self._queue))
            events = [self._queue.popleft() for _ in range(count)]
            lost, self._lost = self._lost, False
            return Batch(events, lost)

    def close(self) -> None:
        """See :meth:`hostdev.linux.uevents.EventSource.close`."""
        with self.state.lock:
            if not self.closed:
                self.closed = True
                self.state.monitors.remove(self)
