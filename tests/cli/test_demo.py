"""``hostdev demo`` runs the whole story on a fake host and touches nothing real."""

from __future__ import annotations

import subprocess
import sys


def test_demo_tells_the_whole_story() -> None:
    done = subprocess.run([sys.executable, "-m", "hostdev.cli.main", "demo"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for step in ("booted under the fake kernel", "sriov 0000:3d:00.0 4",
                 "assigned to driver qemu, domain vm1 on vfio-pci", "detached to vfio-pci",
                 "refused: PCI device 0000:3d:02.0 is in use by driver qemu, domain vm1",
                 "0000:3d:02.0: given back to the host",
                 "vf network       VF 2 of ens1f0: mac 02:00:00:00:be:ef, vlan 0",
                 "network settings mac 52:54:00:6b:3c:01 vlan 100 qos 0",
                 "vf network       VF 2 of ens1f0: mac 52:54:00:6b:3c:01, vlan 100",
                 "VF 2 as ens1f0 reports it now: {'mac': '02:00:00:00:be:ef', 'vlan': 0,",
                 "still tracked inactive: True", "0000:3d:02.1: pruned",
                 "nothing on this machine was touched"):
        assert step in out, f"demo output lacks {step!r}"
    assert "cannot change the VF count" in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_unknown_host_is_one_line_with_the_real_names() -> None:
    from hostdev.testing import fixture_names

    done = subprocess.run([sys.executable, "-m", "hostdev.cli.main", "demo", "--host", "nope"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and done.stdout == ""
    names = fixture_names()
    assert {"two-socket-server", "qemu-guest", "libvirt-mock", "vmd-workstation"} <= set(names)
    assert done.stderr == (f"hostdev: no demo host 'nope': choose one of {', '.join(names)}"
                           " (--host NAME)\n")


def test_fixture_names_are_known_inside_pyfakefs(fs: object) -> None:
    from hostdev.testing import fixture_names

    # The hosts directory is on the real disk, which pyfakefs hides: the names found
    # outside it are still given (the demo's and read_host_spec's messages use them).
    assert "two-socket-server" in fixture_names()
