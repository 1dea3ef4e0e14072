"""beatd emission benchmark: throughput, lag, start-up, CPU and memory of one leader with N jobs, by scenario.

Command (from the repo root)::

    .venv/bin/python bench/emission.py --jobs 1000 10000 100000 --interval 10 --duration 60 [--spread]
    .venv/bin/python bench/emission.py --scenario burst --jobs 100000 --repeat 3
    .venv/bin/python bench/emission.py --scenario runtime --jobs 1000000 --timeout 600 --launch

``--scenario`` (issue 15's scenarios, one command):

* ``aligned`` (the default): N ``every`` jobs aligned to the Unix epoch, all due at each interval (below).
* ``spread``: the same jobs spread over the interval (``--spread`` says the same).
* ``burst``: N cron jobs due at one instant, "top of the hour": ``bench/burst.py``, run with the other
  arguments (its options and figures: ``--scenario burst --help``).
* ``runtime``: N runtime jobs put with ``put_many`` into a running leader, or with ``--launch`` a beat launched
  onto N stored ones (launch to leading, peak RSS): ``bench/runtime_jobs.py``, run with the other arguments
  (``--scenario runtime --help``).

The rest of this text is the ``aligned`` and ``spread`` scenarios. For each N, in a fresh private redis-server
(free loopback port, ``--save '' --appendonly no``, the same server the RedBeat peer benchmarks use; never the
system Redis):

1. A config with N jobs ``job-000000`` .. ``{command: ["true"], every: <interval>s}`` (lease 5 s) is written.
   Aligned (default; labelled ``burst`` in results before ``--scenario``): every job is aligned to the Unix
   epoch, so all N fire at the same instants (worst case).
   ``--spread``: job i has ``start: B + floor(i * interval / N)`` ms, B an epoch-aligned instant a day ago,
   so the fires are spread evenly over the interval (N / interval fires/s, as in a real deployment and as
   in the RedBeat peer benchmark). Jobs are new to Redis, so each starts from the instant the beat takes
   over (its first fire is its next instant after that); nothing is due at launch.
   In aligned mode the launch is delayed (< 1 interval) so that the end of the run falls half-way between two
   bursts, not on one.
2. ``python -m beatd beat -c CONFIG`` (log level INFO) runs for --duration seconds from launch, then gets
   SIGTERM (a graceful stop: the lease is released; 15 s grace, then SIGKILL).
3. After it exits the queue stream is read with XRANGE in chunks.

Figures (per N and mode), defined as in ``bench/peers/redbeat_emission.py``:

* due/s: N / interval. fires/s: messages whose stream entry time (the ms part of the entry id, i.e. Redis
  time of the XADD) is within [launch, end], divided by --duration; steady: those in the second half of the
  run divided by duration / 2. peak: the busiest one-second bucket.
* lag = stream entry ms - scheduled ms (``scheduled_at`` of the message), nearest-rank p50/p99/max over the
  messages of the run and of its second half ("steady").
* start-up: launch -> ``became leader`` and -> ``leading N jobs`` log lines (the beat has read and validated
  the config, taken the lease and written the start line of every new job: "loaded"), launch -> first
  emission, and first due instant -> first emission.
* expected fires: every instant of every job in (B0, end], B0 = the instant the new jobs start from (Redis's
  clock when the beat wrote their start: ``start from`` in its ``leading N jobs`` line; with 100,000 jobs
  seconds after it took the lease, so an instant between the two was never due). Missing = expected with no message at
  all; split into *lost* (at or before the job's progress in Redis after the stop, i.e. passed over: a hole)
  and *overdue at end* (after it: not emitted yet when the run ended, backlog). Lost fires that the beat
  recorded as ``missed`` run records (planner: later than 2 leases + 1 s, ``catchup: latest``) are counted
  in ``missed_recorded``; ``lost_silent`` = lost - missed_recorded (holes nobody recorded). ``late at end``
  counts expected fires whose message came after the end of the run (during the graceful stop).
* duplicates: messages beyond the first with the same ``fire_id``; unexpected: messages whose instant is not
  an expected one.
* lag_p99_ms_series (JSON): p99 lag (ms) of the messages of each 5 s of the run, to see a backlog drain.
* lease lost: ``standing down`` lines in the beat's log (the lease lapsed or a fenced write was refused).
* beat CPU s: utime + stime from /proc/PID/stat at the end of the run (total, and the second half alone:
  the steady cost of emission); peak RSS: VmHWM; redis-server CPU s over the run.

Other processes skew the figures on a small machine: before each run the script waits (at most --quiet-wait
seconds) for the 1-minute load average to fall to --quiet-load, and records the load before and after.
Every loop is bounded (start-up by --startup-timeout, the run by --duration, the stop by 15 s + SIGKILL).
Prints one table and a final JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import burst
import runtime_jobs

NAMESPACE = "bench"
QUEUE_KEY = f"{NAMESPACE}:queue:default"
LEADING = r"leading \d+ jobs"
BUCKET_S = 5
"""Width (s) of the buckets of ``lag_p99_ms_series``."""
SCENARIOS = ("aligned", "spread", "burst", "runtime")
"""``--scenario`` values; ``burst`` and ``runtime`` are run by ``bench/burst.py`` and ``bench/runtime_jobs.py``."""


def scenario_of(argv: list[str]) -> tuple[str, list[str]]:
    """The scenario ``argv`` asks for (``--spread`` alone means ``spread``) and the arguments left for it: all
    of them for ``aligned`` and ``spread`` (this script's parser knows ``--scenario``), the others for the
    scripts that run ``burst`` and ``runtime``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--scenario", choices=SCENARIOS)
    known, rest = parser.parse_known_args(argv)
    if known.scenario in ("burst", "runtime"):
        return known.scenario, rest
    spread = known.scenario == "spread" or "--spread" in rest
    return ("spread" if spread else "aligned"), list(argv)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Measure beatd emission throughput, lag, start-up, CPU and RSS with N every-jobs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="aligned",
        help="aligned or spread every-jobs (here); burst: bench/burst.py, runtime: bench/runtime_jobs.py, each "
        "given the other arguments (--scenario burst --help)",
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=[1000], help="number(s) of jobs; one run per value")
    parser.add_argument("--interval", type=int, default=10, help="job interval, whole seconds")
    parser.add_argument("--duration", type=float, default=60.0, help="run time of the beat per N, seconds")
    parser.add_argument("--spread", action="store_true", help="spread the jobs evenly over the interval")
    parser.add_argument("--lease", default="5s", help="leader lease")
    parser.add_argument("--repeat", type=int, default=1, help="runs per N")
    parser.add_argument("--startup-timeout", type=float, default=240.0, help="give up when not leading by then")
    parser.add_argument("--quiet-load", type=float, default=1.0, help="before each run, wait for this 1-min load")
    parser.add_argument("--quiet-wait", type=float, default=120.0, help="longest wait for --quiet-load, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (config, log)")
    parser.add_argument("--json-out", help="also write the final JSON line to this file")
    args = parser.parse_args(argv)
    args.spread = args.spread or args.scenario == "spread"
    return args


