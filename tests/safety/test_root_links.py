"""A crafted ``--root`` tree whose links lead out of it: every read and write is
refused naming the link (exit 2), nothing outside the tree is written, and no
content from outside is printed. Links that stay inside the tree (as all of the
kernel's do) keep working."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from hostdev.cli.main import main
from hostdev.errors import UnsafePath
from hostdev.linux.scan import scan
from hostdev.linux.sysfs import Sysfs
from hostdev.manager import HostdevManager
from hostdev.testing.materialize import materialize

NIC = "0000:00:02.0"
NVME = "0000:01:00.0"
NVME_DIR = "sys/devices/pci0000:00/0000:00:03.0/0000:01:00.0"
SECRET = "SECRET-7f3a"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pristine")
    materialize("qemu-guest", root)
    return root


@pytest.fixture
def tree(pristine: Path, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(pristine, root, symlinks=True)
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    where = tmp_path / "outside"
    where.mkdir()
    return where


def run(capsys: pytest.CaptureFixture[str], tree: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["--root", str(tree), "--state-dir", str(tree / "state"),
                 "--release-timeout", "0", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _relink(link: Path, target: Path) -> None:
    link.unlink()
    link.symlink_to(target)


def test_device_link_out_of_the_tree(capsys: pytest.CaptureFixture[str], tree: Path,
                                     outside: Path) -> None:
    fake = outside / "device"
    shutil.copytree(tree / NVME_DIR, fake, symlinks=True)
    text = (fake / "uevent").read_text().replace("DRIVER=nvme", f"DRIVER={SECRET}")
    (fake / "uevent").write_text(text)
    (fake / "driver_override").write_text("untouched\n")
    _relink(tree / "sys/bus/pci/devices" / NVME, fake)
    for argv in (("show", NVME), ("detach", NVME), ("reset", NVME)):
        code, out, err = run(capsys, tree, *argv)
        assert code == 2, (argv, err)
        assert err.count("\n") == 1, err
        assert f"/sys/bus/pci/devices/{NVME} under {tree} leads outside" in err
        assert SECRET not in out + err
    for json_out in (False, True):
        # The rest of the host is listed; the device is named in a warning.
        code, out, err = run(capsys, tree, "list", *(["--json"] if json_out else []))
        assert code == 0, (json_out, err)
        assert err.count("\n") == 1, err
        assert err.startswith(f"hostdev: warning: /sys/bus/pci/devices/{NVME} under {tree}"
                              " leads outside"), err
        assert err.rstrip().endswith("the device is left out")
        assert SECRET not in out + err
        if not json_out:
            assert NIC in out and NVME not in out
        else:
            doc = json.loads(out)
            assert [d["address"] for d in doc["devices"]].count(NVME) == 0
            assert NIC in [d["address"] for d in doc["devices"]]
            assert doc["warnings"] == [err.split("warning: ", 1)[1].rstrip("\n")]
    assert (fake / "driver_override").read_text() == "untouched\n"


def test_attribute_linked_to_a_file_outside(capsys: pytest.CaptureFixture[str], tree: Path,
                                            outside: Path) -> None:
    secret = outside / "shadow"
    secret.write_text(f"DRIVER={SECRET}\nPCI_CLASS=10802\nPCI_ID=1B36:0010\n"
                      "PCI_SUBSYS_ID=1AF4:1100\n")
    _relink(tree / NVME_DIR / "uevent", secret)
    code, out, err = run(capsys, tree, "list")
    assert code == 0 and err.count("\n") == 1
    assert f"/sys/bus/pci/devices/{NVME}/uevent under {tree} is a symlink" in err
    assert SECRET not in out + err and NIC in out
    code, out, err = run(capsys, tree, "show", NVME)
    assert code == 2 and SECRET not in out + err
    (tree / NVME_DIR / "uevent").unlink()
    (tree / NVME_DIR / "driver_override").unlink()
    target = outside / "written"
    target.write_text("")
    (tree / NVME_DIR / "driver_override").symlink_to(target)
    code, _, err = run(capsys, tree, "detach", NVME)
    assert code == 2 and "driver_override under" in err and "is a symlink" in err
    assert target.read_text() == ""


def test_driver_directory_link_out_of_the_tree(capsys: pytest.CaptureFixture[str],
                                               tree: Path, outside: Path) -> None:
    fake = outside / "nvme"
    fake.mkdir()
    for name in ("bind", "unbind", "new_id", "remove_id"):
        (fake / name).write_text("")
    drivers = tree / "sys/bus/pci/drivers"
    shutil.rmtree(drivers / "nvme")
    (drivers / "nvme").symlink_to(fake)
    code, _, err = run(capsys, tree, "detach", NVME)
    assert code == 2 and err.count("\n") == 1, err
    assert f"/sys/bus/pci/drivers/nvme under {tree} leads outside" in err
    assert all((fake / n).read_text() == "" for n in ("bind", "unbind", "new_id", "remove_id"))
    mgr = HostdevManager(root=tree, state_dir=tree / "state", release_timeout=0)
    with pytest.raises(UnsafePath, match="drivers/nvme"):
        mgr.node_detach(NVME)
    assert mgr.lists().find(NVME) is None  # type: ignore[arg-type]


def test_intermediate_directory_link_out_of_the_tree(capsys: pytest.CaptureFixture[str],
                                                     tree: Path, outside: Path) -> None:
    bus = tree / "sys/devices/pci0000:00"
    shutil.copytree(bus, outside / "pci0000:00", symlinks=True)
    shutil.rmtree(bus)
    bus.symlink_to(outside / "pci0000:00")
    code, out, err = run(capsys, tree, "list")
    # Every device under the bus is named in a warning and left out.
    lines = err.splitlines()
    assert code == 0 and lines and all(
        f"/sys/devices/pci0000:00 under {tree} leads outside" in line
        and line.endswith("the device is left out") for line in lines), err
    assert NIC not in out and NVME not in out
    code, out, err = run(capsys, tree, "show", NVME)
    assert code == 2 and err.count("\n") == 1


def test_links_inside_the_tree_are_followed(capsys: pytest.CaptureFixture[str],
                                            tree: Path) -> None:
    """Relative links (the kernel's) and absolute ones that stay inside the root."""
    code, before, _ = run(capsys, tree, "list", "--json")
    assert code == 0
    _relink(tree / "sys/bus/pci/devices" / NVME, tree / NVME_DIR)  # absolute, inside
    code, after, err = run(capsys, tree, "list", "--json")
    assert code == 0 and err == "" and after == before
    alias = tree.parent / "alias"
    alias.symlink_to(tree)  # the root itself reached through a link is fine
    sysfs = Sysfs(alias)
    assert len(scan(sysfs)) == len(scan(Sysfs(tree)))


def test_sys_itself_linked_elsewhere(capsys: pytest.CaptureFixture[str], tree: Path,
                                     outside: Path) -> None:
    os.rename(tree / "sys", outside / "sys")
    (tree / "sys").symlink_to(outside / "sys")
    code, out, err = run(capsys, tree, "list")
    assert code == 2 and f"/sys under {tree} leads outside" in err and out == ""


def test_link_loop_is_refused(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    link = tree / "sys/bus/pci/devices" / NVME
    _relink(link, link)
    code, out, err = run(capsys, tree, "list")
    assert code == 0 and err.count("\n") == 1 and "Traceback" not in err
    assert f"/sys/bus/pci/devices/{NVME}" in err and NIC in out


@pytest.mark.skipif(not os.path.isdir("/sys/bus/pci/devices"), reason="no /sys here")
def test_real_root_stays_inside_sys() -> None:
    """On the real root the same rule holds: the kernel's links all stay in /sys."""
    sysfs = Sysfs("/")
    for name in sysfs.list_dir(sysfs.pci_devices):
        sysfs.list_dir(f"{sysfs.pci_devices}/{name}")
    with pytest.raises(UnsafePath, match="leads outside"):
        sysfs.list_dir("/sys/../etc")
