"""7.1 rows for reset, reset_method, enable and numa_node (docs/kernel-model.md §5)."""

from __future__ import annotations

import errno
from collections.abc import Iterator

import pytest
from pyfakefs import helpers

from hostdev.testing import FakeKernel

from .hostlib import GPU, NIC, NOGROUP, PF, Sys


@pytest.fixture
def as_user() -> Iterator[None]:
    helpers.set_uid(1000)
    try:
        yield
    finally:
        helpers.reset_ids()


@pytest.mark.parametrize("value", ["0", "2", "x", "1 "])
def test_row_reset_not_one(host: FakeKernel, sysfs: Sys, value: str) -> None:
    assert sysfs.errno(sysfs.dev(NIC, "reset"), value) == errno.EINVAL
    assert host.device_state(NIC).reset_count == 0


def test_row_reset_ok_and_no_method(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.dev(NIC, "reset"), "1\n")
    assert host.device_state(NIC).reset_count == 1
    assert sysfs.driver(NIC) == "e1000e"  # reset never changes binding
    sysfs.write(sysfs.dev(NIC, "reset_method"), "\n")
    assert sysfs.read(sysfs.dev(NIC, "reset_method")) == ""
    assert sysfs.exists(sysfs.dev(NIC, "reset"))  # visibility fixed at build
    assert sysfs.errno(sysfs.dev(NIC, "reset"), "1") == errno.ENOTTY
    assert host.device_state(NIC).reset_count == 1


def test_row_reset_method_set_and_default(host: FakeKernel, sysfs: Sys) -> None:
    path = sysfs.dev(NIC, "reset_method")
    sysfs.write(path, "bus\n")
    assert sysfs.read(path) == "bus\n"
    sysfs.write(path, "bus flr")
    assert sysfs.read(path) == "bus flr\n"
    sysfs.write(path, "default\n")
    assert sysfs.read(path) == "flr bus\n"


@pytest.mark.parametrize("value", ["pm", "flr bogus", "warm", "flr\tbus",
                                   " ".join(["flr"] * 8)])
def test_row_reset_method_invalid(host: FakeKernel, sysfs: Sys, value: str) -> None:
    path = sysfs.dev(NIC, "reset_method")
    sysfs.write(path, "bus")
    assert sysfs.errno(path, value) == errno.EINVAL
    assert sysfs.read(path) == "bus\n"


def test_row_enable(host: FakeKernel, sysfs: Sys) -> None:
    path = sysfs.dev(NOGROUP, "enable")
    assert sysfs.errno(path, "x") == errno.EINVAL
    assert sysfs.errno(path, "0") == errno.EIO  # not enabled
    sysfs.write(path, "1")
    assert sysfs.read(path) == "1\n"
    sysfs.write(path, "0")
    assert sysfs.read(path) == "0\n"
    assert sysfs.errno(sysfs.dev(NIC, "enable"), "1") == errno.EBUSY  # bound


def test_row_numa_node(host: FakeKernel, sysfs: Sys) -> None:
    path = sysfs.dev(GPU, "numa_node")
    sysfs.write(path, "1")  # node 1 is online (the NIC is on it)
    assert sysfs.read(path) == "1\n"
    sysfs.write(path, "-1\n")
    assert sysfs.read(path) == "-1\n"
    for bad in ("7", "-2", "x", "4096"):
        assert sysfs.errno(path, bad) == errno.EINVAL, bad
    assert sysfs.errno(path, "99999999999") == errno.ERANGE
    assert sysfs.read(path) == "-1\n"


@pytest.mark.usefixtures("as_user")
def test_rows_enable_and_numa_node_need_root(host: FakeKernel, sysfs: Sys) -> None:
    assert sysfs.errno(sysfs.dev(NOGROUP, "enable"), "1") == errno.EPERM
    assert sysfs.errno(sysfs.dev(GPU, "numa_node"), "0") == errno.EPERM
    assert sysfs.errno(sysfs.dev(PF, "vendor"), "1") == errno.EACCES  # RO, opened as user
