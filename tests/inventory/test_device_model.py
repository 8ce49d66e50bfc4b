"""The one device model: PciDevice, its field declaration, and what is made from it
(the list table, ``show``, both JSON documents and their schema)."""

from __future__ import annotations

import json
import pickle

import pytest

from hostdev.address import PciAddress
from hostdev.cli.documents import DeviceDocument, ListedDevice, ListOutput
from hostdev.cli.main import main
from hostdev.cli.tables import BASE_COLUMNS, device_details
from hostdev.linux import device as model
from hostdev.linux.device import FIELDS, PciDevice, SriovInfo, VfInfo
from hostdev.linux.scan import list_devices, read_device
from hostdev.linux.sysfs import Sysfs
from hostdev.manager import HostdevManager
from hostdev.state.records import HostdevSpec, Owner
from hostdev.testing import FakeKernel
from hostdev.testing.hostgen import generate_host

PF = PciAddress.parse("0000:3b:00.0")
VF = PciAddress.parse("0000:3b:02.0")
STATE_DIR = "/run/hostdev"

#: The schema each JSON writer's values must have in the document models.
_SCHEMA_OF = {
    model._address: {"type": "string",
                      "pattern": "^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-1][0-9a-f]\\.[0-7]$"},
    model._hex4: {"type": "string", "pattern": "^[0-9a-f]{4}$"},
    model._hex6: {"type": "string", "pattern": "^[0-9a-f]{6}$"},
    model._hex4_or_null: {"anyOf": [{"type": "string", "pattern": "^[0-9a-f]{4}$"},
                                    {"type": "null"}]},
    model._str_or_null: {"anyOf": [{"type": "string"}, {"type": "null"}]},
    model._int_or_null: {"anyOf": [{"type": "integer"}, {"type": "null"}]},
    model._bool: {"type": "boolean"},
    model._strings: {"type": "array", "items": {"type": "string"}},
    model._sriov_or_null: {"anyOf": [{"$ref": "#/$defs/SriovInfo"}, {"type": "null"}]},
    model._vf_or_null: {"anyOf": [{"$ref": "#/$defs/VfInfo"}, {"type": "null"}]},
}


def _pf() -> PciDevice:
    return PciDevice(address=PF, vendor=0x8086, device=0x1572, class_code=0x020000,
                     driver="i40e", iommu_group=7, iommu_group_members=[PF],
                     sriov=SriovInfo(totalvfs=64, numvfs=1, vfs=[VF]),
                     reset_methods=["flr", "bus"])


def _core(schema: dict[str, object]) -> dict[str, object]:
    """A property's schema without what only documents it (title, default...)."""
    return {k: v for k, v in schema.items() if k in ("type", "pattern", "anyOf", "$ref", "items")}


def test_every_field_is_in_the_schema_with_its_type() -> None:
    schema = DeviceDocument.model_json_schema(by_alias=True)
    properties = schema["properties"]
    assert list(properties) == [f.name for f in FIELDS]
    for field in FIELDS:
        got = _core(properties[field.name])
        if field.json is model._list_or_null:
            # A list of strings (reset methods, nullable) or of addresses.
            if field.name == "reset_methods":
                items = {"type": "string"}
                assert got == {"anyOf": [{"type": "array", "items": items}, {"type": "null"}]}
            else:
                assert got == {"type": "array", "items": _SCHEMA_OF[model._address]}
            continue
        assert field.json in _SCHEMA_OF, f"{field.name}: a writer the test does not know"
        assert got == _SCHEMA_OF[field.json], field.name
    # The listing's document adds where the device is, after the facts.
    listed = ListedDevice.model_json_schema(by_alias=True)["properties"]
    assert list(listed) == [f.name for f in FIELDS] + ["list", "owner"]
    assert list(ListOutput.model_json_schema(by_alias=True)["$defs"]) == [
        "ListedDevice", "Owner", "SriovInfo", "VfInfo"]


