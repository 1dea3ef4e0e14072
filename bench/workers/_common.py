"""Shared helpers of the worker benchmarks (``drain.py``, ``latency.py``). Not a benchmark.

* :func:`start_redis`: the tests' private redis-server (``tests.redis_server.RedisServer``: loopback, a free
  port, AOF with ``appendfsync always``), optionally switched to ``appendfsync no`` with CONFIG SET;
* :func:`wait_for_quiet`: wait (bounded) until the machine's 1-minute load is low enough to measure;
* :func:`tree_cpu_seconds`: CPU seconds of a process and all of its descendants (job children included);
  :func:`machine_cpu_seconds`: busy CPU seconds of the whole machine (to tell what other processes took);
* :func:`beatd_source`: beatd's package as committed at a git ref (default ``HEAD``), exported to a temporary
  directory that the benchmarks put first on PYTHONPATH (and use as the working directory), with the job module
  ``tests/worker_jobs.py`` of the same ref in a second directory (the config's ``pythonpath``), so a
  measurement is of a known revision even while the working tree is being edited; ``--beatd-ref worktree``
  measures the working tree instead;
* :func:`stop`, :func:`percentile`, :func:`print_table`, :func:`machine`.

The peers (RQ, Celery) run from a private virtualenv, ``bench/workers/.venv`` (``bash bench/workers/setup.sh``).
"""

from __future__ import annotations

import math
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BEATD_PYTHON = REPO / ".venv" / "bin" / "python"
PEER_VENV = HERE / ".venv"
PEER_PYTHON = PEER_VENV / "bin" / "python"
PY_SPY = REPO / ".venv" / "bin" / "py-spy"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

__all__ = [
    "BEATD_PYTHON",
    "HERE",
    "PEER_PYTHON",
    "PY_SPY",
    "REPO",
    "beatd_env",
    "beatd_source",
    "load_average",
    "machine",
    "machine_cpu_seconds",
    "percentile",
    "print_table",
    "revision",
    "start_redis",
    "stop",
    "tree_cpu_seconds",
    "wait_for_quiet",
]


def start_redis(directory: Path, fsync: str) -> Any:
    """Start the tests' redis-server in ``directory``; ``fsync`` is its ``appendfsync`` (always|everysec|no)."""
    if str(REPO) not in sys.path:
        sys.path.append(str(REPO))
    from tests.redis_server import RedisServer  # imported here: callers may put a beatd snapshot first on sys.path

    server = RedisServer(directory)
    server.start()
    server.client().config_set("appendfsync", fsync)  # the server starts with ``no``
    return server


def beatd_source(ref: str, directory: Path) -> tuple[Path, Path]:
    """Two directories: one whose ``beatd`` package is beatd at git ``ref``, one holding ``tests.worker_jobs``
    at ``ref`` (for the config's ``pythonpath``). ``worktree``: the repo itself, twice."""
    if ref == "worktree":
        return REPO, REPO
    for name, paths in (("src", ["beatd"]), ("jobs", ["tests/__init__.py", "tests/worker_jobs.py"])):
        (directory / name).mkdir(parents=True, exist_ok=True)
        command = ["git", "-C", str(REPO), "archive", "--format=tar", ref, *paths]
        archive = subprocess.run(command, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(directory / name)], input=archive, check=True)
    return directory / "src", directory / "jobs"


def beatd_env(source: Path) -> dict[str, str]:
    """The environment of a beatd process importing beatd from ``source``."""
    return {**os.environ, "PYTHONPATH": str(source)} if source != REPO else dict(os.environ)


def revision(ref: str) -> str:
    """``ref`` as a short commit id (``worktree``: HEAD's, marked dirty when beatd/ has changes)."""
    if ref != "worktree":
        return _run(["git", "-C", str(REPO), "rev-parse", "--short", ref])
    dirty = _run(["git", "-C", str(REPO), "status", "--porcelain", "beatd"])
    return _run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]) + ("+worktree-changes" if dirty else "")


def load_average() -> float:
    """The 1-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def wait_for_quiet(max_load: float, poll: float = 15.0, limit: float = 600.0) -> float:
    """Wait until the 1-minute load is at most ``max_load`` (polling, at most ``limit`` s); return the load."""
    deadline = time.monotonic() + limit
    load = load_average()
    while load > max_load and time.monotonic() < deadline:
        print(f"# load {load:.2f} > {max_load:.2f}: waiting {poll:.0f}s", file=sys.stderr, flush=True)
        time.sleep(poll)
        load = load_average()
    if load > max_load:
        print(f"# load still {load:.2f} after {limit:.0f}s: measuring anyway", file=sys.stderr, flush=True)
    return load


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and its reaped children) from /proc/PID/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return int(fields[1]), (utime + stime + cutime + cstime) / CLOCK_TICKS


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by ``root`` and every live descendant (reaped children count via cutime)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = stat
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
        todo.extend(children.get(pid, []))
    return total


def stop(process: subprocess.Popen[Any], grace: float = 10.0) -> int:
    """SIGTERM ``process``, SIGKILL it after ``grace`` s; return its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of all cores so far (user, nice, system, irq, softirq, steal; /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q / 100.0 * len(sorted_values)) - 1))
    return sorted_values[rank]


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """A right-aligned plain-text table on stdout."""
    cells = [headers] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    for number, row in enumerate(cells):
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
        if number == 0:
            print("  ".join("-" * width for width in widths))


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine() -> dict[str, Any]:
    """What the figures were measured on: cores, CPU, load, versions, git revision, date."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "load_average": load_average(),
        "python": platform.python_version(),
        "redis_server": _run(["redis-server", "--version"]).split(" v=")[-1].split()[0] or None,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    versions = "from importlib.metadata import version as v; print(v('redis'), v('beatd'))"
    info["redis_py"], info["beatd"] = [*_run([str(BEATD_PYTHON), "-c", versions]).split(), "?", "?"][:2]
    if PEER_PYTHON.exists():
        peers = "from importlib.metadata import version as v; print(v('rq'), v('celery'), v('kombu'), v('redis'))"
        found = [*_run([str(PEER_PYTHON), "-c", peers]).split(), "?", "?", "?", "?"]
        info["rq"], info["celery"], info["kombu"], info["peer_redis_py"] = found[:4]
    head = _run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = _run(["git", "-C", str(REPO), "status", "--porcelain", "beatd"])
    info["git"] = head + ("+dirty(beatd)" if dirty else "")
    return info
