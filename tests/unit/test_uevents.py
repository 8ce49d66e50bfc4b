"""The uevent boundary without a kernel: what a pyudev Device's properties become, and
how a drain treats the socket (stub objects shaped like pyudev's)."""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from hostdev.address import PciAddress
from hostdev.errors import BadInput, UeventsUnavailable
from hostdev.linux import uevents
from hostdev.linux.uevents import PyudevSource, Uevent, parse

VF = "0000:3b:02.1"
DEVPATH = f"/devices/pci0000:3a/0000:3a:00.0/{VF}"


def device(action: str | None = None, **properties: str) -> SimpleNamespace:
    """Shaped like a pyudev Device from a kernel monitor: ``action`` and ``properties``."""
    return SimpleNamespace(action=action, properties=properties, sys_name=VF)


def pci(action: str, **extra: str) -> SimpleNamespace:
    return device(action, ACTION=action, SUBSYSTEM="pci", DEVPATH=DEVPATH,
                  PCI_SLOT_NAME=VF, PCI_ID="8086:154C", **extra)


@pytest.mark.parametrize("action", ["add", "remove", "unbind", "change"])
def test_actions_without_a_driver(action: str) -> None:
    assert parse(pci(action)) == Uevent(action, PciAddress.parse(VF), None)


def test_bind_names_its_driver() -> None:
    assert parse(pci("bind", DRIVER="vfio-pci")) == Uevent("bind", PciAddress.parse(VF),
                                                           "vfio-pci")


def test_only_a_bind_carries_a_driver() -> None:
    # A kernel sends DRIVER with every message about a bound device; only a bind's
    # says something new.
    assert parse(pci("change", DRIVER="iavf")) == Uevent("change", PciAddress.parse(VF), None)


def test_address_from_devpath_when_the_slot_name_is_missing() -> None:
    event = device("remove", ACTION="remove", SUBSYSTEM="pci", DEVPATH=DEVPATH)
    assert parse(event) == Uevent("remove", PciAddress.parse(VF))


def test_action_from_the_device_when_the_property_is_missing() -> None:
    event = device("add", SUBSYSTEM="pci", PCI_SLOT_NAME=VF)
    assert parse(event) == Uevent("add", PciAddress.parse(VF))


@pytest.mark.parametrize("event", [
    device("add", ACTION="add", SUBSYSTEM="pci_bus", DEVPATH="/devices/pci0000:3a/pci_bus/0000:3b"),
    device("online", ACTION="online", SUBSYSTEM="pci", PCI_SLOT_NAME=VF),
    device("add", ACTION="add", SUBSYSTEM="pci", PCI_SLOT_NAME="not-an-address"),
    device("add", ACTION="add", SUBSYSTEM="pci", DEVPATH="/devices/pci0000:3a"),
    SimpleNamespace(action="add", properties=None),
    object(),
], ids=["other-subsystem", "unfollowed-action", "bad-slot", "no-address", "no-properties",
        "not-a-device"])
def test_what_is_ignored(event: object) -> None:
    assert parse(event) is None


class StubMonitor:
    """pyudev.Monitor's ``poll``: hands out scripted results (None: nothing queued)."""

    def __init__(self, results: list[object]) -> None:
        self.results: Iterator[object] = iter(results)
        self.timeouts: list[float | None] = []

    def poll(self, timeout: float | None = None) -> object:
        self.timeouts.append(timeout)
        result = next(self.results, None)
        if isinstance(result, OSError):
            raise result
        return result


def source(results: list[object]) -> tuple[PyudevSource, StubMonitor]:
    src = PyudevSource.__new__(PyudevSource)
    monitor = StubMonitor(results)
    src._monitor = monitor
    src._closed = False
    return src, monitor


def test_drain_waits_for_the_first_event_only() -> None:
    src, monitor = source([pci("unbind"), device("add", ACTION="add", SUBSYSTEM="usb"),
                           pci("remove"), None, pci("add")])
    batch = src.drain(0.5)
    assert [e.action for e in batch.events] == ["unbind", "remove"] and not batch.lost
    assert monitor.timeouts == [0.5, 0, 0, 0]
    assert [e.action for e in src.drain(0.5).events] == ["add"]


def test_drain_stops_at_its_limit() -> None:
    src, _ = source([pci("add"), pci("bind", DRIVER="iavf"), pci("unbind")])
    assert len(src.drain(0.1, limit=2).events) == 2
    assert [e.action for e in src.drain(0.1).events] == ["unbind"]


def test_an_overflowed_socket_is_a_lost_batch() -> None:
    src, _ = source([pci("add"), OSError(errno.ENOBUFS, os.strerror(errno.ENOBUFS)),
                     pci("remove")])
    batch = src.drain(0.1)
    assert batch.lost and [e.action for e in batch.events] == ["add", "remove"]


