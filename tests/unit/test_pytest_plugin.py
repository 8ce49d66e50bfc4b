"""The pytest plugin pytest loads for every project: it must never break a test run.

Each test runs pytest in a throw-away project (a subprocess, so that nothing leaks
into this session), loading the plugin the way other projects get it: through the
installed ``pytest11`` entry point.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import hostdev
from hostdev.testing.plugin import MISSING_PYFAKEFS


def _site_without_pyfakefs(tmp_path: Path) -> dict[str, str]:
    """The environment of an install of hostdev without its ``testing`` extra.

    A copy (by symlinks) of this environment's site-packages minus pyfakefs, put on
    ``PYTHONPATH`` of an interpreter started with ``-S``: pyfakefs is neither
    importable nor listed among the installed distributions (so its own pytest
    entry point is gone too), while pytest and hostdev's entry point remain.
    """
    site = Path(pytest.__file__).resolve().parent.parent
    hidden = tmp_path / "site-packages"
    hidden.mkdir()
    for entry in site.iterdir():
        if not entry.name.lower().startswith("pyfakefs"):
            (hidden / entry.name).symlink_to(entry)
    paths = [str(hidden)]
    package_root = Path(hostdev.__file__).resolve().parent.parent
    if package_root != site:  # an editable install: the package lives in the checkout
        paths.append(str(package_root))
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


_PROJECT_TESTS = textwrap.dedent("""
    import importlib

    import pytest


    def test_unrelated_to_hostdev():
        assert sum([1, 2]) == 3


    def test_pyfakefs_is_hidden():
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module("pyfakefs")


    def test_wants_the_fake_kernel(fake_kernel):
        pass
""")


def _entry_point_installed() -> bool:
    return any(ep.name == "hostdev" and ep.value == "hostdev.testing.plugin"
               for ep in importlib.metadata.entry_points(group="pytest11"))


needs_entry_point = pytest.mark.skipif(
    not _entry_point_installed(),
    reason="hostdev's pytest11 entry point is not installed (pip install -e '.[dev]')")


def _project(where: Path, tests: str) -> Path:
    # An ini file of its own, so this repository's pytest settings stay out of it.
    where.mkdir()
    (where / "pytest.ini").write_text("[pytest]\n")
    (where / "test_project.py").write_text(tests)
    return where


def _run(cwd: Path, argv: list[str],
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@needs_entry_point
def test_a_project_without_pyfakefs_still_runs_its_tests(tmp_path: Path) -> None:
    project = _project(tmp_path / "project", _PROJECT_TESTS)
    env = _site_without_pyfakefs(tmp_path)

    result = _run(project, ["-S", "-m", "pytest", "-p", "no:cacheprovider", "-rA"], env)

    out = result.stdout + result.stderr
    # Only the test that asks for the fixture fails, at setup, saying what to install.
    assert "2 passed, 1 error" in out, out
    assert "PASSED test_project.py::test_unrelated_to_hostdev" in out, out
    assert "ERROR test_project.py::test_wants_the_fake_kernel" in out, out
    assert MISSING_PYFAKEFS in out, out
    assert "pip install 'hostdev[testing]'" in MISSING_PYFAKEFS
    assert result.returncode == 1, out


@needs_entry_point
def test_the_entry_point_gives_the_fixture_when_pyfakefs_is_there(tmp_path: Path) -> None:
    project = _project(tmp_path / "project", textwrap.dedent("""
        import os

        def test_empty_fake_host(fake_kernel):
            assert os.listdir("/sys/bus/pci/devices") == []
    """))

    result = _run(project, ["-m", "pytest", "-p", "no:cacheprovider", "-rA"])

    out = result.stdout + result.stderr
    assert "1 passed" in out, out
    assert result.returncode == 0, out


def test_importing_the_plugin_needs_no_pyfakefs(tmp_path: Path) -> None:
    # Independent of the entry point: the module itself imports without pyfakefs.
    script = textwrap.dedent("""
        import importlib.util, sys
        import hostdev.testing.plugin
        import hostdev.testing
        print(importlib.util.find_spec("pyfakefs"), "pyfakefs" in sys.modules,
              "FakeKernel" in dir(hostdev.testing))
    """)

    result = _run(tmp_path, ["-S", "-c", script], _site_without_pyfakefs(tmp_path))

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "False", "True"], result.stdout
