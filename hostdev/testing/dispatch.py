"""The write path: from a write to a sysfs file to the kernel handler and back.

Every writable-looking sysfs file carries one of the node objects below as its
pyfakefs ``side_effect``. A handle opened for writing on it hands each write's
bytes to :func:`write` (see :mod:`hostdev.testing.opens`, which also refuses at
``open()`` what kernfs refuses there). For each non-empty write the pipeline:

0. shows the write to the tests' armed ``watch_writes`` and runs their hooks;
1. refuses with ENODEV if the file's device is gone (write through a stale fd);
2. applies an armed ``fail_write`` fault (before any effect);
3. runs the store handler of the file's registry entry (:mod:`hostdev.testing.registry`);
4. records the attempt in ``writes``, restores the file's readable content from
   the model, and only then re-raises the error, if any;
5. after a successful write, fires an armed ``crash_after_writes``.

The hook itself sees only what pyfakefs does to the file outside such handles:
the truncation of an O_TRUNC open (kernfs truncates nothing, so the content is
rendered back at once; a read-only attribute refuses the open with EACCES, for
root too, as kernfs checks the mode at open) and contents set directly, which
are delivered as one write. A zero-byte write never reaches a handler.
"""

from __future__ import annotations

import errno

from pyfakefs.fake_file import FakeFile

from hostdev.address import PciAddress
from hostdev.errors import InvalidAddress
from hostdev.testing.events import SimulatedCrash, VfioWouldBlock, WriteParked, WriteRecord, kerr
from hostdev.testing.model import Attr, BusAttr, Device, Driver, DriverAttr, KernelState
from hostdev.testing.vfs import set_contents


class SysfsNode:
    """Base of the write hooks: one per sysfs file the fake kernel serves."""

    __slots__ = ("name", "state")

    def __init__(self, state: KernelState, name: str) -> None:
        self.state = state
        self.name = name

    @property
    def path(self) -> str:
        """Canonical path of the file."""
        raise NotImplementedError

    @property
    def alias(self) -> str:
        """The path recorded in ``writes`` and also matched by ``fail_write``."""
        return self.path

    def alive(self) -> bool:
        """False once the object the file belongs to has been deleted."""
        return True

    def apply(self, data: bytes, path: str) -> None:
        """Run the kernel's store handler."""
        raise NotImplementedError

    def address_of(self, data: bytes) -> PciAddress | None:
        """The device a write of ``data`` is about: the address written (``bind``,
        ``unbind``, ``drivers_probe``), if it is one."""
        try:
            return PciAddress.parse(data.decode("ascii", "replace").strip())
        except InvalidAddress:
            return None

    def writable(self) -> bool:
        """Whether the file has a store handler (else opening it for writing: EACCES)."""
        return True

    def readable(self) -> bool:
        """Whether the file has a show handler (else opening it for reading: EACCES)."""
        return False

    def content(self) -> str | bytes:
        """What the file reads as now."""
        return ""

    def __call__(self, fake_file: FakeFile) -> None:
        data = fake_file.byte_contents
        if not data:  # truncated (O_TRUNC at open): the attribute keeps its value
            set_contents(fake_file, self.content())
            if not self.writable():  # opened O_TRUNC for writing: kernfs refuses the open
                raise kerr(errno.EACCES)
            return
        write(self, fake_file, data)


class DeviceNode(SysfsNode):
    """An attribute file in a device directory, served by its registry entry."""

    __slots__ = ("attr", "device")

    def __init__(self, state: KernelState, device: Device, attr: Attr) -> None:
        super().__init__(state, attr.name)
        self.device = device
        self.attr = attr

    @property
    def path(self) -> str:
        return f"{self.device.path}/{self.name}"

    @property
    def alias(self) -> str:
        return f"{self.device.alias}/{self.name}"

    def alive(self) -> bool:
        return self.device.alive

    def address_of(self, data: bytes) -> PciAddress | None:
        return self.device.address

    def writable(self) -> bool:
        return self.attr.store is not None

    def readable(self) -> bool:
        return self.attr.show is not None

    def apply(self, data: bytes, path: str) -> None:
        store = self.attr.store
        if store is None:
            raise kerr(errno.EACCES)
        store(self.state, self.device, data, path)

    def content(self) -> str | bytes:
        return self.attr.read(self.device)


class DriverNode(SysfsNode):
    """A file of a driver's directory, served by its registry entry."""

    __slots__ = ("attr", "driver")

    def __init__(self, state: KernelState, driver: Driver, attr: DriverAttr) -> None:
        super().__init__(state, attr.name)
        self.driver = driver
        self.attr = attr

    @property
    def path(self) -> str:
        return f"{self.driver.path}/{self.name}"

    def apply(self, data: bytes, path: str) -> None:
        self.attr.store(self.state, self.driver, data, path)


class BusNode(SysfsNode):
    """A file of ``/sys/bus/pci``, served by its registry entry."""

    __slots__ = ("attr",)

    def __init__(self, state: KernelState, attr: BusAttr) -> None:
        super().__init__(state, attr.name)
        self.attr = attr

    @property
    def path(self) -> str:
        return f"/sys/bus/pci/{self.name}"

    def apply(self, data: bytes, path: str) -> None:
        self.attr.store(self.state, data, path)

    def readable(self) -> bool:
        return self.attr.show is not None

    def content(self) -> str | bytes:
        return self.attr.read(self.state)


def write(node: SysfsNode, fake_file: FakeFile, data: bytes) -> None:
    """Handle one write to ``node`` (see the module docstring for the steps).

    Writes are serialised (the real kernel holds device and bus locks).
    """
    node.state.faults.before_write(node.path, node.alias, lambda: node.address_of(data))
    with node.state.lock:
        _write(node, fake_file, data)


def _write(node: SysfsNode, fake_file: FakeFile, data: bytes) -> None:
    state = node.state
    path = node.path
    alias = node.alias
    record = WriteRecord(alias, data.decode("utf-8", "surrogateescape"), None)
    try:
        if not node.alive():
            raise kerr(errno.ENODEV)
        injected = state.faults.write_error(path, alias)
        if injected is not None:
            raise kerr(injected)
        node.apply(data, alias)
    except OSError as exc:
        state.writes.append(record._replace(errno=exc.errno))
        raise kerr(exc.errno or errno.EIO) from None
    except VfioWouldBlock:
        state.writes.append(record._replace(blocked=True))
        raise
    except WriteParked:
        # Made the bounded way: the write has not returned yet. It is recorded
        # when it completes (see hostdev.testing.blocking).
        assert state.bounded is not None
        state.bounded.park(node, fake_file)
        raise
    else:
        state.writes.append(record)
    finally:
        set_contents(fake_file, node.content())
    if state.faults.count_success():
        raise SimulatedCrash(record)
