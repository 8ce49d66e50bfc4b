"""Extension points of the fake kernel: each attribute and each device fact declared once.

Every attribute file a device directory, a driver directory or /sys/bus/pci shows
comes from one entry of the attribute registry (mode, reader, store handler,
refreshes); every field of ``DeviceSpec`` is a keyword of ``add_device`` and a fact
of the present device.
"""

from __future__ import annotations

import errno
import os
import stat

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from hostdev.testing import FakeKernel, registry
from hostdev.testing.events import FakeKernelSetupError
from hostdev.testing.hostspec import DeviceSpec, DiskSpec, MountTagSpec, SriovSpec, VpdSpec
from hostdev.testing.model import BusAttr, DriverAttr, KernelState
from hostdev.testing.registry import (
    ATTRIBUTES,
    BUS_ATTRIBUTES,
    DEVICE_ATTRIBUTES,
    DRIVER_ATTRIBUTES,
)

from .hostlib import NIC, NOGROUP, PF, Sys, vf_addresses

VPD_DEV = "0000:09:00.0"
SAMPLE_DEV = "0000:0a:00.0"
SRIOV_NVME = "0000:0b:00.0"  # a second PF, whose VFs have no driver


def _attribute_files(address: str) -> dict[str, os.stat_result]:
    """The regular files of a device directory and of its ``power/``, by relative name."""
    base = os.path.realpath(f"/sys/bus/pci/devices/{address}")
    out: dict[str, os.stat_result] = {}
    for sub in ("", "power/"):
        with os.scandir(base + "/" + sub) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    out[sub + entry.name] = entry.stat(follow_symlinks=False)
    return out


@pytest.fixture
def busy(host: FakeKernel, sysfs: Sys) -> FakeKernel:
    """The small host with VFs, a vfio-bound device, a VFIO user and a device with VPD."""
    host.add_device(VPD_DEV, 0x15B3, 0x1017, 0x020000, iommu_group=9, vpd=b"\x82\x01\x00x")
    sysfs.write(sysfs.dev(PF, "sriov_numvfs"), "2")
    sysfs.write(sysfs.dev(NIC, "driver_override"), "vfio-pci")
    sysfs.write("/sys/bus/pci/drivers/e1000e/unbind", NIC)
    sysfs.write("/sys/bus/pci/drivers_probe", NIC)
    sysfs.write(sysfs.dev(NIC, "driver_override"), "\n")
    return host


def test_registry_names_are_unique() -> None:
    assert len(DEVICE_ATTRIBUTES) == len(ATTRIBUTES)
    assert all(DEVICE_ATTRIBUTES[a.name] is a for a in ATTRIBUTES)


def test_every_device_file_has_exactly_its_registry_entry(busy: FakeKernel) -> None:
    """What the tree builder made, with the mode, the node and the content of its entry."""
    seen: set[str] = set()
    for address in busy.addresses():
        dev = busy.state.devices[address]
        files = _attribute_files(str(address))
        assert set(files) == set(dev.files), address
        for name, st in files.items():
            attr = DEVICE_ATTRIBUTES[name]  # KeyError: a file nobody declared
            assert stat.S_IMODE(st.st_mode) == attr.mode, (address, name)
            seen.add(name)
    # the host above shows every declared attribute somewhere (none is dead)
    assert seen == set(DEVICE_ATTRIBUTES)


def test_handlers_and_readers_match_the_modes() -> None:
    for attr in ATTRIBUTES:
        if attr.store is not None:
            assert attr.mode & 0o200, attr.name
        if attr.show is not None:
            assert attr.mode & 0o400, attr.name
        else:
            assert not attr.mode & 0o444, attr.name


