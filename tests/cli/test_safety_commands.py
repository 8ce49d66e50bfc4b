"""sriov, reconcile and holders from the command line."""

from __future__ import annotations

import json

import pytest

from hostdev.address import PciAddress
from hostdev.cli.main import main
from hostdev.manager import HostdevManager
from hostdev.state.records import Owner
from hostdev.testing import FakeKernel
from tests.cli.clirun import STATE, run

PF = "0000:3d:00.0"



def test_sriov_command(fake_kernel: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    code, out, _ = run(capsys, "sriov", PF, "4")
    assert code == 0 and "2 -> 4 VFs (through 0: the kernel refuses a direct change)" in out
    run(capsys, "assign", "--owner", "qemu/vm1", "0000:3d:02.0")
    code, _, err = run(capsys, "sriov", PF, "1")
    assert code == 1 and "would vanish under their guests" in err
    code, out, _ = run(capsys, "sriov", PF, "1", "--force", "--json")
    report = json.loads(out)
    assert code == 0 and report["after"] == 1
    assert [r["address"] for r in report["orphaned"]] == ["0000:3d:02.0"]
    code, _, err = run(capsys, "sriov", PF, "65")
    assert code == 2 and "supports 0 to 64 VFs, not 65" in err


def test_sriov_stub_command(fake_kernel: FakeKernel,
                            capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    run(capsys, "sriov", PF, "0")
    code, out, _ = run(capsys, "sriov", PF, "2", "--stub", "vfio-pci")
    vfs = HostdevManager(root="/", state_dir=STATE[-1]).inactive()
    assert code == 0 and len(vfs) == 2
    assert [f"{r.address}: created on vfio-pci (inactive)" for r in vfs] == \
        out.splitlines()[1:]
    code, out, _ = run(capsys, "sriov", PF, "3", "--stub", "auto", "--force", "--json")
    assert code == 0 and [d["driver"] for d in json.loads(out)["detached"]] == ["vfio-pci"] * 3
    code, out, _ = run(capsys, "sriov", PF, "3", "--stub", "vfio-pci")
    assert code == 0 and "no VF created, so none moved to vfio-pci" in out
    for bad in ("../vfio-pci", "vfio/pci", ""):
        code, out, err = run(capsys, "sriov", PF, "1", "--stub", bad)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "driver" in err
    assert len(HostdevManager(root="/", state_dir=STATE[-1]).inactive()) == 3


def test_show_lists_holders(fake_kernel: FakeKernel,
                            capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    run(capsys, "detach", "0000:18:00.0")
    fake_kernel.hold_vfio("0000:18:00.0", pid=4321, comm="qemu-system-x86")
    code, out, _ = run(capsys, "show", "0000:18:00.0")
    assert code == 0 and "held by          qemu-system-x86 (pid 4321, group 5" in out
    code, out, _ = run(capsys, "show", "0000:18:00.0", "--json")
    assert json.loads(out)["holders"][0]["pid"] == 4321
    code, _, err = run(capsys, "--release-timeout", "0.05", "reattach", "0000:18:00.0")
    assert code == 1 and "still held by a VFIO user: qemu-system-x86 (pid 4321" in err
    assert fake_kernel.would_block_events == []


def test_reconcile_command(fake_kernel: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    mgr = HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0)
    mgr.node_detach("0000:3d:02.1")
    mgr.prepare(Owner(driver="qemu", domain="vm1"), ["0000:18:00.0"])
    sysfs = mgr.sysfs
    sysfs.write(sysfs.device_path(PciAddress.parse(PF), "sriov_numvfs"), "0\n")
    code, out, _ = run(capsys, "reconcile")
    assert code == 0 and "0000:3d:02.1: vanished; record pruned" in out
    code, out, _ = run(capsys, "reconcile")
    assert out.strip() == "the lists agree with the host"


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "-1", "abc", ""])
def test_bad_release_timeout_exit_2(fake_kernel: FakeKernel, capsys: pytest.CaptureFixture[str],
                                    bad: str) -> None:
    fake_kernel.load_fixture("two-socket-server")
    run(capsys, "detach", "0000:18:00.0")
    writes = len(fake_kernel.writes)
    with pytest.raises(SystemExit) as info:
        main([*STATE, f"--release-timeout={bad}", "reattach", "0000:18:00.0"])
    out, err = capsys.readouterr()
    assert info.value.code == 2 and out == ""
    assert err.count("\n") == 1 and "--release-timeout" in err and "seconds" in err
    assert len(fake_kernel.writes) == writes


def test_show_and_refusal_name_a_hidden_holder(fake_kernel: FakeKernel,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    run(capsys, "detach", "0000:18:00.0")
    fake_kernel.hold_vfio("0000:18:00.0", visible=False)
    code, out, _ = run(capsys, "show", "0000:18:00.0")
    assert code == 0 and ("held by          a VFIO user outside this process's view"
                          " (the kernel reports enable=1, runtime_usage=1)") in out
    code, out, _ = run(capsys, "show", "0000:18:00.0", "--json")
    assert json.loads(out)["holders"] == [{
        "pid": None, "comm": "a VFIO user outside this process's view",
        "via": ["enable=1, runtime_usage=1"]}]
    code, _, err = run(capsys, "--release-timeout", "0", "reattach", "0000:18:00.0")
    assert code == 1 and "outside this process's view" in err
    assert fake_kernel.would_block_events == []


def test_wait_is_shown_on_stderr_and_nothing_else_at_info(
        fake_kernel: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    import logging
    import threading

    fake_kernel.load_fixture("two-socket-server")
    run(capsys, "detach", "0000:18:00.0")
    holder = fake_kernel.hold_vfio("0000:18:00.0", pid=4321, comm="qemu-system-x86",
                                   via="mmap")
    timer = threading.Timer(0.3, holder.release)
    timer.start()
    root = logging.getLogger()
    handler = logging.StreamHandler()  # stands in for the basicConfig the CLI does
    root.addHandler(handler)
    try:
        code, _, err = run(capsys, "--release-timeout", "5", "reattach", "0000:18:00.0")
        timer.join()
        assert code == 0, err
        assert ("waiting up to 5 s for qemu-system-x86 (pid 4321, mapping) to release"
                " 0000:18:00.0") in err
        code, _, err = run(capsys, "sriov", PF, "4")  # logs "going through 0" at INFO
        assert code == 0 and "going through 0" not in err and err == ""
    finally:
        root.removeHandler(handler)


def test_reconcile_shows_a_write_still_blocked(fake_kernel: FakeKernel,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from hostdev.errors import WriteBlocked

    fake_kernel.load_fixture("two-socket-server")
    disk = "0000:18:00.0"
    run(capsys, "detach", disk)
    holder = fake_kernel.hold_vfio(disk, pid=4321)
    monkeypatch.setattr("hostdev.linux.vfio.wait_released", lambda *a, **k: None)  # a late user
    mgr = HostdevManager(root="/", state_dir="/run/hostdev", write_timeout=0.05)
    with pytest.raises(WriteBlocked):
        mgr.node_reattach(disk)
    monkeypatch.undo()
    code, out, _ = run(capsys, "reconcile")
    assert code == 0 and f"blocked: {disk}: the write of" in out
    code, _, err = run(capsys, "reattach", disk)
    assert code == 1 and "still blocked in the kernel" in err
    # Reading the device would wait on a real kernel: left out, said so, never a hang.
    code, out, err = run(capsys, "list")
    assert code == 0 and disk not in out and "0000:3d:00.0" in out
    assert f"warning: left out: PCI device {disk} is not touched" in err
    code, _, err = run(capsys, "show", disk)
    assert code == 1 and "still blocked in the kernel" in err
    holder.release()
    code, out, _ = run(capsys, "reconcile")
    assert code == 0 and "blocked:" not in out and "has finished" in out
    code, out, err = run(capsys, "list")
    assert code == 0 and disk in out and "left out" not in err
