"""Does fixtures/sysfs/qemu-guest.toml describe the real QEMU guest?

The inner test test_library_inventory.py::test_cli_list_json_matches_shell_read records
the guest's whole PCI layout as a shell read it (with 2 VFs, sriov autoprobe 0, and
driver_override=vfio-pci on the second VF). Here the fake kernel, loaded with the
fixture and put in the same state, is read the same way and compared device by device.
Known disagreements are listed in FIXTURE_DIFFERENCES (xfail, strict) until the fixture
or the fake is fixed.

Until the observed data holds that record (re-record the tier with
HOSTDEV_REALKERNEL_RECORD=1), the comparison is skipped with that reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem
from pyfakefs.helpers import reset_ids, set_uid

from .fakeio import DEVICES, DRIVERS, MARKER, FakeGuest, guest_kernel, normalise
from .observed import LAYOUT_NAME, LAYOUT_TEST, RECORDS

FIELDS = ("vendor", "device", "class", "subsystem_vendor", "subsystem_device", "revision",
          "driver", "driver_override", "iommu_group", "pf", "parent", "power_state",
          "reset_methods", "sriov", "virtfn")

#: (device or "drivers", field) -> how the fixture or the fake disagrees with the guest.
FIXTURE_DIFFERENCES: dict[tuple[str, str], str] = {}


def _layout() -> dict[str, Any] | None:
    for record in RECORDS:
        if (record.test, record.name) == (LAYOUT_TEST, LAYOUT_NAME):
            layout: dict[str, Any] = record.observed
            return layout
    return None


LAYOUT = _layout()


def _fake_layout(g: FakeGuest) -> dict[str, Any]:
    """Read the fake the way the inner test's shell script reads the guest."""
    devices: dict[str, Any] = {}
    for addr in sorted(os.listdir(DEVICES)):
        d = g.dev(addr)

        def attr(name: str, d: str = d) -> str:
            return g.read(f"{d}/{name}").strip()

        entry: dict[str, Any] = {name: attr(name) for name in (
            "vendor", "device", "class", "subsystem_vendor", "subsystem_device", "revision",
            "power_state")}
        override = attr("driver_override")
        entry["driver_override"] = None if override == "(null)" else override
        entry["driver"] = g.driver_of(addr)
        group = g.group_of(addr)
        entry["iommu_group"] = int(group) if group is not None else None
        physfn = g.readlink(f"{d}/physfn")
        entry["pf"] = physfn.rsplit("/", 1)[-1] if physfn else None
        entry["parent"] = (g.readlink(d) or "").rsplit("/", 2)[-2]
        entry["reset_methods"] = (attr("reset_method").split()
                                  if g.exists(f"{d}/reset_method") else None)
        entry["sriov"] = ([int(attr("sriov_numvfs")), int(attr("sriov_totalvfs"))]
                          if g.exists(f"{d}/sriov_numvfs") else None)
        entry["virtfn"] = {name[6:]: (g.readlink(f"{d}/{name}") or "").rsplit("/", 1)[-1]
                           for name in os.listdir(d) if name.startswith("virtfn")}
        devices[addr] = entry
    layout: dict[str, Any] = normalise({"devices": devices,
                                        "drivers": sorted(os.listdir(DRIVERS))})
    return layout


@pytest.fixture
def fake_layout(fs: FakeFilesystem) -> Iterator[dict[str, Any]]:
    """The fixture host in the state the inner test put the guest in, read as it was."""
    set_uid(0)
    fs.create_file(MARKER)
    try:
        kernel = guest_kernel(fs)
        kernel.load_fixture("qemu-guest")
        g = FakeGuest(kernel)
        vfs = g.enable_vfs(2, autoprobe=False)
        g.must(g.dev(vfs[1], "driver_override"), "vfio-pci")
        yield _fake_layout(g)
    finally:
        reset_ids()


def _real(key: tuple[str, str]) -> Any:
    assert LAYOUT is not None
    if key[0] == "drivers":
        return LAYOUT["drivers"]
    return LAYOUT["devices"].get(key[0], {}).get(key[1])


def _fake(layout: dict[str, Any], key: tuple[str, str]) -> Any:
    if key[0] == "drivers":
        return layout["drivers"]
    return layout["devices"].get(key[0], {}).get(key[1])


def _device_params() -> list[Any]:
    if LAYOUT is None:
        return [pytest.param(None, id="no-layout-recorded", marks=pytest.mark.skip(
            reason="not recorded yet: the observed data has no guest layout record"
                   f" ({LAYOUT_NAME!r}); re-record the tier with HOSTDEV_REALKERNEL_RECORD=1"))]
    return [pytest.param(addr, id=addr) for addr in sorted(LAYOUT["devices"])] + \
        [pytest.param("drivers", id="drivers")]


@pytest.mark.parametrize("device", _device_params())
def test_fixture_layout(device: str, fake_layout: dict[str, Any]) -> None:
    """Every field of one guest device (or the driver list) agrees with the fake."""
    assert LAYOUT is not None
    if device == "drivers":
        if ("drivers", "names") not in FIXTURE_DIFFERENCES:
            assert fake_layout["drivers"] == LAYOUT["drivers"]
        return
    assert device in fake_layout["devices"], f"{device} is not in the fixture host"
    diffs = []
    for field in FIELDS:
        key = (device, field)
        if key not in FIXTURE_DIFFERENCES and _real(key) != _fake(fake_layout, key):
            diffs.append(f"{field}: guest {_real(key)!r}, fake {_fake(fake_layout, key)!r}")
    assert not diffs, f"{device} differs from the guest:\n" + "\n".join(diffs)


def test_fixture_has_no_extra_devices(fake_layout: dict[str, Any]) -> None:
    """The fixture host has no device the guest lacks."""
    if LAYOUT is None:
        pytest.skip("not recorded yet: no guest layout record in the observed data")
    assert sorted(fake_layout["devices"]) == sorted(LAYOUT["devices"])


def _difference_params() -> list[Any]:
    if LAYOUT is None:
        return [pytest.param(key, id=f"{key[0]}:{key[1]}", marks=pytest.mark.skip(
            reason="not recorded yet: no guest layout record in the observed data"))
            for key in FIXTURE_DIFFERENCES]
    return [pytest.param(key, id=f"{key[0]}:{key[1]}", marks=pytest.mark.xfail(
        strict=True, reason=f"fixture/fake differs: {reason}"))
        for key, reason in FIXTURE_DIFFERENCES.items()]


@pytest.mark.parametrize("key", _difference_params())
def test_fixture_layout_difference(key: tuple[str, str], fake_layout: dict[str, Any]) -> None:
    """A known disagreement (xfail, strict: it must start passing once fixed)."""
    assert _fake(fake_layout, key) == _real(key)

