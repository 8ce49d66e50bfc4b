"""pytest plugin (entry point ``hostdev``): the ``fake_kernel`` fixture.

``fake_kernel`` is an empty :class:`~hostdev.testing.FakeKernel` over pyfakefs's
``fs`` fixture; load a host with ``fake_kernel.load_fixture("two-socket-server")``.
"""

from __future__ import annotations

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from hostdev.testing.kernel import FakeKernel


@pytest.fixture
def fake_kernel(fs: FakeFilesystem) -> FakeKernel:
    """An empty fake host (no devices, no drivers) inside pyfakefs."""
    return FakeKernel(fs)
