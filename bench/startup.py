"""beatd start-up and memory benchmark: what N YAML jobs cost to check, list, load and keep.

Command (from the repo root)::

    .venv/bin/python bench/startup.py --jobs 100000 --repeat 3 [--spread] [--run 15]

For each N and repeat, in a fresh private redis-server (``bench/_common.py``'s, never the system Redis), with
the config of ``bench/emission.py`` (N jobs ``{command: ["true"], every: 10s}``; ``--spread``: each with its
own ``start``, so no two jobs are written alike):

* check: ``python -m beatd check --no-import -c CONFIG``: wall time, CPU time (user + system) and peak RSS
  (``ru_maxrss`` of the child, from ``wait4``); it must exit 0. On a shared machine the CPU time is the
  steadier figure: wall time is CPU time plus the waits for a core.
* jobs: ``python -m beatd jobs -c CONFIG`` with stdout to a pipe read to its end: wall time, the time to its
  first line (how soon a pager shows something), CPU time, peak RSS and the lines printed.
* beat: ``python -m beatd beat -c CONFIG``: launch -> ``leading N jobs`` log line ("loaded": config read and
  validated, lease taken, every new job's start written), then it runs until every job has fired once (the
  interval is 10 s), and at least ``--run`` seconds, and gets SIGTERM. Peak RSS = ``VmHWM`` just before the
  stop: start-up and a full round of emission. ``loaded_cpu_s``: the beat's CPU seconds when it logged
  ``leading`` (sampled within ~50 ms of the line).
* Redis: beatd's own state per job = ``MEMORY USAGE`` (``SAMPLES 0``: exact) of the per-job hashes (progress,
  schedule digests, last message) divided by N, each and summed; ``used_memory`` of the server before the
  beat started and after the run, for scale (it also holds the queue stream of the fires, which a worker
  would consume, and the run records of nothing: no worker runs).

Before each repeat the script waits (at most --quiet-wait s) for the 1-minute load average to fall to
--quiet-load and records it. Prints one line per run, best and median per figure, and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import emission

NAMESPACE = emission.NAMESPACE
LEADING = emission.LEADING
STATE_KEYS = ("progress", "schedules", "last")
"""The per-job hashes of beatd's own state (see :mod:`beatd.keys`)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Measure beatd check, jobs and beat start-up time and memory with N every-jobs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=[100_000], help="number(s) of jobs")
    parser.add_argument("--repeat", type=int, default=3, help="runs per N")
    parser.add_argument("--spread", action="store_true", help="give each job its own start (spread phases)")
    parser.add_argument("--run", type=float, default=15.0, help="seconds the beat runs after leading")
    parser.add_argument("--timeout", type=float, default=240.0, help="bound of each command and of start-up")
    parser.add_argument("--quiet-load", type=float, default=1.5, help="before each run, wait for this 1-min load")
    parser.add_argument("--quiet-wait", type=float, default=60.0, help="longest wait for --quiet-load, seconds")
    parser.add_argument("--json-out", help="also write the final JSON line to this file")
    return parser.parse_args(argv)


def beatd(*args: str) -> list[str]:
    """The command line of ``python -m beatd ARGS``."""
    return [sys.executable, "-m", "beatd", *args]


def _env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith(("BEATD_", "NOTIFY_"))}


def time_check(config: Path, timeout: float) -> dict[str, Any]:
    """``beatd check --no-import``: seconds and peak RSS (MiB)."""
    started = time.monotonic()
    process = subprocess.Popen(
        beatd("check", "--no-import", "-c", str(config)),
        cwd=C.REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = started + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            pid, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.01)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    error = process.stderr.read().decode(errors="replace")[-300:] if process.stderr else ""
    return {
        "check_s": round(seconds, 2),
        "check_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "check_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "check_exit": process.returncode,
        **({"check_error": error} if process.returncode else {}),
    }


