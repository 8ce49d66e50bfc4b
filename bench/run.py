"""Run every hostdev benchmark and write bench/RESULTS.md.

    sudo .venv/bin/python bench/run.py               # (as root; a few minutes)

1. Side by side, on generated hosts of 64, 512 and 4,096 functions (materialized
   with ``python -m hostdev.testing materialize`` under bench/out/trees and
   bind-mounted over /sys in a private mount namespace) and on this machine's
   own /sys: ``hostdev list``, ``hostdev list --json``, ``lspci -D``,
   ``dpdk-devbind.py --status``, ``driverctl list-devices`` (and ``lspci -Dvmmnnk``,
   which shows what ``hostdev list`` shows). Wall time, peak RSS, ratios to
   ``lspci -D`` taken round by round.
2. The same listing in process on those trees: time and file reads per device.
3. Manager scaling under the fake kernel (bench/manager.py).
4. On a real kernel in the QEMU guest of tests/realkernel (bench/realkernel_guest.py):
   node detach + reattach of a VF, library vs shell, and ``hostdev list`` vs ``lspci -D``.
5. Cold start of ``hostdev detach`` against the base commit (bench/coldstart.py).

Never part of the test suite. Needs root (unshare, mount) for part 1 on the
generated hosts, pciutils, dpdk and driverctl (Debian packages), and for part 4
QEMU and the cached guest kernel of the real-kernel tier.
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
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import coldstart
from common import OUT, PYCACHE, REPO, export_package, machine, median, ms, table

TREES = OUT / "trees"
PEERS = ["hostdev list", "hostdev list --json", "lspci -D", "dpdk-devbind.py --status",
         "driverctl list-devices", "lspci -Dvmmnnk", "python -c pass", "python -S -c pass"]
BASE = "lspci -D"


#: What profiling found and what was done about it (the `@base` rows, when
#: `--baseline` names the commit before, measure the difference).
FIXES = [
    "`hostdev list` start-up: importing pydantic and building the models cost ~100 ms of"
    " a ~140 ms cold run. The listing now reads into plain objects (`hostdev.linux.scan`) and"
    " prints its table and JSON without pydantic (`hostdev.cli.listing`; the JSON is"
    " byte for byte the models' output, which a test checks); `hostdev.address` imports"
    " pydantic only when a model needs its schema; `hostdev.state.store` imports pydantic,"
    " filelock and json only to parse, build or lock a file; the CLI sets up logging"
    " for the commands that log; `IoStats` is no longer a dataclass (dataclasses pulls"
    " inspect).",
    "`hostdev list` per device: every read went through a generator-based context"
    " manager and four Python frames (now one try/except, counting inlined); each IOMMU"
    " group directory was listed again although the scan reads every device's"
    " `iommu_group` link (members now come from the scan: one `listdir` per device"
    " fewer on a host of single-VF groups); the table does not read the subsystem ids"
    " and reset methods it does not print; parsed addresses are interned and their text"
    " cached; sorting uses a C-level key; the table is formatted with one `str.format`"
    " per row.",
    "state file: saving re-encoded and re-sorted every record of a list that changed in"
    " one place, so a one-device transaction grew with the number tracked (1.32x at 4,096"
    " tracked). A list now remembers which addresses changed since it was loaded, and the"
    " file is patched there (a property test checks the bytes equal a full encoding).",
    "`hostdev list` against `lspci -D` (issue 11): each device directory is opened once and"
    " its attributes read relative to that descriptor (no listing of the directory, no path"
    " check per read: the bus entry's link is checked once, then names are opened with"
    " O_NOFOLLOW); a PF's VFs, and so the VF indexes, come from its `sriov_offset` and"
    " `sriov_stride` (checked against the VFs' own `physfn` links, the `virtfnN` links read"
    " only when they disagree); VFs are not asked for SR-IOV attributes; `uevent` is parsed"
    " by four searches; `list` is parsed without argparse and imports neither pathlib,"
    " contextlib, select nor importlib, nor the state store when there is no state"
    " directory; addresses and driver names are checked without `re`, and the `hostdev`"
    " command is a plain script (the entry-point wrapper imported `re`); no cyclic"
    " garbage collection during the scan.",
    "not ours to change here (described to the lead instead): `prune_missing()` and"
    " `reconcile()` take a full `read_device()` snapshot (about 16 reads) per record when"
    " identity needs the ids, the PF link and the VF index (about 6); a node verb"
    " snapshots the device more than once and takes a `filelock` lock per transaction"
    " (cheaper with a bare `fcntl.flock`).",
]


def log(message: str) -> None:
    """Progress on stderr."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ part 1 and 2

