"""Listing and showing what the fake first did not model: broken SR-IOV links, names
that are not PCI addresses, PCI domains above 0xffff, hosts without an IOMMU, VPD."""

from __future__ import annotations

import json
import os

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from hostdev.cli.documents import ListOutput, ShowOutput
from hostdev.cli.main import main
from hostdev.linux.scan import list_devices
from hostdev.linux.sysfs import Sysfs
from hostdev.testing import FakeKernel

STATE = ["--state-dir", "/run/hostdev"]
PF, VF0, VF1 = "0000:01:00.0", "0000:01:00.2", "0000:01:00.3"
NVME = "10000:e1:00.0"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([*STATE, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _relink(fs: FakeFilesystem, address: str, name: str, target: str) -> None:
    path = os.path.realpath(f"/sys/bus/pci/devices/{address}") + "/" + name
    fs.remove_object(path)
    fs.create_symlink(path, target)


# ------------------------------------------------------------------ broken links


def test_garbage_physfn_lists_the_host_and_names_the_link(
        fake_kernel: FakeKernel, fs: FakeFilesystem,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("vmd-workstation")
    _relink(fs, VF0, "physfn", "../../../../etc")
    code, out, err = run(capsys, "list")
    assert code == 0
    assert err == (f"hostdev: warning: PCI device {VF0}: its physfn link points at 'etc',"
                   " not a PCI function; that link is ignored\n")
    assert VF0 in out and VF1 in out and NVME in out  # every device still listed
    assert "VF 1 of 0000:01:00.0" in out
    code, out, err = run(capsys, "list", "--json")
    listing = ListOutput.model_validate_json(out)
    assert [w for w in listing.warnings if "physfn" in w] == [err.split("warning: ")[1].strip()]
    broken = next(d for d in listing.devices if str(d.address) == VF0)
    assert broken.vf is None
    code, out, err = run(capsys, "show", VF0)
    assert code == 0 and "physfn link points at 'etc'" in err


def test_garbage_virtfn_keeps_the_vfs_before_it(
        fake_kernel: FakeKernel, fs: FakeFilesystem,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("vmd-workstation")
    _relink(fs, PF, "virtfn1", "../nonsense")
    # ``show`` reads the PF's virtfn links, and stops at the broken one.
    code, out, err = run(capsys, "show", PF, "--json")
    assert code == 0
    shown = ShowOutput.model_validate_json(out)
    assert shown.device.sriov is not None and [str(v) for v in shown.device.sriov.vfs] == [VF0]
    assert any(f"PCI device {PF}: its virtfn1 link points at 'nonsense'" in w
               for w in shown.warnings)
    # ``list`` places the VFs by the PF's offset and stride, which both VFs' physfn
    # links confirm: it never reads the virtfn links.
    code, out, err = run(capsys, "list", "--json")
    assert code == 0 and err == ""
    listing = ListOutput.model_validate_json(out)
    pf = next(d for d in listing.devices if str(d.address) == PF)
    assert pf.sriov is not None and [str(v) for v in pf.sriov.vfs] == [VF0, VF1]
    assert len(listing.devices) == 8


def test_names_that_are_not_addresses_are_warned_about(
        fake_kernel: FakeKernel, fs: FakeFilesystem,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("vmd-workstation")
    fs.create_symlink("/sys/bus/pci/devices/fffff0000:00:00.0x", "../../../devices/x")
    warnings: list[str] = []
    devices = list_devices(Sysfs("/"), warnings)
    assert len(devices) == 8
    assert warnings == ["/sys/bus/pci/devices has an entry 'fffff0000:00:00.0x' that is not"
                        " a PCI address hostdev can read; it is not listed"]
    code, _, err = run(capsys, "list")
    assert code == 0 and err == f"hostdev: warning: {warnings[0]}\n"


# ------------------------------------------------------------------ VMD domains


def test_vmd_domain_is_listed_in_numeric_order(fake_kernel: FakeKernel,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("vmd-workstation")
    assert os.path.realpath(f"/sys/bus/pci/devices/{NVME}").startswith(
        "/sys/devices/pci10000:e0/10000:e0:06.0/")
    code, out, err = run(capsys, "list", "--json")
    assert code == 0 and err == ""
    listing = ListOutput.model_validate_json(out)
    order = [str(d.address) for d in listing.devices]
    assert order == ["0000:00:00.0", "0000:00:01.0", "0000:00:0e.0", PF, VF0, VF1,
                     "10000:e0:06.0", NVME]
    nvme = listing.devices[-1]
    assert nvme.driver == "nvme" and nvme.iommu_group == 1
    assert [str(m) for m in nvme.iommu_group_members] == ["0000:00:0e.0", "10000:e0:06.0",
                                                          NVME]
    assert listing.warnings == [] and listing.iommu_enabled
    code, out, _ = run(capsys, "show", NVME)
    assert code == 0 and f"address          {NVME}" in out


# ------------------------------------------------------------------ no IOMMU


def _no_iommu_host(fs: FakeFilesystem) -> FakeKernel:
    kernel = FakeKernel(fs, iommu=False)
    kernel.add_driver("e1000e", ids=[(0x8086, 0x10D3)])
    kernel.add_driver("vfio-pci")
    kernel.add_device("0000:04:00.0", 0x8086, 0x10D3, 0x020000, iommu_group=4)
    return kernel


def test_list_says_the_iommu_is_off(fs: FakeFilesystem,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    _no_iommu_host(fs)
    assert os.listdir("/sys/kernel/iommu_groups") == []
    assert not os.path.lexists("/sys/bus/pci/devices/0000:04:00.0/iommu_group")
    code, out, _ = run(capsys, "list")
    first = out.splitlines()[0]
    assert code == 0 and first.startswith("Note: the IOMMU is off (no IOMMU groups)")
    assert "intel_iommu=on" in first and "amd_iommu=on" in first
    assert out.splitlines()[2] == "Devices on a VFIO or stub driver"
    code, out, _ = run(capsys, "list", "--json")
    assert json.loads(out)["iommu_enabled"] is False
    model = ListOutput.model_validate_json(out)  # the hand-written JSON is the model's
    assert model.model_dump_json(by_alias=True, indent=2) + "\n" == out


def test_list_with_an_iommu_has_no_note(fake_kernel: FakeKernel,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    _, out, _ = run(capsys, "list")
    assert "IOMMU is off" not in out
    _, out, _ = run(capsys, "list", "--json")
    assert json.loads(out)["iommu_enabled"] is True


# ------------------------------------------------------------------ VPD


def test_show_prints_vpd(fake_kernel: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("vmd-workstation")
    code, out, _ = run(capsys, "show", PF)
    assert code == 0
    assert "product name     ConnectX-6 Dx EN adapter card, 100GbE, Dual-port QSFP56\n" in out
    assert "part number      MCX623106AN-CDAT\n" in out
    assert "serial number    MT2145X12345\n" in out
    code, out, _ = run(capsys, "show", PF, "--json")
    shown = ShowOutput.model_validate_json(out)
    assert shown.vpd is not None and shown.vpd.checksum_ok is True
    assert shown.vpd.read_only["V0"] == "PCIeGen4 x16" and shown.vpd.error is None
    _, out, _ = run(capsys, "show", NVME, "--json")
    assert json.loads(out)["vpd"] is None  # no vpd attribute: nothing shown
    _, out, _ = run(capsys, "show", NVME)
    assert "part number" not in out


@pytest.mark.parametrize(("raw", "shown"), [
    (b"\xff" * 64, "vpd              malformed: VPD starts with unknown resource tag 0xff"),
    (b"\x82\x40\x00abc", "vpd              malformed: resource 0x82 at offset 0 claims 64"
                         " bytes; only 3 follow"),
    # A keyword whose length runs past the end of its VPD-R resource.
    (b"\x82\x04\x00Card\x90\x05\x00PN\x09ab\x78",
     "vpd              malformed: VPD-R keyword at offset 10 claims 9 bytes"),
])
def test_malformed_vpd_is_shown_as_such(fake_kernel: FakeKernel,
                                        capsys: pytest.CaptureFixture[str],
                                        raw: bytes, shown: str) -> None:
    fake_kernel.add_device("0000:05:00.0", 0x1234, 0x5678, 0x020000, iommu_group=5, vpd=raw)
    code, out, err = run(capsys, "show", "0000:05:00.0")
    assert code == 0 and "Traceback" not in err
    assert shown in out
    code, out, _ = run(capsys, "show", "0000:05:00.0", "--json")
    assert json.loads(out)["vpd"]["error"].startswith("malformed: ")


def test_unreadable_vpd_is_shown_as_such(fake_kernel: FakeKernel,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("vmd-workstation")
    path = os.path.realpath(f"/sys/bus/pci/devices/{PF}") + "/vpd"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    os.chmod(path, 0)
    from pyfakefs.helpers import set_uid

    set_uid(1000)
    try:
        code, out, err = run(capsys, "--root", "/", "show", PF)
    finally:
        set_uid(0)
    assert code == 0 and "Traceback" not in err
    assert "vpd              not readable: the kernel refused reading" in out


def test_list_json_with_warnings_matches_the_model(
        fake_kernel: FakeKernel, fs: FakeFilesystem,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("vmd-workstation")
    _relink(fs, VF0, "physfn", "../../../../etc")
    _, out, _ = run(capsys, "list", "--json")
    model = ListOutput.model_validate_json(out)
    assert model.warnings and model.iommu_enabled
    assert model.model_dump_json(by_alias=True, indent=2) + "\n" == out


def test_garbage_iommu_group_link_leaves_out_only_that_device(
        fake_kernel: FakeKernel, fs: FakeFilesystem,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("vmd-workstation")
    _relink(fs, VF1, "iommu_group", "../../../../kernel/iommu_groups/etc")
    code, out, err = run(capsys, "list")
    assert code == 0
    assert err == (f"hostdev: warning: PCI device {VF1}: iommu_group link points at 'etc',"
                   " not a number; the device is left out\n")
    assert VF0 in out and NVME in out and VF1 not in out
    code, out, err = run(capsys, "list", "--json")
    listing = ListOutput.model_validate_json(out)
    assert len(listing.devices) == 7 and listing.warnings == [err.split("warning: ")[1].strip()]
    code, out, err = run(capsys, "show", VF1)
    assert code != 0 and "iommu_group link points at 'etc'" in err
