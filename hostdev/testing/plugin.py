"""pytest plugin (entry point ``hostdev``): the ``fake_kernel`` fixture.

``fake_kernel`` is an empty :class:`~hostdev.testing.FakeKernel` over pyfakefs's
``fs`` fixture; load a host with ``fake_kernel.load_fixture("two-socket-server")``.

pytest loads this module for every project that has hostdev installed, so
importing it must work without the ``testing`` extra: pyfakefs is imported only
when a test asks for the fixture, and a missing pyfakefs fails that test alone
with the command that installs it. With plugin autoloading off
(``PYTEST_DISABLE_PLUGIN_AUTOLOAD``), name ``hostdev.testing.plugin`` in
``pytest_plugins`` instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from hostdev.testing.kernel import FakeKernel

#: What a test that uses the fixture without pyfakefs is told to do.
MISSING_PYFAKEFS = (
    "the fake_kernel fixture needs pyfakefs, which is not installed:"
    " install it with pip install 'hostdev[testing]'"
)


@pytest.fixture
def fake_kernel(request: pytest.FixtureRequest) -> FakeKernel:
    """An empty fake host (no devices, no drivers) inside pyfakefs."""
    try:
        from hostdev.testing.kernel import FakeKernel
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] != "pyfakefs":
            raise
        pytest.fail(MISSING_PYFAKEFS, pytrace=False)
    # Asked for by name so that this module never imports pyfakefs itself; the
    # test and the fake kernel share pyfakefs's one ``fs``.
    return FakeKernel(request.getfixturevalue("fs"))