def test_driver_and_bus_files_are_their_registry_entries(host: FakeKernel, sysfs: Sys) -> None:
    """Every driver directory and /sys/bus/pci hold exactly the files the registry
    declares, with its modes; a readable one reads what its entry says."""
    for driver in sysfs.ls("/sys/bus/pci/drivers"):
        base = f"/sys/bus/pci/drivers/{driver}"
        files = {n for n in sysfs.ls(base) if os.path.isfile(f"{base}/{n}")
                 and not os.path.islink(f"{base}/{n}")}
        assert files == set(DRIVER_ATTRIBUTES), driver
        for name, attr in DRIVER_ATTRIBUTES.items():
            assert stat.S_IMODE(os.stat(f"{base}/{name}").st_mode) == attr.mode
    for name, bus_attr in BUS_ATTRIBUTES.items():
        path = f"/sys/bus/pci/{name}"
        assert stat.S_IMODE(os.stat(path).st_mode) == bus_attr.mode, name
        if bus_attr.show is None:
            with pytest.raises(PermissionError):
                sysfs.read(path)
    sysfs.write("/sys/bus/pci/drivers_autoprobe", "0")
    assert sysfs.read("/sys/bus/pci/drivers_autoprobe") == "0\n"


def test_a_new_driver_or_bus_file_is_one_registry_entry(
        fs: FakeFilesystem, monkeypatch: pytest.MonkeyPatch) -> None:
    """Declaring an entry is all it takes: the file appears and its handler runs."""
    seen: list[tuple[str, bytes]] = []

    def driver_store(state: KernelState, driver: object, data: bytes, path: str) -> None:
        seen.append((path, data))

    def bus_store(state: KernelState, data: bytes, path: str) -> None:
        seen.append((path, data))

    monkeypatch.setattr(registry, "DRIVER_ATTRIBUTES", {
        **DRIVER_ATTRIBUTES, "poke": DriverAttr("poke", 0o200, driver_store)})
    monkeypatch.setattr(registry, "BUS_ATTRIBUTES", {
        **BUS_ATTRIBUTES, "poke": BusAttr("poke", 0o644, bus_store, lambda s: "ok\n")})
    kernel = FakeKernel(fs)
    kernel.add_driver("e1000e", ids=[(0x8086, 0x10D3)])
    sysfs = Sys()
    sysfs.write("/sys/bus/pci/drivers/e1000e/poke", "1")
    sysfs.write("/sys/bus/pci/poke", "2")
    assert seen == [("/sys/bus/pci/drivers/e1000e/poke", b"1"), ("/sys/bus/pci/poke", b"2")]
    assert sysfs.read("/sys/bus/pci/poke") == "ok\n"


def test_the_registry_decides_reads_and_writes(host: FakeKernel, sysfs: Sys) -> None:
    # write-only (no reader): reading refused at open; read-only (no store): writing refused
    with pytest.raises(PermissionError):
        sysfs.read(sysfs.dev(NIC, "reset"))
    assert sysfs.errno(sysfs.dev(NIC, "vendor"), "0x1234") == errno.EACCES
    assert sysfs.read(sysfs.dev(NIC, "vendor")) == "0x8086\n"


def test_no_file_goes_stale(busy: FakeKernel, sysfs: Sys) -> None:
    """After changes of every kind, every attribute reads what its reader says now:
    the ``refresh_on`` sets name every change that alters another file."""
    def check() -> None:
        for dev in busy.state.devices.values():
            for name, obj in dev.files.items():
                expected = DEVICE_ATTRIBUTES[name].read(dev)
                got = obj.byte_contents or b""
                want = expected if isinstance(expected, bytes) else expected.encode()
                assert got == want, (dev.name, name)

    check()
    assert sysfs.driver(NIC) == "vfio-pci"
    holder = busy.hold_vfio(NIC)
    check()
    holder.release()
    check()
    sysfs.write(sysfs.dev(NOGROUP, "enable"), "1")
    check()
    busy.add_device(SRIOV_NVME, 0x144D, 0xA808, 0x010802, iommu_group=11, sriov_totalvfs=4,
                    vf_device=0xA824)
    sysfs.write(sysfs.dev(SRIOV_NVME, "sriov_drivers_autoprobe"), "0")
    sysfs.write(sysfs.dev(SRIOV_NVME, "sriov_numvfs"), "2")
    check()
    sysfs.write("/sys/bus/pci/drivers/ixgbevf/unbind", vf_addresses(1)[0])
    sysfs.write(sysfs.dev(PF, "sriov_numvfs"), "0")
    check()