def materialize_trees(sizes: list[int]) -> dict[int, dict[str, Any]]:
    """Write the generated hosts under bench/out/trees (replacing earlier ones)."""
    from hostdev.testing.materialize import materialize

    done = {}
    for size in sizes:
        started = time.perf_counter()
        tree = materialize(f"gen:{size}", TREES / f"gen-{size}", replace=True)
        done[size] = {"root": tree.root, "token": tree.token, "functions": tree.functions,
                      "files": tree.files, "links": tree.links, "dirs": tree.directories,
                      "seconds": time.perf_counter() - started, "host": tree.host}
        log(f"materialized {tree.host}: {tree.files} files, {tree.links} links"
            f" in {done[size]['seconds']:.1f} s")
    return done


def run_peers(runs: int, tree: dict[str, Any] | None, baseline: Path | None) -> dict[str, Any]:
    """bench/peers.py on a tree (in a private mount namespace) or on the real /sys."""
    from hostdev.testing.materialize import namespace_argv

    worker = [sys.executable, str(Path(__file__).with_name("peers.py")), "--runs", str(runs)]
    if baseline is not None:
        worker += ["--baseline", str(baseline)]
    if tree is not None:
        worker += ["--expect", str(tree["functions"]), "--token", tree["token"]]
        argv = namespace_argv(tree["root"], worker)
    else:
        argv = worker
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"peers failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def pair_ratio(data: dict[str, Any], a: str, b: str) -> float:
    """Median over rounds of time(a) / time(b), both measured in that round."""
    ra, rb = data["results"][a], data["results"][b]
    by_round = dict(zip(rb["round"], rb["wall"], strict=True))
    ratios = [t / by_round[r] for r, t in zip(ra["round"], ra["wall"], strict=True)
              if r in by_round]
    return statistics.median(ratios) if ratios else float("nan")


def in_process(tree_root: Path, runs: int) -> dict[str, float]:
    """The listing in this process on a tree: time, reads and repeated reads per device."""
    from hostdev.linux.scan import list_devices, scan
    from hostdev.linux.sysfs import Sysfs

    sysfs = Sysfs(tree_root)
    sysfs.stats.trace = []
    devices = list_devices(sysfs)
    count = len(devices)
    repeated = sum(1 for _, n in Counter(sysfs.stats.trace).items() if n > 1)
    reads = sysfs.stats.reads / count
    brief = Sysfs(tree_root)
    brief.stats.trace = []
    scan(brief, brief=True)
    brief_reads = brief.stats.reads / count
    ops = _replay_ops(brief.stats.trace)

    def timed(fn: Any) -> float:
        values = []
        for _ in range(runs):
            started = time.perf_counter()
            fn()
            values.append(time.perf_counter() - started)
        return statistics.median(values)

    return {
        "functions": count, "reads_per_device": reads, "brief_reads_per_device": brief_reads,
        "paths_read_twice": repeated,
        "list_devices_s": timed(lambda: list_devices(Sysfs(tree_root))),
        "scan_brief_s": timed(lambda: scan(Sysfs(tree_root), brief=True)),
        "replay_s": timed(lambda: _replay(ops)),
    }


