"""Real-kernel benchmark, run INSIDE the QEMU guest by bench/run.py (never on a host).

1. node detach + node reattach of an NVMe VF through the library
   (``HostdevManager.node_detach`` then ``node_reattach``), against the very writes
   the library made, replayed by a minimal shell script (``printf > file`` per
   write, run by ``sh``) and by bare ``os.write`` calls from this process. Rounds
   alternate library and shell, so each ratio compares neighbouring runs.
2. ``hostdev list`` and ``lspci -D`` as fresh processes, interleaved.

The VF is created with ``sriov_drivers_autoprobe`` 0, so no driver takes it and
every cycle starts and ends with it unbound (nvme would bind an unprovisioned VF
and drop it half a second later). Writes to /sys happen only after the checks of
``tests.realkernel.inner.guest.in_guest`` pass. Results go to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import child_env, peak_rss_kib, run_once


def _must_be_guest() -> None:
    from tests.realkernel.inner import guest

    reason = guest.not_in_guest_reason()
    if reason is not None:
        raise SystemExit(f"realkernel_guest.py: refusing to run: {reason}")


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _driver(addr: str) -> str | None:
    try:
        return os.readlink(f"/sys/bus/pci/devices/{addr}/driver").rsplit("/", 1)[-1]
    except OSError:
        return None


def _make_vf(pf: str) -> str:
    base = f"/sys/bus/pci/devices/{pf}"
    _write(f"{base}/sriov_numvfs", "0")
    _write(f"{base}/sriov_drivers_autoprobe", "0")
    _write(f"{base}/sriov_numvfs", "1")
    vf = os.readlink(f"{base}/virtfn0").rsplit("/", 1)[-1]
    if _driver(vf) is not None:
        raise SystemExit(f"VF {vf} got bound to {_driver(vf)} despite autoprobe 0")
    return vf


def _shell_script(writes: list[tuple[str, str]], path: Path) -> None:
    lines = ["#!/bin/sh", "set -e"]
    for target, value in writes:
        quoted = value.replace("'", "'\\''")
        lines.append(f"printf '%s' '{quoted}' > {target}")
    path.write_text("\n".join(lines) + "\n")


def node_cycle(runs: int, profiler: Any = None) -> dict[str, object]:
    """Library vs shell vs bare writes for node detach + node reattach of one VF."""
    from hostdev.manager import HostdevManager

    pf = "0000:01:00.0"
    vf = _make_vf(pf)
    state = tempfile.mkdtemp(prefix="hostdev-bench-")
    mgr = HostdevManager(root="/", state_dir=state, release_timeout=5.0)

    def library(profile: bool = True) -> float:
        if profile and profiler is not None:
            profiler.enable()
        started = time.perf_counter()
        mgr.node_detach(vf)
        mgr.node_reattach(vf)
        elapsed = time.perf_counter() - started
        if profile and profiler is not None:
            profiler.disable()
        return elapsed

    library(profile=False)  # warm-up: imports, first holder scan
    mgr.sysfs.stats.written.clear()
    library(profile=False)  # records the writes
    writes = [(path, value) for path, value in mgr.sysfs.stats.written]
    assert _driver(vf) is None, _driver(vf)
    script = Path(state) / "cycle.sh"
    _shell_script(writes, script)
    env = child_env()

    def shell() -> float:
        wall, status = run_once(["/bin/sh", str(script)], env)
        if status != 0:
            raise SystemExit(f"shell replay failed with {status}: {script.read_text()}")
        return wall

    def bare() -> float:
        started = time.perf_counter()
        for path, value in writes:
            _write(path, value)
        return time.perf_counter() - started

    shell()
    sh_start = [run_once(["/bin/sh", "-c", ":"], env)[0] for _ in range(runs)]
    lib_t, sh_t, bare_t = [], [], []
    for _ in range(runs):
        lib_t.append(library())
        sh_t.append(shell())
        bare_t.append(bare())
        if _driver(vf) is not None:
            raise SystemExit(f"VF left on {_driver(vf)} after a cycle")
    _write(f"/sys/bus/pci/devices/{pf}/sriov_numvfs", "0")
    return {
        "vf": vf, "writes": writes, "library_s": lib_t, "shell_s": sh_t, "bare_s": bare_t,
        "sh_startup_s": sh_start,
        "ratio_shell": statistics.median(a / b for a, b in zip(lib_t, sh_t, strict=True)),
        "ratio_bare": statistics.median(a / b for a, b in zip(lib_t, bare_t, strict=True)),
        "library_reads_per_cycle": mgr.sysfs.stats.reads // (runs + 2),
    }


def listing(runs: int) -> dict[str, object]:
    """``hostdev list`` and ``lspci -D`` as fresh processes, interleaved."""
    env = child_env()
    hostdev = str(Path(sys.executable).with_name("hostdev"))
    commands = {"lspci -D": ["lspci", "-D"], "hostdev list": [hostdev, "list"],
                "hostdev list --json": [hostdev, "list", "--json"],
                "python -c pass": [sys.executable, "-c", "pass"]}
    if shutil.which("lspci", path=env.get("PATH")) is None:
        commands.pop("lspci -D")
    times: dict[str, list[float]] = {k: [] for k in commands}
    rss = {k: peak_rss_kib(argv, env) for k, argv in commands.items()}  # also warms up
    for argv in commands.values():
        run_once(argv, env)
    for _ in range(runs):
        for label, argv in commands.items():
            times[label].append(run_once(argv, env)[0])
    out = subprocess.run(["lspci", "-D"], capture_output=True, text=True, check=False,
                         env=env) if "lspci -D" in commands else None
    return {"times": times, "rss_kib": rss,
            "functions": len(os.listdir("/sys/bus/pci/devices")),
            "lspci_lines": len(out.stdout.splitlines()) if out else None}


def main() -> int:
    """Run both parts and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the node cycles (to OUT.profile.txt)")
    args = parser.parse_args()
    _must_be_guest()
    import common  # the checkout is read-only in the guest: bytecode cache on its tmpfs

    common.PYCACHE = Path(tempfile.gettempdir()) / "hostdev-bench-pycache"
    os.makedirs(common.PYCACHE, exist_ok=True)
    result: dict[str, object] = {
        "kernel": platform.release(),
        "lspci": subprocess.run(["lspci", "--version"], capture_output=True, text=True,
                                check=False).stdout.strip() if shutil.which("lspci") else None,
        "cpus": os.cpu_count(),
    }
    result["listing"] = listing(args.runs)
    if args.profile:
        import cProfile
        import io
        import pstats

        profiler = cProfile.Profile()
        result["node"] = node_cycle(args.runs, profiler)
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("cumulative").print_stats(60)
        stats.sort_stats("tottime").print_stats(30)
        Path(args.out).with_suffix(".profile.txt").write_text(text.getvalue())
    else:
        result["node"] = node_cycle(args.runs)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
