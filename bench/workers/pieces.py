"""Per-run cost of each step of a beatd worker run, measured in one thread (no GIL contention, no hand-off).

    .venv/bin/python bench/workers/pieces.py --runs 3000

Starts the tests' private redis-server (``--fsync`` as in ``drain.py``), enqueues ``--runs`` manual fires of
the no-op job, then times, per run, the steps ``Worker._handle`` and ``Worker._run`` take for a callable in
thread isolation, each on its own (``time.perf_counter_ns``; CPU by ``time.thread_time_ns``):
reading one entry (XREADGROUP COUNT 1, as a 1-runner worker does, and COUNT 16), decoding the message,
building and serialising the ``running`` RunRecord, the claim script, ``previous_fire``, ``Config.pythonpath``,
calling the target (``call_target``: resolve, signature check, result capping), the final record and the
finish script. Then the whole ``Worker._handle`` on fresh entries, for the total. With ``--hiredis DIR`` (a
directory holding the ``hiredis`` package, e.g. ``bench/workers/.venv/hiredis-site``) redis-py uses hiredis.
Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--runs", type=int, default=3000, help="runs per measurement (default 3000)")
parser.add_argument("--fsync", choices=["always", "everysec", "no"], default="always", help="redis appendfsync")
parser.add_argument("--hiredis", metavar="DIR", help="put DIR (holding hiredis) first on sys.path")
parser.add_argument("--beatd-ref", default="HEAD", help="git ref of beatd to measure, or worktree (default HEAD)")
OPTIONS = parser.parse_args()
if OPTIONS.hiredis:
    sys.path.insert(0, str(Path(OPTIONS.hiredis).resolve()))

from _common import beatd_source, machine, print_table, revision, start_redis  # type: ignore[import-not-found]  # noqa: E402

SOURCE = tempfile.TemporaryDirectory(prefix="beatd-src-")
BEATD_SRC, JOBS_PATH = beatd_source(OPTIONS.beatd_ref, Path(SOURCE.name))
sys.path.insert(0, str(BEATD_SRC))  # beatd at --beatd-ref, before the editable install's finder

import redis.utils  # noqa: E402  (after --hiredis changed sys.path)
from drain import NAMESPACE, enqueue_beatd, write_beatd_config  # type: ignore[import-not-found]  # noqa: E402

from beatd.clock import SystemClock  # noqa: E402
from beatd.config import load_config  # noqa: E402
from beatd.identity import Identity  # noqa: E402
from beatd.keys import Keys  # noqa: E402
from beatd.messages import Message, format_utc, parse_utc, to_ms  # noqa: E402
from beatd.records import run_id  # noqa: E402
from beatd.store import RunStore, connect  # noqa: E402
from beatd.worker import Worker  # noqa: E402
from beatd.worker.child import call_target  # noqa: E402
from beatd.worker.context import previous_fire  # noqa: E402
from beatd.worker.executor import ThreadExecutor  # noqa: E402


class Timer:
    """Wall and thread-CPU nanoseconds per named step."""

    def __init__(self) -> None:
        self.wall: dict[str, int] = {}
        self.cpu: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    def time(self, name: str, function: Callable[[], Any]) -> Any:
        """Call ``function`` and add its cost to ``name``."""
        wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
        value = function()
        self.cpu[name] = self.cpu.get(name, 0) + time.thread_time_ns() - cpu
        self.wall[name] = self.wall.get(name, 0) + time.perf_counter_ns() - wall
        self.calls[name] = self.calls.get(name, 0) + 1
        return value


def main() -> None:
    """Measure and report."""
    runs = OPTIONS.runs
    with tempfile.TemporaryDirectory(prefix="beatd-pieces-") as directory:
        server = start_redis(Path(directory) / "redis", OPTIONS.fsync)
        try:
            client = server.client()
            config = load_config(write_beatd_config(Path(directory), server.url, JOBS_PATH), {})
            store = RunStore(connect(server.url), Keys(NAMESPACE))
            clock = SystemClock()
            worker = Worker(
                config, store, Identity.here(clock.now()), clock, queues=None, concurrency=1, grace=1.0,
                isolation="thread", signer=None,
            )  # fmt: skip
            store.ensure_groups(worker.queues)
            spec = config.jobs["noop"]
            timer = Timer()
            enqueue_beatd(client, runs * 2)
            deliveries = []
            for _ in range(runs):
                deliveries += timer.time("read (COUNT 1)", lambda: store.read(worker.queues, "c", 1, 0))
            for delivery in deliveries:
                message = timer.time("Message.from_json", lambda d=delivery: Message.from_json(d.message))
                scheduled = timer.time("parse_utc", lambda m=message: parse_utc(m.scheduled_at))
                now = clock.now()
                running = timer.time("RunRecord()", lambda m=message: worker._record(spec, m, 0, "running"))
                running.started_at = timer.time("format_utc", lambda n=now: format_utc(n))
                running.lag_s = round((now - scheduled).total_seconds(), 6)
                text = timer.time("RunRecord.to_json (running)", running.to_json)
                claim = timer.time(
                    "store.claim (claim.lua)",
                    lambda d=delivery, m=message, t=text, n=now, s=scheduled: store.claim(
                        spec.name, d, m.fire_id, "c", to_ms(n), 30000, spec.overlap, t, to_ms(s)
                    ),
                )
                running.attempt, running.run_id = claim.attempt, run_id(message.fire_id, claim.attempt)
                previous = timer.time(
                    "previous_fire(spec.trigger())", lambda s=scheduled: previous_fire(spec.trigger(), s)
                )
                paths = timer.time("Config.pythonpath", lambda: [str(entry) for entry in config.pythonpath])
                task = {
                    "target": spec.call, "args": message.args, "kwargs": message.kwargs, "pythonpath": paths,
                    "context": {"run_id": running.run_id, "previous_at": previous.isoformat() if previous else None},
                }  # fmt: skip
                outcome = timer.time("call_target (noop)", lambda t=task: call_target(t))
                running.status, running.finished_at = outcome["status"], format_utc(clock.now())
                end = timer.time(
                    "Worker._finish (final to_json)",
                    lambda d=delivery, m=message, r=running: worker._finish(spec, d, m, r, fire_done=True),
                )
                timer.time("store.finish (finish.lua)", lambda e=end: store.finish(e))
            counted = dict(timer.cpu)
            batch = []
            for _ in range(runs // 16 + 1):
                batch += timer.time("read (COUNT 16), per call", lambda: store.read(worker.queues, "c", 16, 0))
            executor = ThreadExecutor()
            for delivery in batch[:runs]:
                timer.time("Worker._handle (whole run)", lambda d=delivery: worker._handle(d, executor))
            statuses = [json.loads(raw)["status"] for raw in client.hvals(f"{NAMESPACE}:runs:noop")]
            assert statuses.count("succeeded") == 2 * runs, f"{statuses.count('succeeded')} of {2 * runs} succeeded"
        finally:
            server.stop()
    rows, report = [], {}
    for name, calls in timer.calls.items():
        cpu_us, wall_us = timer.cpu[name] / calls / 1000, timer.wall[name] / calls / 1000
        report[name] = {"calls": calls, "cpu_us": round(cpu_us, 1), "wall_us": round(wall_us, 1)}
        rows.append([name, calls, f"{cpu_us:.1f}", f"{wall_us:.1f}"])
    steps = sum(cpu / runs for name, cpu in counted.items()) / 1000
    rows.append(["sum of the steps (COUNT 1 read)", runs, f"{steps:.1f}", ""])
    import beatd

    assert Path(beatd.__file__).is_relative_to(BEATD_SRC), f"measuring {beatd.__file__}, not {BEATD_SRC}"
    print(f"# beatd {revision(OPTIONS.beatd_ref)}, fsync {OPTIONS.fsync}, hiredis {redis.utils.HIREDIS_AVAILABLE}")
    print_table(["step", "calls", "CPU us/call", "wall us/call"], rows)
    print(
        json.dumps({
            "benchmark": "workers/pieces", "fsync": OPTIONS.fsync, "hiredis": redis.utils.HIREDIS_AVAILABLE,
            "runs": runs, "beatd_revision": revision(OPTIONS.beatd_ref), "steps": report,
            "sum_cpu_us": round(steps, 1), "machine": machine(),
        })
    )  # fmt: skip


if __name__ == "__main__":
    main()
