"""Benchmark: ``hostdev list --json`` on generated hosts of 64, 512 and 4,096 functions.

Runs under the fake kernel (pyfakefs), in this process; reports the median wall
time of several runs of the command, file reads per device, and whether any
file was read twice. Run on demand: ``python bench/list_json.py [--runs N]``.
Not part of the test suite: timings are never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time
from collections import Counter

from pyfakefs.fake_filesystem_unittest import Patcher

from hostdev.cli import main as hostdev_main
from hostdev.pci import list_devices
from hostdev.sysfs import Sysfs
from hostdev.testing import FakeKernel
from hostdev.testing.hostgen import generate_host_of_size


def measure(functions: int, runs: int) -> dict[str, float]:
    """Build a host of ``functions`` functions and time the listing on it."""
    with Patcher() as patcher:
        assert patcher.fs is not None
        kernel = FakeKernel(patcher.fs)
        started = time.perf_counter()
        kernel.load_spec(generate_host_of_size(functions))
        build = time.perf_counter() - started
        sysfs = Sysfs("/")
        sysfs.stats.trace = []
        devices = list_devices(sysfs)
        assert len(devices) == functions, (len(devices), functions)
        repeated = sum(1 for _, n in Counter(sysfs.stats.trace).items() if n > 1)
        times = []
        for _ in range(runs):
            out = io.StringIO()
            started = time.perf_counter()
            with contextlib.redirect_stdout(out):
                code = hostdev_main(["list", "--json"])
            times.append(time.perf_counter() - started)
            assert code == 0
        return {
            "functions": functions,
            "build_s": build,
            "median_s": statistics.median(times),
            "per_device_us": statistics.median(times) / functions * 1e6,
            "reads_per_device": sysfs.stats.reads / functions,
            "paths_read_twice": repeated,
            "json_bytes": len(out.getvalue()),
        }


def main() -> None:
    """Print one row per host size."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 512, 4096])
    args = parser.parse_args()
    print(f"hostdev list --json under the fake kernel, median of {args.runs} runs")
    print(f"{'functions':>9}  {'median':>9}  {'per dev':>9}  {'reads/dev':>9}  "
          f"{'read twice':>10}  {'JSON':>9}")
    base = None
    for size in args.sizes:
        row = measure(size, args.runs)
        base = base or row["per_device_us"]
        print(f"{row['functions']:>9}  {row['median_s'] * 1000:>7.1f}ms  "
              f"{row['per_device_us']:>7.0f}us  {row['reads_per_device']:>9.1f}  "
              f"{row['paths_read_twice']:>10}  {row['json_bytes'] / 1024:>7.0f}KB")
    print("per-device cost relative to the smallest host is the scaling ratio.")


if __name__ == "__main__":
    main()
