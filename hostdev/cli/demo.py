"""``hostdev demo``: a narrated walk through the library on a bundled fake host.

Runs entirely inside a pyfakefs filesystem driven by the fake kernel, so it
touches nothing on this machine. Needs the ``testing`` extra (pyfakefs).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hostdev.errors import BadInput, HostdevError

#: The command's entry point, handed over by the dispatcher (``args.rerun``): the demo
#: runs real commands, and importing the entry point from here would be a cycle.
_MAIN: list[Callable[[list[str]], int]] = []

if TYPE_CHECKING:
    from hostdev.testing import HostSpec


def _say(text: str) -> None:
    print(f"\n== {text}")


def _run(argv: list[str]) -> None:
    print(f"$ hostdev {' '.join(argv)}")
    sys.stdout.flush()
    code = _MAIN[0](argv)
    if code:
        print(f"(exit code {code})")


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the walk-through; returns the exit code."""
    _MAIN[:] = [args.rerun]
    try:
        from pyfakefs.fake_filesystem_unittest import Patcher
    except ImportError:
        raise HostdevError(
            "hostdev demo needs pyfakefs: install with 'pip install hostdev[testing]'"
        ) from None
    from hostdev.testing import fixture_names, read_host_spec

    # Found and read before pyfakefs starts: the fixture files are on the real disk.
    known = fixture_names()
    if args.host not in known:
        raise BadInput(f"no demo host {args.host!r}: choose one of {', '.join(known)}"
                       " (--host NAME)")
    spec = read_host_spec(args.host)
    started = time.monotonic()
    with Patcher() as patcher:
        assert patcher.fs is not None
        _walk(patcher.fs, spec)
    print(f"\n(demo finished in {time.monotonic() - started:.1f} s; nothing on this machine"
          " was touched)")
    return 0


def _walk(fs: Any, spec: HostSpec) -> None:
    from hostdev.address import PciAddress
    from hostdev.linux.scan import list_devices
    from hostdev.linux.sysfs import Sysfs
    from hostdev.manager import HostdevManager
    from hostdev.state.records import HostdevSpec, Owner
    from hostdev.testing import FakeKernel

    kernel = FakeKernel(fs)
    kernel.load_spec(spec)
    host = spec.name
    sysfs = Sysfs("/")
    devices = list_devices(sysfs)
    pfs = [d for d in devices if d.sriov is not None and d.driver is not None]
    _say(f"A fake '{host}' host is booted under the fake kernel: {len(devices)} PCI functions")
    _run(["list"])
    if not pfs:
        print("this host has no SR-IOV PF with a driver; the demo stops here")
        return
    pf = pfs[0]
    _say(f"Every fact of the SR-IOV physical function {pf.address}")
    _run(["show", str(pf.address)])

    mgr = HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0.5)
    state = ["--state-dir", "/run/hostdev"]
    _say(f"Enable 4 VFs on {pf.address}: the kernel creates them (through 0 if some exist)")
    _run([*state, "sriov", str(pf.address), "4"])
    vf_list = [d for d in list_devices(sysfs) if d.vf is not None and d.vf.pf == pf.address]
    for vf in vf_list:
        print(f"  {vf.address}  VF {vf.vf.index if vf.vf else '?'}  driver {vf.driver}"
              f"  IOMMU group {vf.iommu_group}")
    vf0, vf1 = vf_list[0].address, vf_list[1].address

    _say(f"Assign VF {vf0} to qemu/vm1 (managed: detach to vfio-pci, then mark active)")
    _run([*state, "assign", "--owner", "qemu/vm1", str(vf0)])
    _say(f"Park VF {vf1} on vfio-pci without an owner (node detach: inactive list)")
    _run([*state, "detach", str(vf1)])
    _run([*state, "show", str(vf0)])

    _say("A second guest asking for the same VF is refused")
    try:
        mgr.prepare(Owner(driver="qemu", domain="vm2"), [HostdevSpec(address=vf0)])
    except HostdevError as exc:
        print(f"  refused: {exc}")
    _say("Changing the VF count would orphan the assigned VF: refused")
    _run([*state, "sriov", str(pf.address), "0"])

    _say("The guest stops: release VF 0 (back to its original driver)")
    _run([*state, "release", "--owner", "qemu/vm1", str(vf0)])

    _net_story(kernel, pf.address, vf_list[2], state)

    _say(f"An operator writes 0 to {pf.address}'s sriov_numvfs behind hostdev's back:"
         f" the parked VF {vf1} vanishes")
    from hostdev.linux import binding

    binding.set_num_vfs(sysfs, pf.address, 0)
    print(f"  {vf1} on the host: {sysfs.device_exists(PciAddress.parse(str(vf1)))};"
          f" still tracked inactive: {any(r.address == vf1 for r in mgr.inactive())}")
    _say("Prune drops the record of the vanished VF, so it never blocks a later start")
    _run([*state, "prune"])
    _say("VFs come back at the same addresses: new devices, not the old records")
    binding.set_num_vfs(sysfs, pf.address, 2)
    _run([*state, "show", str(vf1)])


def _net_story(kernel: Any, pf: Any, dev: Any, state: list[str]) -> None:
    """A NIC VF gets a guest's MAC and VLAN through its PF, and its own back at release."""
    vf, index = dev.address, dev.vf.index
    kernel.add_netdev(pf, "ens1f0")
    kernel.set_vf_net(pf, index, mac="02:00:00:00:be:ef")
    _say(f"The PF's driver brings up ens1f0; an operator gave VF {index} ({vf}) the MAC"
         " 02:00:00:00:be:ef (ip link set ens1f0 vf N mac ...)")
    _run([*state, "show", str(vf)])
    _say(f"Assign {vf} to qemu/vm2 as a network interface: the guest's MAC and VLAN are set"
         " through the PF after the move, the old ones saved in the record")
    _run([*state, "assign", "--owner", "qemu/vm2", str(vf), "--mac", "52:54:00:6b:3c:01",
          "--vlan", "100"])
    _run([*state, "show", str(vf)])
    _say("The guest stops: release puts the saved MAC and VLAN back before the VF goes home")
    _run([*state, "release", "--owner", "qemu/vm2", str(vf)])
    print(f"  VF {index} as ens1f0 reports it now: {kernel.vf_net(pf, index)}")
