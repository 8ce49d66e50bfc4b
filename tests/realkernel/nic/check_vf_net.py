"""Check hostdev's VF network settings on a real SR-IOV NIC (run by hand, as root).

QEMU has no SR-IOV NIC model, so the real-kernel tier cannot run this; whoever has
such a NIC can::

    sudo .venv/bin/python -m tests.realkernel.nic.check_vf_net --pf ens1f0

It picks one VF of the PF (enabling one VF first if none is, ``--vf`` to choose),
then goes through, comparing what ``ip -d link show PF`` prints with what is
expected at each step:

1. prepare with a MAC and a VLAN: the VF is on vfio-pci and the PF reports them;
2. reattach: the VF is back on its driver and the PF reports the old ones;
3. a prepare killed right after its first netlink write (a crash), then a new
   manager's reconcile(): the old settings and the old driver are back.

Whatever happens, it puts back everything it touched (the VF's settings and
driver, the VF count) and uses a state directory of its own. The whole run is
bounded by ``--time-limit`` seconds. Exit code 0 when every check held.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Any

from hostdev import HostdevManager, HostdevSpec, Owner, VfNetConfig
from hostdev.address import PciAddress
from hostdev.linux import netlink
from hostdev.linux.binding import current_driver

OWNER = Owner(driver="check", domain="vf-net")
GUEST = VfNetConfig(mac="02:68:64:76:00:01", vlan=3001)
#: A child that dies right after the first netlink write of its prepare.
_CRASHING_CHILD = """
import os, sys
from hostdev import HostdevManager, HostdevSpec, Owner, VfNetConfig
from hostdev.linux import netlink
real = netlink.write_vf
def write_then_die(*args, **kwargs):
    real(*args, **kwargs)
    os._exit(9)
netlink.write_vf = write_then_die
state, vf, mac, vlan = sys.argv[1:5]
mgr = HostdevManager(state_dir=state)
mgr.prepare(Owner(driver="check", domain="vf-net"),
            [HostdevSpec(address=vf, net=VfNetConfig(mac=mac, vlan=int(vlan)))])
