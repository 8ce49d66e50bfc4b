"""Fixtures of the fake-kernel tests (helpers live in hostlib)."""

from __future__ import annotations

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from hostdev.testing import FakeKernel

from .hostlib import Sys, build_host


@pytest.fixture
def sysfs() -> Sys:
    """Plain-I/O helper."""
    return Sys()


@pytest.fixture
def kernel(fs: FakeFilesystem) -> FakeKernel:
    """An empty fake kernel."""
    return FakeKernel(fs)


@pytest.fixture
def host(kernel: FakeKernel) -> FakeKernel:
    """The small host of :func:`hostlib.build_host`."""
    return build_host(kernel)
