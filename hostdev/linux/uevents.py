"""PCI uevents: the one boundary through which watch mode hears the kernel.

The kernel broadcasts a uevent on a netlink socket for every PCI function it
adds or removes and every driver it binds or unbinds. hostdev reads them from
the kernel's own multicast group (``source='kernel'``), not udevd's: it often
runs in a container where no udevd rebroadcasts them. pyudev (libudev through
ctypes) opens that socket; it is imported only when a watch starts, never on
the ``list`` path.

Each message becomes a :class:`Uevent` (action, address, driver). A source
hands them over in batches (:meth:`EventSource.drain`), waiting a bounded time
for the first one, so a caller polls and never blocks forever. When the
kernel drops messages because the socket buffer overflowed, the batch says so
(``lost``): the caller must then look at the whole host again.

The fake kernel replaces the socket through :data:`event_openers` (as it
replaces the helper process of a bounded write through
:data:`hostdev.linux.sysfs.write_starters`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple, Protocol

from hostdev.address import PciAddress
from hostdev.errors import BadInput, InvalidAddress, UeventsUnavailable
from hostdev.linux.sysfs import Sysfs

#: The actions a PCI function's uevents carry that watch mode follows.
ACTIONS = frozenset({"add", "remove", "bind", "unbind", "change"})
#: How many messages one batch takes at most, so that a burst is handled in
#: steps and a stop request is seen between them.
BATCH_LIMIT = 4096
#: Once a first event came, a batch goes on while more come within this many seconds:
#: the kernel sends a function's ``unbind`` and ``remove`` (or ``add`` and ``bind``) a
#: moment apart, and acting between the two would take a VF being deleted for one
#: unbound behind our back.
QUIET = 0.05
#: ... but never longer than this in all, so that a steady stream is still acted on.
LINGER = 0.5
#: Receive buffer asked for the socket (a VF count change on a few PFs sends
#: thousands of messages at once); needs CAP_NET_ADMIN, else the default stays.
RECEIVE_BUFFER = 16 * 1024 * 1024


class Uevent(NamedTuple):
    """One kernel uevent about a PCI function."""

    #: ``add``, ``remove``, ``bind``, ``unbind`` or ``change``.
    action: str
    address: PciAddress
    #: The driver bound (``bind``; the kernel names none on ``unbind``, it is gone).
    driver: str | None = None


class Batch(NamedTuple):
    """What one :meth:`EventSource.drain` took, oldest first."""

    events: list[Uevent]
    #: The kernel dropped messages (the socket buffer overflowed): some changes
    #: are not in ``events``, so the whole host must be looked at.
    lost: bool = False


class EventSource(Protocol):
    """An open subscription to the kernel's PCI uevents."""

    def drain(self, timeout: float, limit: int = BATCH_LIMIT) -> Batch:
        """Wait up to ``timeout`` seconds for a first event, then take what is
        queued without waiting (at most ``limit``)."""

    def close(self) -> None:
        """Stop listening (idempotent)."""


#: Seam for the fake kernel: each opener returns a source for ``sysfs`` or None
#: (the first that answers wins; with none, the kernel's netlink socket is used).
event_openers: list[Callable[[Sysfs], EventSource | None]] = []


def open_events(sysfs: Sysfs) -> EventSource:
    """Start listening for PCI uevents about the host ``sysfs`` shows.

    Opened before looking at the host, so that nothing that happens after the
    look is missed. Only the running kernel sends uevents: under another
    ``root`` (a copy of a sysfs tree) there is nothing to follow, and that is
    refused with :class:`~hostdev.errors.BadInput`.
    """
    for opener in event_openers:
        source = opener(sysfs)
        if source is not None:
            return source
    if os.path.realpath(sysfs.root) != "/":
        raise BadInput(f"watch follows the running kernel's uevents, so --root must be /"
                       f" (not {sysfs.root})")
    return PyudevSource()


