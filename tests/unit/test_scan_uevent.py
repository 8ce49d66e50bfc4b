"""A device's ``uevent`` and id attributes holding what the kernel never writes (a
damaged or hand-made tree under ``--root``): never taken as ids out of their bits or as
a driver's name; the attributes are read one by one instead, and a bad one is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hostdev.cli.main import main
from hostdev.linux.scan import _uevent
from hostdev.testing.materialize import materialize

DEVICE = "0000:00:02.0"  # the qemu-guest host's virtio storage: 1af4:1009, on virtio-pci
KERNEL = ("DRIVER=virtio-pci\nPCI_CLASS=10000\nPCI_ID=1AF4:1042\nPCI_SUBSYS_ID=1AF4:1100\n"
          "PCI_SLOT_NAME=0000:00:02.0\nMODALIAS=pci:v00001AF4d00001042sv00001AF4sd00001100"
          "bc01sc00i00\n")


def test_as_the_kernel_writes_it() -> None:
    assert _uevent(KERNEL) == ("virtio-pci", 0x10000, 0x1AF4, 0x1042, 0x1AF4, 0x1100)
    assert _uevent(KERNEL.replace("DRIVER=virtio-pci\n", "")) == (
        None, 0x10000, 0x1AF4, 0x1042, 0x1AF4, 0x1100)


@pytest.mark.parametrize(("old", "new"), [
    # int() took these: ids printed "-001" and "123456", JSON against its own schema.
    ("PCI_ID=1AF4", "PCI_ID=-1"), ("PCI_ID=1AF4", "PCI_ID=123456"),
    ("PCI_SUBSYS_ID=1AF4:1100", "PCI_SUBSYS_ID=1AF4:+1100"),
    ("PCI_CLASS=10000", "PCI_CLASS=1000000"), ("PCI_CLASS=10000", "PCI_CLASS= 10000"),
    ("PCI_ID=1AF4", "PCI_ID=1_AF4"), ("PCI_ID=1AF4", "PCI_ID=\u0661"),
    # Taken for the bound driver's name: "invalid driver name '../x'" (exit 2) on detach.
    ("DRIVER=virtio-pci", "DRIVER=../x"), ("DRIVER=virtio-pci", "DRIVER=.."),
    ("DRIVER=virtio-pci", "DRIVER=a\x00b"), ("DRIVER=virtio-pci", "DRIVER=a\x1bb"),
])
def test_what_the_kernel_never_writes_is_unusable(old: str, new: str) -> None:
    assert _uevent(KERNEL.replace(old, new, 1)) is None


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    materialize("qemu-guest", tmp_path)
    return tmp_path


def _show(tree: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["--root", str(tree), "--state-dir", str(tree / "run"), "show", DEVICE,
                 "--json"])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_damaged_uevent_gives_way_to_the_attributes(tree: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tree / "sys/bus/pci/devices" / DEVICE / "uevent").write_text(
        "DRIVER=../x\nPCI_CLASS=10000\nPCI_ID=-1:1042\nPCI_SUBSYS_ID=1AF4:1100\n")
    code, out, err = _show(tree, capsys)
    device = json.loads(out)["device"]
    assert code == 0 and err == ""
    assert (device["vendor"], device["device"], device["driver"]) == ("1af4", "1009",
                                                                       "virtio-pci")


@pytest.mark.parametrize("vendor", ["-0x1", "0x123456"])
def test_an_id_attribute_out_of_its_bits_is_named(tree: Path, vendor: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tree / "sys/bus/pci/devices" / DEVICE
    (path / "uevent").write_text("damaged\n")
    (path / "vendor").write_text(vendor + "\n")
    code, _, err = _show(tree, capsys)
    assert code == 1 and err == (f"hostdev: /sys/bus/pci/devices/{DEVICE}/vendor holds"
                                 f" {vendor!r}, not a hex number from 0 to 0xffff\n")
    assert main(["--root", str(tree), "--state-dir", str(tree / "run"), "list"]) == 0
    out, err = capsys.readouterr()
    assert DEVICE not in out and "the device is left out" in err
