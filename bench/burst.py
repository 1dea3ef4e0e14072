"""beatd burst benchmark: N fires due at one instant ("top of the hour"), how soon the last one leaves.

Command (from the repo root)::

    .venv/bin/python bench/burst.py --jobs 100000 --repeat 3 [--py-spy profile.txt]

For each run, in a fresh private redis-server (``bench/_common.RedisServer``: free loopback port, ``--save ''
--appendonly no``, never the system Redis):

1. A config with N jobs ``job-000000`` .. ``{command: ["true"], cron: "M * * * *"}`` (timezone UTC, lease 5 s)
   is written, M the minute of the burst instant T: the first minute boundary at least --ready seconds after
   now, so the beat has loaded the config and leads well before it (the run fails otherwise). This is
   ``0 * * * *`` moved to a minute that comes soon: every job is due at the same instant T, once an hour.
2. ``python -m beatd beat -c CONFIG`` is launched; at T the burst starts; the run waits until N messages are
   in the queue stream (or T + --timeout), then sends SIGTERM.
3. The queue stream is read with XRANGE in chunks.

Figures:

* last after T: Redis time of the last message's XADD (the ms part of its entry id) - T: the target figure
  (issue 15: <= 1 s for 100,000). first after T likewise for the first message; p50 over all messages.
* peak fires/s: the busiest 100 ms bucket, times 10.
* beat CPU: utime + stime (/proc/PID/stat) from T - 0.5 s to the last message (sampled every 20 ms), and per
  fire in µs; redis CPU the same for redis-server.
* commandstats: Redis ``INFO commandstats`` over the burst (calls, µs per call, µs per fire), the top entries.
* lease_losses: "standing down" lines in the beat's log (from launch on: the start of N new jobs counts too);
  lease_min_left_s: the least time the lease had left (PTTL of the leader key, sampled every 20 ms over the
  burst; renewed every third of the lease, it stays above two thirds of it less one poll).
* missing: jobs without a message for T; duplicates: messages beyond the first per fire id; other: messages
  whose scheduled instant is not T.
* with --py-spy FILE: py-spy records the beat (100 Hz, ``--nonblocking``) from T - 0.2 s for the burst and
  writes the top functions (own and total samples) to FILE (raw folded stacks to FILE.folded).

The machine may be shared: each run first waits (at most --quiet-wait s) for the 1-minute load average to fall
to --quiet-load and records the load before and after. Prints one JSON line per run, a table and, with
--repeat > 1, the best and the median of "last after T".
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

NAMESPACE = "bench"
QUEUE_KEY = f"{NAMESPACE}:queue:default"
LEADING = r"leading \d+ jobs"
PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Measure how soon N fires due at one instant leave the beat.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=100_000, help="number of jobs, all due at the same instant")
    parser.add_argument("--repeat", type=int, default=1, help="runs")
    parser.add_argument("--ready", type=float, default=25.0, help="least seconds from launch to the burst")
    parser.add_argument("--timeout", type=float, default=60.0, help="longest wait after the burst instant, s")
    parser.add_argument("--lease", default="5s", help="leader lease")
    parser.add_argument("--quiet-load", type=float, default=1.5, help="before each run, wait for this 1-min load")
    parser.add_argument("--quiet-wait", type=float, default=60.0, help="longest wait for --quiet-load, seconds")
    parser.add_argument("--py-spy", dest="py_spy", help="profile the beat during the burst; write the top here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (config, log)")
    parser.add_argument("--json-out", help="also write the final JSON line to this file")
    return parser.parse_args(argv)


def commandstats(client: Any) -> dict[str, tuple[int, int]]:
    """Redis's calls and µs per command (``INFO commandstats``)."""
    info = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for name, v in info.items()}


