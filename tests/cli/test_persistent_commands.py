"""``--persistent``, ``hostdev boot``, ``hostdev wishes`` and ``hostdev install-units``."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from pathlib import Path

import jsonschema
import pytest
from pyfakefs.helpers import set_uid

from hostdev.cli.documents import json_schema
from hostdev.cli.main import main
from hostdev.testing import FakeKernel
from tests.smallhost import GPU, NIC, NVME, PF, build_host

GLOBAL = ["--state-dir", "/run/hostdev", "--no-load-modules"]
DATA = Path(__file__).resolve().parents[2] / "hostdev" / "data"
ROOT_UID = os.getuid()  # the real one (pyfakefs takes it as its first uid)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([*GLOBAL, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_persistent_setup_survives_a_reboot(fake_kernel: FakeKernel,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    build_host(fake_kernel)
    assert run(capsys, "sriov", str(PF), "2", "--persistent")[1] == \
        f"{PF}: 0 -> 2 VFs (persistent)\n"
    assert run(capsys, "detach", "--persistent", str(NIC))[1] == \
        f"{NIC}: detached to vfio-pci (persistent)\n"
    code, out, _ = run(capsys, "wishes")
    assert out == f"{PF}: 2 VFs (8086:10fb)\n{NIC}: on vfio-pci (8086:10d3)\n"
    # Reboot: the NIC back on e1000e, no VFs, no state.
    assert run(capsys, "reattach", str(NIC))[0] == 0
    assert run(capsys, "sriov", str(PF), "0")[0] == 0
    shutil.rmtree("/run/hostdev")
    code, out, err = run(capsys, "boot")
    assert (code, err) == (0, "")
    assert out.splitlines() == [f"{PF}: 2 VFs: done: 0 -> 2 VFs",
                                f"{NIC}: on vfio-pci: done: detached to vfio-pci, tracked"
                                " inactive",
                                "2 applied, 0 already so, 0 not present, 0 failed"]
    code, out, _ = run(capsys, "boot")
    assert code == 0 and out.splitlines()[-1] == \
        "nothing to do: the host already matches every wish it can"
    code, out, _ = run(capsys, "boot", "--json")
    doc = json.loads(out)
    assert [o["address"] for o in doc["already"]] == [str(PF), str(NIC)] and doc["done"] == []


def test_boot_exits_1_when_a_wish_fails_and_0_when_a_device_is_missing(
        fake_kernel: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    build_host(fake_kernel)
    run(capsys, "detach", "--persistent", str(NVME), str(GPU))
    run(capsys, "reattach", str(NVME), str(GPU))
    fake_kernel.remove_device(GPU)
    code, out, _ = run(capsys, "boot", "--only", str(GPU))
    assert code == 0 and f"{GPU}: on vfio-pci: not present: not on this host" in out
    fake_kernel.add_block(NVME, "nvme0n1")
    fake_kernel.add_swap("nvme0n1")
    code, out, _ = run(capsys, "boot")
    assert code == 1
    assert f"{NVME}: on vfio-pci: FAILED: " in out and "swap" in out


def test_reattach_persistent_drops_the_wish(fake_kernel: FakeKernel,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    build_host(fake_kernel)
    run(capsys, "detach", "--persistent", str(NIC))
    run(capsys, "sriov", "--persistent", str(PF), "3")
    assert run(capsys, "reattach", "--persistent", str(NIC))[1] == \
        f"{NIC}: reattached to e1000e\n"
    assert run(capsys, "sriov", "--persistent", str(PF), "0")[1] == \
        f"{PF}: 3 -> 0 VFs (persistent VF count dropped)\n"
    assert run(capsys, "wishes")[1] == "no persistent wishes\n"
    assert run(capsys, "boot")[1] == "no persistent wish to apply\n"


def test_config_dir_option_and_corrupt_file(fake_kernel: FakeKernel,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    build_host(fake_kernel)
    assert run(capsys, "--config-dir", "/cfg", "detach", "--persistent", str(NIC))[0] == 0
    assert Path("/cfg/wishes.json").exists() and not Path("/etc/hostdev").exists()
    Path("/cfg/wishes.json").write_text("{")
    code, out, err = run(capsys, "--config-dir", "/cfg", "boot")
    assert code == 2 and out == ""
    assert err == ("hostdev: wishes file /cfg/wishes.json is not valid JSON (truncated or"
                   " damaged); it was left as it is: move it aside\n")


def test_user_lists_roots_wishes(fake_kernel: FakeKernel, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A user reads root's wishes (without a state directory of their own), is told to
    run as root when root's modes keep them out, and never changes them."""
    build_host(fake_kernel)
    run(capsys, "detach", "--persistent", str(NIC))
    os.makedirs("/run/user/1000", mode=0o700)
    os.chown("/run/user/1000", 1000, 1000)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    set_uid(1000)
    try:
        assert main(["wishes"]) == 0
        assert capsys.readouterr() == (f"{NIC}: on vfio-pci (8086:10d3)\n", "")
        assert main(["wishes", "--json"]) == 0
        assert [w["device"]["address"] for w in json.loads(capsys.readouterr().out)["detach"]] \
            == [str(NIC)]
        code = main(["--state-dir", "/run/user/1000/hostdev", "detach", "--persistent",
                     str(GPU)])
        assert (code, capsys.readouterr().err) == (2, (
            "hostdev: configuration directory /etc/hostdev is owned by uid 0, not by uid 1000"
            " running hostdev; use a directory of your own (--config-dir)\n"))
        set_uid(0)
        os.chmod("/etc/hostdev/wishes.json", 0o600)
        set_uid(1000)
        assert main(["wishes"]) == 2
        assert capsys.readouterr() == ("", "hostdev: wishes file /etc/hostdev/wishes.json"
                                       " cannot be opened: Permission denied; run hostdev as"
                                       " root\n")
    finally:
        set_uid(ROOT_UID)
    assert run(capsys, "wishes")[1] == f"{NIC}: on vfio-pci (8086:10d3)\n"


