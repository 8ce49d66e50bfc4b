"""7.1 rows for driver_override (docs/kernel-model.md §1.1)."""

from __future__ import annotations

import errno

import pytest

from hostdev.testing import FakeKernel

from .hostlib import GPU, NIC, Sys


def test_row_override_too_long(host: FakeKernel, sysfs: Sys) -> None:
    path = sysfs.dev(NIC, "driver_override")
    assert sysfs.errno(path, "a" * 4095) == errno.EINVAL
    assert sysfs.read(path) == "(null)\n"
    sysfs.write(path, "a" * 4094)
    assert sysfs.read(path) == "a" * 4094 + "\n"


def test_row_override_newline_clears(host: FakeKernel, sysfs: Sys) -> None:
    path = sysfs.dev(NIC, "driver_override")
    sysfs.write(path, "vfio-pci")
    assert sysfs.read(path) == "vfio-pci\n"
    sysfs.write(path, "\n")
    assert sysfs.read(path) == "(null)\n"


def test_zero_byte_write_is_a_no_op(host: FakeKernel, sysfs: Sys) -> None:
    path = sysfs.dev(NIC, "driver_override")
    sysfs.write(path, "vfio-pci")
    count = len(host.writes)
    sysfs.write(path, "")
    assert len(host.writes) == count


@pytest.mark.parametrize(("value", "stored"), [
    ("vfio-pci\n", "vfio-pci"), ("vfio-pci\nignored", "vfio-pci"), ("none", "none"),
    ("vfio-pci\0junk", "vfio-pci"), ("\nfoo", "(null)"),
])
def test_row_override_stores_text_before_newline(host: FakeKernel, sysfs: Sys, value: str,
                                                 stored: str) -> None:
    path = sysfs.dev(NIC, "driver_override")
    assert sysfs.write(path, value) == len(value.encode())
    assert sysfs.read(path) == stored + "\n"


def test_override_does_not_rebind(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.dev(NIC, "driver_override"), "vfio-pci")
    assert sysfs.driver(NIC) == "e1000e"
    assert host.device_state(NIC).driver_override == "vfio-pci"


def test_override_none_blocks_every_driver(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.dev(GPU, "driver/unbind"), GPU)
    sysfs.write(sysfs.dev(GPU, "driver_override"), "none")
    sysfs.write("/sys/bus/pci/drivers_probe", GPU)
    assert sysfs.driver(GPU) is None
    assert sysfs.errno(sysfs.drv("nouveau", "bind"), GPU) == errno.ENODEV
