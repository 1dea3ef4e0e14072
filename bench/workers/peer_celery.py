"""Celery side of the worker benchmarks: the app, its tasks, a spread-out beat schedule, a bulk enqueuer.

Runs in ``bench/workers/.venv``; ``drain.py`` and ``latency.py`` start the worker and beat with::

    BENCH_REDIS_URL=redis://127.0.0.1:PORT bench/workers/.venv/bin/celery -A peer_celery worker \
        --pool prefork --concurrency 2 --loglevel WARNING
    BENCH_REDIS_URL=... BENCH_BEAT_JOBS=1000 BENCH_BEAT_INTERVAL=10 BENCH_BEAT_ANCHOR=EPOCH_S \
        bench/workers/.venv/bin/celery -A peer_celery beat --scheduler peer_celery:SpreadScheduler

and enqueue with ``python peer_celery.py --jobs N``. Broker: database 0; results: database 1 (so DBSIZE of
database 1 counts finished tasks); latency samples: list ``bench:lag`` in database 2.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from celery import Celery
from celery.beat import Scheduler

BASE = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6399").rstrip("/")

app = Celery("peer_celery", broker=f"{BASE}/0", backend=f"{BASE}/1")
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False, timezone="UTC")
if os.environ.get("BENCH_CELERY_IGNORE_RESULT"):  # drain.py's celery-prefork-c2-noresult: no result backend writes
    app.conf.task_ignore_result = True

_lag_client: redis.Redis | None = None


@app.task(name="noop")
def noop() -> None:
    """Do nothing."""


@app.task(name="lag", ignore_result=True)
def lag(name: str, due: float, grid: float) -> None:
    """Record how late this run started: against Celery's own due instant and against the ideal grid."""
    started = time.time()
    global _lag_client
    if _lag_client is None:
        _lag_client = redis.Redis.from_url(f"{BASE}/2")
    _lag_client.rpush("bench:lag", json.dumps({"job": name, "due": due, "grid": grid, "started": started}))


class SpreadScheduler(Scheduler):
    """In-memory schedule of BENCH_BEAT_JOBS ``lag`` entries every BENCH_BEAT_INTERVAL s, entry i first due
    at BENCH_BEAT_ANCHOR + i * interval / jobs (so fires are spread evenly). Each fire is sent with its due
    instant (Celery's: last run + interval) and its ideal grid instant (anchor_i + runs * interval)."""

    def setup_schedule(self) -> None:
        """Build the entries (no shelve file, no defaults)."""
        jobs = int(os.environ["BENCH_BEAT_JOBS"])
        interval = float(os.environ["BENCH_BEAT_INTERVAL"])
        anchor = float(os.environ["BENCH_BEAT_ANCHOR"])
        every = timedelta(seconds=interval)
        for index in range(jobs):
            first = datetime.fromtimestamp(anchor + index * interval / jobs, UTC)
            name = f"tick{index:05d}"
            self.schedule[name] = self.Entry(
                name=name, task="lag", schedule=every, last_run_at=first - every, app=self.app,
                kwargs={"name": name, "grid": first.timestamp()},
            )  # fmt: skip

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        """Send the fire with its due and ideal grid instants."""
        due = entry.last_run_at + entry.schedule.run_every
        grid = entry.kwargs["grid"] + entry.total_run_count * entry.schedule.run_every.total_seconds()
        fire = self.Entry(
            name=entry.name, task=entry.task, schedule=entry.schedule, last_run_at=entry.last_run_at,
            total_run_count=entry.total_run_count, app=self.app,
            kwargs={"name": entry.name, "due": due.timestamp(), "grid": grid},
        )  # fmt: skip
        return super().apply_async(fire, producer=producer, advance=False, **kwargs)

    def sync(self) -> None:
        """Nothing is persisted."""


def main() -> None:
    """Enqueue ``--jobs`` no-op tasks (BENCH_REDIS_URL names the server)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, required=True, help="how many no-op tasks to enqueue")
    options = parser.parse_args()
    with app.producer_or_acquire() as producer:
        for _ in range(options.jobs):
            noop.apply_async(producer=producer)
    print(options.jobs)


if __name__ == "__main__":
    main()
