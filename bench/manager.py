"""Manager scaling under the fake kernel (pyfakefs, in this process).

1. prepare + reattach of one VF with 16, 256 and 4,096 devices already tracked
   (lookups are by address, the state file is written once per transaction:
   the cost should not grow with the number tracked);
2. a batch prepare of 256 VFs and its reattach: time, kernel writes, state writes;
3. on hosts of 512, 1,024 and 2,048 VFs (256 per PF), every VF prepared for one
   owner, then one PF's VFs go from 256 to 0 behind the manager's back:
   ``prune_missing()`` (drops the 256 records) and then ``reconcile()``, with their
   time per tracked record (linear in the host size means a flat cost per record).

The tracked records of part 1 are written straight into the state file (inactive
records in a PCI domain the host does not have), since only their number matters.
Absolute times are those of pyfakefs, whose every file operation costs tens to
hundreds of microseconds: compare the ratios. Run ``python bench/manager.py``
(a table) or ``--json`` (what bench/run.py reads).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from pyfakefs.fake_filesystem_unittest import Patcher

from hostdev.address import PciAddress
from hostdev.linux.scan import list_devices
from hostdev.manager import HostdevManager
from hostdev.state.lists import Lists
from hostdev.state.records import DeviceRecord, HostdevSpec, Owner
from hostdev.state.store import StateStore
from hostdev.testing import FakeKernel
from hostdev.testing.hostgen import generate_host

OWNER = Owner(driver="qemu", domain="bench")
STATE = "/run/hostdev"


def _filler(count: int) -> Lists:
    records = {}
    for i in range(count):
        addr = PciAddress(0xBEEF, (i >> 8) & 0xFF, (i >> 3) & 0x1F, i & 7)
        records[addr] = DeviceRecord(address=addr, vendor=0x8086, device=0x1889,
                                     original_driver="iavf", unbind_from_stub=True,
                                     identity=i)
    return Lists({}, records)


def _vfs(mgr: HostdevManager) -> list[PciAddress]:
    return [d.address for d in list_devices(mgr.sysfs) if d.vf is not None]


def one_device(tracked: int, runs: int) -> dict[str, Any]:
    """prepare + reattach of one VF with ``tracked`` records present."""
    with Patcher() as patcher:
        assert patcher.fs is not None
        kernel = FakeKernel(patcher.fs)
        kernel.load_spec(generate_host(1, 4))
        store = StateStore(STATE)
        with store.locked():
            store.save(_filler(tracked))
        mgr = HostdevManager(root="/", state_dir=STATE, release_timeout=0)
        vf = _vfs(mgr)[0]
        times, writes, saves = [], [], []
        for _ in range(runs + 1):  # the first cycle warms caches and is not counted
            w0, s0 = len(kernel.writes), mgr.store.saves
            started = time.perf_counter()
            mgr.prepare(OWNER, [HostdevSpec(address=vf)])
            report = mgr.reattach(OWNER, [vf])
            times.append(time.perf_counter() - started)
            writes.append(len(kernel.writes) - w0)
            saves.append(mgr.store.saves - s0)
            assert report.reattached == [vf], report
        return {"tracked": tracked, "times": times[1:], "median_s": statistics.median(times[1:]),
                "kernel_writes": writes[-1], "state_writes": saves[-1]}


def batch(vfs: int) -> dict[str, Any]:
    """Prepare then reattach ``vfs`` VFs in one call each."""
    with Patcher() as patcher:
        assert patcher.fs is not None
        kernel = FakeKernel(patcher.fs)
        kernel.load_spec(generate_host(1, vfs))
        mgr = HostdevManager(root="/", state_dir=STATE, release_timeout=0)
        addrs = _vfs(mgr)
        assert len(addrs) == vfs
        w0, s0 = len(kernel.writes), mgr.store.saves
        started = time.perf_counter()
        mgr.prepare(OWNER, [HostdevSpec(address=a) for a in addrs])
        prep = time.perf_counter() - started
        w1, s1 = len(kernel.writes), mgr.store.saves
        started = time.perf_counter()
        report = mgr.reattach(OWNER, addrs)
        reat = time.perf_counter() - started
        assert len(report.reattached) == vfs, report
        return {"vfs": vfs, "prepare_s": prep, "prepare_writes": w1 - w0,
                "prepare_saves": s1 - s0, "reattach_s": reat,
                "reattach_writes": len(kernel.writes) - w1,
                "reattach_saves": mgr.store.saves - s1}


def prune_reconcile(total_vfs: int) -> dict[str, Any]:
    """Every VF of a ``total_vfs`` host tracked; PF 0 drops its 256 VFs; prune, reconcile."""
    with Patcher() as patcher:
        assert patcher.fs is not None
        kernel = FakeKernel(patcher.fs)
        kernel.load_spec(generate_host(total_vfs // 256, 256))
        mgr = HostdevManager(root="/", state_dir=STATE, release_timeout=0)
        addrs = _vfs(mgr)
        assert len(addrs) == total_vfs
        functions = len(kernel.addresses())
        started = time.perf_counter()
        mgr.prepare(OWNER, [HostdevSpec(address=a) for a in addrs])
        prepare_s = time.perf_counter() - started
        pf = next(d.address for d in list_devices(mgr.sysfs) if d.sriov is not None)
        # Behind the manager's back, as an admin's `echo 0 > sriov_numvfs` would.
        mgr.sysfs.write(mgr.sysfs.device_path(pf, "sriov_numvfs"), "0\n")
        w0, s0 = len(kernel.writes), mgr.store.saves
        started = time.perf_counter()
        pruned = mgr.prune_missing()
        prune_s = time.perf_counter() - started
        w1, s1 = len(kernel.writes), mgr.store.saves
        started = time.perf_counter()
        report = mgr.reconcile()
        reconcile_s = time.perf_counter() - started
        assert len(pruned) == 256 and not report.pruned, (len(pruned), report)
        return {"vfs": total_vfs, "functions": functions,
                "prepare_s": prepare_s, "prune_s": prune_s, "pruned": len(pruned),
                "prune_kernel_writes": w1 - w0, "prune_saves": s1 - s0,
                "reconcile_s": reconcile_s, "reconciled": total_vfs - 256,
                "reconcile_kernel_writes": len(kernel.writes) - w1,
                "reconcile_saves": mgr.store.saves - s1}


def measure(runs: int, sizes: list[int]) -> dict[str, Any]:
    """All three parts."""
    return {
        "one_device": [one_device(n, runs) for n in (16, 256, 4096)],
        "batch": batch(256),
        "prune_reconcile": [prune_reconcile(n) for n in sizes],
    }


def main() -> int:
    """Print the results (``--json``: as JSON for bench/run.py)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048],
                        help="host sizes in VFs (multiples of 256) for prune/reconcile")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data = measure(args.runs, args.sizes)
    if args.json:
        json.dump(data, sys.stdout)
        return 0
    base = data["one_device"][0]["median_s"]
    for row in data["one_device"]:
        print(f"prepare+reattach, {row['tracked']:5} tracked: {row['median_s'] * 1e3:7.1f} ms"
              f" (x{row['median_s'] / base:.2f}), {row['kernel_writes']} kernel writes,"
              f" {row['state_writes']} state writes")
    b = data["batch"]
    print(f"batch of {b['vfs']} VFs: prepare {b['prepare_s'] * 1e3:.0f} ms,"
          f" {b['prepare_writes']} kernel writes, {b['prepare_saves']} state write(s);"
          f" reattach {b['reattach_s'] * 1e3:.0f} ms, {b['reattach_writes']} kernel writes,"
          f" {b['reattach_saves']} state write(s)")
    for row in data["prune_reconcile"]:
        kept = row["vfs"] - row["pruned"]
        print(f"{row['vfs']} VFs: prune {row['prune_s'] * 1e3:.0f} ms"
              f" ({row['pruned']} pruned, {row['prune_saves']} state write,"
              f" {row['prune_s'] / kept * 1e6:.0f} us per record kept),"
              f" reconcile {row['reconcile_s'] * 1e3:.0f} ms"
              f" ({row['reconcile_s'] / row['reconciled'] * 1e6:.0f} us per record)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
