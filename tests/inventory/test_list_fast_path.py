"""``hostdev list`` prints without pydantic (hostdev.cli.listing); its JSON must
stay exactly what the pydantic documents print, and its table what the device
model's field declaration gives for the library's snapshots."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hostdev.address import PciAddress
from hostdev.cli.documents import ListOutput
from hostdev.cli.inventory import _listed
from hostdev.cli.listing import peek_state
from hostdev.cli.main import main
from hostdev.cli.tables import BASE_COLUMNS, Column, status_table
from hostdev.linux.device import PciDevice
from hostdev.linux.scan import list_devices, read_device
from hostdev.linux.sysfs import Sysfs
from hostdev.manager import HostdevManager
from hostdev.state.records import HostdevSpec, Owner
from hostdev.testing import FakeKernel
from hostdev.testing.hostgen import generate_host

STATE_DIR = "/run/hostdev"


def _reference(root: str) -> tuple[str, str]:
    """(table, JSON): the JSON as the pydantic documents print it, the table of
    the library's full snapshots (``list_devices``)."""
    import argparse

    args = argparse.Namespace(root=root, state_dir=STATE_DIR)
    lists, note = peek_state(args)
    devices = list_devices(Sysfs(root))
    listed = {d.address: _listed(d, lists) for d in devices}
    as_json = ListOutput(root=root, state_note=note, devices=list(listed.values())
                         ).model_dump_json(by_alias=True, indent=2) + "\n"

    def owner(d: PciDevice) -> str:
        found = listed[d.address].owner
        return "-" if found is None else f"{found.driver}/{found.domain}"

    columns: list[Column] = [("LIST", lambda d: listed[d.address].membership),
                             ("OWNER", owner)]
    return status_table(devices, [*BASE_COLUMNS, *columns]), as_json


def _both(capsys: pytest.CaptureFixture[str], root: str = "/") -> str:
    """Check table and JSON against the models' output; return the JSON."""
    table, as_json = _reference(root)
    assert main(["--root", root, "--state-dir", STATE_DIR, "list"]) == 0
    assert capsys.readouterr().out == table
    assert main(["--root", root, "--state-dir", STATE_DIR, "list", "--json"]) == 0
    assert capsys.readouterr().out == as_json
    return as_json


@pytest.mark.parametrize("fixture", ["two-socket-server", "libvirt-mock", "qemu-guest"])
def test_fixture_hosts(fake_kernel: FakeKernel, capsys: pytest.CaptureFixture[str],
                       fixture: str) -> None:
    fake_kernel.load_fixture(fixture)
    _both(capsys)