def stats_delta(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], fires: int) -> list[Any]:
    """Per command over the burst: calls, total ms, µs per call, µs per fire; busiest first."""
    rows = []
    for name, (calls, usec) in after.items():
        calls0, usec0 = before.get(name, (0, 0))
        if calls > calls0:
            d_calls, d_usec = calls - calls0, usec - usec0
            rows.append(
                [name, d_calls, round(d_usec / 1000, 1), round(d_usec / d_calls, 2), round(d_usec / max(fires, 1), 2)]
            )
    return sorted(rows, key=lambda row: -row[2])[:8]


def summarize_folded(folded: Path, out: Path, top: int = 25) -> None:
    """The top functions of py-spy's folded stacks, by own samples and by total samples."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = [f"samples: {samples}", "", "own %  function"]
    lines += [f"{100 * n / samples:5.1f}  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "total %  function"]
    lines += [f"{100 * n / samples:5.1f}  {frame}" for frame, n in total.most_common(top)]
    out.write_text("\n".join(lines) + "\n")


def run_one(args: argparse.Namespace, run: int) -> dict[str, Any]:
    """One fresh Redis, one beat, one burst; returns the figures."""
    n = args.jobs
    tmp = Path(tempfile.mkdtemp(prefix=f"beatd-burst-{n}-"))
    server = C.RedisServer(tmp)
    result: dict[str, Any] = {"jobs": n, "run": run, "load_before": C.load_average()}
    beat: C.Beat | None = None
    spy: subprocess.Popen[bytes] | None = None
    try:
        burst_s = math.ceil((time.time() + args.ready) / 60) * 60
        minute = int(burst_s // 60 % 60)
        jobs = {f"job-{i:06d}": {"command": ["true"], "cron": f"{minute} * * * *"} for i in range(n)}
        config = C.write_config(tmp / "beatd.yaml", server.url, NAMESPACE, args.lease, jobs, {"timezone": "UTC"})
        del jobs
        beat = C.Beat(config, tmp / "beat.log").start()
        result["burst_after_launch_s"] = round(burst_s - beat.started_at, 1)
        leading = beat.wait_line(LEADING, timeout=max(0.0, burst_s - 1 - time.time()))
        if leading is None:
            result["error"] = f"not leading {1}s before the burst instant ({args.ready:g}s after launch)"
            return result
        result["loaded_s"] = round(leading[0] - beat.started_at, 2)
        client = server.client
        time.sleep(max(0.0, burst_s - 0.5 - time.time()))
        if args.py_spy:
            spy = subprocess.Popen(
                [PY_SPY, "record", "--pid", str(beat.pid), "--rate", "100", "--nonblocking", "--format", "raw",
                 "--output", str(tmp / "spy.folded"), "--duration", str(int(args.timeout))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        stats0 = commandstats(client)
        beat_cpu0 = C.proc_cpu_seconds(beat.pid) or 0.0
        redis_cpu0 = server.cpu_seconds() or 0.0
        deadline = burst_s + args.timeout
        beat_cpu = redis_cpu = None
        lease_left: list[int] = []
        while time.time() < deadline and beat.alive():
            beat_cpu = C.proc_cpu_seconds(beat.pid)
            redis_cpu = server.cpu_seconds()
            lease_left.append(int(client.pttl(f"{NAMESPACE}:leader")))
            if time.time() > burst_s and int(client.xlen(QUEUE_KEY)) >= n:
                break
            time.sleep(0.02)
        stats1 = commandstats(client)
        if spy is not None:
            spy.send_signal(2)  # SIGINT: py-spy writes what it has
            spy.wait(30)
        beat.stop()
        burst_ms = int(burst_s * 1000)
        entries: list[int] = []
        ids: Counter[str] = Counter()
        per_job: set[str] = set()
        other = 0
        for fire in C.read_fires(client, QUEUE_KEY):
            ids[fire.fire_id] += 1
            if fire.scheduled_ms != burst_ms:
                other += 1
                continue
            entries.append(fire.entry_ms - burst_ms)
            per_job.add(fire.job)
        entries.sort()
        buckets = Counter(entry // 100 for entry in entries)
        fires = len(entries)
        result.update(
            {
                "fires": fires,
                "missing": n - len(per_job),
                "duplicates": sum(count - 1 for count in ids.values() if count > 1),
                "other": other,
                "first_after_s": entries[0] / 1000 if entries else None,
                "p50_after_s": C.percentile(entries, 50) / 1000 if entries else None,
                "last_after_s": entries[-1] / 1000 if entries else None,
                "peak_fires_per_s": 10 * max(buckets.values()) if buckets else 0,
                "beat_cpu_s": round(beat_cpu - beat_cpu0, 2) if beat_cpu is not None else None,
                "beat_us_per_fire": round(1e6 * (beat_cpu - beat_cpu0) / fires, 1) if beat_cpu and fires else None,
                "redis_cpu_s": round(redis_cpu - redis_cpu0, 2) if redis_cpu is not None else None,
                "redis_us_per_fire": round(1e6 * (redis_cpu - redis_cpu0) / fires, 1) if redis_cpu and fires else None,
                "commandstats": stats_delta(stats0, stats1, fires),
                "lease_losses": sum(1 for _, line in beat.lines if "standing down" in line),
                "lease_min_left_s": min(lease_left) / 1000 if lease_left else None,
                "load_after": C.load_average(),
            }
        )
        if spy is not None and (tmp / "spy.folded").exists():
            out = Path(args.py_spy if args.repeat == 1 else f"{args.py_spy}.{run}")
            shutil.copy(tmp / "spy.folded", f"{out}.folded")
            summarize_folded(tmp / "spy.folded", out)
        return result
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
        if beat is not None:
            beat.stop()
        server.stop()
        if args.keep:
            result["tmp"] = str(tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Run the bursts, print the JSON lines, the table and best / median."""
    args = parse_args(argv)
    info = C.machine()
    C.print_machine(info)
    results = []
    for run in range(1, args.repeat + 1):
        print(f"\n== burst N={args.jobs} run {run}/{args.repeat} (load {C.load_average()}) ...", flush=True)
        waited = C.wait_for_quiet(args.quiet_load, args.quiet_wait)
        result = run_one(args, run)
        result["waited_for_quiet_s"] = waited
        results.append(result)
        print(json.dumps(result), flush=True)
    print()
    C.print_table(
        ["N", "run", "loaded s", "first s", "p50 s", "last s", "peak/s", "missing", "dup", "beat CPU s",
         "µs/fire", "redis CPU s", "redis µs/fire", "load"],
        [
            [r["jobs"], r["run"], C.fmt(r.get("loaded_s"), digits=2), C.fmt(r.get("first_after_s"), digits=3),
             C.fmt(r.get("p50_after_s"), digits=3), C.fmt(r.get("last_after_s"), digits=3),
             r.get("peak_fires_per_s", "-"), r.get("missing", "-"), r.get("duplicates", "-"),
             C.fmt(r.get("beat_cpu_s"), digits=2), C.fmt(r.get("beat_us_per_fire"), digits=1),
             C.fmt(r.get("redis_cpu_s"), digits=2), C.fmt(r.get("redis_us_per_fire"), digits=1),
             f"{r['load_before'][0]}/{r.get('load_after', ['-'])[0]}"]
            for r in results
        ],
    )  # fmt: skip
    for r in results:
        if r.get("error"):
            print(f"run {r['run']}: {r['error']}")
        elif r.get("commandstats"):
            print(f"run {r['run']} commandstats (command, calls, ms, µs/call, µs/fire): {r['commandstats']}")
    lasts = [r["last_after_s"] for r in results if r.get("last_after_s") is not None]
    if lasts:
        print(f"last after T: best {min(lasts):.3f} s, median {statistics.median(lasts):.3f} s over {len(lasts)} runs")
    line = json.dumps({"bench": "beatd_burst", "machine": info, "args": vars(args), "results": results})
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