def _replay_ops(paths: list[str]) -> list[tuple[int, str]]:
    """Each path of a scan's trace with the call the scan made on it (0 listdir,
    1 readlink, 2 open/read/close, 3 open/close of a directory)."""
    ops = []
    for path in paths:
        name = path.rsplit("/", 1)[-1]
        if path.rsplit("/", 1)[0].endswith("/bus/pci/devices"):
            ops.append((3, path))  # a device directory: opened once, not listed
        elif name in ("driver", "iommu_group", "physfn") or name.startswith("virtfn"):
            ops.append((1, path))
        elif os.path.isdir(path):
            ops.append((0, path))
        else:
            ops.append((2, path))
    return ops


def _replay(ops: list[tuple[int, str]]) -> None:
    """The file operations of a scan as bare os calls in a loop: the floor any Python
    code reading the same files pays."""
    flags = os.O_RDONLY | os.O_CLOEXEC
    for op, path in ops:
        try:  # the scan probes attributes that may be absent: a failed call costs too
            if op == 3:
                os.close(os.open(path, flags | os.O_DIRECTORY))
            elif op == 2:
                fd = os.open(path, flags)
                os.read(fd, 65536)
                os.close(fd)
            elif op == 1:
                os.readlink(path)
            else:
                os.listdir(path)
        except OSError:
            pass


def export_baseline(ref: str) -> Path:
    """The package as of git ``ref``, exported (``git archive``) under bench/out."""
    return export_package(ref, OUT)[1]


# ------------------------------------------------------------------ part 3 and 4

def run_manager(runs: int) -> dict[str, Any]:
    """bench/manager.py --json in a child process."""
    env = {k: v for k, v in os.environ.items()}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("manager.py")),
                           "--json", "--runs", str(runs)],
                          capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"manager benchmark failed: {done.stderr.strip()[-800:]}")
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def run_realkernel(runs: int) -> dict[str, Any]:
    """bench/realkernel_guest.py in the QEMU guest of the real-kernel tier."""
    from tests.realkernel import harness

    reason = harness.skip_reason()
    if reason is not None:
        return {"skipped": reason}
    command = (f"{sys.executable} bench/realkernel_guest.py"
               f' --out "$HOSTDEV_RESULTS/bench.json" --runs {runs}')
    run = harness.boot_and_run(command, timeout=600.0)
    out = run.results_dir / "bench.json"
    if run.returncode != 0 or not out.is_file():
        return {"skipped": f"guest run failed (exit {run.returncode},"
                           f" timed out {run.timed_out}); see {run.results_dir}:\n"
                           + run.console_tail(15)}
    data: dict[str, Any] = json.loads(out.read_text())
    data["qemu"] = run.qemu_argv[0]
    data["boot_s"] = run.duration
    data["guest_kernel"] = run.kernel_version
    return data


# ------------------------------------------------------------------ the report

def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _peer_table(data: dict[str, Any]) -> str:
    rows = []
    for label in PEERS:
        res = data["results"].get(label)
        if res is None or not res["wall"]:
            continue
        ratio = pair_ratio(data, label, BASE) if label != BASE else 1.0
        rows.append([f"`{label}`", ms(median(res["wall"])), ms(min(res["wall"])),
                     _mib(data["rss_kib"].get(label)), f"{ratio:.2f}", len(res["wall"]),
                     data["checks"].get(label, "")])
    return table(["command", "median ms", "min ms", "peak RSS MiB", "x lspci -D", "runs",
                  "output check"], rows)


def _generated_summary(peers: dict[str, dict[str, Any]], sizes: list[int]) -> str:
    rows = []
    for label in PEERS:
        cells: list[object] = [f"`{label}`"]
        for size in sizes:
            data = peers.get(f"gen-{size}")
            res = data["results"].get(label) if data else None
            if not res or not res["wall"]:
                cells.append("-")
                continue
            ratio = pair_ratio(data, label, BASE) if data and label != BASE else 1.0
            cells.append(f"{ms(median(res['wall']))} ms ({ratio:.2f}x)")
        rows.append(cells)
    return table(["command", *[f"{s} functions" for s in sizes]], rows)


def _measured(data: dict[str, Any], label: str) -> bool:
    res = data["results"].get(label)
    return bool(res and res["wall"])


