"""End-to-end latency, scheduled instant to job start, at a steady fire rate: beatd beat + one worker.

    .venv/bin/python bench/workers/latency.py --rate 100 --duration 60

beatd: a fresh private redis-server (the tests' ``RedisServer``, AOF ``appendfsync always`` unless
``--fsync``), a config of ``rate * interval`` no-op jobs (``tests.worker_jobs:noop``) ``every: INTERVAL``
whose ``start:`` instants are spread evenly over one interval, so ``rate`` fires are due each second, first
ones ``--lead`` s after the processes are started; one ``beatd beat`` and one ``beatd worker``
(``--concurrency``, ``--isolation``). Fires scheduled in the window [first + warmup, first + warmup +
duration) are measured: latency = the RunRecord's ``lag_s`` (started_at - scheduled_at), split into emission
(emitted_at - scheduled_at, the beat) and pickup (started_at - emitted_at, queue + worker); both are
millisecond-rounded, as the record's instants are. Every expected fire must have a ``succeeded`` record. CPU
shares (cores) over the window are reported per process tree and ``others`` (every other process on the
machine: a run disturbed by other work shows there).

Celery (``--celery``): the same schedule in ``celery beat`` (in-memory ``peer_celery:SpreadScheduler``) and a
prefork worker (concurrency 2, Redis broker). The task reads the clock first and records it with the fire's
due instant as Celery computed it (last run + interval; interval schedules drift by each run's lateness) and
its ideal instant on the grid (anchor + n * interval); latency is measured against both.

Prints a table and, last, one JSON line. Bounded: lead + warmup + duration + 10 s per system.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from _common import (  # type: ignore[import-not-found]
    BEATD_PYTHON,
    HERE,
    PEER_PYTHON,
    beatd_env,
    beatd_source,
    machine,
    machine_cpu_seconds,
    percentile,
    print_table,
    revision,
    start_redis,
    stop,
    tree_cpu_seconds,
    wait_for_quiet,
)

from beatd.messages import format_utc, parse_utc

NAMESPACE = "lat"
TAIL = 3.0
"""Seconds after the window's last scheduled instant before the processes are stopped."""


def summary(values_s: list[float]) -> dict[str, float | None]:
    """p50/p90/p99/p99.9/max in milliseconds."""
    ordered = sorted(values_s)

    def ms(value: float | None) -> float | None:
        return round(value * 1000, 2) if value is not None else None

    return {
        "n": len(ordered),
        "p50_ms": ms(percentile(ordered, 50)),
        "p90_ms": ms(percentile(ordered, 90)),
        "p99_ms": ms(percentile(ordered, 99)),
        "p999_ms": ms(percentile(ordered, 99.9)),
        "max_ms": ms(ordered[-1] if ordered else None),
    }


def job_names(count: int) -> list[str]:
    """``t0000``, ``t0001``, ..."""
    width = max(4, len(str(count - 1)))
    return [f"t{index:0{width}d}" for index in range(count)]


def write_config(path: Path, url: str, jobs_path: Path, names: list[str], interval: float, first: datetime) -> None:
    """Jobs every ``interval`` s, job i anchored at ``first + i * interval / len(names)``."""
    step = interval / len(names)
    lines = [f"redis: {{url: '{url}'}}", f"namespace: {NAMESPACE}", f"pythonpath: ['{jobs_path}']", "jobs:"]
    for index, name in enumerate(names):
        start = format_utc(first + timedelta(seconds=index * step))
        lines.append(f"  {name}: {{call: 'tests.worker_jobs:noop', every: {int(interval * 1000)}ms, start: '{start}'}}")
    path.write_text("\n".join(lines) + "\n")


