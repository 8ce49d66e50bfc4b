"""``hostdev list`` options: filters, the NAME column from pci.ids, the netdev a
function carries, fitting the terminal, and the argparse-free parse of ``list``."""

from __future__ import annotations

import argparse
import io
import json
import os

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from hostdev.cli.documents import ListOutput
from hostdev.cli.listargs import fast_list_args
from hostdev.cli.main import main
from hostdev.cli.parser import build_parser
from hostdev.cli.tables import table
from hostdev.linux.pciids import PciIds, load_pci_ids
from hostdev.linux.scan import list_devices
from hostdev.linux.sysfs import Sysfs
from hostdev.manager import HostdevManager
from hostdev.testing import FakeKernel
from tests.cli.clirun import STATE, run

PF = "0000:3d:00.0"



def listed(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    code, out, err = run(capsys, "list", "--json", *argv)
    assert code == 0, err
    return [str(d.address) for d in ListOutput.model_validate_json(out).devices]


# ------------------------------------------------------------------ filters


def test_each_filter_keeps_what_it_names(fake_kernel: FakeKernel,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    devices = list_devices(Sysfs("/"))
    everything = [str(d.address) for d in devices]
    assert listed(capsys) == everything

    def expect(pred: object) -> list[str]:
        return [str(d.address) for d in devices if pred(d)]  # type: ignore[operator]

    assert listed(capsys, "--driver", "i40e") == expect(lambda d: d.driver == "i40e")
    assert listed(capsys, "--driver", "none") == expect(lambda d: d.driver is None)
    assert expect(lambda d: d.driver is None)  # the fixture has unbound functions
    pf = next(d for d in devices if str(d.address) == PF)
    ids = f"{pf.vendor:04X}:{pf.device:04x}"  # either case
    assert listed(capsys, "--id", ids) == expect(lambda d: d.ids == pf.ids)
    assert pf.sriov is not None and pf.sriov.vfs
    assert listed(capsys, "--pf", PF) == [PF, *(str(v) for v in pf.sriov.vfs)]
    assert listed(capsys, "--numa", "1") == expect(lambda d: d.numa_node == 1)
    assert expect(lambda d: d.numa_node == 1) and expect(lambda d: d.numa_node == 0)
    assert listed(capsys, "--class", "net") == expect(lambda d: d.class_code >> 16 == 2)
    assert listed(capsys, "--class", "display") == expect(lambda d: d.class_code >> 16 == 3)
    # Filters combine: every one must hold.
    assert listed(capsys, "--pf", PF, "--class", "storage") == []
    assert listed(capsys, "--list", "host") == everything


def test_list_filter_follows_the_lists(fake_kernel: FakeKernel,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    mgr = HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0)
    pf = next(d for d in list_devices(mgr.sysfs) if str(d.address) == PF)
    assert pf.sriov is not None
    vf = pf.sriov.vfs[0]
    mgr.node_detach(vf)
    assert listed(capsys, "--list", "inactive") == [str(vf)]
    assert listed(capsys, "--list", "active") == []
    assert str(vf) not in listed(capsys, "--list", "host")
    code, out, _ = run(capsys, "list", "--list", "inactive")
    assert code == 0 and str(vf) in out and f"\n{PF}" not in out


@pytest.mark.parametrize(("argv", "named"), [
    (["--id", "8086"], "--id '8086'"),
    (["--id", "8086:12345"], "--id '8086:12345'"),
    (["--id", "xyz:1"], "--id 'xyz:1'"),
    (["--pf", "3d:00"], "--pf"),
    (["--numa", "one"], "--numa 'one'"),
    (["--numa", "-2"], "--numa '-2'"),
    (["--list", "all"], "--list 'all'"),
    (["--class", "gpu"], "--class 'gpu'"),
])
def test_bad_filter_values_are_one_line_errors(fake_kernel: FakeKernel,
                                               capsys: pytest.CaptureFixture[str],
                                               argv: list[str], named: str) -> None:
    fake_kernel.load_fixture("two-socket-server")
    before = Sysfs("/")
    for json_flag in ([], ["--json"]):
        code, out, err = run(capsys, "list", *json_flag, *argv)
        # With --json the error is also a document on stdout (schema hostdev.error/1).
        assert code == 2 and (json.loads(out)["error"]["type"] == "BadInput" if json_flag
                              else out == "")
        assert err.startswith(f"hostdev: {named}") and err.count("\n") == 1, err
    assert before.stats.reads == 0
    _, _, err = run(capsys, "list", "--class", "gpu")
    assert "net" in err and "storage" in err and "display" in err


# ------------------------------------------------------------------ netdev


def test_netdev_shown_in_the_table_json_and_show(fake_kernel: FakeKernel,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    fake_kernel.add_netdev(PF, "ens1f0")
    code, out, _ = run(capsys, "list", "--json")
    doc = ListOutput.model_validate_json(out)
    by = {str(d.address): d for d in doc.devices}
    assert by[PF].netdevs == ["ens1f0"]
    # Its VFs on their host driver have interfaces of their own (named by the fake
    # kernel after the PF's); nothing else has one.
    vfs = {a: (d.vf.index, d.driver, d.netdevs) for a, d in by.items()
           if d.vf is not None and str(d.vf.pf) == PF}
    assert vfs and all(names == [f"ens1f0v{index}"] for index, driver, names in vfs.values()
                       if driver == "iavf")
    assert all(d.netdevs == [] for a, d in by.items() if a != PF and a not in vfs)
    code, out, _ = run(capsys, "list")
    assert "NETDEV" in out
    line = next(ln for ln in out.splitlines() if ln.startswith(PF))
    assert " ens1f0 " in line
    code, out, _ = run(capsys, "show", PF)
    assert code == 0 and any(ln.split() == ["netdev", "ens1f0"] for ln in out.splitlines())


def test_netdev_goes_with_the_driver(fake_kernel: FakeKernel,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    vf = "0000:3d:02.0"
    fake_kernel.add_netdev(vf, "ens1f0v0")
    mgr = HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0)
    assert listed(capsys, "--driver", "iavf") and vf in listed(capsys, "--driver", "iavf")
    assert "ens1f0v0" in run(capsys, "list")[1]
    mgr.node_detach(vf, force=True)
    dev = next(d for d in list_devices(mgr.sysfs) if str(d.address) == vf)
    assert dev.driver == "vfio-pci" and dev.netdevs == []


# ------------------------------------------------------------------ names


PCI_IDS = """\
# comment
8086  Intel Corporation
\t1572  Ethernet Controller X710 for 10GbE SFP+
\t\t8086 0000  Ethernet Converged Network Adapter X710
\t154c  Ethernet Virtual Function 700 Series
10de  NVIDIA Corporation
\t1eb8  TU104GL [Tesla T4]
15b3  Mellanox Technologies
C 00  Unclassified device
\t00  Non-VGA unclassified device
"""


def test_pci_ids_lookup() -> None:
    ids = PciIds(PCI_IDS.encode())
    assert ids.name(0x8086, 0x1572) == "Intel Corporation Ethernet Controller X710 for 10GbE SFP+"
    assert ids.name(0x10DE, 0x1EB8) == "NVIDIA Corporation TU104GL [Tesla T4]"
    # A device of another vendor's block is not this vendor's.
    assert ids.device_name(0x10DE, 0x1572) is None
    assert ids.name(0x10DE, 0x1572) == "NVIDIA Corporation Device 1572"
    assert ids.device_name(0x15B3, 0x0000) is None  # last vendor: the classes end it
    assert ids.name(0x1234, 0x5678) is None
    assert PciIds().name(0x8086, 0x1572) is None


def test_name_column_and_show_line(fake_kernel: FakeKernel, fs: FakeFilesystem,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    code, out, _ = run(capsys, "list", "-v")
    assert code == 0 and "ADDRESS       VENDOR:DEV  NAME" in out  # no pci.ids: names are "-"
    fs.create_file("/usr/share/hwdata/pci.ids", contents=PCI_IDS)
    assert load_pci_ids("/").name(0x10DE, 0x1EB8) == "NVIDIA Corporation TU104GL [Tesla T4]"
    code, out, _ = run(capsys, "list", "-v")
    line = next(ln for ln in out.splitlines() if ln.startswith("0000:5e:00.0"))
    assert "NVIDIA Corporation TU104GL [Tesla T4]" in line
    code, plain, _ = run(capsys, "list")
    assert "NAME" not in plain and "NVIDIA" not in plain
    code, out, _ = run(capsys, "show", "0000:5e:00.0")
    assert any(ln.startswith("name") and ln.endswith("NVIDIA Corporation TU104GL [Tesla T4]")
               for ln in out.splitlines())


def test_pci_ids_leading_out_of_the_root_is_ignored(fs: FakeFilesystem) -> None:
    fs.create_file("/elsewhere/pci.ids", contents=PCI_IDS)
    fs.create_dir("/host/usr/share/misc")
    fs.create_symlink("/host/usr/share/misc/pci.ids", "/elsewhere/pci.ids")
    assert load_pci_ids("/host").name(0x8086, 0x1572) is None
    assert load_pci_ids("/").name(0x8086, 0x1572) is None
    fs.create_symlink("/usr/share/misc/pci.ids", "/elsewhere/pci.ids")
    assert load_pci_ids("/").name(0x8086, 0x1572) is not None


# ------------------------------------------------------------------ width


def test_table_shortens_free_text_only() -> None:
    rows = [["ADDRESS", "NAME", "CLASS", "DRIVER"],
            ["0000:01:00.0", "A very long vendor and device name", "Ethernet controller",
             "i40e"]]
    full = table(rows)
    assert len(full[1]) == 75  # nothing cut without a width
    fitted = table(rows, 50, [1, 2])
    assert all(len(line) <= 50 for line in fitted)
    assert fitted[1].startswith("0000:01:00.0  ") and fitted[1].endswith("i40e")
    assert "~" in fitted[1]
    # Too narrow to fit: the free text stops at its minimum, the rest is never cut.
    narrow = table(rows, 10, [1, 2])
    assert "0000:01:00.0" in narrow[1] and narrow[1].endswith("i40e")
    assert table(rows, None, [1, 2]) == full


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return 1


def test_list_fits_a_terminal_and_never_cuts_a_pipe(
        fake_kernel: FakeKernel, fs: FakeFilesystem, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_kernel.load_fixture("two-socket-server")
    fs.create_file("/usr/share/misc/pci.ids", contents=PCI_IDS)
    piped = run(capsys, "list", "-v")[1]
    widest = max(map(len, piped.splitlines()))
    names = [ln for ln in piped.splitlines() if "Tesla T4" in ln]
    assert names  # printed in full to a pipe
    tty = _Tty()
    monkeypatch.setattr("sys.stdout", tty)
    columns = widest - 12
    monkeypatch.setattr(os, "get_terminal_size", lambda fd=1: os.terminal_size((columns, 40)))
    assert main([*STATE, "list", "-v"]) == 0
    lines = tty.getvalue().splitlines()
    assert all(len(line) <= columns for line in lines)
    assert any("~" in ln for ln in lines)  # free text was shortened
    got = {ln.split()[0] for ln in lines if ln.startswith("0000:")}
    assert got == {ln.split()[0] for ln in piped.splitlines() if ln.startswith("0000:")}


# ------------------------------------------------------------------ the fast parse


@pytest.mark.parametrize("argv", [
    ["list"], ["list", "--json"], ["list", "--schema"], ["--root", "/x", "list"],
    ["--root=/x", "--state-dir", "/s", "list", "--json"], ["--no-load-modules", "list"],
    ["list", "-v"], ["list", "-vv", "--verbose"], ["list", "--driver", "vfio-pci"],
    ["list", "--id=8086:1572", "--pf", "3d:00.0", "--numa", "0", "--list", "host",
     "--class", "net", "--json"],
    ["list", "--driver", "a", "--driver", "b"], ["--state-dir=", "list"],
])
def test_fast_parse_equals_argparse(argv: list[str]) -> None:
    fast = fast_list_args(argv)
    assert fast is not None
    assert vars(fast) == vars(build_parser().parse_args(argv))


@pytest.mark.parametrize("argv", [
    [], ["show", "x"], ["list", "--help"], ["list", "--jso"], ["list", "extra"],
    ["list", "--driver"], ["list", "--driver", "--json"], ["--root", "list"],
    ["--release-timeout", "3", "list"], ["list", "--root", "/"], ["-v", "list"],
    ["list", "--", "x"], ["--version"],
])
def test_anything_else_is_left_to_argparse(argv: list[str]) -> None:
    assert fast_list_args(argv) is None


def test_namespace_shapes_agree() -> None:
    fast = fast_list_args(["list"])
    assert fast is not None
    assert set(vars(fast)) == set(vars(build_parser().parse_args(["list"])))
    assert isinstance(build_parser().parse_args(["list"]), argparse.Namespace)


@pytest.mark.parametrize("root", ["/", "//", "///", "", ".", "/x", "/x/", "x/y", "//x"])
def test_state_dir_text_names_the_store_default(root: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from hostdev.state.location import default_state_dir_text
    from hostdev.state.store import default_state_dir

    for euid, runtime in ((0, None), (1000, "/run/user/1000/")):
        monkeypatch.setattr(os, "geteuid", lambda e=euid: e)
        if runtime is not None:
            monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
        text = default_state_dir_text(root)
        assert text is not None
        expected = str(default_state_dir(root))
        # The same file: equal once redundant slashes are dropped.
        assert "/".join(p for p in text.split("/") if p not in ("", ".")) == "/".join(
            p for p in expected.split("/") if p not in ("", "."))
        assert text.startswith("/") == expected.startswith("/")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_state_dir_text(root) is None


def test_a_relative_root_lists_the_same(fake_kernel: FakeKernel,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("two-socket-server")
    os.makedirs("/trees", exist_ok=True)
    os.symlink("/", "/trees/host")

    def addresses(root: str) -> list[str]:
        assert main([*STATE, "--root", root, "list", "--json"]) == 0
        doc = ListOutput.model_validate_json(capsys.readouterr().out)
        return [str(d.address) for d in doc.devices]

    absolute = addresses("/trees/host")
    assert len(absolute) > 10
    os.chdir("/trees")
    try:
        assert addresses("host") == absolute
        assert addresses("./host/") == absolute
    finally:
        os.chdir("/")