def listing_targets(targets: list[list[object]], gen: dict[int, Any], own: dict[str, Any] | None,
                    sizes: list[int], inproc: dict[int, dict[str, float]]) -> None:
    """The listing's targets: ``hostdev list`` at most 1.0x ``lspci -D`` on every
    generated host and 1.1x on this machine's /sys; ``--json`` within 1.1x of the table."""
    ratios = {s: pair_ratio(gen[s], "hostdev list", BASE) for s in sizes}
    ok = all(r <= 1.0 for r in ratios.values())
    detail = ", ".join(f"{s}: {r:.2f}x" for s, r in ratios.items())
    json_ratios = {s: pair_ratio(gen[s], "hostdev list --json", BASE) for s in sizes}
    detail += (" (`--json`: " + ", ".join(f"{s}: {r:.2f}x" for s, r in json_ratios.items())
               + ")")
    big = max(sizes)
    if big in inproc:
        detail += (f"; in process at {big} functions the scan takes"
                   f" {ms(inproc[big]['scan_brief_s'])} ms, of which its bare file operations"
                   f" {ms(inproc[big]['replay_s'])} ms")
    # What no Python command can go below: the interpreter's start, and at the
    # largest size that start plus the scan's file operations in a bare loop.
    start = "python -c pass"
    if all(_measured(gen[s], start) for s in sizes):
        detail += ("; floors: `python -c pass` alone " + ", ".join(
            f"{s}: {pair_ratio(gen[s], start, BASE):.2f}x" for s in sizes))
        if big in inproc:
            walls = gen[big]["results"]
            floor = (median(walls[start]["wall"]) + inproc[big]["replay_s"]) \
                / median(walls[BASE]["wall"])
            detail += (f"; at {big}, that start plus the bare file operations:"
                       f" {floor:.2f}x")
    targets.append([f"`hostdev list` at most 1.0x `lspci -D` at"
                    f" {', '.join(map(str, sizes))} functions", _met(ok), detail])
    if own is not None:
        r = pair_ratio(own, "hostdev list", BASE)
        floor = (f"; `python -c pass` alone {pair_ratio(own, 'python -c pass', BASE):.2f}x"
                 if _measured(own, "python -c pass") else "")
        targets.append([f"`hostdev list` at most 1.1x `lspci -D` on this machine's own /sys"
                        f" ({own['functions']} functions)", _met(r <= 1.1),
                        f"{r:.2f}x (`--json` {pair_ratio(own, 'hostdev list --json', BASE):.2f}x)"
                        + floor])
    places = [(f"{s} functions", gen[s]) for s in sizes] + ([("own /sys", own)] if own else [])
    json_vs = [(name, pair_ratio(data, "hostdev list --json", "hostdev list"))
               for name, data in places]
    targets.append(["`hostdev list --json` within 1.1x of the table",
                    _met(all(r <= 1.1 for _, r in json_vs)),
                    ", ".join(f"{name}: {r:.2f}x" for name, r in json_vs)])


