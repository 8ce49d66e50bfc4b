"""Shared fixtures: ``host`` (a small fake host with a manager over it).

The ``fake_kernel`` fixture comes from the package's pytest plugin, named here so
that the suite does not depend on the installed ``pytest11`` entry point (which
pyproject.toml's ``-p no:hostdev`` keeps out, or pytest would load it twice).
"""

from tests.smallhost import host

pytest_plugins = ["hostdev.testing.plugin"]

__all__ = ["host"]