def test_the_writer_and_the_document_agree_on_every_field() -> None:
    """Each fact written from the declaration reads back into the document model
    unchanged, and the document writes it back byte for byte."""
    devices = [
        _pf(),
        PciDevice(address=VF, vendor=0x8086, device=0x154C, subsystem_vendor=0x8086,
                  subsystem_device=0, class_code=0x020000, driver_override='a "b" \\ ü',
                  numa_node=-1, vf=VfInfo(pf=PF, index=None), reset_methods=[],
                  vfio_dev=True),
        PciDevice(address=PciAddress.parse("0000:00:01.0"), vendor=0x8086, device=0x1,
                  class_code=0x060400),
    ]
    quote = json.encoder.encode_basestring
    for dev in devices:
        # The generated writer (simple values inlined) writes what the declared
        # writers write, byte for byte.
        by_field = ",\n".join(f'  "{f.name}": {f.json(getattr(dev, f.name), "  ", quote)}'
                              for f in FIELDS)
        assert model.json_members(dev, "  ", quote) == by_field
        text = "{\n" + model.json_members(dev, "  ", quote) + "\n}"
        doc = DeviceDocument.model_validate_json(text)
        assert doc.model_dump_json(indent=2) == text
        assert doc == DeviceDocument.of(dev)
        assert json.loads(text) == dev.to_dict(json=True)


def test_keyword_only_defaults_and_derived_bridge() -> None:
    with pytest.raises(TypeError):
        PciDevice(PF, 0x8086, 0x1572, class_code=0x020000)  # type: ignore[misc]
    bare = PciDevice(address=PF, vendor=1, device=2, class_code=0x020000)
    assert (bare.driver, bare.sriov, bare.vf, bare.reset_methods, bare.vfio_dev) == (
        None, None, None, None, False)
    assert bare.iommu_group_members == [] and not bare.is_bridge
    assert PciDevice(address=PF, vendor=1, device=2, class_code=0x060400).is_bridge
    assert PciDevice(address=PF, vendor=1, device=2, class_code=0x060400,
                     is_bridge=False).is_bridge is False


def test_read_only_replace_equality_hash_pickle() -> None:
    dev = _pf()
    with pytest.raises(AttributeError):
        dev.color = "red"  # type: ignore[attr-defined]  # slotted: no new attributes
    moved = dev.replace(driver="vfio-pci", vfio_dev=True)
    assert (moved.driver, moved.vfio_dev, dev.driver, dev.vfio_dev) == (
        "vfio-pci", True, "i40e", False)
    assert moved.sriov is dev.sriov and moved.address == dev.address
    with pytest.raises(TypeError, match="no field 'drivr'"):
        dev.replace(drivr="x")
    same = _pf()
    assert same == dev and hash(same) == hash(dev) and same != moved
    assert dev != dev.replace(sriov=SriovInfo(totalvfs=64, numvfs=2, vfs=[VF]))
    assert pickle.loads(pickle.dumps(dev)) == dev
    assert repr(dev).startswith("PciDevice(address=") and "driver='i40e'" in repr(dev)
    plain = dev.to_dict()
    assert list(plain) == [f.name for f in FIELDS]
    assert plain["sriov"] == {"totalvfs": 64, "numvfs": 1, "vfs": [VF]}
    assert plain["vendor"] == 0x8086 and plain["address"] == PF


def test_type_checkers_refuse_assignment() -> None:
    """The snapshots are read-only for mypy (``Final`` attributes), nested ones too."""
    from mypy import api

    code = ("from hostdev.linux.device import PciDevice, SriovInfo\n"
            "def f(d: PciDevice, s: SriovInfo) -> None:\n"
            "    d.driver = 'vfio-pci'\n"
            "    s.numvfs = 2\n"
            "    print(d.replace(driver='x').driver, d.address)\n")
    out, _, status = api.run(["--strict", "--no-incremental", "--follow-imports=silent",
                              "-c", code])
    assert status == 1, out
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 2, out
    assert all("Cannot assign to final attribute" in line for line in errors), out
    assert '"driver"' in errors[0] and '"numvfs"' in errors[1]


