"""beatd history memory benchmark: Redis bytes per kept run record and per job, and the budget of a fleet.

Command (from the repo root)::

    .venv/bin/python bench/history_memory.py --jobs 20 --extra 200 [--output-lines 10] [--fleet 100000]

In a fresh private redis-server (``bench/_common.RedisServer``: free loopback port, ``--save '' --appendonly
no``; never the system Redis), records are made by the real write path: a config of --jobs jobs
``job-000000`` .. ``{call: tests.worker_jobs:noop, every: 10s, overlap: allow}`` (with --output-lines L,
``tests.output_jobs:numbered`` printing L lines of 11 bytes, kept as the record's output tail), default
``history`` (``keep`` = ``defaults.HISTORY_KEEP``, ``max_age`` = ``defaults.HISTORY_MAX_AGE``); their fires
are XADDed to the queue stream as the beat writes them (trigger ``schedule``, fire id ``job@instant``, one
every 10 s up to now, interleaved by job), and one ``beatd worker --isolation thread`` claims and runs them,
each claim writing a ``running`` record and each end its final one in ``lua/claim.lua`` and
``lua/finish.lua``: the record (hash field), its index entry (sorted set), the prune to ``keep``, the job's
ended stream entry, the run-count bucket. The worker is stopped before each measurement (its heartbeat goes).

1. full: ``keep`` fires per job: history at its bound.
2. steady: --extra more fires per job: the prune holds every job at ``keep`` records (checked).

Figures per phase: ``INFO memory`` used_memory over the empty server (all keys, Redis's own overhead
included), and ``MEMORY USAGE key SAMPLES 0`` summed per kind of key: ``runs:{job}`` (the records),
``runs:{job}:by-time`` (their index), ``ended:{job}``, the tally buckets, the rest (queue stream and its
group, attempts, audit). Per record: (records + index) / records kept; per job: ended stream and key
overheads. The mean record JSON length says how much of a record is its text. A run that prints also has a live
output stream (``output:{run_id}``), kept ``OUTPUT_STREAM_TTL_ENDED`` after its run ended: counted apart
(``output``), per stream, and in the budget as the streams of the fleet's runs of that last span.

Budget: a fleet of --fleet jobs every --interval s for a day (86,400 / interval fires a job) keeps
min(keep, max_age / interval) records a job (history is pruned to the newer bound); bytes = fleet x (kept x
bytes per record + bytes per job). Printed for the default retention and for the ``keep`` values of
--keep-options, each with today's ended stream and with the stream capped at each of --ended-options (the
first job's ends XADDed again, in order, with ``MAXLEN ~ M`` to a scratch key, measured, deleted: what the
finisher's command would keep). Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from beatd import defaults
from beatd.config import JobSpec, load_config
from beatd.messages import Message, fire_id, format_utc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

NAMESPACE = "bench"
QUEUE_KEY = f"{NAMESPACE}:queue:default"
WORKER = ("worker", "--isolation", "thread", "--concurrency", "8", "--prefetch", "32", "--log-level", "warning")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Measure Redis bytes per kept run record and per job; print a fleet's history budget.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=20, help="jobs measured")
    parser.add_argument("--extra", type=int, default=200, help="fires per job after history is full")
    parser.add_argument("--interval", type=int, default=10, help="the jobs' interval, seconds")
    parser.add_argument("--output-lines", type=int, default=0, help="lines (11 bytes) each run prints; 0: none")
    parser.add_argument("--fleet", type=int, default=100_000, help="jobs of the fleet the budget is for")
    parser.add_argument("--keep-options", type=int, nargs="*", default=[200, 100], help="other keep values")
    parser.add_argument(
        "--ended-options", type=int, nargs="*", default=[100], help="other ENDED_MAXLEN values (replayed)"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="longest drain of one phase, seconds")
    parser.add_argument("--json-out", help="also write the final JSON line to this file")
    return parser.parse_args(argv)


def kept_per_job(keep: int, max_age_s: float, interval_s: float) -> int:
    """Records one job keeps at steady state: ``keep``, or the fires within ``max_age`` when fewer."""
    return min(keep, int(max_age_s // interval_s))


def budget(
    fleet: int, interval_s: float, keep: int, max_age_s: float, record_bytes: float, job_bytes: float
) -> dict[str, Any]:
    """History of ``fleet`` jobs every ``interval_s`` at steady state (reached within a day when
    ``keep`` < a day's fires): records kept and Redis bytes, with ``record_bytes`` per kept record and
    ``job_bytes`` per job (ended stream, key overheads)."""
    kept = kept_per_job(keep, max_age_s, interval_s)
    total = fleet * (kept * record_bytes + job_bytes)
    return {
        "fleet": fleet,
        "keep": keep,
        "fires_per_job_per_day": int(86_400 // interval_s),
        "kept_per_job": kept,
        "records": fleet * kept,
        "bytes": round(total),
        "gib": round(total / 2**30, 2),
    }


def job_names(count: int) -> list[str]:
    """The jobs' names (the width of a 100,000-job fleet's)."""
    return [f"job-{index:06d}" for index in range(count)]


def write_jobs_config(path: Path, url: str, names: list[str], interval: int, output_lines: int) -> Path:
    """A worker config of the measured jobs (default history)."""
    body: dict[str, Any] = {"call": "tests.worker_jobs:noop", "every": f"{interval}s", "overlap": "allow"}
    if output_lines:
        body = {**body, "call": "tests.output_jobs:numbered", "kwargs": {"count": output_lines}}
    return C.write_config(path, url, NAMESPACE, "5s", dict.fromkeys(names, body), {"pythonpath": [str(C.REPO)]})


def enqueue(client: Any, specs: dict[str, JobSpec], first: datetime, count: int, interval: int) -> int:
    """``count`` scheduled fires of every job, from ``first`` on every ``interval`` s, interleaved by job, as
    the beat writes them (the job's digest and arguments; unsigned: no signing key); returns how many."""
    pipe = client.pipeline(transaction=False)
    for step in range(count):
        scheduled = first + timedelta(seconds=step * interval)
        text = format_utc(scheduled)
        for name, spec in specs.items():
            message = Message(
                fire_id=fire_id(name, scheduled), job=name, scheduled_at=text, emitted_at=text,
                trigger="schedule", config_digest=spec.digest, args=list(spec.args), kwargs=dict(spec.kwargs),
            )  # fmt: skip
            pipe.xadd(QUEUE_KEY, {"message": message.to_json(), "sig": ""})
        if len(pipe) >= 5000:
            pipe.execute()
    pipe.execute()
    return count * len(specs)


def drain(config: Path, log: Path, client: Any, timeout: float) -> float:
    """Run one worker until the queue stream is empty (each entry is deleted as its end is written); stop it."""
    worker = C.Beat(config, log, command=WORKER).start()
    started = time.monotonic()
    try:
        while int(client.xlen(QUEUE_KEY)) > 0:
            if time.monotonic() - started > timeout or not worker.alive():
                raise SystemExit(f"queue not drained ({client.xlen(QUEUE_KEY)} left); see {log}")
            time.sleep(0.2)
        return round(time.monotonic() - started, 1)
    finally:
        worker.stop()


def usage(client: Any, key: str) -> int:
    """``MEMORY USAGE key SAMPLES 0``: every element counted."""
    return int(client.memory_usage(key, samples=0) or 0)


def measure(client: Any, names: list[str], baseline: int) -> dict[str, Any]:
    """Bytes by kind of key, records kept, their mean JSON length."""
    kinds = {"records": 0, "index": 0, "ended": 0, "tally": 0, "output": 0, "other": 0}
    outputs = 0
    records = index = ended = text = 0
    for name in names:
        kinds["records"] += usage(client, f"{NAMESPACE}:runs:{name}")
        kinds["index"] += usage(client, f"{NAMESPACE}:runs:{name}:by-time")
        kinds["ended"] += usage(client, f"{NAMESPACE}:ended:{name}")
        records += int(client.hlen(f"{NAMESPACE}:runs:{name}"))
        index += int(client.zcard(f"{NAMESPACE}:runs:{name}:by-time"))
        ended += int(client.xlen(f"{NAMESPACE}:ended:{name}"))
        text += sum(len(value) for value in client.hvals(f"{NAMESPACE}:runs:{name}"))
    jobs = set(names)
    for key in client.scan_iter(match=f"{NAMESPACE}:*", count=10_000):
        if key.startswith(f"{NAMESPACE}:tally:"):
            kinds["tally"] += usage(client, key)
        elif key.startswith(f"{NAMESPACE}:output:"):
            kinds["output"] += usage(client, key)
            outputs += 1
        elif not (key.startswith((f"{NAMESPACE}:runs:", f"{NAMESPACE}:ended:")) and key.split(":")[2] in jobs):
            kinds["other"] += usage(client, key)
    info = client.info("memory")
    statuses: dict[str, int] = {}
    for value in client.hvals(f"{NAMESPACE}:runs:{names[0]}"):
        status = json.loads(value)["status"]
        statuses[status] = statuses.get(status, 0) + 1
    return {
        **{f"{kind}_bytes": value for kind, value in kinds.items()},
        "records": records,
        "indexed": index,
        "ended_entries": ended,
        "statuses_of_first_job": statuses,
        "dead_letters": int(client.xlen(f"{NAMESPACE}:dead")),
        "output_streams": outputs,
        "record_json_mean": round(text / records, 1) if records else None,
        "used_memory_delta": int(info["used_memory"]) - baseline,
        "used_memory_rss_mb": round(int(info["used_memory_rss"]) / 2**20, 1),
        "fragmentation": info.get("mem_fragmentation_ratio"),
    }


def replay_ended(client: Any, job: str, maxlen: int) -> int:
    """Bytes of ``job``'s ended stream had it been capped at ``maxlen``: its entries XADDed again, in order, to a
    scratch key with ``MAXLEN ~ maxlen`` (the finisher's command), which is then measured and deleted."""
    scratch = f"{NAMESPACE}:scratch:ended"
    client.delete(scratch)
    pipe = client.pipeline(transaction=False)
    for _, fields in client.xrange(f"{NAMESPACE}:ended:{job}"):
        pipe.xadd(scratch, fields, maxlen=maxlen, approximate=True)
    pipe.execute()
    size = usage(client, scratch)
    client.delete(scratch)
    return size


def main(argv: list[str] | None = None) -> int:
    """Fill history to its bound, run past it, measure both, print the budget."""
    args = parse_args(argv)
    info = C.machine()
    C.print_machine(info)
    keep, max_age_s = defaults.HISTORY_KEEP, defaults.HISTORY_MAX_AGE.total_seconds()
    tmp = Path(tempfile.mkdtemp(prefix="beatd-history-"))
    server = C.RedisServer(tmp)
    client = server.client
    names = job_names(args.jobs)
    phases: dict[str, dict[str, Any]] = {}
    try:
        config = write_jobs_config(tmp / "beatd.yaml", server.url, names, args.interval, args.output_lines)
        specs = load_config(config, {}).jobs
        baseline = int(client.info("memory")["used_memory"])
        now = datetime.now(UTC).replace(microsecond=0)
        first = now - timedelta(seconds=(keep + args.extra) * args.interval)
        for phase, start, count in (("full", 0, keep), ("steady", keep, args.extra)):
            fires = enqueue(client, specs, first + timedelta(seconds=start * args.interval), count, args.interval)
            drained = drain(config, tmp / f"worker-{phase}.log", client, args.timeout)
            phases[phase] = {"fires": fires, "drain_s": drained, **measure(client, names, baseline)}
            print(f"{phase}: {fires} fires drained in {drained} s, load {C.load_average()}", flush=True)
        ended_options = {maxlen: replay_ended(client, names[0], maxlen) for maxlen in args.ended_options}
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    steady = phases["steady"]
    if steady["records"] != args.jobs * keep or steady["indexed"] != args.jobs * keep:
        raise SystemExit(f"history not at its bound: {steady['records']} records, {steady['indexed']} indexed")
    record_bytes = (steady["records_bytes"] + steady["index_bytes"]) / steady["records"]
    job_bytes = steady["ended_bytes"] / args.jobs
    all_in = steady["used_memory_delta"] / steady["records"]
    ended_bytes = {defaults.ENDED_MAXLEN: job_bytes, **ended_options}
    budgets = [
        {**budget(args.fleet, args.interval, option, max_age_s, record_bytes, ended_bytes[maxlen]), "ended": maxlen}
        for maxlen in ended_bytes
        for option in [keep, *args.keep_options]
    ]
    C.print_table(
        ["phase", "fires", "records", "records B", "index B", "ended B", "tally B", "output B", "other B",
         "used_memory +", "B/record (records+index)", "JSON chars", "ended entries/job"],
        [
            [phase, r["fires"], r["records"], r["records_bytes"], r["index_bytes"], r["ended_bytes"],
             r["tally_bytes"], r["output_bytes"], r["other_bytes"], r["used_memory_delta"],
             round((r["records_bytes"] + r["index_bytes"]) / r["records"], 1), r["record_json_mean"],
             round(r["ended_entries"] / args.jobs, 1)]
            for phase, r in phases.items()
        ],
    )  # fmt: skip
    print(
        f"\nper kept record {record_bytes:.0f} B (records + index), {all_in:.0f} B all in (used_memory); "
        f"per job {job_bytes:.0f} B of ended stream (ENDED_MAXLEN {defaults.ENDED_MAXLEN}); replayed at MAXLEN ~ "
        + ", ".join(f"{maxlen}: {size} B" for maxlen, size in ended_options.items())
    )
    if steady["output_streams"]:
        stream_bytes = steady["output_bytes"] / steady["output_streams"]
        live = args.fleet / args.interval * defaults.OUTPUT_STREAM_TTL_ENDED.total_seconds()
        out_output = {"bytes_per_stream": round(stream_bytes), "streams_alive": round(live),
                      "gib": round(live * stream_bytes / 2**30, 2)}  # fmt: skip
        print(
            f"live output streams: {stream_bytes:.0f} B each; the fleet's runs of the last "
            f"{defaults.OUTPUT_STREAM_TTL_ENDED} keep {live:,.0f} of them: {out_output['gib']} GiB more"
        )
    else:
        out_output = None
    C.print_table(
        ["fleet", "every s", "keep", "ended maxlen", "fires/job/day", "kept/job", "records", "GiB"],
        [[b["fleet"], args.interval, b["keep"], b["ended"], b["fires_per_job_per_day"], b["kept_per_job"],
          b["records"], b["gib"]] for b in budgets],
    )  # fmt: skip
    out = {
        "bench": "beatd_history_memory",
        "machine": info,
        "args": vars(args),
        "retention": {"keep": keep, "max_age_s": max_age_s},
        "phases": phases,
        "record_bytes": round(record_bytes, 1),
        "record_bytes_all_in": round(all_in, 1),
        "job_bytes": round(job_bytes, 1),
        "ended_bytes_by_maxlen": ended_bytes,
        "budgets": budgets,
        "output_streams": out_output,
    }
    C.print_json_line(out, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