def time_jobs(config: Path, timeout: float) -> dict[str, Any]:
    """``beatd jobs``: seconds to the end, seconds to the first line, lines."""
    started = time.monotonic()
    process = subprocess.Popen(
        beatd("jobs", "-c", str(config)), cwd=C.REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None
    first: float | None = None
    lines = 0
    for _ in process.stdout:
        if first is None:
            first = time.monotonic() - started
        lines += 1
        if time.monotonic() - started > timeout:
            process.kill()
            break
    _, status, usage = os.wait4(process.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    process.returncode = code
    return {
        "jobs_s": round(time.monotonic() - started, 2),
        "jobs_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "jobs_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "jobs_first_line_s": round(first, 2) if first is not None else None,
        "jobs_lines": lines,
        "jobs_exit": code,
    }


def run_beat(config: Path, tmp: Path, server: Any, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Launch the beat, wait for ``leading``, run ``--run`` s, read VmHWM and beatd's state in Redis, stop."""
    client = redis.Redis.from_url(server.url)
    before = int(client.info("memory")["used_memory"])
    beat = C.Beat(config, tmp / "beat.log").start()
    found = beat.wait_line(LEADING, timeout=args.timeout)
    result: dict[str, Any] = {"loaded_s": round(found[0] - beat.started_at, 2) if found else None}
    result["loaded_cpu_s"] = C.proc_cpu_seconds(beat.pid) if found else None  # CPU s of the beat by then
    if found is not None:  # run until every job has fired once, and at least --run seconds
        started = time.monotonic()
        while beat.alive() and time.monotonic() - started < args.timeout:
            ran = time.monotonic() - started
            if ran >= args.run and client.hlen(f"{NAMESPACE}:last") >= n:
                break
            time.sleep(0.25)
        result["all_fired_s"] = round(time.monotonic() - started, 2) if client.hlen(f"{NAMESPACE}:last") >= n else None
    peak = C.proc_status_kb(beat.pid, "VmHWM") if beat.alive() else None
    result["beat_peak_rss_mib"] = round(peak / 1024, 1) if peak else None
    result["beat_exit"] = beat.stop()
    state: dict[str, float] = {}
    for name in STATE_KEYS:
        key = f"{NAMESPACE}:{name}"
        usage = client.memory_usage(key, samples=0) or 0
        state[f"redis_{name}_b_per_job"] = round(usage / n, 1)
    state["redis_state_b_per_job"] = round(sum(state.values()), 1)
    result.update(state)
    result["redis_used_mib_before"] = round(before / 2**20, 1)
    result["redis_used_mib_after"] = round(int(client.info("memory")["used_memory"]) / 2**20, 1)
    return result


def run_one(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """One fresh Redis, one config: check, jobs, beat."""
    tmp = Path(tempfile.mkdtemp(prefix=f"beatd-startup-{n}-"))
    server = C.RedisServer(tmp)
    try:
        jobs, _ = emission.build_jobs(n, 10, args.spread)
        config = C.write_config(tmp / "beatd.yaml", server.url, NAMESPACE, "5s", jobs)
        del jobs
        result: dict[str, Any] = {"jobs": n, "mode": "spread" if args.spread else "burst"}
        result["config_mib"] = round(config.stat().st_size / 2**20, 1)
        result["quiet_wait_s"] = C.wait_for_quiet(args.quiet_load, args.quiet_wait)
        result["load_before"] = C.load_average()
        result.update(time_check(config, args.timeout))
        result.update(time_jobs(config, args.timeout))
        result.update(run_beat(config, tmp, server, n, args))
        result["load_after"] = C.load_average()
        return result
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


FIGURES = (
    "check_s",
    "check_cpu_s",
    "jobs_cpu_s",
    "jobs_rss_mib",
    "loaded_cpu_s",
    "check_rss_mib",
    "jobs_s",
    "jobs_first_line_s",
    "loaded_s",
    "beat_peak_rss_mib",
    "redis_state_b_per_job",
)


def main(argv: list[str] | None = None) -> int:
    """Run every N ``--repeat`` times; print each run, then best and median of each figure."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    runs: list[dict[str, Any]] = []
    for n in args.jobs:
        for index in range(args.repeat):
            result = run_one(n, args)
            result["repeat"] = index
            runs.append(result)
            print(json.dumps(result), flush=True)
    summary: dict[str, Any] = {}
    for n in args.jobs:
        mine = [run for run in runs if run["jobs"] == n]
        for figure in FIGURES:
            values = sorted(run[figure] for run in mine if run.get(figure) is not None)
            if values:
                summary[f"{n}:{figure}"] = {"best": values[0], "median": statistics.median(values)}
    for key, value in summary.items():
        print(f"{key:40s} best {value['best']:>9}  median {value['median']:>9}")
    final = {"machine": C.machine(), "args": vars(args), "runs": runs, "summary": summary}
    line = json.dumps(final)
    print(line)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