def test_table_and_show_come_from_the_declaration(fake_kernel: FakeKernel,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_spec(generate_host(2, 3))
    headers = [f.header for f in FIELDS if f.header is not None]
    assert [name for name, _ in BASE_COLUMNS] == headers
    assert main(["--root", "/", "--state-dir", STATE_DIR, "list"]) == 0
    table = capsys.readouterr().out
    header = next(line for line in table.splitlines() if line.startswith("ADDRESS"))
    assert header.split() == [*headers, "LIST", "OWNER"]
    pf = next(d for d in list_devices(Sysfs("/")) if d.sriov is not None)
    pf = read_device(Sysfs("/"), pf.address)
    shown = device_details(pf, [], [])
    labels = [line.split("  ")[0] for line in shown.splitlines() if line]
    expected = [f.label for f in FIELDS if f.label is not None and f.show is not None
                and f.show(pf) is not None]
    assert labels == expected
    assert "sr-iov" in labels and "reset methods" in labels


def test_membership_is_the_same_in_list_and_show(fake_kernel: FakeKernel,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_spec(generate_host(2, 3))
    mgr = HostdevManager(root="/", state_dir=STATE_DIR, release_timeout=0)
    vfs = [d.address for d in list_devices(mgr.sysfs) if d.vf is not None]
    mgr.prepare(Owner(driver="qemu", domain="vm1"), [HostdevSpec(address=vfs[0])])
    mgr.node_detach(vfs[1])
    assert main(["--root", "/", "--state-dir", STATE_DIR, "list", "--json"]) == 0
    listed = {d["address"]: d for d in json.loads(capsys.readouterr().out)["devices"]}
    seen = set()
    for address in (vfs[0], vfs[1], vfs[2]):
        assert main(["--root", "/", "--state-dir", STATE_DIR, "show", "--json",
                     str(address)]) == 0
        shown = json.loads(capsys.readouterr().out)["device"]
        assert shown == listed[str(address)]
        seen.add(shown["list"])
    assert seen == {"active", "inactive", "host"}
    assert listed[str(vfs[0])]["owner"] == {"driver": "qemu", "domain": "vm1"}


def test_each_device_is_in_exactly_the_section_the_table_puts_it(
        fake_kernel: FakeKernel) -> None:
    from hostdev.cli.tables import SECTIONS, _section

    fake_kernel.load_spec(generate_host(2, 3))
    mgr = HostdevManager(root="/", state_dir=STATE_DIR, release_timeout=0)
    devices = list_devices(mgr.sysfs)
    mgr.node_detach(next(d.address for d in devices if d.vf is not None))
    devices = list_devices(mgr.sysfs)
    devices.append(devices[0].replace(driver=None))
    seen = set()
    for dev in devices:
        index = _section(dev)
        assert [n for n, (_, belongs) in enumerate(SECTIONS) if belongs(dev)] == [index]
        seen.add(index)
    assert seen == {0, 1, 2}


def test_schema_ids_of_the_documents_are_the_one_definition() -> None:
    """mypy needs the id spelled out in each document's Literal; it must be the
    constant of hostdev.cli.schema_ids that the fast path writes."""
    from typing import get_args

    from hostdev.cli.documents import ShowOutput
    from hostdev.cli.schema_ids import LIST_SCHEMA_ID, SHOW_SCHEMA_ID

    for document, schema_id in ((ListOutput, LIST_SCHEMA_ID), (ShowOutput, SHOW_SCHEMA_ID)):
        field = document.model_fields["schema_id"]
        assert get_args(field.annotation) == (schema_id,)
        assert field.default == schema_id


def test_place_all_is_placement_of_each(fake_kernel: FakeKernel) -> None:
    from hostdev.cli.listing import place_all, placement
    from hostdev.state.lists import Lists

    fake_kernel.load_spec(generate_host(2, 3))
    mgr = HostdevManager(root="/", state_dir=STATE_DIR, release_timeout=0)
    devices = list_devices(mgr.sysfs)
    assert place_all(devices, None) == [("unknown", None)] * len(devices)
    assert place_all(devices, Lists()) == [("host", None)] * len(devices)
    vfs = [d.address for d in devices if d.vf is not None]
    mgr.prepare(Owner(driver="qemu", domain="vm1"), [HostdevSpec(address=vfs[0])])
    mgr.node_detach(vfs[1])
    lists = mgr.store.peek()
    placed = place_all(devices, lists)
    assert placed == [placement(d.address, lists) for d in devices]
    assert {p[0] for p in placed} == {"active", "inactive", "host"}