def report(args: argparse.Namespace, info: dict[str, str], trees: dict[int, dict[str, Any]],
           peers: dict[str, dict[str, Any]], inproc: dict[int, dict[str, float]],
           manager: dict[str, Any] | None, realkernel: dict[str, Any] | None,
           started: float, notes: list[str]) -> str:
    """RESULTS.md."""
    sizes = args.sizes
    out: list[str] = ["# hostdev benchmark results", ""]
    out += [f"Written by `python bench/run.py` on {time.strftime('%Y-%m-%d %H:%M %Z')}"
            f" in {time.time() - started:.0f} s. Every time is the **median** of the runs"
            " shown; every ratio is the median of per-round ratios (each round runs every"
            " command once, in rotating order), so machine drift between rounds cancels.", ""]
    out += ["## Machine and versions", ""]
    out += [table(["", ""], [[k, v] for k, v in info.items()], numeric=False), ""]
    if realkernel and "kernel" in realkernel:
        out += [f"Real-kernel guest: Linux {realkernel['kernel']} under"
                f" {realkernel.get('qemu', 'qemu')} (TCG, {realkernel.get('cpus')} vCPUs),"
                f" {realkernel.get('lspci') or 'no lspci'}.", ""]

    # -------------------------------------------------------------- targets
    targets: list[list[object]] = []
    gen = {s: peers[f"gen-{s}"] for s in sizes if f"gen-{s}" in peers}
    own = peers.get("own")
    if len(gen) == len(sizes):
        listing_targets(targets, gen, own, sizes, inproc)
    if len(gen) == len(sizes) and all(_measured(gen[s], p) for s in sizes for p in
                                 ("dpdk-devbind.py --status", "driverctl list-devices")):
        worst = {}
        for peer in ("dpdk-devbind.py --status", "driverctl list-devices"):
            for listing in ("hostdev list", "hostdev list --json"):
                worst[(listing, peer)] = max(pair_ratio(gen[s], listing, peer)
                                             for s in sizes)
        ok = all(worst[("hostdev list", p)] < 1 for p in
                 ("dpdk-devbind.py --status", "driverctl list-devices"))
        verdict = _met(ok) + f" at {', '.join(map(str, sizes))} functions"
        dpdk, dc = "dpdk-devbind.py --status", "driverctl list-devices"
        detail = (f"worst case over those sizes: {worst[('hostdev list', dpdk)]:.2f}x"
                  f" dpdk-devbind, {worst[('hostdev list', dc)]:.2f}x driverctl"
                  f" (`--json`: {worst[('hostdev list --json', dpdk)]:.2f}x,"
                  f" {worst[('hostdev list --json', dc)]:.2f}x)")
        if own is not None and _measured(own, dpdk) and _measured(own, dc):
            own_dpdk = pair_ratio(own, "hostdev list", dpdk)
            own_dc = pair_ratio(own, "hostdev list", dc)
            own_ok = own_dpdk < 1 and own_dc < 1
            verdict += f"; {_met(own_ok)} on this machine's own /sys ({own['functions']})"
            detail += (f"; own /sys: {own_dpdk:.2f}x dpdk-devbind, {own_dc:.2f}x driverctl"
                       + ("" if own_ok else " (driverctl forks per bound device, and there"
                          " are few: it beats a Python start-up)"))
        targets.append([
            "`hostdev list` faster than `dpdk-devbind.py --status` and `driverctl"
            " list-devices` at every size", verdict, detail])
        small = gen[min(sizes)]
        ratio = pair_ratio(small, "hostdev list", dpdk)
        hl = median(small["results"]["hostdev list"]["wall"])
        dp = median(small["results"][dpdk]["wall"])
        targets.append([f"cold `hostdev list` on a small host ({min(sizes)} functions) under"
                        " half the time of `dpdk-devbind.py --status`", _met(ratio < 0.5),
                        f"{ms(hl)} ms vs {ms(dp)} ms: {ratio:.2f}x"])
    if manager:
        one = manager["one_device"]
        r = one[-1]["median_s"] / one[0]["median_s"]
        targets.append([f"one-device prepare + reattach flat in tracked devices"
                        f" ({one[-1]['tracked']} within 1.2x of {one[0]['tracked']})",
                        _met(r <= 1.2), f"{r:.2f}x ({ms(one[0]['median_s'])} ms vs"
                        f" {ms(one[-1]['median_s'])} ms)"])
        b = manager["batch"]
        pr = manager["prune_reconcile"]
        saves = [o["state_writes"] for o in one]
        one_write = (all(s == 2 for s in saves) and b["prepare_saves"] == 1
                     and b["reattach_saves"] == 1
                     and all(p["prune_saves"] == 1 and p["reconcile_saves"] <= 1 for p in pr))
        # A record whose device is gone costs one failed stat; one still present is
        # read in full: cost per present record is what must stay flat.
        per = [p["reconcile_s"] / p["reconciled"] for p in pr]
        per_prune = [p["prune_s"] / (p["vfs"] - p["pruned"]) for p in pr]
        lin = max(max(per) / min(per), max(per_prune) / min(per_prune))
        targets.append(["one state write per transaction, whatever its size", _met(one_write),
                        f"prepare+reattach of 1 device: {saves[0]} writes (2 transactions);"
                        f" batch of {b['vfs']}: {b['prepare_saves']} + {b['reattach_saves']};"
                        f" prune: {pr[-1]['prune_saves']}; reconcile:"
                        f" {pr[-1]['reconcile_saves']}"])
        targets.append(["prune and reconcile linear in the host size", _met(lin <= 1.25),
                        f"time per record still present, {pr[0]['vfs']} to {pr[-1]['vfs']}"
                        f" VFs: prune {', '.join(f'{x * 1e3:.2f}' for x in per_prune)} ms,"
                        f" reconcile {', '.join(f'{x * 1e3:.2f}' for x in per)} ms"
                        f" (largest/smallest {lin:.2f}x)"])
    if realkernel and "node" in realkernel:
        node = realkernel["node"]
        targets.append(["real kernel: library node detach + reattach within 1.2x of the bare"
                         " shell sequence", _met(node["ratio_shell"] <= 1.2),
                         f"{node['ratio_shell']:.2f}x the `sh` script"
                         f" ({ms(median(node['library_s']))} ms vs"
                         f" {ms(median(node['shell_s']))} ms); {node['ratio_bare']:.2f}x the same"
                         f" writes made by bare `os.write` ({ms(median(node['bare_s']))} ms)"])
    out += ["## Targets", ""]
    out += [table(["target", "", "measured"], targets, numeric=False) if targets
            else "(not measured)", ""]

    # -------------------------------------------------------------- side by side
    out += ["## 1. Side by side with lspci, dpdk-devbind and driverctl", ""]
    out += ["Each command runs as a fresh process (a cold start: interpreter and imports"
            " every time; page cache and bytecode caches warm, after one warm-up run),"
            " output to /dev/null. Generated hosts are `generate_host_of_size(N)` trees"
            " written by `python -m hostdev.testing materialize gen:N` and bind-mounted"
            " over /sys in a private mount namespace (`unshare -m`); the check column is"
            " each command's own output in that namespace. Peak RSS is GNU time's maximum"
            " resident set (of the command and the children it waits for).", ""]
    if len(gen) == len(sizes):
        out += ["### Generated hosts: median wall time (ratio to `lspci -D`)", ""]
        out += [_generated_summary(peers, sizes), ""]
    for size in sizes:
        data = peers.get(f"gen-{size}")
        if data is None:
            continue
        t = trees[size]
        out += [f"### {size} functions ({t['host']}: {t['files']} files, {t['links']}"
                f" symlinks, materialized in {t['seconds']:.1f} s)", "", _peer_table(data), ""]
    if own is not None:
        out += [f"### This machine's own /sys ({own['functions']} functions)", "",
                _peer_table(own), ""]
    if inproc:
        out += ["### The same listing in process", "",
                "`list_devices()` (the library API, full snapshots) and the scan"
                " `hostdev list` prints from (`scan(brief=True)`), on the materialized"
                " trees through `Sysfs(root=tree)`.", ""]
        rows = []
        for size, d in inproc.items():
            rows.append([size, ms(d["list_devices_s"]),
                         f"{d['list_devices_s'] / d['functions'] * 1e6:.1f}",
                         f"{d['reads_per_device']:.2f}", ms(d["scan_brief_s"]),
                         f"{d['scan_brief_s'] / d['functions'] * 1e6:.1f}",
                         f"{d['brief_reads_per_device']:.2f}", ms(d["replay_s"]),
                         d["paths_read_twice"]])
        out += [table(["functions", "list_devices ms", "us/device", "reads/device",
                       "scan (table) ms", "us/device", "reads/device",
                       "bare os calls ms", "paths read twice"], rows), "",
                "*bare os calls*: the scan's own file operations (same paths, same"
                " listdir/readlink/open+read+close) replayed in a plain loop, i.e. what any"
                " Python program reading those files pays at least.", ""]

    # -------------------------------------------------------------- manager
    if manager:
        out += ["## 2. Manager scaling under the fake kernel", "",
                "In process on pyfakefs (`bench/manager.py`), where every file operation"
                " costs tens to hundreds of microseconds: read the ratios, not the"
                " absolute times. Kernel writes are the writes that reached the fake"
                " kernel; state writes are replacements of the state file.", ""]
        rows = []
        base = manager["one_device"][0]["median_s"]
        for o in manager["one_device"]:
            rows.append([o["tracked"], ms(o["median_s"]), f"{o['median_s'] / base:.2f}",
                         o["kernel_writes"], o["state_writes"], len(o["times"])])
        out += ["### prepare + reattach of one VF, by number of devices already tracked", "",
                table(["tracked", "median ms", "x 16 tracked", "kernel writes",
                       "state writes", "runs"], rows), ""]
        b = manager["batch"]
        out += [f"### Batch of {b['vfs']} VFs", "",
                table(["call", "ms", "kernel writes", "state writes"],
                      [["prepare", ms(b["prepare_s"]), b["prepare_writes"], b["prepare_saves"]],
                       ["reattach", ms(b["reattach_s"]), b["reattach_writes"],
                        b["reattach_saves"]]]), ""]
        rows = []
        pr = manager["prune_reconcile"]
        for p in pr:
            rows.append([p["vfs"], p["functions"], ms(p["prepare_s"]), ms(p["prune_s"]),
                         p["pruned"], f"{p['prune_s'] / (p['vfs'] - p['pruned']) * 1e6:.0f}",
                         p["prune_saves"], ms(p["reconcile_s"]),
                         f"{p['reconcile_s'] / p['reconciled'] * 1e6:.0f}",
                         p["reconcile_saves"]])
        out += ["### prune and reconcile after a PF's VFs go from 256 to 0", "",
                "Every VF of the host prepared for one owner (one batch), then PF 0's"
                " `sriov_numvfs` set to 0 behind the manager's back: `prune_missing()` drops"
                " its 256 records (a vanished device costs one failed stat), then"
                " `reconcile()` checks the remaining ones. *us/record*: per record still"
                " present, which is read in full; flat means linear in the host size.", "",
                table(["VFs", "functions", "batch prepare ms", "prune ms", "pruned",
                       "us/record", "state writes", "reconcile ms",
                       "us/record", "state writes"], rows), ""]

    # -------------------------------------------------------------- real kernel
    out += ["## 3. On a real kernel (QEMU guest)", ""]
    if not realkernel:
        out += ["(not run: --skip-realkernel)", ""]
    elif "skipped" in realkernel:
        out += [f"Not run: {realkernel['skipped']}", ""]
    else:
        node = realkernel["node"]
        out += [f"The guest of `tests/realkernel` (Linux {realkernel['kernel']}, emulated"
                " Intel IOMMU, QEMU NVMe PF with SR-IOV), booted once"
                f" ({realkernel['boot_s']:.0f} s including the runs below). Everything runs"
                " under TCG, i.e. a CPU emulated instruction by instruction: Python code is"
                " far slower there relative to the kernel than on hardware.", ""]
        out += [f"### node detach + node reattach of VF {node['vf']}", "",
                "The library (`HostdevManager.node_detach` then `node_reattach`, in"
                " process, state on tmpfs) against the same kernel writes replayed by a"
                " minimal `sh` script (one `printf > file` per write; the time of the"
                " `sh` process) and by bare `os.write` calls in process. Rounds alternate,"
                " ratios are per round.", "",
                table(["", "median ms", "min ms", "library / this"],
                      [["library", ms(median(node["library_s"])), ms(min(node["library_s"])),
                        "1.00"],
                       ["shell script", ms(median(node["shell_s"])), ms(min(node["shell_s"])),
                        f"{node['ratio_shell']:.2f}"],
                       ["bare os.write", ms(median(node["bare_s"])), ms(min(node["bare_s"])),
                        f"{node['ratio_bare']:.2f}"],
                       ["(`sh -c :` alone)", ms(median(node["sh_startup_s"])),
                        ms(min(node["sh_startup_s"])), ""]]), "",
                "The writes (library order, replayed verbatim):", ""]
        out += [f"    {path} <- {value!r}" for path, value in node["writes"]]
        out += ["", f"The library also read {node['library_reads_per_cycle']} sysfs files per"
                " cycle (snapshots, checks, the VFIO holder scan of /proc).", ""]
        lst = realkernel["listing"]
        rows = []
        base_t = lst["times"].get("lspci -D")
        for label, times in lst["times"].items():
            ratio = (statistics.median(a / b for a, b in zip(times, base_t, strict=True))
                     if base_t else float("nan"))
            rows.append([f"`{label}`", ms(median(times)), ms(min(times)),
                         _mib(lst["rss_kib"].get(label)), f"{ratio:.2f}", len(times)])
        out += [f"### Listing in the guest ({lst['functions']} functions;"
                f" lspci -D printed {lst['lspci_lines']} lines)", "",
                table(["command", "median ms", "min ms", "peak RSS MiB", "x lspci -D",
                       "runs"], rows), ""]
    out += ["## Hot paths profiled (cProfile) and what was changed", ""]
    out += [f"- {line}" for line in FIXES]
    out += [""]
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)


