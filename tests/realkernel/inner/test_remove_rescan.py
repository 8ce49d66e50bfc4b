"""remove and rescan: parsing, and a removed PF coming back as a new object.

docs/kernel-model.md §6 and 2.7.
"""

from __future__ import annotations

import os

import pytest

from . import guest
from .guest import GROUPS, PCI, dev
from .observing import Observer

pytestmark = pytest.mark.realkernel


def test_remove_and_rescan_parsing(pf: str, observe: Observer) -> None:
    """Non-numbers are EINVAL and 0 is a no-op, for remove and both rescans."""
    for path in (dev(pf) / "remove", dev(pf) / "rescan", PCI / "rescan"):
        observe.check(f"{path} 'abc'", guest.write(path, "abc"), "EINVAL", "6 / 2.7")
        observe.check(f"{path} '0'", guest.write(path, "0"), "ok", "6 / 2.7 no-op")
    observe.check("PF still there", dev(pf).exists(), True, "6")
    observe.check("PF still on nvme", guest.driver_of(pf), "nvme", "6")


def test_remove_then_bus_rescan(pf: str, observe: Observer) -> None:
    """remove 1 deletes the PF and its group entry; a rescan brings it back, override NULL."""
    d = dev(pf)
    group = guest.group_of(pf)
    guest.must(d / "driver_override", "nvme")
    observe.check("remove 1", guest.write(d / "remove", "1"), "ok", "6")
    observe.check("PF directory gone", os.path.lexists(d), False, "6")
    observe.check("group entry gone", os.path.lexists(GROUPS / str(group) / "devices" / pf),
                  False, "6")
    observe.check("bus rescan 1", guest.write(PCI / "rescan", "1"), "ok", "2.7")
    observe.check("PF back", guest.wait_until(d.exists, 10.0), True, "2.7")
    observe.check("override NULL after rescan", guest.read(d / "driver_override"), "(null)\n",
                  "2.7 new object")
    observe.check("probed normally (nvme)", guest.wait_until(
        lambda: guest.driver_of(pf) == "nvme", 10.0), True, "2.7")
    observe.record("group before/after", {"before": group, "after": guest.group_of(pf)})
    observe.check("sriov_drivers_autoprobe of the new object", guest.read(
        d / "sriov_drivers_autoprobe"), "1\n", "3.3 starts at 1")
