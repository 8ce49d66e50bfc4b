"""The scan's VF placement: routing-id arithmetic from the PF's ``sriov_offset`` and
``sriov_stride``, checked against the VFs' ``physfn`` links, and the ``virtfnN``
links when the two disagree or the PF does not say."""

from __future__ import annotations

import os

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from hostdev.linux.device import PciDevice
from hostdev.linux.scan import list_devices, read_device, scan
from hostdev.linux.sysfs import Sysfs
from hostdev.testing import FakeKernel
from hostdev.testing.hostgen import generate_host

PF = "0000:3d:00.0"


def _traced() -> tuple[list[PciDevice], list[str]]:
    sysfs = Sysfs("/")
    sysfs.stats.trace = []
    found = scan(sysfs)
    return found, sysfs.stats.trace


def _vf_view(devices: list[PciDevice]) -> list[tuple[str, object, object]]:
    return [(str(d.address), d.sriov and d.sriov.vfs, d.vf) for d in devices]


def test_no_virtfn_link_is_read(fake_kernel: FakeKernel) -> None:
    fake_kernel.load_spec(generate_host(3, 5))
    devices, trace = _traced()
    assert [p for p in trace if "/virtfn" in p] == []
    assert sum(1 for d in devices if d.vf is not None) == 15
    # The same as a device-by-device read, which follows the links.
    sysfs = Sysfs("/")
    assert devices == [read_device(sysfs, d.address) for d in devices]


def _replace(fs: FakeFilesystem, address: str, name: str, text: str) -> None:
    path = os.path.realpath(f"/sys/bus/pci/devices/{address}") + "/" + name
    fs.remove_object(path)
    fs.create_file(path, contents=text)


@pytest.mark.parametrize("offset", ["3\n", "garbage\n", None])
def test_a_pf_whose_offset_lies_falls_back_to_its_links(
        fake_kernel: FakeKernel, fs: FakeFilesystem, offset: str | None) -> None:
    fake_kernel.load_fixture("two-socket-server")
    before, _ = _traced()
    if offset is None:
        fs.remove_object(os.path.realpath(f"/sys/bus/pci/devices/{PF}") + "/sriov_offset")
    else:
        _replace(fs, PF, "sriov_offset", offset)
    after, trace = _traced()
    assert _vf_view(after) == _vf_view(before)
    assert any(p.endswith(f"{PF}/virtfn0") for p in trace)
    vfs = [d for d in after if d.vf is not None and str(d.vf.pf) == PF]
    assert [d.vf.index for d in vfs if d.vf] == list(range(len(vfs)))


def test_a_vf_naming_another_pf_falls_back_to_the_links(fake_kernel: FakeKernel,
                                                        fs: FakeFilesystem) -> None:
    fake_kernel.load_fixture("two-socket-server")
    before = {str(d.address): d for d in list_devices(Sysfs("/"))}
    pf = before[PF]
    assert pf.sriov is not None
    vf1 = str(pf.sriov.vfs[1])
    link = os.path.realpath(f"/sys/bus/pci/devices/{vf1}") + "/physfn"
    fs.remove_object(link)
    fs.create_symlink(link, "../0000:00:00.0")
    after, trace = _traced()
    by = {str(d.address): d for d in after}
    # The PF's links still name the VF; the VF itself names another parent.
    sriov, vf = by[PF].sriov, by[vf1].vf
    assert sriov is not None and sriov.vfs == pf.sriov.vfs
    assert any(p.endswith(f"{PF}/virtfn1") for p in trace)
    assert vf is not None and str(vf.pf) == "0000:00:00.0"
    assert vf.index is None  # not from the PF that lists it but is not its parent
