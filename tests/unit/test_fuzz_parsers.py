"""Fuzzing the parsers of what users and sysfs give: PCI addresses, driver names,
owners, the VF network options, and a device's ``uevent`` file.

Each takes any text and either returns a value within its documented range or raises
its documented error (InvalidAddress, InvalidDriverName, BadInput; ``_uevent``:
None) with a one-line message; never anything else. (The plain regression tests of
what this found are in tests/unit/test_scan_uevent.py.)
"""

from __future__ import annotations

import argparse

from hypothesis import given
from hypothesis import strategies as st

from hostdev.address import PciAddress, validate_driver_name
from hostdev.cli.netargs import net_config_from_args
from hostdev.errors import BadInput, InvalidAddress, InvalidDriverName
from hostdev.linux.scan import _uevent
from hostdev.state.records import Owner
from tests.fuzzing import FUZZ, HOSTILE_TEXT, assert_one_line, uevents

TEXT = st.sampled_from(HOSTILE_TEXT) | st.text(max_size=300)


@FUZZ
@given(TEXT | st.integers() | st.none() | st.lists(st.text(max_size=3), max_size=2))
def test_address_parse(value: object) -> None:
    try:
        address = PciAddress.parse(value)
    except InvalidAddress as exc:
        assert_one_line(str(exc))
        assert len(str(exc)) < 600  # 40 characters shown, each escaped in up to 10
        return
    assert PciAddress.parse(str(address)) == address


@FUZZ
@given(TEXT)
def test_driver_name(text: str) -> None:
    try:
        validate_driver_name(text)
    except InvalidDriverName as exc:
        assert_one_line(str(exc))
        assert len(str(exc)) < 600


@FUZZ
@given(TEXT | st.builds(lambda a, b: f"{a}/{b}", TEXT, TEXT))
def test_owner(text: str) -> None:
    try:
        owner = Owner.parse(text)
    except BadInput as exc:
        assert_one_line(str(exc))
        assert len(str(exc)) < 800
        return
    assert f"{owner.driver}/{owner.domain}" == text


_NET_OPTIONS = {"mac": TEXT, "vlan": TEXT, "qos": TEXT,
                "spoofchk": st.sampled_from(["on", "off"]), "trust": st.sampled_from(["on", "off"]),
                "link_state": st.sampled_from(["auto", "enable", "disable"])}


@FUZZ
@given(st.fixed_dictionaries({}, optional=_NET_OPTIONS))
def test_vf_network_options(options: dict[str, str]) -> None:
    """What ``--mac``, ``--vlan``... build (argparse gives any text; the switches are
    choices argparse checked)."""
    try:
        config = net_config_from_args(argparse.Namespace(**options))
    except BadInput as exc:
        assert_one_line(str(exc))
        return
    assert (config is None) == (not options)


# ------------------------------------------------------------------------- uevent

_UEVENTS = uevents() | TEXT


@FUZZ
@given(_UEVENTS)
def test_uevent_parse(text: str) -> None:
    """None (the attributes are read one by one then) or the ids within their bits and a
    driver that is a directory name."""
    found = _uevent(text)
    if found is None:
        return
    driver, class_code, *ids = found
    assert 0 <= class_code <= 0xFFFFFF and all(0 <= i <= 0xFFFF for i in ids), found
    assert driver is None or (driver.isprintable() and "/" not in driver
                              and driver not in ("", ".", "..")), found


@FUZZ
@given(st.sampled_from([None, "vfio-pci", "e1000e", "snd_hda_intel"]),
       st.integers(0, 0xFFFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
       st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_uevent_as_the_kernel_writes_it(driver: str | None, class_code: int, vendor: int,
                                        device: int, sub_vendor: int, sub_device: int) -> None:
    """drivers/pci/pci-driver.c pci_uevent(), after the driver core's DRIVER= line."""
    lines = [f"DRIVER={driver}"] if driver else []
    lines += [f"PCI_CLASS={class_code:04X}", f"PCI_ID={vendor:04X}:{device:04X}",
              f"PCI_SUBSYS_ID={sub_vendor:04X}:{sub_device:04X}", "PCI_SLOT_NAME=0000:00:02.0",
              "MODALIAS=pci:v00001AF4d00001009sv00001AF4sd00000009bc00sc02i00"]
    assert _uevent("\n".join(lines) + "\n") == (driver, class_code, vendor, device, sub_vendor,
                                                sub_device)
