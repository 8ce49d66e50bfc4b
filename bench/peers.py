"""Worker of bench/run.py: time hostdev and its peers against whatever /sys is here.

bench/run.py starts it inside a private mount namespace with a materialized tree
bind-mounted over /sys (``hostdev.testing.materialize.namespace_argv``), or
directly for this machine's own /sys. Every command only reads /sys. Prints one
JSON document: per command, the wall time and peak RSS of each timed run, by
round, plus what the output checks found. Not meant to be run by hand (but
harmless: ``python bench/peers.py --runs 3`` times the peers on the real /sys).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import child_env, peak_rss_kib, run_once

HOSTDEV = str(Path(sys.executable).with_name("hostdev"))

#: (label, argv); the first is what ratios are taken against.
COMMANDS: list[tuple[str, list[str]]] = [
    ("lspci -D", ["lspci", "-D"]),
    ("hostdev list", [HOSTDEV, "list"]),
    ("hostdev list --json", [HOSTDEV, "list", "--json"]),
    ("dpdk-devbind.py --status", ["dpdk-devbind.py", "--status"]),
    ("driverctl list-devices", ["driverctl", "list-devices"]),
    ("lspci -Dvmmnnk", ["lspci", "-Dvmmnnk"]),
    # The floor of any Python command here: the interpreter's own start-up, with and
    # without site (hostdev needs site for its environment's packages).
    ("python -c pass", [sys.executable, "-c", "pass"]),
    ("python -S -c pass", [sys.executable, "-S", "-c", "pass"]),
]
#: A command whose warm-up run takes longer than this gets at most SLOW_RUNS runs.
SLOW_S = 2.5
SLOW_RUNS = 3


def _check(expect: int | None, env: dict[str, str]) -> dict[str, str]:
    """Run each command once with its output captured and say whether it looks right."""
    found: dict[str, str] = {}
    for label, argv in COMMANDS:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
        if done.returncode != 0:
            found[label] = f"exit {done.returncode}: {done.stderr.strip()[:200]}"
        elif label in ("lspci -D", "driverctl list-devices"):
            ok = expect is None or len(lines) == expect
            found[label] = f"{len(lines)} lines" + ("" if ok else f" (expected {expect})")
        elif label.startswith("hostdev list --json"):
            devices = json.loads(done.stdout)["devices"]
            ok = expect is None or len(devices) == expect
            found[label] = f"{len(devices)} devices" + ("" if ok else f" (expected {expect})")
        else:
            found[label] = f"ok, {len(lines)} lines"
    return found


def main() -> int:
    """Time every command, interleaved round by round; print JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--expect", type=int, default=None,
                        help="PCI functions the tree has (checked before anything runs)")
    parser.add_argument("--token", default=None,
                        help="marker token the materialized tree must carry")
    parser.add_argument("--baseline", default=None, metavar="DIR",
                        help="also time hostdev from the checkout in DIR ('@base' rows)")
    args = parser.parse_args()
    if args.baseline:
        launcher = (f"import sys; sys.path.insert(0, {args.baseline!r});"
                    " from hostdev.cli.main import main; sys.exit(main(sys.argv[1:]))")
        COMMANDS.extend([
            ("hostdev list @base", [sys.executable, "-c", launcher, "list"]),
            ("hostdev list --json @base", [sys.executable, "-c", launcher, "list", "--json"]),
        ])
    devices = os.listdir("/sys/bus/pci/devices")
    if args.token is not None:
        marker = Path("/sys/hostdev-materialized")
        if not marker.is_file() or marker.read_text().strip() != args.token:
            print("peers.py: /sys is not the materialized tree; refusing", file=sys.stderr)
            return 3
    if args.expect is not None and len(devices) != args.expect:
        print(f"peers.py: /sys has {len(devices)} functions, expected {args.expect}",
              file=sys.stderr)
        return 3
    env = child_env()
    # A peer that is not installed is left out (and said so), not a failed run.
    missing = [label for label, argv in COMMANDS
               if "/" not in argv[0] and shutil.which(argv[0], path=env.get("PATH")) is None]
    COMMANDS[:] = [(label, argv) for label, argv in COMMANDS if label not in missing]
    checks = _check(args.expect, env)
    checks.update({label: "not installed" for label in missing})
    results: dict[str, dict[str, list[float]]] = {
        label: {"wall": [], "round": []} for label, _ in COMMANDS}
    rss: dict[str, int | None] = {}
    limit: dict[str, int] = {}
    for label, argv in COMMANDS:  # warm-up (page cache, bytecode cache), then peak RSS
        wall, _ = run_once(argv, env)
        limit[label] = SLOW_RUNS if wall > SLOW_S else args.runs
        rss[label] = peak_rss_kib(argv, env)
    for rnd in range(args.runs):
        # Interleaved: each round runs every command once, so a ratio taken within
        # a round compares runs made moments apart; the order rotates by round.
        order = COMMANDS[rnd % len(COMMANDS):] + COMMANDS[:rnd % len(COMMANDS)]
        for label, argv in order:
            if len(results[label]["wall"]) >= limit[label]:
                continue
            wall, status = run_once(argv, env)
            if status != 0:
                checks[label] = f"exit {status} in round {rnd}"
            results[label]["wall"].append(wall)
            results[label]["round"].append(rnd)
    json.dump({"functions": len(devices), "checks": checks, "results": results,
               "rss_kib": rss, "when": time.time()}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