def wait_until(instant: float) -> None:
    """Sleep until wall-clock ``instant`` (epoch seconds)."""
    while (left := instant - time.time()) > 0:
        time.sleep(min(left, 1.0))


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process tree, and of the whole machine (``machine``)."""
    return {name: tree_cpu_seconds(pid) for name, pid in pids.items()} | {"machine": machine_cpu_seconds()}


def cpu_share(start: dict[str, float], end: dict[str, float], seconds: float) -> dict[str, float]:
    """Cores used by each process tree over the window; ``others``: by every other process on the machine."""
    used = {name: (end[name] - start[name]) / seconds for name in start if name != "machine"}
    others = (end["machine"] - start["machine"]) / seconds - sum(used.values())
    return {name: round(value, 3) for name, value in (used | {"others": others}).items()}


def run_beatd(options: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """beatd beat + worker; latencies from the RunRecords."""
    names = job_names(round(options.rate * options.interval))
    server = start_redis(workdir / "redis", options.fsync)
    client = server.client()
    first = datetime.fromtimestamp(math.ceil(time.time()) + options.lead, UTC)
    window = (first + timedelta(seconds=options.warmup), first + timedelta(seconds=options.warmup + options.duration))
    config = workdir / "beatd.yaml"
    write_config(config, server.url, options.beatd_jobs, names, options.interval, first)
    launcher = ["-m", "beatd"]
    common = ["-c", str(config), "--log-level", "warning"]
    worker_argv = [str(BEATD_PYTHON), *launcher, "worker", *common, "--concurrency", str(options.concurrency)]
    worker_argv += ["--isolation", options.isolation]
    processes: dict[str, subprocess.Popen[bytes]] = {}
    beat_argv = [str(BEATD_PYTHON), "-m", "beatd", "beat", *common]
    source, env = options.beatd_src, beatd_env(options.beatd_src)
    try:
        for name, argv in (("worker", worker_argv), ("beat", beat_argv)):
            log = (workdir / f"{name}.log").open("wb")
            processes[name] = subprocess.Popen(argv, cwd=source, env=env, stderr=log)
        pids = {name: process.pid for name, process in processes.items()} | {"redis": server.process.pid}
        wait_until(window[0].timestamp())
        cpu_start = cpu_snapshot(pids)
        wait_until(window[1].timestamp())
        cpu_end = cpu_snapshot(pids)
        wait_until(window[1].timestamp() + TAIL)
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"beatd {name} exited early with {process.returncode}; see {workdir}")
    finally:
        for process in processes.values():
            stop(process)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hvals(f"{NAMESPACE}:runs:{name}")
    records = [json.loads(raw) for values in pipe.execute() for raw in values]
    server.stop()
    inside = [r for r in records if window[0] <= parse_utc(r["scheduled_at"]) < window[1]]
    statuses = collections.Counter(r["status"] for r in inside)
    ran = [r for r in inside if r["status"] == "succeeded"]
    lags = [float(r["lag_s"]) for r in ran]
    emission = [(parse_utc(r["emitted_at"]) - parse_utc(r["scheduled_at"])).total_seconds() for r in ran]
    pickup = [(parse_utc(r["started_at"]) - parse_utc(r["emitted_at"])).total_seconds() for r in ran]
    expected = round(options.rate * options.duration)
    errors = {name: (workdir / f"{name}.log").read_text(errors="replace")[-500:] for name in ("worker", "beat")}
    return {
        "system": f"beatd ({options.isolation}, c{options.concurrency})",
        "expected": expected,
        "measured": len(ran),
        "statuses": dict(statuses),
        "latency": summary(lags),
        "emission": summary(emission),
        "pickup": summary(pickup),
        "cpu_share": cpu_share(cpu_start, cpu_end, options.duration),
        "stderr": {name: text for name, text in errors.items() if text.strip()},
    }


def run_celery(options: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """celery beat (SpreadScheduler) + prefork worker; latencies recorded by the task itself."""
    jobs = round(options.rate * options.interval)
    server = start_redis(workdir / "redis", options.fsync)
    samples = redis.Redis(port=server.port, db=2, decode_responses=True)
    first = math.ceil(time.time()) + options.lead
    window = (first + options.warmup, first + options.warmup + options.duration)
    env = {
        "PYTHONPATH": str(HERE), "BENCH_REDIS_URL": server.url.rsplit("/", 1)[0],
        "PATH": f"{PEER_PYTHON.parent}:{os.environ['PATH']}", "BENCH_BEAT_JOBS": str(jobs),
        "BENCH_BEAT_INTERVAL": str(options.interval), "BENCH_BEAT_ANCHOR": str(first),
    }  # fmt: skip
    celery = str(PEER_PYTHON.parent / "celery")
    worker_argv = [celery, "-A", "peer_celery", "worker", "--pool", "prefork", "--concurrency", "2"]
    beat_argv = [celery, "-A", "peer_celery", "beat", "--scheduler", "peer_celery:SpreadScheduler"]
    beat_argv += ["--schedule", str(workdir / "celerybeat-schedule")]
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, argv in (("worker", worker_argv), ("beat", beat_argv)):
            log = (workdir / f"{name}.log").open("wb")
            command = [*argv, "--loglevel", "WARNING"]
            processes[name] = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=log)
        pids = {name: process.pid for name, process in processes.items()} | {"redis": server.process.pid}
        wait_until(window[0])
        cpu_start = cpu_snapshot(pids)
        wait_until(window[1])
        cpu_end = cpu_snapshot(pids)
        wait_until(window[1] + TAIL)
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"celery {name} exited early with {process.returncode}; see {workdir}")
    finally:
        for process in processes.values():
            stop(process, grace=30)
    raw = [json.loads(item) for item in samples.lrange("bench:lag", 0, -1)]
    server.stop()
    inside = [r for r in raw if window[0] <= r["grid"] < window[1]]
    errors = {name: (workdir / f"{name}.log").read_text(errors="replace")[-500:] for name in ("worker", "beat")}
    return {
        "system": "celery (prefork, c2)",
        "expected": round(options.rate * options.duration),
        "measured": len(inside),
        "statuses": {"ran": len(inside)},
        "latency": summary([r["started"] - r["due"] for r in inside]),
        "vs_grid": summary([r["started"] - r["grid"] for r in inside]),
        "drift": summary([r["due"] - r["grid"] for r in inside]),
        "cpu_share": cpu_share(cpu_start, cpu_end, options.duration),
        "stderr": {name: text for name, text in errors.items() if text.strip()},
    }


def main() -> None:
    """Measure beatd (and Celery with --celery) and report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0, help="fires due per second (default 100)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of fires measured (default 60)")
    parser.add_argument("--interval", type=float, default=10.0, help="every: of each job, s (default 10)")
    parser.add_argument("--warmup", type=float, default=10.0, help="s of fires not measured first (default 10)")
    parser.add_argument("--lead", type=float, default=5.0, help="s from starting the processes to the first fire")
    parser.add_argument("--concurrency", type=int, default=4, help="beatd worker --concurrency (default 4)")
    parser.add_argument("--isolation", choices=["process", "thread"], default="process", help="beatd worker")
    parser.add_argument("--fsync", choices=["always", "everysec", "no"], default="always", help="redis appendfsync")
    ref_help = "git ref of beatd to measure (exported from git), or worktree for the files as they are (default HEAD)"
    parser.add_argument("--beatd-ref", default="HEAD", help=ref_help)
    parser.add_argument("--celery", action="store_true", help="also measure celery beat + worker")
    parser.add_argument("--celery-only", action="store_true", help="measure only celery")
    parser.add_argument("--max-load", type=float, default=1.0, help="wait before each system until load <= this")
    options = parser.parse_args()
    if (options.celery or options.celery_only) and not PEER_PYTHON.exists():
        parser.error(f"no {PEER_PYTHON}: run bash bench/workers/setup.sh first")
    runs = ([] if options.celery_only else [run_beatd]) + (
        [run_celery] if options.celery or options.celery_only else []
    )
    results = []
    source = tempfile.TemporaryDirectory(prefix="beatd-src-")
    options.beatd_src, options.beatd_jobs = beatd_source(options.beatd_ref, Path(source.name))
    for run in runs:
        load = wait_for_quiet(options.max_load)
        print(f"# {run.__name__}: load {load:.2f}", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="beatd-latency-") as directory:
            result = run(options, Path(directory))
        result["load"] = load
        print(f"#   {json.dumps(result)}", file=sys.stderr, flush=True)
        results.append(result)
    source.cleanup()
    rows = []
    for result in results:
        views = ["latency", "emission", "pickup", "vs_grid", "drift"]
        for view in (name for name in views if name in result):
            numbers = result[view]
            rows.append([
                result["system"], view, f"{result['measured']}/{result['expected']}", numbers["p50_ms"],
                numbers["p90_ms"], numbers["p99_ms"], numbers["p999_ms"], numbers["max_ms"], f"{result['load']:.2f}",
            ])  # fmt: skip
    print(f"# beatd {revision(options.beatd_ref)}; {options.rate:g} fires/s, {options.duration:g} s measured, "
          f"fsync {options.fsync}; milliseconds")  # fmt: skip
    print_table(["system", "view", "ran/expected", "p50", "p90", "p99", "p99.9", "max", "load"], rows)
    for result in results:
        print(f"{result['system']}: statuses {result['statuses']}, CPU share (cores) {result['cpu_share']}")
    print(json.dumps({
        "benchmark": "workers/latency", "rate": options.rate, "duration": options.duration,
        "interval": options.interval, "fsync": options.fsync, "beatd_revision": revision(options.beatd_ref),
        "machine": machine(), "results": results,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
