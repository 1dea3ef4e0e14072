#!/usr/bin/env python3
"""RedBeat (celery-redbeat) emission benchmark: peer figures for beatd.

Command (from the repo root, after `bash bench/peers/setup.sh`):

    bench/.peer-venv/bin/python bench/peers/redbeat_emission.py \\
        --jobs 1000 10000 100000 --interval 10 --duration 60 [--repeat 3]

(plain `python3 bench/peers/redbeat_emission.py ...` re-execs itself under
bench/.peer-venv.)

For each N in --jobs, in a fresh private redis-server (free loopback port,
--save '' --appendonly no; never the system Redis):

1. N RedBeat interval entries ``job-000000`` .. are stored with RedBeat's own
   ``RedBeatSchedulerEntry.save()``/``reschedule()`` (task ``bench.noop``, no
   args, ``schedule(run_every=interval)``). Their first due instants are spread
   evenly over one interval starting at the moment beat is launched:
   ``due_i = T0 + i * interval / N`` (``last_run_at = due_i - interval``), so
   the due rate is a steady ``N / interval`` fires/s from the start. T0 is
   set 1.5 x the predicted creation time (+1 s) ahead; the harness waits (polls
   the clock) until T0 and launches beat then, so entry 0 is due exactly at
   launch. If creation ever overran T0, beat is launched at once and
   ``launch_minus_first_due_s`` > 0 in the JSON says by how much (entries due
   in that gap are already overdue at launch).
2. ``celery -A benchapp beat -S redbeat.RedBeatScheduler`` (generated minimal
   app, broker = redbeat_redis_url = that Redis, loglevel WARNING = celery's
   default, RedBeat defaults otherwise) runs for --duration seconds, then gets
   SIGTERM.
3. A ``before_task_publish`` receiver inside beat appends one JSON line per
   publication: entry name, ``due`` (= the entry's ``last_run_at`` as loaded
   from Redis + run_every, which is exactly what celery's ``is_due`` compares)
   and ``pub`` (time.time() when the message is about to be pushed).

Figures (per N):
* due/s: N / interval (nominal).
* fires/s (all): publications with pub <= T_end, divided by --duration.
* fires/s (steady): publications in the second half of the run
  [T_launch + duration/2, T_end] divided by duration/2.
* lag = pub - due, p50/p99/max, over all publications and over the steady
  window. Note RedBeat's interval schedule is relative to the previous run
  (last_run_at := time of the run), so a late fire also delays the next due
  instant of that entry; the per-fire lag therefore understates a growing
  backlog. That is why "overdue at end" is also reported.
* overdue at end: entries whose next due instant (last_run_at from Redis +
  interval) is earlier than T_end, i.e. due but not yet emitted, and the age of
  the oldest one.
* max gap: longest time between two consecutive publications (any entry)
  during the run; fires_per_second_series (JSON): publications per second of
  the run. Together they show RedBeat's stalls (see RESULTS.md).
* startup: first publication - process launch (entry 0 is due at launch).
* beat CPU s (utime+stime from /proc at T_end), peak RSS (VmHWM at T_end),
  redis-server CPU s over the run.
* other CPU %: machine-wide busy CPU during the run (/proc/stat) minus beat
  and redis-server CPU, in % of one core. ~0 on a quiet machine; a large value
  means other processes competed with the benchmark (2 cores!).
* msgs in broker: LLEN of the ``celery`` list after beat stopped, a
  cross-check that every recorded publication reached the broker.

Every run is bounded: entry creation by --create-timeout, beat by --duration,
shutdown by 10 s SIGTERM grace then SIGKILL.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import itertools

import _common as C


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Measure RedBeat emission throughput, lag, CPU, RSS and start-up.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--jobs",
        type=int,
        nargs="+",
        default=[1000, 10000],
        help="number(s) of entries; one fresh Redis + beat run per value",
    )
    p.add_argument("--interval", type=float, default=10.0, help="entry interval, seconds")
    p.add_argument("--duration", type=float, default=60.0, help="beat run time per N, seconds")
    p.add_argument("--loglevel", default="WARNING", help="celery beat --loglevel")
    p.add_argument(
        "--create-timeout",
        type=float,
        default=300.0,
        help="give up on an N whose entries take longer than this to store",
    )
    p.add_argument(
        "--repeat", type=int, default=1, help="runs per N (RedBeat's behaviour varies run to run, see RESULTS.md)"
    )
    p.add_argument("--keep", action="store_true", help="keep the temp dir (events, logs)")
    p.add_argument("--json-out", help="also write the final JSON to this file")
    return p.parse_args(argv)


def run_one(n: int, args) -> dict:
    from celery import Celery

    interval = args.interval
    tmp = Path(tempfile.mkdtemp(prefix=f"redbeat-emit-{n}-"))
    events_dir = tmp / "events"
    events_dir.mkdir()
    C.write_celery_app(tmp)
    server = C.RedisServer(tmp)
    result: dict = {
        "jobs": n,
        "interval_s": interval,
        "duration_s": args.duration,
        "due_per_s": n / interval,
        "tmp": str(tmp),
    }
    proc = None
    try:
        app = Celery("harness", broker=server.url)
        app.conf.redbeat_redis_url = server.url
        names = [f"job-{i:06d}" for i in range(n)]

        # Calibrate creation speed on the first 1,000 entries, then put T0 (entry
        # 0 due) safely after the predicted end of creation and launch at T0.
        t_c0 = time.time()
        calib = min(n, 1000)
        C.create_entries(app, names[:calib], interval, [t_c0 + 3600.0] * calib)
        per_entry = (time.time() - t_c0) / calib
        est = per_entry * n * 1.5 + 1.0
        if est > args.create_timeout:
            result["error"] = f"entry creation estimated {est:.0f}s > --create-timeout"
            return result
        t0 = time.time() + est
        first_due = [t0 + i * interval / n for i in range(n)]
        C.create_entries(app, names, interval, first_due)
        t_created = time.time()
        result["create_s"] = round(t_created - t_c0, 3)
        assert server.client.zcard("redbeat::schedule") == n, "entries not all stored"
        # Launch at T0 (entry 0 due) or, if creation overran the estimate, right
        # away: entry 0 is always already due when beat starts, so start-up time
        # is "process start -> first emission" with work waiting.
        while time.time() < t0:
            time.sleep(min(0.01, max(0.0, t0 - time.time())))

        env = C.beat_env(tmp, server.url, events_dir)
        redis_cpu0 = server.cpu_seconds() or 0.0
        busy0 = C.machine_busy_jiffies()
        t_launch = time.time()
        proc = C.start_beat(tmp, env, tmp / "beat.log", args.loglevel)
        result["launch_minus_first_due_s"] = round(t_launch - t0, 3)
        t_end = t_launch + args.duration
        cpu = rss_peak = None
        died = None
        while True:
            now = time.time()
            if proc.poll() is not None:
                died = proc.returncode
                break
            c = C.proc_cpu_seconds(proc.pid)
            h = C.proc_status_kb(proc.pid, "VmHWM")
            if c is not None:
                cpu = c
            if h is not None:
                rss_peak = h
            if now >= t_end:
                break
            time.sleep(min(0.25, max(0.0, t_end - now)))
        t_stop = time.time()
        redis_cpu = (server.cpu_seconds() or 0.0) - redis_cpu0
        busy1 = C.machine_busy_jiffies()
        result["other_cpu_pct"] = C.other_cpu_pct(busy0, busy1, (cpu or 0.0) + redis_cpu)
        C.stop_process(proc)
        if died is not None:
            tail = (tmp / "beat.log.stderr").read_text(errors="replace").strip().splitlines()[-3:]
            result["error"] = f"beat exited early with code {died}: " + " | ".join(tail)

        pubs, _other = C.read_events(events_dir)
        in_run = [e for e in pubs if e["pub"] <= t_end]
        half = t_launch + args.duration / 2.0
        steady = [e for e in in_run if e["pub"] >= half]
        lags = sorted(e["pub"] - e["due"] for e in in_run if e["due"] is not None)
        lags_steady = sorted(e["pub"] - e["due"] for e in steady if e["due"] is not None)

        # overdue at end: next due instant from the state RedBeat left in Redis
        from redbeat.schedulers import RedBeatSchedulerEntry

        overdue, oldest = 0, None
        cli = server.client
        for start in range(0, n, 5000):
            pipe = cli.pipeline(transaction=False)
            for name in names[start : start + 5000]:
                pipe.hget("redbeat:" + name, "meta")
            for raw in pipe.execute():
                meta = RedBeatSchedulerEntry.decode_meta(raw)
                lr = meta.get("last_run_at")
                nxt = lr.timestamp() + interval
                if nxt < t_end:
                    overdue += 1
                    oldest = nxt if oldest is None or nxt < oldest else oldest

        times = [e["pub"] for e in in_run]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        per_sec = [0] * math.ceil(args.duration)
        for t in times:
            i = int(t - t_launch)
            if 0 <= i < len(per_sec):
                per_sec[i] += 1
        result.update(
            {
                "max_gap_s": round(max(gaps), 3) if gaps else None,
                "fires_per_second_series": per_sec,
                "fires": len(in_run),
                "fires_per_s": round(len(in_run) / args.duration, 1),
                "fires_per_s_steady": round(len(steady) / (args.duration / 2.0), 1),
                "lag_p50_s": C.percentile(lags, 50),
                "lag_p99_s": C.percentile(lags, 99),
                "lag_max_s": lags[-1] if lags else None,
                "lag_steady_p50_s": C.percentile(lags_steady, 50),
                "lag_steady_p99_s": C.percentile(lags_steady, 99),
                "lag_steady_max_s": lags_steady[-1] if lags_steady else None,
                "overdue_at_end": overdue,
                "oldest_overdue_age_s": round(t_end - oldest, 3) if oldest else 0.0,
                "startup_s": round(pubs[0]["pub"] - t_launch, 3) if pubs else None,
                "beat_cpu_s": cpu,
                "beat_cpu_pct": round(100.0 * cpu / (t_stop - t_launch), 1) if cpu else None,
                "beat_peak_rss_mib": round(rss_peak / 1024.0, 1) if rss_peak else None,
                "redis_cpu_s": round(redis_cpu, 2),
                "pubs_recorded_total": len(pubs),
                "msgs_in_broker": cli.llen("celery"),
                "pubs_without_entry": sum(1 for e in pubs if e["e"] is None),
            }
        )
        for k in list(result):
            if k.startswith("lag_") and result[k] is not None:
                result[k] = round(result[k], 4)
        return result
    finally:
        if proc is not None:
            C.stop_process(proc)
        server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    C.ensure_peer_venv()
    info = C.machine_info()
    print(f"machine: nproc={info['nproc']} cpu={info['cpu']}")
    print("versions: " + ", ".join(f"{k}={v}" for k, v in info.items() if k not in ("nproc", "cpu")))
    results = []
    for n in args.jobs:
        for rep in range(args.repeat):
            print(
                f"\n== N={n} interval={args.interval}s duration={args.duration}s run {rep + 1}/{args.repeat} ...",
                flush=True,
            )
            r = run_one(n, args)
            r["run"] = rep + 1
            results.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "tmp"}), flush=True)

    print()
    C.print_table(
        [
            "N",
            "run",
            "due/s",
            "fires/s",
            "fires/s steady",
            "lag p50",
            "lag p99",
            "lag max",
            "steady p99",
            "max gap",
            "overdue@end",
            "startup s",
            "CPU s",
            "peak RSS MiB",
            "redis CPU s",
            "other CPU %",
        ],
        [
            [
                r["jobs"],
                r["run"],
                C.fmt(r["due_per_s"], digits=0),
                C.fmt(r.get("fires_per_s"), digits=1),
                C.fmt(r.get("fires_per_s_steady"), digits=1),
                C.fmt(r.get("lag_p50_s"), "s"),
                C.fmt(r.get("lag_p99_s"), "s"),
                C.fmt(r.get("lag_max_s"), "s"),
                C.fmt(r.get("lag_steady_p99_s"), "s"),
                C.fmt(r.get("max_gap_s"), "s"),
                r.get("overdue_at_end", "-"),
                C.fmt(r.get("startup_s"), digits=2),
                C.fmt(r.get("beat_cpu_s"), digits=1),
                C.fmt(r.get("beat_peak_rss_mib"), digits=1),
                C.fmt(r.get("redis_cpu_s"), digits=1),
                C.fmt(r.get("other_cpu_pct"), digits=0),
            ]
            for r in results
        ],
    )
    for r in results:
        if r.get("error"):
            print(f"N={r['jobs']}: {r['error']}")
    out = {
        "bench": "redbeat_emission",
        "machine": info,
        "args": {"interval": args.interval, "duration": args.duration, "loglevel": args.loglevel},
        "results": [{k: v for k, v in r.items() if k != "tmp"} for r in results],
    }
    line = json.dumps(out)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
