"""A new leader's sync against a real redis-server: however long it takes, it keeps the lease on schedule."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from beatd import beat as beat_module
from beatd.beat import Beat
from beatd.clock import FixedClock
from beatd.config import load_config
from beatd.identity import Identity
from beatd.keys import Keys
from beatd.messages import to_ms
from beatd.store import Corrupt, Store, connect
from tests.integration.helpers import write_config
from tests.redis_server import RedisServer

HOST = datetime(2030, 1, 1, tzinfo=UTC)


class _SlowReadStore(Store):
    """A store whose progress reads take ``per_job`` seconds of the test clock per job read (a sync of
    1,000,000 jobs on a loaded host), counting the lease renewals."""

    def __init__(self, store: Store, clock: FixedClock, per_job: float) -> None:
        super().__init__(store.client, store.keys)
        self.clock, self.per_job, self.renewals = clock, per_job, 0

    def read_progress(self, jobs: Sequence[str] | None = None) -> tuple[dict[str, int], list[Corrupt]]:
        read = len(jobs) if jobs is not None else int(self.client.hlen(self.keys.progress))
        self.clock.advance(self.per_job * read)
        return super().read_progress(jobs)

    def renew(self, token: str, lease_ms: int) -> tuple[bool, float]:
        self.renewals += 1
        return super().renew(token, lease_ms)


def test_a_restart_sync_longer_than_the_lease_renews_it_on_schedule(
    tmp_path: Path,
    shared_redis: RedisServer,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A leader's sync onto stored progress (a restart: nothing to start) whose reads take 3 s of a 2 s lease
    renews the lease between its batches: it leads every job from its stored progress and never stands down."""
    monkeypatch.setattr(beat_module, "SYNC_READ_BATCH", 300)
    jobs = 3000
    body = "\n".join(f"j{index}: {{command: [x], every: 1h}}" for index in range(jobs))
    path = write_config(tmp_path / "beatd.yaml", shared_redis, namespace, body, lease="2s")
    config = load_config(path, {})
    keys = Keys(namespace)
    client = shared_redis.client()
    client.hset(keys.progress, mapping=dict.fromkeys(config.jobs, to_ms(HOST)))
    client.hset(keys.schedules, mapping={name: spec.schedule_digest for name, spec in config.jobs.items()})
    clock = FixedClock(HOST)
    store = _SlowReadStore(Store(connect(shared_redis.url), keys), clock, 0.001)
    beat = Beat(config, store, Identity("one", "t", 0, HOST), clock=clock)
    caplog.set_level(logging.INFO, logger="beatd")
    beat.tick(clock.now(), clock.monotonic())  # leads and syncs: 10 batches of 0.3 s
    assert beat.synced
    assert not [record.message for record in caplog.records if "standing down" in record.message]
    assert beat.leadership.is_leader(clock.monotonic()) and store.renewals >= 3
    leading = [record.message for record in caplog.records if record.message.startswith("leading")]
    assert len(leading) == 1 and leading[0].startswith(f"leading {jobs} jobs (0 new or changed")
    assert len(beat.progress) == len(beat.queued) == jobs
    beat.tick(clock.now(), clock.monotonic())
    assert beat.leadership.changes == 1 and beat.synced
