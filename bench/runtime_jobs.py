"""beatd runtime jobs benchmark: put N runtime jobs with ``put_many`` into a running leader; compare with YAML.

Command (from the repo root)::

    .venv/bin/python bench/runtime_jobs.py --jobs 100000

In a fresh private redis-server (free loopback port, ``--save '' --appendonly no``; never the system Redis):

1. Runtime: a config with one YAML job and ``runtime_jobs: {allow: ["bench.target:*"]}``; ``beatd beat`` starts and
   leads (``leading 1 jobs``). Then this process builds N specs ``{every: 1h, start: S_i, call:
   bench.target:noop}`` (starts spread over the hour: nothing is due during the run) and puts them with
   ``RuntimeJobs.put_many`` (validated here first, then written 1,000 to a script call).
   * put s: from the call to its return (validation + writes), and its validation part alone.
   * scheduled s after last put: from put_many's return until the leader has written the start progress of
     every runtime job (``HLEN {ns}:progress`` = N + 1, polled every 50 ms): the leader has read the changes,
     validated each job against its own config and allow-list, and planned it.
   * leader CPU s: the beat's CPU time from the first put until all are scheduled (what the work costs, less
     sensitive than wall time to other processes on a shared machine).
   * leader RSS: VmRSS of the beat once all are scheduled (after a 2 s settle), and its CPU s.
2. YAML: the same N jobs written into the config file instead; ``beatd beat`` starts, and its VmRSS once the
   progress hash holds N + 1 fields is the baseline (and its start-up time, for reference).

Per-job RSS = (RSS - RSS of a beat with the one YAML job) / N, both modes. Prints a table and a JSON line.

With ``--launch`` (issue 15's "launch to leading with 1,000,000 runtime jobs stored") the two modes above are
replaced by launches of a beat onto N runtime jobs already stored. The same config; the N specs are put with
``put_many`` while no beat runs (written as ``beatd job put`` or ``Client.put_many`` write them), then:

* cold: a fresh ``beatd beat`` is launched; it reads every stored job (page by page), judges each, writes the
  start progress of every one (all are new to it) and logs ``leading N+1 jobs (N+1 new ...)``; then stopped
  (SIGTERM: the lease is released).
* restart: a second fresh beat is launched onto the same Redis: the jobs and their progress are there (a
  restart, a deploy, a fail-over to a replica started later), so it logs ``leading N+1 jobs (0 new ...)``.

Per launch: leader s (launch -> ``became leader``), leading s (launch -> ``leading N jobs``: the beat has read,
judged and planned every job; it emits from then on), scheduled s (launch -> ``HLEN {ns}:progress`` = N + 1,
polled every 50 ms once the leading line is seen: a check that every job's start progress is written by then,
not a time of its own, so it is the leading s plus the poll; at a restart the hash is full from the cold
launch), the jobs and new jobs the line names (checked: N + 1), the beat's CPU s at the leading line, its
peak RSS (VmHWM, the kernel's high-water mark, read 2 s after the leading line) and VmRSS then, the lease
losses (``standing down`` lines) and the first ten log lines above INFO, stamped from launch.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from beatd.config import load_config
from beatd.keys import Keys
from beatd.runtime_jobs import RuntimeJobs
from beatd.store import connect
from beatd.store.jobs import JobStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

SETTINGS = {"runtime_jobs": {"allow": ["bench.target:*"]}}
BASE = {"base": {"every": "1h", "call": "bench.target:noop"}}
LAUNCH_NAMESPACE = "bench-launch"


def _specs(count: int) -> dict[str, dict[str, Any]]:
    return {
        f"customer-{index:06d}": {
            "every": "1h",
            "start": f"2026-01-01T00:{(index * 60 // count) % 60:02d}:{index % 60:02d}Z",
            "call": "bench.target:noop",
        }
        for index in range(count)
    }


def _wait_progress(client: Any, namespace: str, count: int, timeout: float) -> float | None:
    """Seconds until the progress hash holds ``count`` fields (None: not within ``timeout``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if client.hlen(Keys(namespace).progress) >= count:
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def _rss_mb(pid: int) -> float:
    return round((C.proc_status_kb(pid, "VmRSS") or 0) / 1024, 1)


def run_runtime(workdir: Path, server: Any, count: int, timeout: float) -> dict[str, Any]:
    """Put ``count`` runtime jobs into a running leader."""
    namespace = "bench-runtime"
    path = C.write_config(workdir / "runtime.yaml", server.url, namespace, "5s", BASE, SETTINGS)
    beat = C.Beat(path, workdir / "beat-runtime.log").start()
    try:
        if beat.wait_line(r"leading 1 jobs", timeout) is None:
            raise SystemExit("the beat did not lead")
        time.sleep(1.0)
        rss_empty = _rss_mb(beat.pid)
        config = load_config(path, {})
        client = connect(config.settings.redis)
        jobs = RuntimeJobs(config, JobStore(client, Keys(namespace)), actor="bench")
        specs = _specs(count)
        cpu_before = C.proc_cpu_seconds(beat.pid) or 0
        started = time.perf_counter()
        jobs.put_many(specs)
        put_s = time.perf_counter() - started
        scheduled_s = _wait_progress(client, namespace, count + 1, timeout)
        leader_cpu_s = (C.proc_cpu_seconds(beat.pid) or 0) - cpu_before
        time.sleep(2.0)
        return {
            "mode": "runtime",
            "jobs": count,
            "put_s": round(put_s, 2),
            "scheduled_after_last_put_s": round(scheduled_s, 2) if scheduled_s is not None else None,
            "leader_cpu_s": round(leader_cpu_s, 2),
            "rss_mb_one_job": rss_empty,
            "rss_mb": _rss_mb(beat.pid),
            "beat_cpu_s": round(C.proc_cpu_seconds(beat.pid) or 0, 1),
            "stored": client.hlen(Keys(namespace).runtime_jobs),
        }
    finally:
        beat.stop()


def run_yaml(workdir: Path, server: Any, count: int, timeout: float) -> dict[str, Any]:
    """The same jobs in the YAML: the RSS baseline."""
    namespace = "bench-yaml"
    path = C.write_config(workdir / "yaml.yaml", server.url, namespace, "5s", {**BASE, **_specs(count)}, SETTINGS)
    client = connect(f"{server.url}")
    beat = C.Beat(path, workdir / "beat-yaml.log").start()
    try:
        started = time.monotonic()
        if _wait_progress(client, namespace, count + 1, timeout) is None:
            raise SystemExit("the YAML beat did not schedule every job")
        startup = time.monotonic() - started
        time.sleep(2.0)
        return {"mode": "yaml", "jobs": count, "startup_s": round(startup, 2), "rss_mb": _rss_mb(beat.pid)}
    finally:
        beat.stop()


LEADING = re.compile(r"leading (\d+) jobs \((\d+) new")


def leading_counts(line: str | None) -> tuple[int, int] | None:
    """The jobs and the new or changed jobs a ``leading N jobs (K new or changed ...)`` line names."""
    found = LEADING.search(line or "")
    return (int(found[1]), int(found[2])) if found else None


def store_without_beat(workdir: Path, server: Any, count: int) -> tuple[Path, dict[str, Any]]:
    """Write the config and put ``count`` runtime jobs while no beat runs; the config and the put's figures."""
    path = C.write_config(workdir / "runtime.yaml", server.url, LAUNCH_NAMESPACE, "5s", BASE, SETTINGS)
    config = load_config(path, {})
    jobs = RuntimeJobs(config, JobStore(connect(config.settings.redis), Keys(LAUNCH_NAMESPACE)), actor="bench")
    specs = _specs(count)
    started = time.perf_counter()
    jobs.put_many(specs)
    return path, {"jobs": count, "put_s": round(time.perf_counter() - started, 2)}


def run_launch(path: Path, log: Path, server: Any, count: int, timeout: float, mode: str) -> dict[str, Any]:
    """Launch a fresh beat onto ``count`` stored runtime jobs (and the one YAML job); time it to leading."""
    client = server.client
    beat = C.Beat(path, log).start()
    try:
        leading = beat.wait_line(r"leading \d+ jobs", timeout)
        left = max(0.0, beat.started_at + timeout - time.time())
        scheduled = _wait_progress(client, LAUNCH_NAMESPACE, count + 1, left)
        scheduled_at = time.time()
        if leading is None:
            raise SystemExit(f"{mode}: the beat did not lead within {timeout:g} s")
        cpu = C.proc_cpu_seconds(beat.pid)
        became = beat.find_line(r"became leader")
        time.sleep(2.0)
        counts = leading_counts(leading[1])
        return {
            "mode": mode,
            "jobs": count,
            "leader_s": round(became[0] - beat.started_at, 2) if became else None,
            "leading_s": round(leading[0] - beat.started_at, 2),
            "scheduled_s": round(scheduled_at - beat.started_at, 2) if scheduled is not None else None,
            "leading_jobs": counts[0] if counts else None,
            "leading_new": counts[1] if counts else None,
            "cpu_at_leading_s": round(cpu, 2) if cpu is not None else None,
            "peak_rss_mb": round((C.proc_status_kb(beat.pid, "VmHWM") or 0) / 1024, 1),
            "rss_mb": _rss_mb(beat.pid),
            "lease_losses": sum(1 for _, line in beat.lines if "standing down" in line),
            "warnings": [
                f"{stamp - beat.started_at:.1f}s {line}" for stamp, line in beat.lines if not line.startswith("INFO")
            ][:10],
            "load": C.load_average(),
        }
    finally:
        beat.stop()


def launch_main(args: argparse.Namespace) -> int:
    """``--launch``: store the jobs, launch a beat onto them (cold), stop it, launch another (restart)."""
    info = C.machine()
    C.print_machine(info)
    workdir = Path(tempfile.mkdtemp(prefix="beatd-bench-launch-"))
    server = C.RedisServer(workdir)
    try:
        path, put = store_without_beat(workdir, server, args.jobs)
        put["redis_used_mb"] = round(int(server.client.info("memory")["used_memory"]) / 2**20, 1)
        launches = [
            run_launch(path, workdir / f"beat-{mode}.log", server, args.jobs, args.timeout, mode)
            for mode in ("cold", "restart")
        ]
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"put {args.jobs} runtime jobs with no beat running: {put['put_s']} s (Redis {put['redis_used_mb']} MB)")
    C.print_table(
        ["launch", "jobs", "leader s", "leading s", "scheduled s", "leading line", "CPU s", "peak RSS MB", "load"],
        [
            [r["mode"], r["jobs"], r["leader_s"], r["leading_s"], r["scheduled_s"],
             f"{r['leading_jobs']} jobs, {r['leading_new']} new", r["cpu_at_leading_s"], r["peak_rss_mb"], r["load"][0]]
            for r in launches
        ],
    )  # fmt: skip
    print(json.dumps({"bench": "beatd_runtime_launch", "put": put, "launches": launches, "machine": info}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Put into a running leader (and the YAML baseline), or with ``--launch`` launch onto stored jobs."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument(
        "--runtime-only",
        action="store_true",
        help="skip the YAML baseline (a million jobs exceed a config file's 64 MiB bound)",
    )
    parser.add_argument(
        "--launch", action="store_true", help="launch beats onto N stored runtime jobs (cold, then restart)"
    )
    args = parser.parse_args(argv)
    if args.launch:
        return launch_main(args)
    workdir = Path(tempfile.mkdtemp(prefix="beatd-bench-runtime-"))
    server = C.RedisServer(workdir)
    try:
        runtime = run_runtime(workdir, server, args.jobs, args.timeout)
        yaml = None if args.runtime_only else run_yaml(workdir, server, args.jobs, args.timeout)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    base = runtime["rss_mb_one_job"]
    per_runtime = round((runtime["rss_mb"] - base) * 1024 / args.jobs, 2)
    per_yaml = None if yaml is None else round((yaml["rss_mb"] - base) * 1024 / args.jobs, 2)
    C.print_table(
        ["mode", "jobs", "put s", "scheduled s after last put", "leader CPU s", "RSS MB", "KB per job"],
        [
            [
                "runtime",
                args.jobs,
                runtime["put_s"],
                runtime["scheduled_after_last_put_s"],
                runtime["leader_cpu_s"],
                runtime["rss_mb"],
                per_runtime,
            ],
            *(
                [["yaml", args.jobs, "-", f"(start-up {yaml['startup_s']})", "-", yaml["rss_mb"], per_yaml]]
                if yaml is not None
                else []
            ),
        ],
    )
    print(json.dumps({"runtime": runtime, "yaml": yaml, "kb_per_job": {"runtime": per_runtime, "yaml": per_yaml},
                      "machine": C.machine()}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
