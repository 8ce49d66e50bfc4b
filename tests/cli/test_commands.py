"""The hostdev command end to end, in process, on fixture hosts under the fake kernel."""

from __future__ import annotations

import json

import jsonschema
import pytest

from hostdev.cli.documents import ListOutput, ShowOutput
from hostdev.cli.main import main
from hostdev.testing import FakeKernel
from tests.cli.clirun import STATE
from tests.cli.clirun import run_cli as run


def test_list_table_groups(fake_kernel: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    code, out, err = run(capsys, *STATE, "list")
    assert code == 0 and err == ""
    stub, host, none = (out.index(t) for t in ("Devices on a VFIO or stub driver",
                                               "Devices on a host driver",
                                               "Devices with no driver"))
    assert stub < host < none
    host_part = out[host:none]
    assert "0000:5e:00.0  10de:1eb8   VGA compatible controller" in host_part
    assert "PF (2/64 VFs)" in host_part and "VF 1 of 0000:3d:00.0" in host_part
    assert "0000:3e:00.0" in out[none:]


def test_list_json_validates_against_schema(fake_kernel: FakeKernel,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("libvirt-mock")
    code, out, _ = run(capsys, *STATE, "list", "--json")
    assert code == 0
    parsed = ListOutput.model_validate_json(out)
    assert parsed.schema_id == "hostdev.list/1"
    assert len(parsed.devices) == 23
    raw = json.loads(out)
    first = raw["devices"][0]
    assert first["address"] == "0000:00:00.0" and first["vendor"] == "8086"
    assert first["list"] == "host" and first["owner"] is None
    code, schema_text, _ = run(capsys, "list", "--schema")
    schema = json.loads(schema_text)
    assert set(schema["properties"]) == {"schema", "root", "state_note", "iommu_enabled",
                                         "warnings", "devices"}
    jsonschema.validate(raw, schema)


def test_show(fake_kernel: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    code, out, _ = run(capsys, *STATE, "show", "5e:00.0")
    assert code == 0
    assert "IOMMU group 14 members:" in out and "0000:5e:00.1" in out
    assert "snd_hda_intel" in out
    code, out, _ = run(capsys, *STATE, "show", "0000:3d:00.0", "--json")
    shown = ShowOutput.model_validate_json(out)
    assert [v.address for v in shown.vfs] == shown.device.sriov.vfs  # type: ignore[union-attr]


def test_assign_release_cycle(fake_kernel: FakeKernel,
                              capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    code, out, err = run(capsys, *STATE, "assign", "--owner", "qemu/vm1", "3d:02.0")
    assert (code, err) == (0, "")
    assert "0000:3d:02.0: assigned to driver qemu, domain vm1 on vfio-pci" in out
    code, out, _ = run(capsys, *STATE, "list", "--json")
    dev = {d["address"]: d for d in json.loads(out)["devices"]}["0000:3d:02.0"]
    assert (dev["list"], dev["owner"], dev["driver"]) == (
        "active", {"driver": "qemu", "domain": "vm1"}, "vfio-pci")
    code, _, err = run(capsys, *STATE, "assign", "--owner", "qemu/vm2", "3d:02.0")
    assert code == 1
    assert err == "hostdev: PCI device 0000:3d:02.0 is in use by driver qemu, domain vm1\n"
    code, out, _ = run(capsys, *STATE, "release", "--owner", "qemu/vm1", "3d:02.0")
    assert code == 0 and "given back to the host" in out
    code, out, _ = run(capsys, *STATE, "detach", "0000:18:00.0")
    assert "detached to vfio-pci" in out
    code, out, _ = run(capsys, *STATE, "list")
    assert "inactive" in out
    code, out, _ = run(capsys, *STATE, "reattach", "0000:18:00.0")
    assert "reattached to nvme" in out


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["show", "0000:01:00"], "invalid PCI address '0000:01:00'"),
        (["show", "0000:01:20.0"], "slot 32 is out of range"),
        (["detach", "--driver", "../../etc", "0000:18:00.0"], "invalid driver name"),
        (["detach", "--driver", "vfio\x00pci", "0000:18:00.0"], "invalid driver name"),
        (["assign", "--owner", "nodomain", "0000:18:00.0"], "expected DRIVER/DOMAIN"),
        (["--root", "/nowhere", "list"], "/nowhere is not a sysfs tree"),
        (["frobnicate"], "invalid choice"),
        # The path the user gave was printed as it is: its newline made two lines, and
        # an undecodable byte (a lone surrogate in sys.argv) could not be printed at all
        # on a strict UTF-8 stream (a traceback instead of the error).
        (["--root", "/no\nwhere", "reconcile"], "/no\\nwhere is not a sysfs tree"),
        (["--root", "/no\udcffwhere", "reconcile"], "/no\\udcffwhere is not a sysfs tree"),
        (["--root", "/no\udcffwhere", "reconcile", "--json"], "/no\\udcffwhere is not"),
    ],
)
def test_bad_input_exit_2_one_line_nothing_written(
        fake_kernel: FakeKernel, capsys: pytest.CaptureFixture[str], argv: list[str],
        phrase: str) -> None:
    fake_kernel.load_fixture("two-socket-server")
    writes = len(fake_kernel.writes)
    code, _, err = run_exit(capsys, [*STATE, *argv])
    assert code == 2
    assert phrase in err and err.count("\n") == 1 and "Traceback" not in err
    assert len(fake_kernel.writes) == writes


def run_exit(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_missing_device_exit_1(fake_kernel: FakeKernel,
                               capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("qemu-guest")
    code, _, err = run(capsys, *STATE, "show", "0000:09:00.0")
    assert code == 1 and "0000:09:00.0 not found" in err and err.count("\n") == 1


def test_corrupt_state_exit_2_and_file_kept(fake_kernel: FakeKernel,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("qemu-guest")
    fake_kernel.fs.create_file("/run/hostdev/state.json", contents="{broken")
    import os

    os.chmod("/run/hostdev", 0o700)
    os.chmod("/run/hostdev/state.json", 0o600)
    code, _, err = run(capsys, *STATE, "detach", "0000:01:00.0")
    assert code == 2 and "state file /run/hostdev/state.json is not valid JSON" in err
    with open("/run/hostdev/state.json") as handle:
        assert handle.read() == "{broken"