#: A value for every DeviceSpec field, none of them the default.
SAMPLE: dict[str, object] = {
    "address": SAMPLE_DEV,
    "vendor": 0x144D,
    "device": 0xA808,
    "class_code": 0x010802,
    "subsystem_vendor": 0x1234,
    "subsystem_device": 0x5678,
    "revision": 3,
    "iommu_group": 11,
    "driver": "nvme",
    "numa_node": 0,
    "parent": "0000:00:01.0",
    "reset_methods": ["flr", "pm"],
    "sriov": SriovSpec(totalvfs=2, vf_device=0xA824, offset=2, stride=2, numvfs=1,
                       drivers_autoprobe=False),
    "vpd": VpdSpec(name="disk", read_only={"PN": "42"}),
    "label": "a disk",
    "disks": [DiskSpec(name="nvme3n1", partitions=1)],
    "netdevs": ["eth7"],
    "mount_tags": [MountTagSpec(tag="share")],
}


def test_every_device_fact_goes_through_add_device(host: FakeKernel) -> None:
    assert set(SAMPLE) == set(DeviceSpec.model_fields)  # a new fact needs a sample here
    spec = DeviceSpec.model_validate(SAMPLE)
    defaults = DeviceSpec(address=spec.address, vendor=1, device=1, class_code=1)
    for name in DeviceSpec.model_fields:
        if name not in ("vendor", "device", "class_code", "address"):
            assert getattr(defaults, name) != getattr(spec, name), name
    fields = {k: v for k, v in SAMPLE.items()
              if k not in ("address", "vendor", "device", "class_code")}
    addr = host.add_device(SAMPLE_DEV, 0x144D, 0xA808, 0x010802, **fields)
    dev = host.state.devices[addr]
    assert dev.t == spec  # every fact kept, as given
    assert host.device_state(addr).driver == "nvme"
    assert dev.iommu_group == 11 and dev.numa_node == 0 and dev.parent_dev is not None
    assert dev.sriov is not None and len(dev.sriov.vfs) == 1
    assert not dev.sriov.drivers_autoprobe
    assert os.path.exists("/sys/block/nvme3n1/nvme3n1p1")
    assert os.path.exists("/sys/class/net/eth7")
    assert os.listdir("/sys/bus/virtio/devices")


def test_flat_sriov_keywords_are_derived_from_the_sriov_spec(kernel: FakeKernel) -> None:
    addr = kernel.add_device("0000:01:00.0", 0x8086, 0x10FB, 0x020000, sriov_totalvfs=4,
                             sriov_offset=8, sriov_stride=2, sriov_drivers_autoprobe=False)
    assert kernel.state.devices[addr].t.sriov == SriovSpec(
        totalvfs=4, vf_device=0x10FB, offset=8, stride=2, drivers_autoprobe=False)
    plain = kernel.add_device("0000:02:00.0", 0x8086, 0x10FB, 0x020000, sriov_totalvfs=0)
    assert kernel.state.devices[plain].t.sriov is None
    assert not os.path.exists(f"/sys/bus/pci/devices/{plain}/sriov_numvfs")


@pytest.mark.parametrize(("fields", "message"), [
    ({"colour": "red"}, r"device 0000:03:00\.0: colour: Extra inputs are not permitted"),
    ({"revision": 0x100}, r"device 0000:03:00\.0: revision: .*less than or equal to 255"),
    ({"sriov_numvfs": 2}, r"sriov_numvfs needs sriov_totalvfs > 0"),
    ({"sriov_totalvfs": 2, "sriov": {"totalvfs": 2, "vf_device": 1}}, r"not both"),
    ({"reset_methods": ["flr", "magic"]}, r"unknown reset methods \['magic'\]"),
])
def test_bad_facts_are_refused_and_nothing_is_added(
    kernel: FakeKernel, fields: dict[str, object], message: str
) -> None:
    with pytest.raises(FakeKernelSetupError, match=message):
        kernel.add_device("0000:03:00.0", 0x8086, 0x10D3, 0x020000, **fields)
    assert not kernel.has_device("0000:03:00.0")
    assert not os.path.exists("/sys/bus/pci/devices/0000:03:00.0")
