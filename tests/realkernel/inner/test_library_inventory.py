"""The library's inventory on the real kernel: ``hostdev list --json`` and list_devices.

(a) the command's JSON agrees with a shell-level read of sysfs, VFs included;
(b) VFs created and removed through ``sriov_numvfs`` show up (with PF and index) and go.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

from hostdev.errors import DeviceNotFound
from hostdev.linux.scan import list_devices, read_device
from hostdev.linux.sysfs import Sysfs

from . import guest
from .guest import dev
from .observing import Observer

pytestmark = pytest.mark.realkernel

#: Reads every PCI function with plain shell tools: attribute files with the shell's
#: ``read`` builtin, every symlink with one ``ls -l`` (each exec is slow under TCG).
SHELL_READ = r"""
cd /sys/bus/pci/devices || exit 1
for d in *; do
  read -r v < "$d/vendor"; read -r dv < "$d/device"; read -r c < "$d/class"
  read -r sv < "$d/subsystem_vendor"; read -r sd < "$d/subsystem_device"
  read -r r < "$d/revision"; read -r o < "$d/driver_override"; read -r p < "$d/power_state"
  n=-
  if [ -e "$d/sriov_numvfs" ]; then
    read -r nv < "$d/sriov_numvfs"; read -r t < "$d/sriov_totalvfs"; n="$nv/$t"
  fi
  m=-
  if [ -e "$d/reset_method" ]; then m=; read -r m < "$d/reset_method" || true; fi
  echo "dev $d $v $dv $c $sv $sd $r $o $p $n $m"
