"""Benchmark: manager cost against the number of tracked devices, and batch size.

1. prepare + reattach of one device with 16 and with 4,096 devices already tracked
   (the ratio should be near 1: lookups are by address);
2. a batch prepare of 256 VFs and its reattach: time, kernel writes, state writes.

Runs under the fake kernel (pyfakefs). The tracked records of part 1 are
written straight into the state file (inactive records in a PCI domain the host
does not have), since only their number matters. Run on demand:
``python bench/manager_scaling.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

from pyfakefs.fake_filesystem_unittest import Patcher

from hostdev.address import PciAddress
from hostdev.manager import HostdevManager
from hostdev.records import DeviceRecord, HostdevSpec, Owner
from hostdev.state import Lists, StateStore
from hostdev.testing import FakeKernel
from hostdev.testing.hostgen import generate_host

OWNER = Owner(driver="qemu", domain="bench")


def _filler(count: int) -> Lists:
    records = {}
    for i in range(count):
        addr = PciAddress(0xBEEF, (i >> 8) & 0xFF, (i >> 3) & 0x1F, i & 7)
        records[addr] = DeviceRecord(address=addr, vendor=0x8086, device=0x1889,
                                     original_driver="iavf", unbind_from_stub=True,
                                     generation=i)
    return Lists({}, records)


def one_device(tracked: int, runs: int) -> float:
    """Median seconds of prepare + reattach of one VF with ``tracked`` records present."""
    with Patcher() as patcher:
        assert patcher.fs is not None
        FakeKernel(patcher.fs).load_spec(generate_host(1, 4))
        store = StateStore("/run/hostdev")
        with store.locked():
            store.save(_filler(tracked))
        mgr = HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0)
        vf = _vfs(mgr)[0]
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            mgr.prepare(OWNER, [HostdevSpec(address=vf)])
            report = mgr.reattach(OWNER, [vf])
            times.append(time.perf_counter() - started)
            assert report.reattached == [vf]
        return statistics.median(times)


def _vfs(mgr: HostdevManager) -> list[PciAddress]:
    from hostdev.pci import list_devices

    return [d.address for d in list_devices(mgr.sysfs) if d.vf is not None]


def batch(vfs: int) -> dict[str, float]:
    """Prepare then reattach ``vfs`` VFs in one call each."""
    with Patcher() as patcher:
        assert patcher.fs is not None
        kernel = FakeKernel(patcher.fs)
        kernel.load_spec(generate_host(1, vfs))
        mgr = HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0)
        addrs = _vfs(mgr)
        assert len(addrs) == vfs
        writes0, saves0 = len(kernel.writes), mgr.store.saves
        started = time.perf_counter()
        mgr.prepare(OWNER, [HostdevSpec(address=a) for a in addrs])
        prep = time.perf_counter() - started
        writes1, saves1 = len(kernel.writes), mgr.store.saves
        started = time.perf_counter()
        report = mgr.reattach(OWNER, addrs)
        reat = time.perf_counter() - started
        assert len(report.reattached) == vfs
        return {"prepare_s": prep, "prepare_writes": writes1 - writes0,
                "prepare_saves": saves1 - saves0, "reattach_s": reat,
                "reattach_writes": len(kernel.writes) - writes1,
                "reattach_saves": mgr.store.saves - saves1}


def main() -> None:
    """Print both parts."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    small, large = one_device(16, args.runs), one_device(4096, args.runs)
    print(f"prepare + reattach of one VF, median of {args.runs}:")
    print(f"  16 tracked:   {small * 1000:7.2f} ms")
    print(f"  4096 tracked: {large * 1000:7.2f} ms   ratio {large / small:.2f}")
    row = batch(256)
    print("batch of 256 VFs:")
    print(f"  prepare  {row['prepare_s'] * 1000:8.1f} ms, {row['prepare_writes']:.0f} kernel"
          f" writes, {row['prepare_saves']:.0f} state write(s)")
    print(f"  reattach {row['reattach_s'] * 1000:8.1f} ms, {row['reattach_writes']:.0f} kernel"
          f" writes, {row['reattach_saves']:.0f} state write(s)")


if __name__ == "__main__":
    main()