def test_an_overrun_reported_by_poll_is_a_lost_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    # What really happens: the overrun marks the socket (ENOBUFS), poll() reports
    # POLLERR, pyudev raises an OSError with no errno; the pending error says why.
    src, _ = source([pci("add"), OSError("Error while polling fd: 5"), pci("remove")])
    monkeypatch.setattr(PyudevSource, "_socket_error", lambda self: errno.ENOBUFS)
    batch = src.drain(0.1)
    assert batch.lost and [e.action for e in batch.events] == ["add", "remove"]


def test_a_poll_error_that_is_not_an_overrun_is_unavailable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    src, _ = source([OSError("Error while polling fd: 5")])
    monkeypatch.setattr(PyudevSource, "_socket_error", lambda self: errno.ECONNRESET)
    with pytest.raises(UeventsUnavailable, match=os.strerror(errno.ECONNRESET)):
        src.drain(0.1)


def test_the_pending_socket_error_is_read_and_cleared() -> None:
    # A real socket with an error pending: UDP to a closed local port.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        sock.send(b"x")
        time.sleep(0.05)  # the ICMP answer marks the socket
        src, _ = source([])
        src._monitor.fileno = sock.fileno  # type: ignore[attr-defined]
        assert src._socket_error() == errno.ECONNREFUSED
        assert src._socket_error() == 0, "reading it clears it"


def test_a_missing_libudev_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import pyudev  # type: ignore[import-untyped]

    def no_library() -> None:
        raise ImportError("No library named udev")

    monkeypatch.setattr(pyudev, "Context", no_library)
    with pytest.raises(UeventsUnavailable, match="No library named udev"):
        PyudevSource()


def test_another_socket_error_is_unavailable() -> None:
    src, _ = source([OSError(errno.EBADF, os.strerror(errno.EBADF))])
    with pytest.raises(UeventsUnavailable, match="reading the kernel's uevents failed"):
        src.drain(0.1)


def test_close_is_idempotent() -> None:
    src, _ = source([])
    src.close()
    src.close()
    assert not hasattr(src, "_monitor")


def test_only_the_running_kernel_has_uevents() -> None:
    with pytest.raises(BadInput, match="--root must be /"):
        uevents.open_events(SimpleNamespace(root="/srv/copy-of-sys"))  # type: ignore[arg-type]


def test_missing_pyudev_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "pyudev", None)
    with pytest.raises(UeventsUnavailable, match="pip install pyudev"):
        PyudevSource()


class ScriptedSource:
    """An EventSource handing out scripted batches, recording each drain's timeout."""

    def __init__(self, *batches: list[str], lost_at: int = -1) -> None:
        self.batches = [[Uevent(a, PciAddress.parse(VF)) for a in b] for b in batches]
        self.lost_at = lost_at
        self.timeouts: list[float] = []
        self.limits: list[int] = []

    def drain(self, timeout: float, limit: int = uevents.BATCH_LIMIT) -> uevents.Batch:
        self.timeouts.append(timeout)
        self.limits.append(limit)
        index = len(self.timeouts) - 1
        events = self.batches.pop(0) if self.batches else []
        return uevents.Batch(events[:limit], index == self.lost_at)

    def close(self) -> None:
        pass


def test_gather_takes_what_follows_until_the_line_is_quiet() -> None:
    src = ScriptedSource(["unbind"], ["remove"], [], ["add"])
    batch = uevents.gather(src, 0.5)
    assert [e.action for e in batch.events] == ["unbind", "remove"] and not batch.lost
    assert src.timeouts[0] == 0.5 and all(0 < t <= uevents.QUIET for t in src.timeouts[1:])
    assert [e.action for e in uevents.gather(src, 0.5).events] == ["add"]


def test_gather_returns_at_once_when_nothing_came() -> None:
    src = ScriptedSource([], ["add"])
    assert uevents.gather(src, 0.2) == ([], False) and src.timeouts == [0.2]


def test_gather_keeps_a_loss_and_its_limit() -> None:
    src = ScriptedSource(["add", "bind"], ["unbind", "remove", "add"], lost_at=1)
    batch = uevents.gather(src, 0.1, limit=4)
    assert batch.lost and len(batch.events) == 4 and src.limits == [4, 2]


def test_gather_stops_lingering_on_a_steady_stream() -> None:
    class Steady(ScriptedSource):
        def drain(self, timeout: float, limit: int = uevents.BATCH_LIMIT) -> uevents.Batch:
            time.sleep(uevents.QUIET)  # an event arrives just before each wait runs out
            return super().drain(timeout, limit)

    src = Steady(*[["change"]] * 1000)
    batch = uevents.gather(src, 0.1)
    assert 1 < len(batch.events) < 1000, "a batch ends though events keep coming"
