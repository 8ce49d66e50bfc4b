"""``hostdev --version`` and the one place the version is written."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

import hostdev
from hostdev.cli.main import main

REPO = Path(__file__).resolve().parents[2]


def test_version_option_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0
    assert out == f"hostdev {hostdev.__version__}\n" and err == ""
    assert re.fullmatch(r"\d+\.\d+\.\d+(\S*)", hostdev.__version__)


def test_version_needs_no_subcommand_and_touches_no_host() -> None:
    # A root that does not exist: --version must answer before anything looks at it.
    script = "import sys; from hostdev.cli.main import main; sys.exit(main())"
    result = subprocess.run([sys.executable, "-c", script, "--root", "/nonexistent", "--version"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"hostdev {hostdev.__version__}\n"


def test_installed_metadata_takes_its_version_from_the_package() -> None:
    # pyproject.toml declares the version dynamic; the build reads __version__.
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]$', pyproject, re.M)
    assert not re.search(r"^version\s*=", pyproject, re.M)
    try:
        installed = importlib.metadata.version("hostdev")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
        pytest.skip("hostdev is not installed")
    assert installed == hostdev.__version__
