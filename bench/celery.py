"""beatd as Celery's beat, beside RedBeat in the same run: emission into Celery's queue, and kill -9 fail-over
with a real Celery worker executing.

Command (from the repo root; celery and celery-redbeat come with the dev extras)::

    .venv/bin/python bench/celery.py --jobs 1000 10000 --interval 10 --duration 30 --kills 5
    .venv/bin/python bench/celery.py --quick        # 200 jobs, 10 s runs, 2 kills: a smoke run (~1 min)

Each part runs in a fresh private redis-server (free loopback port, ``--save '' --appendonly no``, never the
system Redis), beatd's side and RedBeat's one after the other.

**Emission**, per N in --jobs: N jobs every --interval s, their phases spread evenly over the interval.
beatd: ``{celery: bench.noop, every: ..., start: ..., catchup: all}`` with the broker in database 1 of the same
server (the fenced script SELECTs it and LPUSHes the task message onto the ``celery`` list); each job's
``{ns}:progress`` (and schedule digest) is seeded at its last grid instant before the launch, so, as RedBeat's
entries, every fire due from the launch on is the beat's to send (a job without progress would start from
the beat's first leadership, and the fires due while it loads would be neither late nor lost);
``python -m beatd beat`` runs --duration s, then SIGTERM. RedBeat: ``bench/peers/redbeat_emission.py``'s own
run (entries stored with ``RedBeatSchedulerEntry.save()``, ``celery beat -S redbeat.RedBeatScheduler``,
defaults), in this interpreter.
Definitions are the peer benchmark's:

* fires/s: fires sent within the run / --duration. No worker consumes here (the figures are the beat's).
* lag = when the message was pushed - the scheduled instant, nearest-rank p50 / p99, over the messages
  pushed within the run. beatd: a thread samples the broker list's length every 10 ms; the n-th message
  (LPUSH order) was pushed by the first sample counting more than n, so its push time is late by at most a
  step (its scheduled instant is its ``beatd_fire_id``'s). RedBeat: ``before_task_publish`` time (just
  before kombu's push) - ``last_run_at + interval``. ``lag_planned_*`` (JSON only): beatd's ``sent`` record's
  ``emitted_at`` (the tick's clock when it planned the batch, before the fenced push) - ``scheduled_at``.
* lost (beatd): for each job, instants of its grid between its first and its last task message in the broker
  list that have no message (holes; a message's fire is read from its ``beatd_fire_id`` header), and
  ``jobs_never_sent``: jobs whose progress moved with no message at all. dup: messages beyond the first with
  the same fire id. RedBeat reports ``overdue@end`` instead (its interval schedule is relative to
  the last run, so a late fire moves the next and nothing is a hole): entries due at the end not yet sent.
  Its counterpart for beatd, ``unsent_due_at_end``: instants due after the seeded progress and by the end of
  the run with no ``sent`` record emitted by then (counted per instant; RedBeat's per entry, each at most 1).

**Fail-over** (--kills > 0): --replicas beats of each, --entries jobs every 1 s, and one real
``celery -A benchapp worker --pool solo`` consuming the queue and executing every task: the task appends its
fire (``self.request.beatd_fire_id``; for RedBeat, the entry and the time) to a ledger, one line per
execution. Each kill: the leader (``{ns}:leader``'s pid) gets ``kill -9``, a replacement starts at once, and
takeover = the first progress advance (polled every 10 ms) - the kill. After the last kill the beats stop,
the worker drains the queue (bounded), and: doubled = executions beyond the first of one fire; lost = for
each job, instants between its first and last execution with none (beatd's grid is fixed-rate, ``catchup:
all``). RedBeat's side is ``bench/peers/redbeat_failover.py`` (tuned: ``--lock-timeout 5 --max-loop-interval
1``, publications counted by its ``before_task_publish`` hook, not executions: its harness has no worker).

Bounded: each run by --duration, each takeover by 30 s, the drain by 30 s. Prints tables and a final JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import redis

# This file is named celery.py: its folder must not shadow the celery package (the RedBeat peer imports it).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]
_common_spec = importlib.util.spec_from_file_location("_common", _HERE / "_common.py")
assert _common_spec is not None and _common_spec.loader is not None
C = importlib.util.module_from_spec(_common_spec)
sys.modules["_common"] = C
_common_spec.loader.exec_module(C)

NAMESPACE = "bench"
BROKER_DB = 1
WORKER_APP = '''\
"""Celery app of bench/celery.py's fail-over run (generated): the task records each execution."""
import json
import os
import time