def test_install_units_writes_the_shipped_files(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["install-units", "--root", str(tmp_path), "--command", "/usr/bin/hostdev"])
    out = capsys.readouterr().out
    assert code == 0 and "systemctl enable hostdev-boot.service" in out
    units = tmp_path / "etc/systemd/system"
    boot, apply, apply_vfs = (units / "hostdev-boot.service", units / "hostdev-apply@.service",
                              units / "hostdev-apply-vfs@.service")
    rule = tmp_path / "etc/udev/rules.d/90-hostdev.rules"
    for path in (boot, apply, apply_vfs, rule):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
        assert re.search(r"@[A-Z_]+@", path.read_text()) is None, path  # all filled in
    text = boot.read_text()
    assert "ExecStart=/usr/bin/hostdev boot\n" in text
    assert "ConditionPathExists=/etc/hostdev/wishes.json" in text
    assert "Before=network-pre.target libvirtd.service" in text
    assert "WantedBy=sysinit.target" in text
    # A device that appears gets its own wishes; a PF whose driver binds, its VF count.
    assert "ExecStart=/usr/bin/hostdev boot --only %I\n" in apply.read_text()
    assert "ExecStart=/usr/bin/hostdev boot --only %I --vf-counts-only\n" in \
        apply_vfs.read_text()
    lines = [ln for ln in rule.read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines == [
        'ACTION=="add", SUBSYSTEM=="pci", TEST=="/etc/hostdev/wishes.json",'
        ' TAG+="systemd", ENV{SYSTEMD_WANTS}+="hostdev-apply@%k.service"',
        'ACTION=="bind", SUBSYSTEM=="pci", TEST=="/etc/hostdev/wishes.json",'
        ' RUN+="/usr/bin/systemctl --no-block start hostdev-apply-vfs@%k.service"']
    # Again, with another configuration directory: replaced, not appended.
    main(["--config-dir", "/srv/hd", "install-units", "--root", str(tmp_path),
          "--command", "/opt/hd/bin/hostdev"])
    assert "ExecStart=/opt/hd/bin/hostdev --config-dir /srv/hd boot\n" in boot.read_text()
    assert "/opt/hd/bin/hostdev --config-dir /srv/hd boot --only %I\n" in apply.read_text()
    assert 'TEST=="/srv/hd/wishes.json"' in rule.read_text()
    assert sorted(p.name for p in rule.parent.iterdir()) == ["90-hostdev.rules"]
    capsys.readouterr()
    assert main(["install-units", "--root", str(tmp_path), "--command", "/usr/bin/hostdev",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, json_schema("units"))
    assert doc["schema"] == "hostdev.units/1"
    assert doc["written"] == [str(boot), str(apply), str(apply_vfs), str(rule)]
    assert doc["next_step"].startswith("systemctl daemon-reload")


@pytest.mark.parametrize("argv, message", [
    (["--command", "hostdev"], "must be an absolute path"),
    (["--command", "/opt/100%/hostdev"], "without blanks, quotes"),
    (["--command", "/opt/$HOME/hostdev"], "without blanks, quotes"),
    (["--command", "/x/hostdev", "--root", "/nonexistent/dir"], "is not a directory"),
])
def test_install_units_bad_input(argv: list[str], message: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["install-units", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


@pytest.mark.parametrize("argv", [
    ["--command", "/usr/bin/host\rdev"], ["--command", "/usr/bin/host\x00dev"],
    ["--command", "/usr/bin/host\x1bdev"], ["--config-dir", "/etc/host\u2028dev"]])
def test_install_units_refuses_control_characters(argv: list[str], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """They were written into ExecStart= and RUN+= as they were (systemd ends a line at a
    carriage return or a NUL too), exit 0."""
    before = argv[:2] if argv[0] == "--config-dir" else []
    after = [] if before else argv
    code = main([*before, "install-units", "--root", str(tmp_path),
                 *(after or ["--command", "/usr/bin/hostdev"])])
    err = capsys.readouterr().err
    assert code == 2 and "control characters" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_shipped_files_are_package_data() -> None:
    from importlib import resources

    names = {p.name for p in resources.files("hostdev").joinpath("data").iterdir()}
    assert {"hostdev-boot.service", "90-hostdev.rules"} <= names
    assert (DATA / "hostdev-boot.service").is_file()
