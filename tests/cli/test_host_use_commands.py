"""detach, assign and sriov refuse what the host uses unless --force; show lists it."""

from __future__ import annotations

import json

import pytest

from hostdev.testing import FakeKernel
from tests.cli.clirun import run

NVME = "0000:18:00.0"
PF = "0000:3d:00.0"



@pytest.fixture
def server(fake_kernel: FakeKernel) -> FakeKernel:
    fake_kernel.load_fixture("two-socket-server")
    fake_kernel.add_block(NVME, "nvme0n1", 1)
    fake_kernel.add_mount("nvme0n1p1", "/var/lib/data", "xfs")
    return fake_kernel


def test_detach_refused_then_forced(server: FakeKernel, capsys: pytest.CaptureFixture[str],
                                    caplog: pytest.LogCaptureFixture) -> None:
    code, out, err = run(capsys, "detach", NVME)
    assert code == 1 and out == ""
    assert err == (f"hostdev: cannot detach PCI device {NVME}: the host is using it ({NVME}"
                   " carries block device nvme0n1p1 mounted at /var/lib/data); stop that use"
                   " first, or pass --force (force=True) to go ahead anyway\n")
    assert server.device_state(NVME).driver == "nvme"
    code, out, err = run(capsys, "detach", "--force", NVME)
    assert code == 0 and out == f"{NVME}: detached to vfio-pci\n"
    assert [r.message for r in caplog.records if r.levelname == "WARNING"] == [
        f"forced: detach PCI device {NVME} although {NVME} carries block device nvme0n1p1"
        " mounted at /var/lib/data"]


def test_assign_refused_then_forced(server: FakeKernel,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "assign", "--owner", "qemu/vm1", NVME)
    assert code == 1 and f"cannot prepare PCI device {NVME}" in err
    code, out, _ = run(capsys, "assign", "--owner", "qemu/vm1", "--force", NVME)
    assert code == 0 and f"{NVME}: assigned to driver qemu, domain vm1" in out


def test_sriov_force_covers_host_use(fake_kernel: FakeKernel,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    vf = "0000:3d:02.0"
    fake_kernel.add_netdev(vf, "ens2f0v0")
    fake_kernel.set_link_up("ens2f0v0")
    fake_kernel.add_address("ens2f0v0", "10.20.0.3/24")
    code, _, err = run(capsys, "sriov", PF, "0")
    assert code == 1 and "network interface ens2f0v0 up with route 10.20.0.0/24" in err
    code, out, _ = run(capsys, "sriov", PF, "0", "--force")
    assert code == 0 and "-> 0 VFs" in out


def test_show_lists_what_the_host_uses(server: FakeKernel,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", NVME)
    assert code == 0
    assert "host uses" in out and "block device nvme0n1p1 mounted at /var/lib/data" in out
    code, out, _ = run(capsys, "show", NVME, "--json")
    assert json.loads(out)["host_use"] == [{
        "address": NVME, "kind": "block", "name": "nvme0n1p1",
        "carries": "block device nvme0n1p1", "use": "mounted at /var/lib/data"}]
    code, out, _ = run(capsys, "show", "0000:af:00.0", "--json")
    assert json.loads(out)["host_use"] == []