def gather(source: EventSource, timeout: float, limit: int = BATCH_LIMIT) -> Batch:
    """One batch from ``source``: wait up to ``timeout`` for a first event, then take
    what follows until the line is quiet for :data:`QUIET` seconds (at most
    :data:`LINGER` in all, and ``limit`` events)."""
    first = source.drain(timeout, limit)
    if not first.events:
        return first
    events, lost = list(first.events), first.lost
    deadline = time.monotonic() + LINGER
    while len(events) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        more = source.drain(min(QUIET, left), limit - len(events))
        events += more.events
        lost = lost or more.lost
        if not more.events:
            break
    return Batch(events, lost)


def parse(device: object) -> Uevent | None:
    """The :class:`Uevent` a pyudev ``Device`` from a kernel monitor describes, or None
    when it is not about a PCI function or carries an action not followed.

    Reads the message's properties only (``ACTION``, ``SUBSYSTEM``,
    ``PCI_SLOT_NAME``, ``DEVPATH``, ``DRIVER``): a removed device has nothing left
    in sysfs to read.
    """
    properties = getattr(device, "properties", None)
    if not isinstance(properties, Mapping):
        return None
    action = properties.get("ACTION") or getattr(device, "action", None)
    if action not in ACTIONS or properties.get("SUBSYSTEM") != "pci":
        return None
    name = properties.get("PCI_SLOT_NAME") or str(properties.get("DEVPATH", "")).rpartition(
        "/")[2]
    try:
        address = PciAddress.parse(str(name))
    except InvalidAddress:
        return None
    driver = properties.get("DRIVER") if action == "bind" else None
    return Uevent(str(action), address, str(driver) if driver else None)


class PyudevSource:
    """The kernel's PCI uevents, read from netlink through pyudev."""

    def __init__(self) -> None:
        try:
            import pyudev  # type: ignore[import-untyped]

            context = pyudev.Context()  # loads libudev.so.1 (ImportError without it)
        except ImportError as exc:
            raise UeventsUnavailable(f"watch needs pyudev and libudev: {exc}; install them"
                                     " (pip install pyudev; libudev1 from the distribution)"
                                     ) from None
        try:
            self._monitor = pyudev.Monitor.from_netlink(context, source="kernel")
            self._monitor.filter_by("pci")
            # Unprivileged: the default buffer stays; a lost batch makes the caller rescan.
            with contextlib.suppress(OSError):
                self._monitor.set_receive_buffer_size(RECEIVE_BUFFER)
            self._monitor.start()
        except (OSError, ValueError) as exc:
            raise UeventsUnavailable(f"cannot listen to the kernel's uevents: {exc}; watch needs"
                                     " a netlink socket (root, or a container allowed"
                                     " NETLINK_KOBJECT_UEVENT)") from None
        self._closed = False

    def drain(self, timeout: float, limit: int = BATCH_LIMIT) -> Batch:
        """See :meth:`EventSource.drain`."""
        events: list[Uevent] = []
        lost = False
        wait = timeout
        while len(events) < limit:
            try:
                device = self._monitor.poll(timeout=wait)
            except OSError as exc:
                # An overrun marks the socket with ENOBUFS: poll() reports POLLERR,
                # which pyudev raises with no errno, and the error stays until read.
                pending = self._socket_error() if exc.errno is None else 0
                if errno.ENOBUFS not in (exc.errno, pending):
                    why = os.strerror(pending) if pending else str(exc)
                    raise UeventsUnavailable(f"reading the kernel's uevents failed: {why}"
                                             ) from None
                lost, wait = True, 0
                continue
            if device is None:
                break
            wait = 0
            event = parse(device)
            if event is not None:
                events.append(event)
        return Batch(events, lost)

    def _socket_error(self) -> int:
        """Read (and so clear) the monitor socket's pending error; 0 for none."""
        sock = socket.socket(fileno=os.dup(self._monitor.fileno()))
        try:
            return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
        finally:
            sock.close()

    def close(self) -> None:
        """See :meth:`EventSource.close`."""
        if not self._closed:
            self._closed = True
            del self._monitor  # libudev closes the socket when the last reference goes
