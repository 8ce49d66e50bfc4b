"""``python -m hostdev.testing materialize``: a fake host as a static tree on the real disk.

Layout is checked with plain os calls on the written tree (no pyfakefs here); if
this runs as root with ``unshare`` and ``lspci`` available, lspci reads the tree
through a private mount namespace (the machine's /sys is never touched).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from pyfakefs.fake_file import FakeDirectory

from hostdev.linux.scan import list_devices
from hostdev.linux.sysfs import Sysfs
from hostdev.testing import read_host_spec
from hostdev.testing.__main__ import main as materialize_cli
from hostdev.testing.materialize import (
    MARKER,
    MaterializeError,
    build_fake,
    materialize,
    namespace_argv,
    parse_host,
    read_token,
)

HOST = "two-socket-server"
PF = "0000:3d:00.0"
VF = "0000:3d:02.1"
GPU = "0000:5e:00.0"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    done = materialize(HOST, root)
    assert done.functions == 25 and done.sys == root / "sys"
    return root


def test_same_files_links_and_bytes_as_the_fake_kernel(tree: Path) -> None:
    """Everything the fake kernel shows under /sys is on disk, byte for byte."""
    fs, _ = build_fake(read_host_spec(HOST))
    stack = [("/sys", fs.resolve("/sys"))]
    seen = 0
    while stack:
        fake_path, directory = stack.pop()
        assert isinstance(directory, FakeDirectory)
        for name, obj in directory.entries.items():
            real = f"{tree}{fake_path}/{name}"
            info = os.lstat(real)
            mode = obj.st_mode
            if stat.S_ISDIR(mode):
                assert stat.S_ISDIR(info.st_mode), real
                stack.append((f"{fake_path}/{name}", obj))
            elif stat.S_ISLNK(mode):
                assert os.readlink(real) == obj.contents, real
            else:
                assert stat.S_IMODE(info.st_mode) == stat.S_IMODE(mode), real
                with open(real, "rb") as handle:
                    assert handle.read() == (obj.byte_contents or b""), real
            seen += 1
    assert seen > 500


def test_layout_as_the_peers_read_it(tree: Path) -> None:
    sys_dir = tree / "sys"
    devices = sys_dir / "bus/pci/devices"
    assert len(os.listdir(devices)) == 25
    link = os.readlink(devices / PF)
    assert link.startswith("../../../devices/pci0000:") and link.endswith("/" + PF)
    assert (devices / PF).resolve().is_relative_to(sys_dir / "devices")
    config = (devices / GPU / "config").read_bytes()
    assert len(config) == 256
    assert int.from_bytes(config[0:2], "little") == int((devices / GPU / "vendor").read_text(), 16)
    assert int.from_bytes(config[2:4], "little") == int((devices / GPU / "device").read_text(), 16)
    assert int.from_bytes(config[9:12], "little") == int((devices / GPU / "class").read_text(), 16)
    assert (devices / GPU / "modalias").read_text().startswith("pci:v000010DEd")
    assert (devices / GPU / "driver_override").read_text() == "(null)\n"
    assert os.readlink(devices / PF / "driver").endswith("/bus/pci/drivers/i40e")
    assert (devices / PF / "driver").resolve() == (sys_dir / "bus/pci/drivers/i40e").resolve()
    assert (sys_dir / "bus/pci/drivers/i40e" / PF).resolve() == (devices / PF).resolve()
    group = os.readlink(devices / PF / "iommu_group").rsplit("/", 1)[-1]
    assert (sys_dir / "kernel/iommu_groups" / group / "devices" / PF).resolve() == \
        (devices / PF).resolve()
    assert (devices / PF / "virtfn1").resolve() == (devices / VF).resolve()
    assert (devices / VF / "physfn").resolve() == (devices / PF).resolve()
    # what only other tools read
    resource = (devices / PF / "resource").read_text().splitlines()
    assert len(resource) == 13 and all(len(line.split()) == 3 for line in resource)
    assert (devices / PF / "irq").read_text() == "0\n"
    assert (devices / PF / "local_cpulist").read_text() == "0-31\n"
    assert (sys_dir / "module/i40e/drivers/pci:i40e").resolve() == \
        (sys_dir / "bus/pci/drivers/i40e").resolve()
    assert (sys_dir / "module/vfio_pci").is_dir()
    assert (sys_dir / "bus/pci/slots").is_dir()
    assert read_token(tree) == (sys_dir / MARKER).read_text().strip()


def test_hostdev_reads_the_tree_as_the_fake_kernel(tree: Path) -> None:
    """The library sees the same host on the disk tree as under pyfakefs."""
    devices = list_devices(Sysfs(tree))
    assert len(devices) == 25
    pf = next(d for d in devices if str(d.address) == PF)
    assert pf.sriov is not None and pf.sriov.numvfs == 2 and pf.driver == "i40e"
    vf = next(d for d in devices if str(d.address) == VF)
    assert vf.vf is not None and str(vf.vf.pf) == PF and vf.vf.index == 1


def test_generated_hosts_by_name() -> None:
    assert len(parse_host("gen:64").devices) < 64  # VFs are created by the kernel
    assert parse_host("gen:2x3").name == "generated-2pf-3vf"
    assert parse_host("gen:2x3/1").devices[-1].sriov.numvfs == 1  # type: ignore[union-attr]
    assert parse_host("libvirt-mock").name == "libvirt-mock"


def test_generated_tree_has_exactly_n_functions(tmp_path: Path) -> None:
    done = materialize("gen:64", tmp_path)
    assert done.functions == 64
    assert len(os.listdir(tmp_path / "sys/bus/pci/devices")) == 64


def test_refuses_real_sys_and_existing_trees(tmp_path: Path) -> None:
    for where in ("/", "/sys", "/proc/x", "/dev/shm/x"):
        with pytest.raises(MaterializeError):
            materialize("gen:4", where)
    materialize("gen:4", tmp_path)
    first = read_token(tmp_path)
    with pytest.raises(MaterializeError, match="already exists"):
        materialize("gen:4", tmp_path)
    assert materialize("gen:4", tmp_path, replace=True).token != first
    other = tmp_path / "other"
    (other / "sys").mkdir(parents=True)
    (other / "sys" / "keep").write_text("mine")
    with pytest.raises(MaterializeError, match="not a tree written by materialize"):
        materialize("gen:4", other, replace=True)
    assert (other / "sys" / "keep").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".sys.")] == []


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert materialize_cli(["materialize", "gen:2x2", str(tmp_path)]) == 0
    assert "8 PCI functions" in capsys.readouterr().out
    assert materialize_cli(["materialize", "gen:2x2", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert materialize_cli(["materialize", "no-such-host", str(tmp_path / "x")]) == 2


def _can_unshare() -> str | None:
    if os.geteuid() != 0:
        return "needs root (unshare -m, mount --bind)"
    for tool in ("unshare", "lspci"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                           capture_output=True, check=False)
    return None if probe.returncode == 0 else "unshare -m does not work here"


def test_lspci_reads_the_tree_in_a_private_namespace(tree: Path) -> None:
    reason = _can_unshare()
    if reason:
        pytest.skip(reason)
    real_before = sorted(os.listdir("/sys/bus/pci/devices"))
    done = subprocess.run(namespace_argv(tree, ["lspci", "-D"]), capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 25
    assert any(line.startswith(f"{GPU} VGA compatible controller: NVIDIA") for line in lines)
    assert sorted(os.listdir("/sys/bus/pci/devices")) == real_before  # ours is untouched


def test_namespace_refuses_a_tree_whose_marker_does_not_match(tmp_path: Path) -> None:
    reason = _can_unshare()
    if reason:
        pytest.skip(reason)
    materialize("gen:4", tmp_path)
    argv = namespace_argv(tmp_path, ["true"])
    argv[argv.index(read_token(tmp_path))] = "not-the-token"
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 125 and "not the materialized tree" in done.stderr
