"""VF placement by routing-id arithmetic against the kernel's own ``virtfnN`` links.

``hostdev list`` takes a PF's VFs, and so each VF's index, from the PF's
``sriov_offset`` and ``sriov_stride`` (VF n at routing id PF + offset + n * stride)
instead of reading one ``virtfnN`` link per VF. On the guest's SR-IOV NVMe, for
each VF count, the arithmetic must name exactly what the links name, and the
listing must not have read a single ``virtfn`` link to get there.
"""

from __future__ import annotations

import os

import pytest

from hostdev.linux.scan import read_device, scan
from hostdev.linux.sysfs import Sysfs

from . import guest
from .guest import dev
from .observing import Observer

pytestmark = pytest.mark.realkernel


def _links(pf: str) -> dict[int, str]:
    """The PF's ``virtfnN`` links as the kernel made them: index -> VF address."""
    found = {}
    for entry in os.listdir(dev(pf)):
        if entry.startswith("virtfn") and entry[6:].isdecimal():
            found[int(entry[6:])] = os.readlink(dev(pf) / entry).rstrip("/").rsplit("/", 1)[-1]
    return found


def test_vf_index_by_arithmetic_equals_the_links(pf: str, observe: Observer) -> None:
    with guest.hard_limit(180):
        total = int((dev(pf) / "sriov_totalvfs").read_text())
        offset = int((dev(pf) / "sriov_offset").read_text())
        stride = int((dev(pf) / "sriov_stride").read_text())
        observe.record("PF sriov_totalvfs/offset/stride", [total, offset, stride])
        assert total >= 1
        for count in sorted({1, min(2, total), total}):
            guest.must(dev(pf) / "sriov_numvfs", "0")
            guest.enable_vfs(count, autoprobe=False)
            links = _links(pf)
            assert sorted(links) == list(range(count)), links
            sysfs = Sysfs("/")
            sysfs.stats.trace = []
            devices = {str(d.address): d for d in scan(sysfs)}
            read_links = [p for p in sysfs.stats.trace if "/virtfn" in p]
            assert read_links == [], "the listing fell back to the virtfn links"
            parent = devices[pf]
            assert parent.sriov is not None and parent.sriov.numvfs == count
            assert [str(v) for v in parent.sriov.vfs] == [links[i] for i in range(count)]
            for index in range(count):
                vf = devices[links[index]]
                assert vf.vf is not None
                assert (str(vf.vf.pf), vf.vf.index) == (pf, index)
                alone = read_device(Sysfs("/"), links[index])
                assert alone.vf is not None and alone.vf.index == index
        guest.must(dev(pf) / "sriov_numvfs", "0")
