"""``hostdev assign --count N``: free VFs chosen by hostdev, end to end on the fixture server."""

from __future__ import annotations

import json

import pytest

from hostdev.testing import FakeKernel
from tests.cli.clirun import run


@pytest.fixture
def server(fake_kernel: FakeKernel, capsys: pytest.CaptureFixture[str]) -> FakeKernel:
    fake_kernel.load_fixture("two-socket-server")
    assert run(capsys, "sriov", "86:00.0", "2")[0] == 0
    return fake_kernel


def test_assign_count_prints_the_vfs_chosen(server: FakeKernel,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "assign", "--owner", "qemu/vm1", "--count", "2", "--numa", "1")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "0000:86:00.2: assigned to driver qemu, domain vm1 on vfio-pci (VF 0 of 0000:86:00.0)",
        "0000:86:00.3: assigned to driver qemu, domain vm1 on vfio-pci (VF 1 of 0000:86:00.0)",
    ]
    code, out, _ = run(capsys, "assign", "--owner", "qemu/vm2", "--count", "1", "--numa", "1",
                       "--pf", "3d:00.0", "--id", "8086:154c", "--driver", "pci-stub")
    assert code == 0
    assert out.splitlines() == [
        "0000:3d:02.0: assigned to driver qemu, domain vm2 on pci-stub (VF 0 of 0000:3d:00.0)",
        "0000:3d:02.0: not on NUMA node 1 (too few free VFs there)",
    ]


def test_assign_count_json(server: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "assign", "--owner", "qemu/vm1", "--count", "1", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["chosen"] == ["0000:3d:02.0"]
    assert (report["candidates"], report["free"], report["off_node"]) == (4, 4, [])
    assert report["prepared"][0]["owner"] == {"driver": "qemu", "domain": "vm1"}


def test_not_enough_free_is_one_line_exit_1_and_nothing_changes(
        server: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    writes = len(server.writes)
    code, out, err = run(capsys, "assign", "--owner", "qemu/vm1", "--count", "3",
                         "--pf", "86:00.0")
    assert (code, out) == (1, "")
    assert err == ("hostdev: cannot allocate 3 VFs of PF 0000:86:00.0 for driver qemu, domain"
                   " vm1: 2 of 2 candidate VFs are free (0000:86:00.2, 0000:86:00.3)\n")
    assert server.writes[writes:] == []


@pytest.mark.parametrize(("argv", "message"), [
    (["--count", "0"], "VF count must be a whole number of at least 1, not 0"),
    (["--count", "two"], "argument --count: invalid int value: 'two'"),
    (["--count", "1", "--numa", "-1"], "NUMA node must be a whole number >= 0"),
    (["--count", "1", "--id", "8086"], "invalid id '8086': expected VVVV:DDDD"),
    (["--count", "1", "--pf", "5e:00.0"], "0000:5e:00.0 is not an SR-IOV PF"),
    (["--count", "1", "--pf", "nope"], "nope"),
    (["--count", "1", "3d:02.0"], "give the devices' addresses or --count N, not both"),
    (["--count", "1", "--force"], "--force does not apply to --count"),
    (["--count", "1", "--unmanaged"], "--unmanaged does not apply to --count"),
    (["--pf", "3d:00.0", "3d:02.0"], "--pf chooses among free VFs: use it with --count N"),
    (["--numa", "0", "3d:02.0"], "--numa chooses among free VFs"),
    ([], "assign needs the devices' addresses, or --count N"),
])
def test_bad_input_is_one_line_exit_2(server: FakeKernel, capsys: pytest.CaptureFixture[str],
                                      argv: list[str], message: str) -> None:
    writes = len(server.writes)
    code, out, err = run(capsys, "assign", "--owner", "qemu/vm1", *argv)
    assert (code, out) == (2, "")
    assert err.startswith("hostdev: ") and err.count("\n") == 1 and message in err
    assert server.writes[writes:] == []


def test_assign_count_with_network_settings(server: FakeKernel,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    server.add_netdev("0000:86:00.0", "ens2f0")
    code, out, err = run(capsys, "assign", "--owner", "qemu/vm1", "--count", "1",
                         "--mac", "52:54:00:12:34:56", "--vlan", "7", "--trust", "on")
    assert (code, err) == (0, "")
    assert out.startswith("0000:86:00.2: assigned to driver qemu, domain vm1 on vfio-pci"
                          " (VF 0 of 0000:86:00.0), network settings ")
    assert "mac 52:54:00:12:34:56" in out and "vlan 7" in out
    net = server.vf_net("0000:86:00.0", 0)
    assert (net["mac"], net["vlan"], net["trust"]) == ("52:54:00:12:34:56", 7, True)
    code, _, err = run(capsys, "assign", "--owner", "qemu/vm2", "--count", "2",
                       "--mac", "52:54:00:12:34:57")
    assert code == 2 and "a MAC address names one VF" in err
