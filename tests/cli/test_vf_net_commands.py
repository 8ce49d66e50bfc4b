"""VF network settings on the command line: assign --mac/--vlan, show, reconcile."""

from __future__ import annotations

import argparse
import json

import pytest

from hostdev.cli.documents import ShowOutput
from hostdev.cli.netargs import add_net_arguments, net_config_from_args
from hostdev.errors import BadInput
from hostdev.testing import FakeKernel
from tests.cli.clirun import STATE
from tests.cli.clirun import run_cli as run

PF, VF0, VF1 = "0000:3d:00.0", "0000:3d:02.0", "0000:3d:02.1"



@pytest.fixture
def server(fake_kernel: FakeKernel) -> FakeKernel:
    fake_kernel.load_fixture("two-socket-server")
    fake_kernel.add_netdev(PF, "ens1f0")
    return fake_kernel


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_net_arguments(parser)
    return parser.parse_args(list(argv))


def test_net_options_parse() -> None:
    assert net_config_from_args(_parse()) is None
    config = net_config_from_args(_parse("--mac", "52:54:00:00:00:01", "--vlan", "10",
                                         "--qos", "1", "--trust", "on", "--spoofchk", "off",
                                         "--link-state", "enable"))
    assert config is not None and config.fields() == {
        "mac": "52:54:00:00:00:01", "vlan": 10, "qos": 1, "spoofchk": False, "trust": True,
        "link_state": "enable"}
    with pytest.raises(BadInput, match="--vlan"):
        net_config_from_args(_parse("--vlan", "ten"))
    with pytest.raises(BadInput, match="vlan"):
        net_config_from_args(_parse("--vlan", "5000"))


def test_assign_show_release(server: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *STATE, "assign", "--owner", "qemu/vm1", VF0,
                         "--mac", "52:54:00:12:34:56", "--vlan", "100")
    assert code == 0, err
    assert "network settings mac 52:54:00:12:34:56 vlan 100 qos 0" in out
    assert server.vf_net(PF, 0)["mac"] == "52:54:00:12:34:56"
    code, out, _ = run(capsys, *STATE, "show", VF0)
    assert code == 0
    assert ("VF 0 of ens1f0: mac 52:54:00:12:34:56, vlan 100, qos 0, spoofchk on, trust off,"
            " link-state auto") in out
    code, out, _ = run(capsys, *STATE, "show", VF0, "--json")
    shown = ShowOutput.model_validate_json(out)
    assert shown.vf_net is not None and shown.vf_net.interface == "ens1f0"
    assert (shown.vf_net.mac, shown.vf_net.vlan) == ("52:54:00:12:34:56", 100)
    assert json.loads(out)["vf_net"]["vf_index"] == 0
    server.set_vf_net(PF, 0, vlan=7)
    code, out, _ = run(capsys, *STATE, "reconcile")
    assert code == 0 and f"drift: {VF0}: network settings vlan 7, not 100" in out
    code, out, _ = run(capsys, *STATE, "release", "--owner", "qemu/vm1", VF0)
    assert code == 0
    assert server.vf_net(PF, 0)["mac"] == "00:00:00:00:00:00"
    assert server.vf_net(PF, 0)["vlan"] == 0


def test_show_of_a_function_that_is_not_a_vf_has_no_net(
        server: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *STATE, "show", PF, "--json")
    assert code == 0 and json.loads(out)["vf_net"] is None


def test_assign_refuses_one_mac_for_two_vfs(server: FakeKernel,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, *STATE, "assign", "--owner", "qemu/vm1", VF0, VF1,
                       "--mac", "52:54:00:12:34:56")
    assert code == 2 and "--mac" in err
    assert server.device_state(VF0).driver == "iavf"


def test_assign_bad_mac_is_exit_2(server: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, *STATE, "assign", "--owner", "qemu/vm1", VF0,
                       "--mac", "01:00:5e:00:00:01")
    assert code == 2 and "multicast" in err and len(err.strip().splitlines()) == 1