def test_tracked_devices_odd_owner_and_override(fake_kernel: FakeKernel,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_spec(generate_host(2, 3))
    mgr = HostdevManager(root="/", state_dir=STATE_DIR, release_timeout=0)
    vfs = [d.address for d in list_devices(mgr.sysfs) if d.vf is not None]
    owner = Owner(driver="qemu", domain='vm "ü" \\ / 1\u2028')
    mgr.prepare(owner, [HostdevSpec(address=vfs[0]), HostdevSpec(address=vfs[1])])
    mgr.node_detach(vfs[2])
    mgr.sysfs.write(mgr.sysfs.device_path(vfs[3], "driver_override"), "pci-stub\n")
    out = _both(capsys)
    for part in ('"list": "active"', '"list": "inactive"', '"vfio_dev": true',
                 '"driver_override": "pci-stub"', '"domain": "vm \\"ü\\" \\\\ / 1\u2028"'):
        assert part in out


def test_unreadable_state_and_other_root(fake_kernel: FakeKernel,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    fake_kernel.fs.create_file(f"{STATE_DIR}/state.json", contents="{not json")
    os.symlink("/", "/host-root")
    assert '"list": "unknown"' in _both(capsys, "/host-root")
    _both(capsys, "/host-root/")


def test_empty_host(fake_kernel: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    _both(capsys)


def test_vf_whose_pf_lost_the_link(fake_kernel: FakeKernel,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    pf = "/sys/bus/pci/devices/0000:3d:00.0"
    os.rename(f"{pf}/virtfn1", f"{pf}/virtfn7")  # a VF the PF no longer lists by index
    _both(capsys)
    # The listing places VFs by the PF's offset and stride, which the VFs' own
    # physfn links confirm: it reads no virtfn link, so it keeps index 1. A single
    # read (``show``) confirms the index with the PF's link, and finds none.
    address = PciAddress.parse("0000:3d:02.1")
    devices: list[PciDevice] = list_devices(Sysfs("/"))
    vf = next(d for d in devices if d.address == address)
    assert vf.vf is not None and vf.vf.index == 1
    alone = read_device(Sysfs("/"), address)
    assert alone.vf is not None and alone.vf.index is None


def test_list_imports_no_pydantic() -> None:
    """A cold ``hostdev list`` imports neither pydantic nor the manager nor netlink
    (the device model it prints is plain: it imports neither pydantic nor typing), nor
    argparse, pathlib or the state store when there is no state directory."""
    code = ("import sys\nfrom hostdev.cli.main import main\n"
            "main(['--root', '/nonexistent', '--state-dir', '/nonexistent', 'list'])\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic',"
            " 'pydantic_core', 'filelock', 'logging', 'typing', 'dataclasses', 'argparse',"
            " 'pathlib', 'shutil', 'contextlib', 'importlib', 'pyroute2', 'pyudev')"
            " or m in ('hostdev.manager', 'hostdev.state.records', 'hostdev.linux.netlink',"
            " 'hostdev.state.store', 'hostdev.cli.parser'))\n"
            "if 'hostdev.linux.device' not in sys.modules: heavy.append('no device model')\n"
            "print(','.join(heavy))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", done.stdout


def test_the_command_script_imports_only_the_list_path() -> None:
    """The ``hostdev`` script itself (not an entry-point wrapper, which imports re):
    ``hostdev list`` imports neither re, enum, functools, argparse nor pathlib."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "hostdev"
    done = subprocess.run([sys.executable, "-X", "importtime", str(script), "--root",
                           "/nonexistent", "--state-dir", "/nonexistent", "list"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "not a sysfs tree" in done.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "hostdev.cli.listing" in imported
    heavy = imported & {"re", "enum", "functools", "argparse", "pathlib", "collections",
                        "typing", "logging", "pydantic", "json", "importlib"}
    assert heavy == set(), heavy


def test_each_bound_function_costs_one_netdev_or_vfio_lookup(
        fake_kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stub or uio driver is not asked for netdevs, a function with a netdev is not
    asked for ``vfio-dev/``, a function with no driver for neither; the facts stay
    what the whole lookup gives."""
    from hostdev.linux.sysfs import DeviceFiles
    from tests.smallhost import GPU, NIC, NOGROUP, NVME, build_host

    nic, parked, uio, bare = NIC, GPU, NVME, NOGROUP
    build_host(fake_kernel)
    fake_kernel.add_netdev(nic, "eno1")
    fake_kernel.add_driver("uio_pci_generic")
    mgr = HostdevManager(root="/", state_dir=STATE_DIR)
    mgr.node_detach(parked)
    mgr.node_detach(uio, "uio_pci_generic")
    asked: list[tuple[str, str]] = []
    has, names = DeviceFiles.has, DeviceFiles.names

    def spy_has(self: DeviceFiles, name: str) -> bool:
        asked.append((str(self.address), name))
        return has(self, name)

    def spy_names(self: DeviceFiles, name: str) -> list[str]:
        asked.append((str(self.address), name))
        return names(self, name)

    monkeypatch.setattr(DeviceFiles, "has", spy_has)
    monkeypatch.setattr(DeviceFiles, "names", spy_names)
    found = {d.address: d for d in list_devices(Sysfs("/"))}
    mine = {str(a) for a in (nic, parked, uio, bare)}
    asked = [(a, n) for a, n in asked if a in mine and n != "reset"]
    assert sorted(asked) == sorted([(str(nic), "net"), (str(parked), "vfio-dev"),
                                    (str(uio), "vfio-dev")])
    assert (found[nic].netdevs, found[nic].vfio_dev) == (["eno1"], False)
    assert (found[parked].driver, found[parked].netdevs, found[parked].vfio_dev) == (
        "vfio-pci", [], True)
    assert (found[uio].driver, found[uio].netdevs, found[uio].vfio_dev) == (
        "uio_pci_generic", [], False)
    assert (found[bare].netdevs, found[bare].vfio_dev) == ([], False)
