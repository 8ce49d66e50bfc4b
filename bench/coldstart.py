"""Cold start of a manage verb: ``hostdev detach ADDR`` of one device, this checkout
against a base commit, side by side in one run.

    python bench/coldstart.py                  # base: TARGET_BASE (839032b)
    python bench/coldstart.py --base REF --runs 30 --markdown

Both sides run the same launcher (``python -c`` putting their package first on
``sys.path``, then ``hostdev.cli.main.main()`` as the console script calls it) as
fresh processes, alternating which goes first in each round, with the bytecode
cache warm. The ratio is the median of the per-round ratios, so drift between
rounds cancels.

The host is a materialized static tree (``python -m hostdev.testing materialize``)
holding one endpoint already bound to vfio-pci, and each side has its own state
directory under bench/out/coldstart: nothing outside bench/out is read or
written, and ``--root`` keeps hostdev off the machine's /sys. The device is on the
stub already (a static tree cannot bind a driver), so every run is the whole verb
with no kernel write: parse, imports, lock, state file load and save, intent
journal, snapshot of the device, and the report; the start-up is what is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import OUT, PYCACHE, REPO, child_env, export_package, median, ms, run_once, table

WORK = OUT / "coldstart"
ADDRESS = "0000:01:00.0"
#: The issue's target: the verb's cold start at most this fraction of the base's.
TARGET = 0.5

_HOST = f"""\
name = "coldstart"
description = "One Ethernet endpoint already bound to vfio-pci (bench/coldstart.py)."

[[drivers]]
name = "vfio-pci"
ids = []

[[drivers]]
name = "e1000e"
ids = [[0x8086, 0x10d3]]

[[devices]]
address = "{ADDRESS}"
vendor = 0x8086
device = 0x10d3
class_code = 0x020000
iommu_group = 1
driver = "vfio-pci"
"""

#: What was done for the verb's start-up, and what the target needs.
CHANGES = (
    "What changed: every pydantic model sets `defer_build` (a command builds the"
    " validators of the models it uses, not of all of them), and `hostdev.cli.manage`"
    " no longer imports pydantic for a type hint: the imports shrink by about a tenth,"
    " the start-up barely. What would meet the target: records, the state file, the"
    " intent journal and the node report as plain classes with hand-written checks (as"
    " `PciDevice` became for `hostdev list`), pydantic kept for the JSON schemas and the"
    " other commands' reports. By the table, the base less the pydantic reference plus"
    " a bare start is about {estimate:.2f}x the base."
)

#: The least any command validating with pydantic pays: import it, define and use a
#: one-field model.
_PYDANTIC_FLOOR = "from pydantic import BaseModel\nclass A(BaseModel):\n    x: int\nA(x=1)"

#: argv[1] is the directory whose ``hostdev`` package runs; the rest is the command line.
_LAUNCHER = ("import sys; sys.path.insert(0, sys.argv.pop(1));"
             " from hostdev.cli.main import main; sys.exit(main())")


def log(message: str) -> None:
    """Progress on stderr."""
    print(f"[coldstart] {message}", file=sys.stderr, flush=True)


#: The commit the cold-start target was set against ("half of today's" when it was
#: set): the default base, so that every run judges the target against the same start.
TARGET_BASE = "839032b"


def base_ref() -> str:
    """:data:`TARGET_BASE`."""
    return TARGET_BASE


def export(ref: str) -> tuple[str, Path]:
    """The package as of git ``ref``, under bench/out/coldstart; (short rev, dir)."""
    return export_package(ref, WORK)


def materialize_host() -> Path:
    """The one-device tree (rewritten each run, so no earlier run's writes linger)."""
    from hostdev.testing.materialize import materialize

    WORK.mkdir(parents=True, exist_ok=True)
    spec = WORK / "host.toml"
    spec.write_text(_HOST)
    return materialize(str(spec), WORK / "tree", replace=True).root


def _argv(package_dir: Path, tree: Path, state: Path) -> list[str]:
    return [sys.executable, "-c", _LAUNCHER, str(package_dir), "--root", str(tree),
            "--state-dir", str(state), "detach", ADDRESS]


def _check(argv: list[str], env: dict[str, str], label: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=WORK,
                          check=False)
    if done.returncode != 0 or "already on vfio-pci" not in done.stdout:
        raise RuntimeError(f"{label}: hostdev detach failed ({done.returncode}):"
                           f" {(done.stdout + done.stderr).strip()[-400:]}")
    return done.stdout.strip()


def _import_ms(argv: list[str], env: dict[str, str]) -> float:
    """Milliseconds spent importing (``-X importtime``: the sum of every module's own
    time; importtime's bookkeeping makes this a little larger than without it)."""
    done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], capture_output=True,
                          text=True, env=env, cwd=WORK, check=False)
    total = 0
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            own = line.split(":", 1)[1].split("|", 1)[0].strip()
            if own.isdigit():
                total += int(own)
    return total / 1000