def main() -> int:
    """Run the parts asked for and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per item (default 5)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 512, 4096])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--skip-manager", action="store_true")
    parser.add_argument("--skip-realkernel", action="store_true")
    parser.add_argument("--skip-coldstart", action="store_true")
    parser.add_argument("--baseline", metavar="GIT_REF", default=None,
                        help="also time `hostdev list` as of this commit (e.g. HEAD)")
    args = parser.parse_args()
    started = time.time()
    notes: list[str] = [
        "This environment sets PYTHONDONTWRITEBYTECODE=1; the measured Python commands"
        f" run without it and with PYTHONPYCACHEPREFIX={PYCACHE.relative_to(REPO)} so that"
        " hostdev starts from bytecode as an installed package does.",
    ]
    OUT.mkdir(parents=True, exist_ok=True)
    PYCACHE.mkdir(parents=True, exist_ok=True)
    info = machine()
    baseline = None
    if args.baseline:
        baseline = export_baseline(args.baseline)
        info["baseline"] = f"`@base` rows: hostdev at git {args.baseline} ({baseline.name})"
        PEERS.extend(["hostdev list @base", "hostdev list --json @base"])
    trees: dict[int, dict[str, Any]] = {}
    peers: dict[str, dict[str, Any]] = {}
    inproc: dict[int, dict[str, float]] = {}
    if not args.skip_peers:
        missing = [t for t in ("lspci", "dpdk-devbind.py", "driverctl", "unshare")
                   if shutil.which(t) is None]
        if missing:
            notes.append(f"missing {', '.join(missing)}: apt-get install pciutils dpdk"
                         " driverctl util-linux")
        trees = materialize_trees(args.sizes)
        log("peers on this machine's own /sys")
        peers["own"] = run_peers(args.runs, None, baseline)
        if os.geteuid() != 0:
            notes.append("not root: the generated hosts were not bind-mounted (needs"
                         " unshare -m and mount)")
        else:
            for size in args.sizes:
                log(f"peers on the {size}-function tree")
                peers[f"gen-{size}"] = run_peers(args.runs, trees[size], baseline)
        for size in args.sizes:
            inproc[size] = in_process(trees[size]["root"], 3)
    manager = None
    if not args.skip_manager:
        log("manager scaling under the fake kernel")
        manager = run_manager(args.runs)
    realkernel = None
    if not args.skip_realkernel:
        log("real kernel: booting the QEMU guest")
        realkernel = run_realkernel(max(args.runs, 7))
    text = report(args, info, trees, peers, inproc, manager, realkernel, started, notes)
    if not args.skip_coldstart:  # bench/coldstart.py: hostdev detach against the base commit
        text += "\n" + coldstart.section(coldstart.measure(max(args.runs, 30)))
    args.out.write_text(text + "\n")
    log(f"wrote {args.out} in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
