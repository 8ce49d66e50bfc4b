"""Fixture hosts: find a TOML host description and parse it into a HostSpec.

A name such as ``"two-socket-server"`` means ``<hosts dir>/<name>.toml``. The
hosts directory is the package's ``hostdev/testing/hosts/`` in an installed
wheel, else the checkout's ``fixtures/sysfs/``. Anything with a ``/`` or a
``.toml`` suffix is a path.

Fixture files live on the real disk while tests run inside pyfakefs, so files
are read through ``io.open_code`` (which pyfakefs leaves alone by default),
after looking in the fake filesystem first (a test may have created one there).
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same module, before it joined the standard library
    import tomli as tomllib

from pyfakefs.fake_filesystem import FakeFilesystem

from hostdev.testing.events import FakeKernelSetupError
from hostdev.testing.hostspec import HostSpec

PACKAGE_HOSTS_DIR = Path(__file__).resolve().parent / "hosts"
REPO_HOSTS_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "sysfs"
_PACKAGE_HOSTS_PRESENT = PACKAGE_HOSTS_DIR.is_dir()


def hosts_dir() -> Path:
    """Where named fixture hosts are looked up."""
    return PACKAGE_HOSTS_DIR if _PACKAGE_HOSTS_PRESENT else REPO_HOSTS_DIR


_NAMES: list[str] = []


def fixture_names() -> list[str]:
    """Names of the fixture hosts shipped with hostdev.

    Listed on the real disk; inside pyfakefs (where that directory is not seen)
    the names found by an earlier call outside it are returned.
    """
    directory = hosts_dir()
    if not directory.is_dir():
        return list(_NAMES)
    names = sorted(p.stem for p in directory.iterdir() if p.suffix == ".toml")
    _NAMES[:] = names
    return names


def _read(fs: FakeFilesystem | None, path: str) -> bytes | None:
    if fs is not None and fs.isfile(path):
        contents = fs.get_object(path).byte_contents
        return contents if contents is not None else b""
    try:
        with io.open_code(path) as handle:
            return handle.read()
    except OSError:
        return None


def _candidates(name_or_path: str | os.PathLike[str]) -> list[str]:
    text = os.fspath(name_or_path)
    if isinstance(name_or_path, os.PathLike) or "/" in text or text.endswith(".toml"):
        return [text]
    dirs = [hosts_dir(), REPO_HOSTS_DIR, PACKAGE_HOSTS_DIR]
    unique = list(dict.fromkeys(str(d / f"{text}.toml") for d in dirs))
    return unique


def read_host_spec(
    name_or_path: str | os.PathLike[str], fs: FakeFilesystem | None = None
) -> HostSpec:
    """Parse a fixture host (by name or path) into a :class:`HostSpec`."""
    candidates = _candidates(name_or_path)
    for candidate in candidates:
        raw = _read(fs, candidate)
        if raw is None:
            continue
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise FakeKernelSetupError(f"fixture {candidate} is not valid TOML: {exc}") from exc
        return HostSpec.model_validate(data)
    known = ", ".join(fixture_names()) or "none found"
    raise FakeKernelSetupError(
        f"no fixture host {os.fspath(name_or_path)!r} (tried {', '.join(candidates)});"
        f" known names: {known}"
    )


fixture_names()  # remember the names while the real disk is visible (see fixture_names)