def job_names(n: int) -> list[str]:
    """The job names, in job order."""
    return [f"job-{i:06d}" for i in range(n)]


def offsets_ms(n: int, interval_ms: int, spread: bool) -> list[int]:
    """Each job's phase in the interval (ms): all 0 in aligned mode, evenly spread otherwise."""
    return [i * interval_ms // n if spread else 0 for i in range(n)]


def build_jobs(n: int, interval: int, spread: bool) -> tuple[dict[str, dict[str, Any]], int]:
    """The jobs of the config and the epoch-aligned anchor (ms) of the spread starts (0 in aligned mode)."""
    interval_ms = interval * 1000
    anchor_ms = (int(time.time() * 1000) - 86_400_000) // interval_ms * interval_ms if spread else 0
    jobs: dict[str, dict[str, Any]] = {}
    for name, offset in zip(job_names(n), offsets_ms(n, interval_ms, spread), strict=True):
        body: dict[str, Any] = {"command": ["true"], "every": f"{interval}s"}
        if spread:
            start = datetime.fromtimestamp((anchor_ms + offset) / 1000, UTC)
            body["start"] = start.strftime("%Y-%m-%dT%H:%M:%S.") + f"{(anchor_ms + offset) % 1000:03d}Z"
        jobs[name] = body
    return jobs, anchor_ms


def start_ms(leading_line: str | None, leader_records: list[dict[str, Any]], launch: float) -> int:
    """The instant (epoch ms) the new jobs start from: ``start from`` of the beat's ``leading N jobs`` line (Redis's
    clock when their start was written); none of their instants at or before it is ever due. Without that line
    (a beatd before it named the instant), the first ``leader`` audit record's ``at``, else the launch."""
    started = re.search(r"start from (\S+)\)", leading_line or "")
    if started:
        return C.parse_ms(started[1])
    return C.parse_ms(leader_records[0]["at"]) if leader_records else int(launch * 1000)


def expected_instants(phase_ms: int, interval_ms: int, after_ms: int, until_ms: int) -> range:
    """Instants ``phase + k * interval`` (ms) in (after, until]."""
    first = (after_ms - phase_ms) // interval_ms + 1
    last = (until_ms - phase_ms) // interval_ms
    return range(phase_ms + first * interval_ms, phase_ms + (last + 1) * interval_ms, interval_ms)


def count_missed_records(client: Any) -> int:
    """Run records the beat wrote (``missed`` ones: no worker runs here), whatever their key type."""
    total = 0
    for key in client.scan_iter(match=f"{NAMESPACE}:runs:*", count=10_000):
        kind = client.type(key)
        if kind == "hash":
            total += int(client.hlen(key))
        elif kind == "stream":
            total += int(client.xlen(key))
    return total


def run_one(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """One fresh Redis, one beat, one measured run; returns the figures."""
    interval_ms = args.interval * 1000
    tmp = Path(tempfile.mkdtemp(prefix=f"beatd-emit-{n}-"))
    server = C.RedisServer(tmp)
    mode = "spread" if args.spread else "aligned"
    result: dict[str, Any] = {
        "jobs": n,
        "mode": mode,
        "interval_s": args.interval,
        "duration_s": args.duration,
        "due_per_s": n / args.interval,
        "load_before": C.load_average(),
    }
    beat: C.Beat | None = None
    try:
        jobs, anchor_ms = build_jobs(n, args.interval, args.spread)
        config = C.write_config(tmp / "beatd.yaml", server.url, NAMESPACE, args.lease, jobs)
        result["config_mib"] = round(config.stat().st_size / 2**20, 1)
        del jobs
        if not args.spread:
            # End the run half-way between two bursts, so "overdue at end" is not a burst caught mid-flight.
            now = time.time()
            launch = now + ((args.interval / 2 - (now + args.duration)) % args.interval)
            time.sleep(max(0.0, launch - time.time()))
        redis_cpu0 = server.cpu_seconds() or 0.0
        beat = C.Beat(config, tmp / "beat.log").start()
        launch = beat.started_at
        end = launch + args.duration
        cpu = cpu_half = rss = None
        half = launch + args.duration / 2
        died = None
        while True:
            if not beat.alive():
                died = beat.process.returncode if beat.process else None
                break
            sample = C.proc_cpu_seconds(beat.pid)
            peak = C.proc_status_kb(beat.pid, "VmHWM")
            now = time.time()
            if sample is not None:
                cpu = sample
                if cpu_half is None and now >= half:
                    cpu_half = sample
            if peak is not None:
                rss = peak
            if now >= end:
                break
            if now - launch > args.startup_timeout and beat.find_line(LEADING) is None:
                result["error"] = f"not leading after {args.startup_timeout:g}s"
                break
            time.sleep(min(0.25, max(0.0, end - now)))
        stop_at = time.time()
        redis_cpu = (server.cpu_seconds() or 0.0) - redis_cpu0
        if beat.find_line(LEADING) is None and "error" not in result:
            # Not leading within the run: wait (bounded) for the line anyway, to report the load time.
            beat.wait_line(LEADING, timeout=max(0.0, launch + args.startup_timeout - time.time()))
        exit_code = beat.stop()
        result["exit_code"] = exit_code
        if died is not None:
            tail = [line for _, line in beat.lines[-3:]]
            result["error"] = f"beat exited early with code {died}: " + " | ".join(tail)
        became = beat.find_line(r"became leader")
        result["leader_acquisitions"] = sum(1 for _, line in beat.lines if "became leader" in line)
        result["lease_losses"] = sum(1 for _, line in beat.lines if "standing down" in line)
        leading = beat.find_line(LEADING)
        client = server.client
        leader_records = [
            json.loads(fields["record"])
            for _, fields in client.xrange(f"{NAMESPACE}:audit")
            if fields.get("event") == "leader"
        ]
        base_ms = start_ms(leading[1] if leading else None, leader_records, launch)
        progress = {job: int(value) for job, value in client.hgetall(f"{NAMESPACE}:progress").items()}
        missed_recorded = count_missed_records(client)
        end_ms = int(end * 1000)
        launch_ms = int(launch * 1000)
        half_ms = int(half * 1000)

        seen: dict[str, set[int]] = {}
        ids: Counter[str] = Counter()
        lags: list[int] = []
        lags_steady: list[int] = []
        late_at_end = 0
        first_entry_ms: int | None = None
        per_second = [0] * int(-(-args.duration // 1))
        entries_in_run: list[int] = []
        triggers: Counter[str] = Counter()
        by_bucket: dict[int, list[int]] = {}
        total_messages = 0
        for fire in C.read_fires(client, QUEUE_KEY):
            total_messages += 1
            ids[fire.fire_id] += 1
            triggers[fire.trigger] += 1
            seen.setdefault(fire.job, set()).add(fire.scheduled_ms)
            if first_entry_ms is None:
                first_entry_ms = fire.entry_ms
            if fire.entry_ms > end_ms:
                if fire.scheduled_ms <= end_ms:
                    late_at_end += 1
                continue
            lag = fire.entry_ms - fire.scheduled_ms
            lags.append(lag)
            entries_in_run.append(fire.entry_ms)
            if fire.entry_ms >= half_ms:
                lags_steady.append(lag)
            second = (fire.entry_ms - launch_ms) // 1000
            if 0 <= second < len(per_second):
                per_second[second] += 1
                by_bucket.setdefault(second // BUCKET_S, []).append(lag)
        lags.sort()
        lags_steady.sort()

        expected = lost = overdue = 0
        unexpected = 0
        first_due_ms: int | None = None
        for name, phase in zip(job_names(n), offsets_ms(n, interval_ms, args.spread), strict=True):
            instants = expected_instants((anchor_ms + phase) % interval_ms, interval_ms, base_ms, end_ms)
            expected += len(instants)
            if len(instants) and (first_due_ms is None or instants[0] < first_due_ms):
                first_due_ms = instants[0]
            got = seen.get(name, set())
            unexpected += len(got - set(instants))
            job_progress = progress.get(name, -1)
            for instant in instants:
                if instant not in got:
                    if instant <= job_progress:
                        lost += 1
                    else:
                        overdue += 1
        duplicates = sum(count - 1 for count in ids.values() if count > 1)
        gaps = [later - earlier for earlier, later in itertools.pairwise(entries_in_run)]
        in_run = len(lags)
        steady = len(lags_steady)

        def seconds(value: int | None) -> float | None:
            return None if value is None else round(value / 1000, 4)

        result.update(
            {
                "fires": in_run,
                "fires_per_s": round(in_run / args.duration, 1),
                "fires_per_s_steady": round(steady / (args.duration / 2), 1),
                "fires_per_s_peak": max(per_second) if per_second else 0,
                "lag_p50_s": seconds(C.percentile(lags, 50)),
                "lag_p99_s": seconds(C.percentile(lags, 99)),
                "lag_max_s": seconds(lags[-1] if lags else None),
                "lag_steady_p50_s": seconds(C.percentile(lags_steady, 50)),
                "lag_steady_p99_s": seconds(C.percentile(lags_steady, 99)),
                "lag_steady_max_s": seconds(lags_steady[-1] if lags_steady else None),
                "expected": expected,
                "missing": lost + overdue,
                "lost": lost,
                "overdue_at_end": overdue,
                "late_at_end": late_at_end,
                "missed_recorded": missed_recorded,
                "lost_silent": max(0, lost - missed_recorded),
                "duplicates": duplicates,
                "unexpected": unexpected,
                "messages_total": total_messages,
                "triggers": dict(triggers),
                "became_leader_s": round(became[0] - launch, 3) if became else None,
                "loaded_s": round(leading[0] - launch, 3) if leading else None,
                "startup_s": round(first_entry_ms / 1000 - launch, 3) if first_entry_ms else None,
                "first_due_s": round(first_due_ms / 1000 - launch, 3) if first_due_ms else None,
                "first_fire_lag_s": seconds(first_entry_ms - first_due_ms) if first_entry_ms and first_due_ms else None,
                "max_gap_s": seconds(max(gaps) if gaps else None),
                "beat_cpu_s": cpu,
                "beat_cpu_pct": round(100 * cpu / (stop_at - launch), 1) if cpu else None,
                "beat_cpu_steady_pct": round(100 * (cpu - cpu_half) / (stop_at - half), 1)
                if cpu is not None and cpu_half is not None
                else None,
                "beat_peak_rss_mib": round(rss / 1024, 1) if rss else None,
                "redis_cpu_s": round(redis_cpu, 2),
                "load_after": C.load_average(),
                "fires_per_second_series": per_second,
                "lag_p99_ms_series": [
                    C.percentile(sorted(by_bucket.get(bucket, [])), 99)
                    for bucket in range(-(-len(per_second) // BUCKET_S))
                ],
            }
        )
        return result
    finally:
        if beat is not None:
            beat.stop()
        server.stop()
        if args.keep:
            result["tmp"] = str(tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Run the scenario: every N of an aligned or spread one here (print the table and the JSON line), a burst or
    runtime one by its script."""
    scenario, rest = scenario_of(sys.argv[1:] if argv is None else argv)
    if scenario == "burst":
        return burst.main(rest)
    if scenario == "runtime":
        return runtime_jobs.main(rest)
    args = parse_args(rest)
    info = C.machine()
    C.print_machine(info)
    results = []
    for n in args.jobs:
        for repeat in range(args.repeat):
            mode = "spread" if args.spread else "aligned"
            print(
                f"\n== N={n} {mode} interval={args.interval}s duration={args.duration:g}s "
                f"run {repeat + 1}/{args.repeat} (load {C.load_average()}) ...",
                flush=True,
            )
            waited = C.wait_for_quiet(args.quiet_load, args.quiet_wait)
            started = time.monotonic()
            result = run_one(n, args)
            result["waited_for_quiet_s"] = waited
            result["run"] = repeat + 1
            result["wall_s"] = round(time.monotonic() - started, 1)
            results.append(result)
            print(json.dumps({k: v for k, v in result.items() if k != "fires_per_second_series"}), flush=True)

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.1f}"

    print()
    C.print_table(
        [
            "N",
            "mode",
            "run",
            "due/s",
            "fires/s",
            "steady",
            "peak",
            "lag p50 ms",
            "p99 ms",
            "max ms",
            "steady p99",
            "loaded s",
            "1st fire s",
            "expected",
            "lost",
            "overdue@end",
            "dup",
            "lease lost",
            "CPU s",
            "steady CPU%",
            "RSS MiB",
            "redis CPU s",
        ],
        [
            [
                r["jobs"],
                r["mode"],
                r["run"],
                C.fmt(r["due_per_s"], digits=0),
                C.fmt(r.get("fires_per_s"), digits=1),
                C.fmt(r.get("fires_per_s_steady"), digits=1),
                r.get("fires_per_s_peak", "-"),
                ms(r.get("lag_p50_s")),
                ms(r.get("lag_p99_s")),
                ms(r.get("lag_max_s")),
                ms(r.get("lag_steady_p99_s")),
                C.fmt(r.get("loaded_s"), digits=2),
                C.fmt(r.get("startup_s"), digits=2),
                r.get("expected", "-"),
                r.get("lost", "-"),
                r.get("overdue_at_end", "-"),
                r.get("duplicates", "-"),
                r.get("lease_losses", "-"),
                C.fmt(r.get("beat_cpu_s"), digits=1),
                C.fmt(r.get("beat_cpu_steady_pct"), digits=1),
                C.fmt(r.get("beat_peak_rss_mib"), digits=1),
                C.fmt(r.get("redis_cpu_s"), digits=1),
            ]
            for r in results
        ],
    )
    for r in results:
        if r.get("error"):
            print(f"N={r['jobs']} {r['mode']}: {r['error']}")
    out = {
        "bench": "beatd_emission",
        "machine": info,
        "args": {"interval": args.interval, "duration": args.duration, "spread": args.spread, "lease": args.lease},
        "results": results,
    }
    C.print_json_line(out, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