"""


class CheckFailed(Exception):
    """What ``ip`` or sysfs showed is not what the step expects."""


def ip_vf(pf: str, index: int) -> dict[str, Any]:
    """MAC and VLAN of VF ``index`` as ``ip -d link show PF`` prints them."""
    out = subprocess.run(["ip", "-d", "link", "show", "dev", pf], capture_output=True,
                         text=True, timeout=10, check=True).stdout
    for line in out.splitlines():
        found = re.match(r"\s*vf (\d+)\b.*?(?:link/ether|MAC) ([0-9a-fA-F:]{17})", line)
        if found and int(found.group(1)) == index:
            vlan = re.search(r"\bvlan (\d+)", line)
            return {"mac": found.group(2).lower(), "vlan": int(vlan.group(1)) if vlan else 0}
    raise CheckFailed(f"'ip -d link show {pf}' lists no vf {index}")


def expect(what: str, seen: object, wanted: object) -> None:
    print(f"  {what}: {seen}" + ("" if seen == wanted else f"  (EXPECTED {wanted})"))
    if seen != wanted:
        raise CheckFailed(f"{what}: {seen}, expected {wanted}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pf", required=True, help="the PF's network interface (ens1f0)")
    parser.add_argument("--vf", type=int, default=None, help="VF index (default: the last)")
    parser.add_argument("--time-limit", type=int, default=300, metavar="SECONDS")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root: it moves a VF and sets its MAC and VLAN", file=sys.stderr)
        return 2
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.alarm(args.time_limit)  # a hard bound on the run; the clean-up below still runs
    state = tempfile.mkdtemp(prefix="hostdev-nic-check-")
    mgr = HostdevManager(state_dir=state, release_timeout=10)
    link = os.path.realpath(f"/sys/class/net/{args.pf}/device")
    pf = PciAddress.parse(os.path.basename(link))
    sysfs = mgr.sysfs
    count_before = int(sysfs.read_text(sysfs.device_path(pf, "sriov_numvfs")))
    restore: dict[str, Any] = {}
    vf: PciAddress | None = None
    try:
        if count_before == 0:
            print(f"{pf} has no VFs: enabling 1 for the check")
            mgr.set_num_vfs(pf, 1)
        count = int(sysfs.read_text(sysfs.device_path(pf, "sriov_numvfs")))
        index = count - 1 if args.vf is None else args.vf
        vf = PciAddress.parse(os.path.basename(os.path.realpath(
            sysfs.device_path(pf, f"virtfn{index}"))))
        driver = current_driver(sysfs, vf)
        restore = netlink.read_vf(sysfs, args.pf, index, vf)
        print(f"VF {index} of {args.pf} is {vf}, on {driver or 'no driver'}; its settings:"
              f" {restore}")
        before = ip_vf(args.pf, index)

        print("1. prepare with a MAC and a VLAN")
        mgr.prepare(OWNER, [HostdevSpec(address=vf, net=GUEST)])
        expect("driver", current_driver(sysfs, vf), "vfio-pci")
        expect("ip", ip_vf(args.pf, index), {"mac": GUEST.mac, "vlan": GUEST.vlan})
        expect("drift", mgr.reconcile().net_drift, [])

        print("2. reattach")
        report = mgr.reattach(OWNER, [vf])
        expect("reattach failures", report.failed, [])
        expect("driver", current_driver(sysfs, vf), driver)
        expect("ip", ip_vf(args.pf, index), before)

        print("3. a prepare that dies after its first netlink write, then recovery")
        child = subprocess.run([sys.executable, "-c", _CRASHING_CHILD, state, str(vf),
                                str(GUEST.mac), str(GUEST.vlan)], timeout=60, check=False)
        expect("child exit code", child.returncode, 9)
        expect("ip after the crash (MAC set, VLAN not yet)", ip_vf(args.pf, index),
               {"mac": GUEST.mac, "vlan": before["vlan"]})
        fresh = HostdevManager(state_dir=state, release_timeout=10)
        recovered = fresh.reconcile()
        for line in recovered.recovered:
            print(f"  recovered: {line}")
        expect("recovery failures", recovered.failed, [])
        expect("driver", current_driver(sysfs, vf), driver)
        expect("ip", ip_vf(args.pf, index), before)
        expect("tracked", fresh.lists().find(vf), None)
        print("every check held")
        return 0
    except CheckFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        _put_back(mgr, pf, vf, args.pf, restore, count_before)
        shutil.rmtree(state, ignore_errors=True)


def _out_of_time(signum: int, frame: object) -> None:
    raise CheckFailed("the time limit ran out")


def _put_back(mgr: HostdevManager, pf: PciAddress, vf: PciAddress | None, ifname: str,
              restore: dict[str, Any], count_before: int) -> None:
    """Leave the host as the check found it, whatever failed."""
    sysfs = mgr.sysfs
    try:
        mgr.reconcile()  # finishes a recovery left pending by an interrupted step
        if vf is not None and mgr.lists().find(vf) is not None:
            mgr.reattach(OWNER, [vf])
            if mgr.lists().find(vf) is not None:
                mgr.node_reattach(vf)
        if vf is not None and restore:
            index = _index_of(mgr, pf, vf)
            now = netlink.read_vf(sysfs, ifname, index, vf)
            for field, keys in netlink.WRITE_FIELDS.items():
                if any(now[k] != restore[k] for k in keys):
                    netlink.write_vf(sysfs, ifname, index, field,
                                     {k: restore[k] for k in keys}, vf)
        if int(sysfs.read_text(sysfs.device_path(pf, "sriov_numvfs"))) != count_before:
            mgr.set_num_vfs(pf, count_before)
    except Exception as exc:  # report, never hide the check's own outcome
        print(f"could not put everything back: {exc}", file=sys.stderr)


def _index_of(mgr: HostdevManager, pf: PciAddress, vf: PciAddress) -> int:
    sysfs = mgr.sysfs
    for name in sysfs.list_dir(sysfs.device_dir(pf)):
        if name.startswith("virtfn") and \
                os.path.basename(os.path.realpath(sysfs.device_path(pf, name))) == str(vf):
            return int(name[len("virtfn"):])
    raise CheckFailed(f"{vf} is not a VF of {pf} any more")


if __name__ == "__main__":
    sys.exit(main())