from celery import Celery

app = Celery("benchapp", broker=os.environ["BENCH_BROKER_URL"])
app.conf.broker_connection_retry_on_startup = True
app.conf.redbeat_redis_url = os.environ["BENCH_BROKER_URL"]
LEDGER = open(os.environ["BENCH_LEDGER"], "a", buffering=1)


@app.task(name="bench.noop", bind=True)
def noop(self, *args, **kwargs):
    fire = getattr(self.request, "beatd_fire_id", None)
    LEDGER.write(json.dumps({"fire": fire, "task_id": self.request.id, "t": time.time()}) + "\\n")
'''


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="beatd into Celery's queue beside RedBeat: emission at N jobs and kill -9 fail-over.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=[1000, 10000], help="N; one emission run each")
    parser.add_argument("--interval", type=int, default=10, help="emission: job interval, whole seconds")
    parser.add_argument("--duration", type=float, default=30.0, help="emission: run time per N and scheduler, s")
    parser.add_argument("--replicas", type=int, default=3, help="fail-over: beat replicas")
    parser.add_argument("--entries", type=int, default=20, help="fail-over: jobs, every 1 s")
    parser.add_argument("--kills", type=int, default=5, help="fail-over: kill -9 events (0: no fail-over part)")
    parser.add_argument("--settle", type=float, default=3.0, help="fail-over: emission after a takeover, s")
    parser.add_argument("--lease", default="5s", help="beatd's leader lease")
    parser.add_argument("--no-redbeat", action="store_true", help="beatd's side only")
    parser.add_argument("--quick", action="store_true", help="200 jobs, 10 s runs, 2 kills (a smoke run)")
    parser.add_argument("--json-out", help="also write the final JSON line to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.duration, args.kills, args.entries, args.settle = [200], 10.0, 2, 10, 2.0
    return args


def _peer(name: str) -> ModuleType:
    """A RedBeat peer benchmark (bench/peers/NAME.py), loaded with the peers' own ``_common``, running its
    ``celery`` from this interpreter's environment instead of bench/.peer-venv."""
    C.peers.VENV_CELERY = Path(sys.executable).with_name("celery")
    path = _HERE / "peers" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_peers_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    ours = sys.modules.get("_common")
    sys.modules["_common"] = C.peers
    try:
        spec.loader.exec_module(module)
    finally:
        if ours is not None:
            sys.modules["_common"] = ours
    return module


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def celery_jobs(n: int, interval: int, task: str = "bench.noop") -> tuple[dict[str, dict[str, Any]], list[int]]:
    """N celery jobs ``job-000000`` .. every ``interval`` s, spread evenly (``start``); and their phases (ms)."""
    interval_ms = interval * 1000
    anchor = (int(time.time() * 1000) - 86_400_000) // interval_ms * interval_ms
    phases = [i * interval_ms // n for i in range(n)]
    jobs = {
        f"job-{i:06d}": {"celery": task, "every": f"{interval}s", "catchup": "all", "start": _stamp(anchor + phase)}
        for i, phase in enumerate(phases)
    }
    return jobs, phases


def _config(tmp: Path, server: Any, lease: str, jobs: dict[str, dict[str, Any]]) -> Path:
    broker = f"redis://127.0.0.1:{server.port}/{BROKER_DB}"
    return C.write_config(tmp / "beatd.yaml", server.url, NAMESPACE, lease, jobs, {"celery": {"broker_url": broker}})


def _broker_messages(server: Any) -> list[dict[str, Any]]:
    """Every task message in the broker's ``celery`` list (database 1), parsed."""
    broker = redis.Redis(host="127.0.0.1", port=server.port, db=BROKER_DB, decode_responses=True)
    total, messages = broker.llen("celery"), []
    for start in range(0, total, 5000):
        messages.extend(json.loads(raw) for raw in broker.lrange("celery", start, start + 4999))
    return messages


def _seed_progress(client: Any, config: Path, jobs: dict[str, dict[str, Any]], interval_ms: int) -> dict[str, int]:
    """Each job's progress at its last grid instant at or before now (with its schedule digest, so the beat
    continues it rather than starting it from its first leadership): the fires due from the launch on are
    the beat's to send, late or not, as RedBeat's entries due from its launch are. The seeded values."""
    from beatd.config import load_config

    specs = load_config(config, {}).jobs
    now_ms = int(time.time() * 1000)
    seeded = {}
    for name, job in jobs.items():
        first = C.parse_ms(job["start"])
        seeded[name] = first + (now_ms - first) // interval_ms * interval_ms
    client.hset(f"{NAMESPACE}:progress", mapping=seeded)
    client.hset(f"{NAMESPACE}:schedules", mapping={name: specs[name].schedule_digest for name in jobs})
    return seeded


class _PushClock(threading.Thread):
    """Samples the broker list's length every ``step`` s: the n-th message pushed (LPUSH order) was in the
    list by the first sample counting more than n, so its push time is known to within one step (late)."""

    def __init__(self, server: Any, step: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.broker = redis.Redis(host="127.0.0.1", port=server.port, db=BROKER_DB)
        self.step, self.samples, self.done = step, [(0.0, 0)], threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            length = int(self.broker.llen("celery"))
            if length > self.samples[-1][1]:
                self.samples.append((time.time(), length))
            time.sleep(self.step)

    def pushed_by(self, count: int) -> list[float]:
        """The push time (upper bound) of each of the first ``count`` messages, oldest first."""
        times, index = [], 1
        for position in range(count):
            while index < len(self.samples) and self.samples[index][1] <= position:
                index += 1
            times.append(self.samples[index][0] if index < len(self.samples) else float("inf"))
        return times


def beatd_emission(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """One beatd emission run into Celery's queue; the figures (see the module docstring)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"beatd-celery-{n}-"))
    server = C.RedisServer(tmp)
    result: dict[str, Any] = {"scheduler": "beatd", "jobs": n, "due_per_s": n / args.interval}
    beat, clock = None, _PushClock(server)
    interval_ms = args.interval * 1000
    try:
        jobs, _phases = celery_jobs(n, args.interval)
        config = _config(tmp, server, args.lease, jobs)
        client = server.client
        seeded = _seed_progress(client, config, jobs, interval_ms)
        clock.start()
        beat = C.Beat(config, tmp / "beat.log").start()
        end = beat.started_at + args.duration
        while time.time() < end and beat.alive():
            time.sleep(0.2)
        end_ms = int(end * 1000)
        due_at_end = {name: (end_ms - seeded[name]) // interval_ms for name in jobs}  # instants in (seed, end]
        beat.stop()
        clock.done.set()
        clock.join(5)
        leaders = [
            json.loads(f["record"]) for _, f in client.xrange(f"{NAMESPACE}:audit") if f.get("event") == "leader"
        ]
        if not leaders:
            return result | {"error": "no leader within the run"}
        progress = {job: int(value) for job, value in client.hgetall(f"{NAMESPACE}:progress").items()}
        planned_lags, sent_due = [], Counter[str]()
        pipe = client.pipeline(transaction=False)
        for name in jobs:
            pipe.hvals(f"{NAMESPACE}:runs:{name}")
        for name, values in zip(jobs, pipe.execute(), strict=True):
            for raw in values:
                record = json.loads(raw)
                if record.get("status") != "sent":
                    continue
                emitted, scheduled = C.parse_ms(record["emitted_at"]), C.parse_ms(record["scheduled_at"])
                if emitted <= end_ms:
                    planned_lags.append(emitted - scheduled)
                    sent_due[name] += scheduled <= end_ms
        messages = _broker_messages(server)[::-1]  # LPUSH: the list's tail is the first pushed
        pushed = clock.pushed_by(len(messages))
        lags = sorted(
            int(at * 1000) - C.parse_ms(message["headers"]["beatd_fire_id"].rpartition("@")[2])
            for message, at in zip(messages, pushed, strict=True)
            if at * 1000 <= end_ms
        )
        fires = Counter(message["headers"]["beatd_fire_id"] for message in messages)
        delivered: dict[str, set[int]] = {}
        for message_fire in fires:
            job, _, instant = message_fire.rpartition("@")
            delivered.setdefault(job, set()).add(C.parse_ms(instant))
        # A hole: an instant of the job's grid between its first and last message with no message.
        lost = sum((max(got) - min(got)) // interval_ms + 1 - len(got) for got in delivered.values())
        unscheduled = sum(1 for name in jobs if name not in delivered and progress.get(name, -1) > seeded[name])
        planned_lags.sort()
        return result | {
            "fires": len(lags),
            "fires_per_s": round(len(lags) / args.duration, 1),
            "lag_p50_s": _seconds(C.percentile(lags, 50)),
            "lag_p99_s": _seconds(C.percentile(lags, 99)),
            "lag_max_s": _seconds(lags[-1]) if lags else None,
            "lag_planned_p50_s": _seconds(C.percentile(planned_lags, 50)),
            "lag_planned_p99_s": _seconds(C.percentile(planned_lags, 99)),
            "push_clock_step_s": clock.step,
            "lost": lost,
            "jobs_never_sent": unscheduled,
            "unsent_due_at_end": sum(max(0, due_at_end[name] - sent_due[name]) for name in jobs),
            "duplicates": sum(count - 1 for count in fires.values()),
            "messages_in_broker": sum(fires.values()),
            "first_leader_after_launch_s": round(C.parse_ms(leaders[0]["at"]) / 1000 - beat.started_at, 3),
        }
    finally:
        clock.done.set()
        if beat is not None:
            beat.stop()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else round(ms / 1000, 4)


def redbeat_emission(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """RedBeat's own emission run (bench/peers/redbeat_emission.py) at the same N, interval and duration."""
    peer = _peer("redbeat_emission")
    options = peer.parse_args(["--interval", str(args.interval), "--duration", str(args.duration)])
    figures: dict[str, Any] = peer.run_one(n, options)
    keep = ("jobs", "due_per_s", "fires", "fires_per_s", "lag_p50_s", "lag_p99_s", "overdue_at_end", "error")
    return {"scheduler": "redbeat"} | {key: figures[key] for key in keep if key in figures}


def beatd_failover(args: argparse.Namespace) -> dict[str, Any]:
    """kill -9 of beatd's leader, --kills times, with a Celery worker executing; the figures."""
    tmp = Path(tempfile.mkdtemp(prefix="beatd-celery-failover-"))
    server = C.RedisServer(tmp)
    client = server.client
    (tmp / "benchapp.py").write_text(WORKER_APP)
    ledger = tmp / "ledger.jsonl"
    env = {**os.environ, "PYTHONPATH": str(tmp), "BENCH_LEDGER": str(ledger),
           "BENCH_BROKER_URL": f"redis://127.0.0.1:{server.port}/{BROKER_DB}"}  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "benchapp", "worker", "--pool", "solo", "--without-heartbeat",
         "--without-gossip", "--without-mingle", "-l", "warning"],
        cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "worker.log").open("wb"), start_new_session=True,
    )  # fmt: skip
    beats: list[C.Beat] = []
    takeovers: list[float | None] = []
    try:
        jobs, _phases = celery_jobs(args.entries, 1)
        config = _config(tmp, server, args.lease, jobs)
        beats = [C.Beat(config, tmp / f"beat-{i}.log").start() for i in range(args.replicas)]
        if _poll(lambda: client.hlen(f"{NAMESPACE}:progress") > 0, 60) is None:
            return {"scheduler": "beatd", "error": "no fire within 60 s"}
        time.sleep(args.settle)
        for number in range(args.kills):
            token = client.get(f"{NAMESPACE}:leader") or ""
            victim = next((beat for beat in beats if f":{beat.pid}:" in token), None)
            if victim is None:
                takeovers.append(None)
                continue
            before = client.hgetall(f"{NAMESPACE}:progress")
            killed_at = time.time()
            os.kill(victim.pid, signal.SIGKILL)
            beats.append(C.Beat(config, tmp / f"beat-r{number}.log").start())
            advanced = _poll(lambda before=before, token=token: _advanced(client, before, token), 30)
            takeovers.append(round(advanced - killed_at, 3) if advanced else None)
            time.sleep(args.settle)
        for beat in beats:
            beat.stop()
        broker = redis.Redis(host="127.0.0.1", port=server.port, db=BROKER_DB)
        _poll(lambda: broker.llen("celery") == 0, 30)
        time.sleep(1.0)  # the task in hand is written to the ledger
        executions = Counter(json.loads(line)["fire"] for line in ledger.read_text().splitlines() if line.strip())
        by_job: dict[str, list[int]] = {}
        for fire in executions:
            job, _, instant = str(fire).rpartition("@")
            by_job.setdefault(job, []).append(C.parse_ms(instant))
        lost = sum((max(ms) - min(ms)) // 1000 + 1 - len(ms) for ms in by_job.values())
        taken = sorted(value for value in takeovers if value is not None)
        return {
            "scheduler": "beatd",
            "kills": args.kills,
            "takeover_s": taken,
            "takeover_p50_s": C.percentile(taken, 50),
            "takeover_max_s": taken[-1] if taken else None,
            "executions": sum(executions.values()),
            "fires_executed": len(executions),
            "lost": lost,
            "doubled": sum(count - 1 for count in executions.values()),
            "consumer": "celery worker --pool solo (executions)",
        }
    finally:
        for beat in beats:
            beat.stop()
        if worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _advanced(client: Any, before: dict[str, str], old_token: str) -> bool:
    """True once another replica holds the lease and some job's progress moved past ``before``."""
    token = client.get(f"{NAMESPACE}:leader")
    if not token or token == old_token:
        return False
    now = client.hgetall(f"{NAMESPACE}:progress")
    return any(int(value) > int(before.get(job, -1)) for job, value in now.items())


def _poll(predicate: Any, timeout: float, step: float = 0.01) -> float | None:
    """The time.time() at which ``predicate()`` first held, polling every ``step`` s; None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.time()
        time.sleep(step)
    return None


def redbeat_failover(args: argparse.Namespace) -> dict[str, Any]:
    """RedBeat's own fail-over run (bench/peers/redbeat_failover.py), tuned to a 5 s lock, same replicas,
    entries and kills; its figures are from publications (no worker in its harness)."""
    out = Path(tempfile.mkdtemp(prefix="redbeat-celery-failover-")) / "out.json"
    peer = _peer("redbeat_failover")
    C.peers.ensure_peer_venv = lambda: None  # this interpreter has celery and celery-redbeat
    options = ["--replicas", str(args.replicas), "--entries", str(args.entries), "--kills", str(args.kills),
               "--lock-timeout", "5", "--max-loop-interval", "1", "--settle", str(args.settle),
               "--warmup", str(args.settle), "--json-out", str(out)]  # fmt: skip
    with Path(os.devnull).open("w") as sink, contextlib.redirect_stdout(sink):  # its tables; ours come below
        peer.main(options)
    report = json.loads(out.read_text())
    shutil.rmtree(out.parent, ignore_errors=True)
    summary = report["summary"]
    keep = ("kills_done", "takeover_p50_s", "takeover_max_s", "lost_total", "dup_same_due", "publications")
    return {"scheduler": "redbeat", "consumer": "before_task_publish hook (publications)"} | {
        key: summary.get(key) for key in keep
    }


def main(argv: list[str] | None = None) -> int:
    """Run the emission pairs and the fail-over pair; print the tables and the JSON line."""
    args = parse_args(argv)
    info = C.machine()
    print(f"machine: nproc={info['nproc']} cpu={info['cpu']} load={info['load_average']}", flush=True)
    emission = []
    for n in args.jobs:
        print(f"\n== emission N={n} interval={args.interval}s duration={args.duration:g}s", flush=True)
        emission.append(beatd_emission(n, args))
        print(json.dumps(emission[-1]), flush=True)
        if not args.no_redbeat:
            emission.append(redbeat_emission(n, args))
            print(json.dumps(emission[-1]), flush=True)
    print()
    C.print_table(
        ["scheduler", "N", "due/s", "fires/s", "lag p50 ms", "lag p99 ms", "lost", "dup", "overdue@end",
         "unsent due@end"],
        [
            [r["scheduler"], r.get("jobs"), C.fmt(r.get("due_per_s"), digits=0), C.fmt(r.get("fires_per_s"), digits=1),
             _ms(r.get("lag_p50_s")), _ms(r.get("lag_p99_s")), r.get("lost", "-"), r.get("duplicates", "-"),
             r.get("overdue_at_end", "-"), r.get("unsent_due_at_end", "-")]
            for r in emission
        ],
    )  # fmt: skip
    failover = []
    if args.kills:
        print(
            f"\n== fail-over: {args.replicas} replicas, {args.entries} jobs every 1 s, {args.kills} x kill -9",
            flush=True,
        )
        failover.append(beatd_failover(args))
        print(json.dumps(failover[-1]), flush=True)
        if not args.no_redbeat:
            failover.append(redbeat_failover(args))
            print(json.dumps(failover[-1]), flush=True)
        print()
        C.print_table(
            ["scheduler", "kills", "takeover p50 s", "max s", "lost", "doubled", "counted by"],
            [
                [r["scheduler"], r.get("kills", r.get("kills_done")), C.fmt(r.get("takeover_p50_s")),
                 C.fmt(r.get("takeover_max_s")), r.get("lost", r.get("lost_total")),
                 r.get("doubled", r.get("dup_same_due")), r.get("consumer", r.get("error"))]
                for r in failover
            ],
        )  # fmt: skip
    line = json.dumps({"bench": "celery", "machine": info, "emission": emission, "failover": failover})
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")
    print(line)
    return 0


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


if __name__ == "__main__":
    sys.exit(main())
