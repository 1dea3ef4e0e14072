"""Per-run cost of each step of a beatd worker run, measured in one thread (no GIL contention, no hand-off).

    .venv/bin/python bench/workers/pieces.py --runs 3000 --batches 1,16,64

Starts the tests' private redis-server (``--fsync`` as in ``drain.py``), enqueues manual fires of the no-op
job, then, for each batch size B, drives a (not started) thread-isolation ``Worker`` through the steps its
threads take, each timed on its own (``time.perf_counter_ns``; CPU by ``time.thread_time_ns``): reading B
entries (XREADGROUP COUNT B), admitting them (decode, check, ``running`` records, one ``claim.lua`` call),
performing each run (call the target, final record, hand the end over), and writing the B ends (one
``finish.lua`` call). Costs are per run. Prints a table and, last, one JSON line.
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
parser.add_argument("--runs", type=int, default=3000, help="runs per batch size (default 3000)")
parser.add_argument("--batches", default="1,16,64", help="batch sizes (default 1,16,64)")
parser.add_argument("--fsync", choices=["always", "everysec", "no"], default="always", help="redis appendfsync")
parser.add_argument("--beatd-ref", default="HEAD", help="git ref of beatd to measure, or worktree (default HEAD)")
OPTIONS = parser.parse_args()

from _common import beatd_source, machine, print_table, revision, start_redis  # type: ignore[import-not-found]  # noqa: E402

SOURCE = tempfile.TemporaryDirectory(prefix="beatd-src-")
BEATD_SRC, JOBS_PATH = beatd_source(OPTIONS.beatd_ref, Path(SOURCE.name))
sys.path.insert(0, str(BEATD_SRC))  # beatd at --beatd-ref, before the editable install's finder

import redis.utils  # noqa: E402
from drain import NAMESPACE, enqueue_beatd, write_beatd_config  # type: ignore[import-not-found]  # noqa: E402

from beatd.clock import SystemClock  # noqa: E402
from beatd.config import load_config  # noqa: E402
from beatd.identity import Identity  # noqa: E402
from beatd.keys import Keys  # noqa: E402
from beatd.messages import to_ms  # noqa: E402
from beatd.store import RunStore, connect  # noqa: E402
from beatd.worker import Worker  # noqa: E402
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
    runs, batches = OPTIONS.runs, [int(size) for size in OPTIONS.batches.split(",")]
    timers: dict[int, Timer] = {}
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
            executor = ThreadExecutor()
            enqueue_beatd(client, runs * len(batches))
            for size in batches:
                timer = timers[size] = Timer()
                done = 0
                while done < runs:
                    count = min(size, runs - done)
                    deliveries = timer.time("read", lambda n=count: store.read(worker.queues, worker.identity.id, n, 0))
                    timer.time("admit (checks, records, claim.lua)", lambda d=deliveries: worker.intake.admit(d))
                    while not worker.runners.work.empty():
                        run = worker.runners.work.get_nowait()
                        assert run is not None
                        timer.time("perform (call, final record)", lambda r=run: worker.runners.perform(r, executor))
                    ends = []
                    while not worker.finisher._ends.empty():
                        ends.append(worker.finisher._ends.get_nowait())
                    timer.time("write ends (finish.lua)", lambda e=ends: store.finish(e, to_ms(clock.now())))
                    done += len(deliveries)
            statuses = [json.loads(raw)["status"] for raw in client.hvals(f"{NAMESPACE}:runs:noop")]
            expected = runs * len(batches)
            assert statuses.count("succeeded") == expected, f"{statuses.count('succeeded')} of {expected} succeeded"
        finally:
            server.stop()
    steps = list(timers[batches[0]].cpu)
    rows, report = [], {}
    for size, timer in timers.items():
        report[size] = {name: round(timer.cpu[name] / runs / 1000, 1) for name in steps}
        report[size]["total"] = round(sum(report[size].values()), 1)
    for name in [*steps, "total"]:
        rows.append([name, *(f"{report[size][name]:.1f}" for size in batches)])
    import beatd

    assert Path(beatd.__file__).is_relative_to(BEATD_SRC), f"measuring {beatd.__file__}, not {BEATD_SRC}"
    print(f"# beatd {revision(OPTIONS.beatd_ref)}, fsync {OPTIONS.fsync}, hiredis {redis.utils.HIREDIS_AVAILABLE}")
    print("# CPU us per run, by batch size")
    print_table(["step", *(f"B={size}" for size in batches)], rows)
    print(
        json.dumps({
            "benchmark": "workers/pieces", "fsync": OPTIONS.fsync, "hiredis": redis.utils.HIREDIS_AVAILABLE,
            "runs": runs, "beatd_revision": revision(OPTIONS.beatd_ref), "cpu_us_per_run": report,
            "machine": machine(),
        })
    )  # fmt: skip


if __name__ == "__main__":
    main()