done
ls -l /sys/bus/pci/devices/ */driver */iommu_group */physfn */virtfn* 2>/dev/null || true
echo "drivers" $(ls /sys/bus/pci/drivers)
"""
_LINK = re.compile(r"(\S+) -> (\S+)$")


def _shell_inventory() -> dict[str, Any]:
    """Run SHELL_READ in /bin/sh and parse its lines."""
    out = subprocess.run(["/bin/sh", "-c", SHELL_READ], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    devices: dict[str, dict[str, Any]] = {}
    drivers: list[str] = []
    for line in out.splitlines():
        if line.startswith("dev "):
            (_, addr, vendor, device, cls, svendor, sdevice, rev, override, power, sriov,
             *methods) = line.split()
            devices[addr] = {
                "vendor": vendor, "device": device, "class": cls,
                "subsystem_vendor": svendor, "subsystem_device": sdevice, "revision": rev,
                "driver_override": None if override == "(null)" else override,
                "power_state": power,
                "sriov": None if sriov == "-" else tuple(int(x) for x in sriov.split("/")),
                "reset_methods": None if methods == ["-"] else methods,
                "driver": None, "iommu_group": None, "pf": None, "parent": None, "virtfn": {},
            }
        elif line.startswith("drivers"):
            drivers = sorted(line.split()[1:])
    for line in out.splitlines():
        found = _LINK.search(line)
        if found is None:
            continue
        name, target = found.groups()
        last = target.rsplit("/", 1)[-1]
        if "/" not in name:  # an entry of /sys/bus/pci/devices
            devices[name]["parent"] = target.rsplit("/", 2)[-2]
            continue
        addr, attr = name.split("/", 1)
        if attr == "driver":
            devices[addr]["driver"] = last
        elif attr == "iommu_group":
            devices[addr]["iommu_group"] = int(last)
        elif attr == "physfn":
            devices[addr]["pf"] = last
        elif attr.startswith("virtfn"):
            devices[addr]["virtfn"][int(attr[6:])] = last
    return {"devices": devices, "drivers": drivers}


def _cli_list(state_dir: str) -> dict[str, Any]:
    """Run ``python -m hostdev.cli.main list --json`` as a separate process."""
    proc = subprocess.run(
        [sys.executable, "-m", "hostdev.cli.main", "--state-dir", state_dir, "list", "--json"],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"hostdev list --json failed: {proc.stderr}"
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def test_cli_list_json_matches_shell_read(pf: str, observe: Observer, tmp_path: Any) -> None:
    """(a) Addresses, ids, class, driver, override, group and VFs agree with sysfs."""
    vfs = guest.enable_vfs(2, autoprobe=False)
    guest.must(dev(vfs[1]) / "driver_override", "vfio-pci")  # one override to compare
    shell = _shell_inventory()
    doc = _cli_list(str(tmp_path / "state"))
    listed = {d["address"]: d for d in doc["devices"]}
    truth = shell["devices"]
    assert sorted(listed) == sorted(truth), "addresses differ"
    for addr, want in truth.items():
        got = listed[addr]
        assert f"0x{got['vendor']}" == want["vendor"], addr
        assert f"0x{got['device']}" == want["device"], addr
        assert f"0x{got['class_code']}" == want["class"], addr
        assert got["driver"] == want["driver"], addr
        assert got["driver_override"] == want["driver_override"], addr
        assert got["iommu_group"] == want["iommu_group"], addr
        assert got["reset_methods"] == want["reset_methods"], addr
        assert got["list"] == "host", addr
        if want["iommu_group"] is not None:
            members = sorted(a for a, d in truth.items() if d["iommu_group"] == want["iommu_group"])
            assert got["iommu_group_members"] == members, addr
        if want["sriov"] is not None:
            numvfs, total = want["sriov"]
            assert got["sriov"]["numvfs"] == numvfs and got["sriov"]["totalvfs"] == total, addr
            assert got["sriov"]["vfs"] == [want["virtfn"][i] for i in sorted(want["virtfn"])]
        else:
            assert got["sriov"] is None, addr
        if want["pf"] is not None:
            index = next(i for i, v in truth[want["pf"]]["virtfn"].items() if v == addr)
            assert got["vf"] == {"pf": want["pf"], "index": index}, addr
        else:
            assert got["vf"] is None, addr
    assert listed[pf]["sriov"]["vfs"] == vfs
    assert [listed[v]["vf"]["index"] for v in vfs] == [0, 1]
    assert listed[vfs[1]]["driver_override"] == "vfio-pci"
    observe.record("guest PCI layout (shell read, 2 VFs, autoprobe 0)", shell,
                   "for comparing fixtures/sysfs/qemu-guest.toml with the real guest")


def test_list_devices_follows_numvfs(pf: str, observe: Observer) -> None:
    """(b) list_devices shows new VFs with their PF and index; after numvfs 0 they are gone."""
    sysfs = Sysfs("/")
    before = {d.address for d in list_devices(sysfs)}
    vfs = guest.enable_vfs(2, autoprobe=False)
    devices = {str(d.address): d for d in list_devices(sysfs)}
    assert set(devices) == {str(a) for a in before} | set(vfs)
    pf_dev = devices[pf]
    assert pf_dev.sriov is not None
    assert (pf_dev.sriov.numvfs, pf_dev.sriov.totalvfs) == (2, 4)
    assert [str(v) for v in pf_dev.sriov.vfs] == vfs
    for index, vf in enumerate(vfs):
        d = devices[vf]
        assert d.vf is not None and str(d.vf.pf) == pf and d.vf.index == index
        assert d.is_vf and not d.is_pf
        assert (d.vendor, d.device) == (0x1B36, 0x0010)
        assert d.driver is None and d.driver_override is None
        assert d.iommu_group == int(guest.group_of(vf) or -1)
        assert [str(m) for m in d.iommu_group_members] == [vf]
        single = read_device(sysfs, vf)  # index from offset/stride, checked against virtfnN
        assert single.vf is not None and single.vf.index == index
    observe.record("library view of the VFs", {v: [str(info.pf), info.index] for v in vfs
                                               if (info := devices[v].vf) is not None})
    guest.must(dev(pf) / "sriov_numvfs", "0")
    after = {str(d.address): d for d in list_devices(sysfs)}
    assert not set(vfs) & set(after)
    sriov = after[pf].sriov
    assert sriov is not None and (sriov.numvfs, sriov.vfs) == (0, [])
    for vf in vfs:
        with pytest.raises(DeviceNotFound):
            read_device(sysfs, vf)
