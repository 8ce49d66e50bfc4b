"""Loading modules with modprobe (bounded, one-line errors) and choosing vfio variant drivers.

modprobe is replaced by small scripts in a temporary directory: nothing is loaded here.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from hostdev.errors import InvalidDriverName, ModuleLoadFailed
from hostdev.linux.modules import best_variant, modprobe, vfio_aliases

MLX_VF = "pci:v000015B3d0000101Esv000015B3sd00000016bc02sc00i00"
ALIASES = [
    ("vfio_pci:v*d*sv*sd*bc*sc*i*", "vfio_pci"),
    ("vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i*", "mlx5_vfio_pci"),
    ("vfio_pci:v000019E5d0000A256sv*sd*bc*sc*i*", "hisi_acc_vfio_pci"),
]


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "modprobe"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_modprobe_success_passes_the_name_after_double_dash(tmp_path: Path) -> None:
    log = tmp_path / "args"
    modprobe("vfio-pci", command=_script(tmp_path, f'echo "$@" > {log}'))
    assert log.read_text() == "-- vfio-pci\n"


def test_modprobe_failure_is_one_line(tmp_path: Path) -> None:
    script = _script(tmp_path, 'echo "modprobe: FATAL: Module nope not found in directory'
                               ' /lib/modules/6.1.0" >&2; echo second line >&2; exit 1')
    with pytest.raises(ModuleLoadFailed) as info:
        modprobe("nope", command=script)
    message = str(info.value)
    assert message == "cannot load module nope: modprobe failed: second line"
    assert "\n" not in message


def test_modprobe_silent_failure_gives_the_exit_status(tmp_path: Path) -> None:
    with pytest.raises(ModuleLoadFailed, match="exit status 3"):
        modprobe("x", command=_script(tmp_path, "exit 3"))


def test_modprobe_is_bounded_in_time(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ModuleLoadFailed, match=r"did not finish within 0\.5 s"):
        modprobe("slow", timeout=0.5, command=_script(tmp_path, "exec sleep 30"))
    assert time.monotonic() - started < 5


def test_modprobe_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(ModuleLoadFailed, match="cannot run"):
        modprobe("vfio-pci", command=str(tmp_path / "absent"))


def test_modprobe_not_found_in_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hostdev.linux.modules._SBIN", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ModuleLoadFailed, match="modprobe not found"):
        modprobe("vfio-pci")


def test_modprobe_refuses_hostile_names(tmp_path: Path) -> None:
    log = tmp_path / "ran"
    for name in ("-r", "../x", "a b"):
        with pytest.raises(InvalidDriverName):
            modprobe(name, command=_script(tmp_path, f"touch {log}"))
    assert not log.exists()


def test_best_variant_prefers_the_specific_alias() -> None:
    assert best_variant(MLX_VF, ALIASES) == "mlx5_vfio_pci"
    # Order in the file does not matter: the catch-all never beats a specific match.
    assert best_variant(MLX_VF, list(reversed(ALIASES))) == "mlx5_vfio_pci"
    other = "pci:v00008086d00001572sv00008086sd00000000bc02sc00i00"
    assert best_variant(other, ALIASES) == "vfio_pci"
    assert best_variant(other, ALIASES[1:]) is None
    assert best_variant("usb:v1234", ALIASES) is None


def test_vfio_aliases_reads_only_vfio_lines(tmp_path: Path) -> None:
    path = tmp_path / "modules.alias"
    path.write_text(
        "# Aliases extracted from modules themselves.\n"
        "alias pci:v000015B3d0000101Esv*sd*bc*sc*i* mlx5_core\n"
        "alias vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i* mlx5_vfio_pci\n"
        "alias vfio_pci:v*d*sv*sd*bc*sc*i* vfio_pci\n"
        "alias vfio_pci:broken line with too many fields\n"
    )
    assert vfio_aliases(str(path)) == [
        ("vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i*", "mlx5_vfio_pci"),
        ("vfio_pci:v*d*sv*sd*bc*sc*i*", "vfio_pci"),
    ]
    assert vfio_aliases(str(tmp_path / "absent")) == []
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert vfio_aliases(str(fifo)) == []  # not a regular file: ignored, never blocks


def test_modules_alias_linked_out_of_the_root_is_not_read(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from hostdev.linux.modules import root_aliases
    from hostdev.linux.sysfs import Sysfs

    root = tmp_path / "root"
    (root / "proc/sys/kernel").mkdir(parents=True)
    (root / "sys").mkdir()
    (root / "proc/sys/kernel/osrelease").write_text("6.1.0-test\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "modules.alias").write_text("alias vfio_pci:v*d*sv*sd*bc*sc*i* evil_vfio\n")
    inside = root / "lib/modules/6.1.0-test"
    inside.mkdir(parents=True)
    (inside / "modules.alias").write_text("alias vfio_pci:v*d*sv*sd*bc*sc*i* vfio_pci\n")
    sysfs = Sysfs(root)
    assert root_aliases(sysfs) == [("vfio_pci:v*d*sv*sd*bc*sc*i*", "vfio_pci")]

    (inside / "modules.alias").unlink()
    (inside / "modules.alias").symlink_to(outside / "modules.alias")
    with caplog.at_level("WARNING", logger="hostdev"):
        assert root_aliases(sysfs) == []
    assert f"{inside}/modules.alias leads outside --root" in caplog.text

    caplog.clear()
    (inside / "modules.alias").unlink()
    inside.rmdir()
    (root / "lib/modules").rmdir()
    (root / "lib/modules").symlink_to(outside)
    (outside / "6.1.0-test").mkdir()
    (outside / "6.1.0-test/modules.alias").write_text("alias vfio_pci:v*d* evil_vfio\n")
    with caplog.at_level("WARNING", logger="hostdev"):
        assert root_aliases(sysfs) == []
    assert f"{root}/lib/modules leads outside --root" in caplog.text
    # Links that stay inside the root are followed.
    (root / "lib/modules").unlink()
    (root / "alt").mkdir()
    (root / "alt/6.1.0-test").mkdir()
    (root / "alt/6.1.0-test/modules.alias").write_text("alias vfio_pci:v1d2 x_vfio_pci\n")
    (root / "lib/modules").symlink_to(root / "alt")
    assert root_aliases(sysfs) == [("vfio_pci:v1d2", "x_vfio_pci")]