def _pydantic_loaded(argv: list[str], env: dict[str, str]) -> bool:
    done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], capture_output=True,
                          text=True, env=env, cwd=WORK, check=False)
    return any(line.startswith("import time:") and line.rsplit("|", 1)[-1].strip() == "pydantic"
               for line in done.stderr.splitlines())


def measure(runs: int, ref: str | None = None) -> dict[str, Any]:
    """Time both sides (and two reference commands) ``runs`` rounds, in rotating order;
    medians, per-round ratios to the base, import time."""
    ref = ref or base_ref()
    rev, base_dir = export(ref)
    tree = materialize_host()
    PYCACHE.mkdir(parents=True, exist_ok=True)
    env = child_env()
    for side in ("state-base", "state-new"):
        # Each run starts with no state: a file written by another version (an
        # earlier run against another base) need not be one this base can read.
        shutil.rmtree(WORK / side, ignore_errors=True)
    sides = {"base": _argv(base_dir, tree, WORK / "state-base"),
             "new": _argv(REPO, tree, WORK / "state-new")}
    output = {label: _check(argv, env, label) for label, argv in sides.items()}
    commands = {**sides, "python": [sys.executable, "-c", "pass"],
                "pydantic": [sys.executable, "-c", _PYDANTIC_FLOOR]}
    for argv in commands.values():  # warm-up: bytecode cache and page cache
        run_once(argv, env)
    walls: dict[str, list[float]] = {label: [] for label in commands}
    ratios: dict[str, list[float]] = {label: [] for label in commands}
    labels = list(commands)
    for n in range(runs):
        took = {}
        for label in labels[n % len(labels):] + labels[:n % len(labels)]:
            wall, status = run_once(commands[label], env)
            if status != 0:
                raise RuntimeError(f"{label}: exited {status}")
            took[label] = wall
            walls[label].append(wall)
        for label in labels:
            ratios[label].append(took[label] / took["base"])
    return {
        "base": rev, "runs": runs, "output": output, "wall": walls,
        "ratio": {label: statistics.median(r) for label, r in ratios.items()},
        "imports_ms": {label: statistics.median(_import_ms(argv, env) for _ in range(3))
                       for label, argv in sides.items()},
        "pydantic": {label: _pydantic_loaded(argv, env) for label, argv in sides.items()},
    }


def section(data: dict[str, Any]) -> str:
    """The "Manage verb cold start" section of RESULTS.md."""
    ratio = data["ratio"]["new"]
    met = "**met**" if ratio <= TARGET else "**not met**"
    rows = []
    for label, name in (("base", f"base ({data['base']})"), ("new", "this checkout")):
        wall = data["wall"][label]
        rows.append([name, ms(median(wall)), ms(min(wall)), f"{data['ratio'][label]:.2f}",
                     f"{data['imports_ms'][label]:.1f}",
                     "yes" if data["pydantic"][label] else "no", len(wall)])
    for label, name in (("python", "`python -c pass`"),
                        ("pydantic", "`python -c` pydantic + one model")):
        wall = data["wall"][label]
        rows.append([name, ms(median(wall)), ms(min(wall)), f"{data['ratio'][label]:.2f}",
                     "", "", len(wall)])
    lines = [
        "## Manage verb cold start", "",
        f"`hostdev detach {ADDRESS}` of one device already on vfio-pci, as a fresh process,"
        " on a materialized one-device tree (`bench/coldstart.py`): this checkout against"
        f" the commit the target was set against, alternating, {data['runs']} rounds."
        " Imports: the sum of `-X importtime`'s own times (median of 3). Two reference"
        " commands ran in the"
        " same rounds: a bare `python -c pass`, and a process that imports pydantic and"
        " validates a one-field model (the least any command using a pydantic model"
        " pays).", "",
        table(["command", "median ms", "min ms", "x base", "imports ms", "pydantic imported",
               "runs"], rows), "",
        f"Target: at most {TARGET:.1f}x the base's cold start: {met}, {ratio:.2f}x"
        " (median of per-round ratios).", "",
        f"Pydantic alone (imported, one model validated) is {data['ratio']['pydantic']:.2f}x"
        " the base's cold start. The verb validates the state file and the intent journal"
        " and returns its report through pydantic models, so it cannot start in half the"
        " base's time while those are pydantic models.", "",
        CHANGES.format(estimate=1 - data["ratio"]["pydantic"] + data["ratio"]["python"]), "",
    ]
    return "\n".join(lines)


def main() -> int:
    """Measure and print JSON (or the Markdown section)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--base", default=None, metavar="GIT_REF",
                        help=f"commit to compare with (default: {TARGET_BASE}, the target's)")
    parser.add_argument("--markdown", action="store_true",
                        help="print the RESULTS.md section instead of JSON")
    args = parser.parse_args()
    started = time.time()
    data = measure(args.runs, args.base)
    log(f"{args.runs} rounds in {time.time() - started:.0f} s")
    print(section(data) if args.markdown else json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
