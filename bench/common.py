"""Shared helpers of the benchmarks: timing child processes, medians, Markdown tables."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
#: Bytecode cache for every Python run in the benchmarks. This environment sets
#: PYTHONDONTWRITEBYTECODE=1, which would make each `hostdev` start compile the
#: package from source; an installed package has its .pyc files, so the runs use
#: a cache here (outside the source tree) instead.
PYCACHE = OUT / "pycache"


def child_env() -> dict[str, str]:
    """The environment every measured command runs with."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env["LC_ALL"] = "C.UTF-8"
    env.pop("PYTHONPATH", None)
    return env


_DEVNULL = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0)]


def _resolve(argv: Sequence[str], env: dict[str, str]) -> str:
    path = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env.get("PATH"))
    if path is None:
        raise FileNotFoundError(argv[0])
    return path


def run_once(argv: Sequence[str], env: dict[str, str]) -> tuple[float, int]:
    """Run ``argv`` (output to /dev/null): (wall seconds, exit status)."""
    path = _resolve(argv, env)
    started = time.perf_counter()
    pid = os.posix_spawn(path, list(argv), env, file_actions=_DEVNULL)
    _, status = os.waitpid(pid, 0)
    wall = time.perf_counter() - started
    return wall, os.waitstatus_to_exitcode(status)


def peak_rss_kib(argv: Sequence[str], env: dict[str, str]) -> int | None:
    """Peak RSS (KiB) of ``argv`` and the descendants it waits for, from GNU time.

    Not from this process's ``wait4``: a child forked (or vfork-spawned) by a big
    Python process inherits that process's RSS high-water mark at exec, so its
    ``ru_maxrss`` would read as this runner's size. /usr/bin/time is small (its
    own ~2 MiB at fork time are the floor of the figure).
    """
    gnu_time = shutil.which("time", path="/usr/bin")
    if gnu_time is None:
        return None
    read_end, write_end = os.pipe()
    actions = [*_DEVNULL[:2], (os.POSIX_SPAWN_DUP2, write_end, 2)]
    pid = os.posix_spawn(gnu_time, [gnu_time, "-f", "%M", _resolve(argv, env), *argv[1:]],
                         env, file_actions=actions)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    lines = b"".join(chunks).decode(errors="replace").strip().splitlines()
    try:
        return int(lines[-1])
    except (ValueError, IndexError):
        return None


def median(values: Sequence[float]) -> float:
    """Median (NaN for no values)."""
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    """Seconds as milliseconds for a table cell."""
    if seconds != seconds:  # NaN
        return "-"
    return f"{seconds * 1000:.1f}" if seconds < 10 else f"{seconds * 1000:.0f}"


def table(header: Sequence[str], rows: Sequence[Sequence[object]], numeric: bool = True) -> str:
    """A Markdown table (first column left-aligned, the rest right-aligned if ``numeric``)."""
    align = ["---"] + ["---:" if numeric else "---"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _first_line(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not available"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "not available"


def package_version(name: str) -> str:
    """Version of a Debian package, or "not installed"."""
    out = _first_line(["dpkg-query", "-W", "-f=${Version}", name])
    return out if out and "no packages" not in out else "not installed"


def machine() -> dict[str, str]:
    """What the results were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    import pydantic

    from hostdev import __version__

    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "memory": mem,
        "kernel": f"{platform.system()} {platform.release()}",
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        # No interpreter path: it names a directory of one machine.
        "python": f"{platform.python_implementation()} {platform.python_version()}"
                  f"{' (virtual environment)' if sys.prefix != sys.base_prefix else ''}",
        "hostdev": f"{__version__} (this checkout), pydantic {pydantic.VERSION}",
        "lspci": _first_line(["lspci", "--version"]) + f" (pciutils {package_version('pciutils')})",
        "dpdk-devbind.py": f"dpdk {package_version('dpdk')}",
        "driverctl": f"driverctl {package_version('driverctl')}",
    }


def export_package(ref: str, under: Path) -> tuple[str, Path]:
    """The ``hostdev`` package as of git ``ref`` (``git archive``), unpacked once in a
    directory of ``under`` named after the revision; returns (short rev, that directory)."""
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", ref],
                         capture_output=True, text=True, check=True).stdout.strip()
    target = under / f"base-{rev}"
    if not (target / "hostdev").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "hostdev"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return rev, target
