"""The leader's fenced writes against a real redis-server: long trims, and counting only what Redis applied."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from beatd.beat import Beat
from beatd.clock import FixedClock
from beatd.config import load_config
from beatd.identity import Identity
from beatd.keys import Keys
from beatd.store import LeaderWrite, Store, connect
from tests.integration.helpers import messages, write_config
from tests.redis_server import RedisServer

HOST = datetime(2030, 1, 1, tzinfo=UTC)


def test_a_miss_trimming_over_8000_records_is_applied(shared_redis: RedisServer, namespace: str) -> None:
    """A missed record whose write drops 8,990 old records (history.keep lowered) is applied, in pieces."""
    keys = Keys(namespace)
    store = Store(connect(shared_redis.url), keys)
    token, _ = store.acquire("one", 30_000, {"event": "leader"})
    assert token is not None
    client = shared_redis.client()
    old = {f"a@{index}#1": json.dumps({"n": index}) for index in range(9000)}
    client.hset(keys.runs("a"), mapping=old)
    client.zadd(keys.runs_by_time("a"), {run: index for index, run in enumerate(old)})
    miss = LeaderWrite.miss("a", 1_000, keys.runs("a"), keys.runs_by_time("a"), "a@new#0", "{}", 10**6, keep=10)
    result = store.apply(token, [miss])
    assert result.statuses == ("applied",), result.errors
    assert client.hlen(keys.runs("a")) == 10 and client.zcard(keys.runs_by_time("a")) == 10
    assert client.hexists(keys.runs("a"), "a@new#0")


@pytest.fixture
def leader(tmp_path: Path, shared_redis: RedisServer, namespace: str) -> Callable[[], tuple[Beat, FixedClock]]:
    """A beat on an every-1s job with a 30 s lease, synced as leader at monotonic 0."""

    def make() -> tuple[Beat, FixedClock]:
        body = "a: {command: [x], every: 1s}"
        config = load_config(write_config(tmp_path / "beatd.yaml", shared_redis, namespace, body, lease="30s"), {})
        clock = FixedClock(HOST)
        beat = Beat(
            config, Store(connect(shared_redis.url), Keys(namespace)), Identity("one", "t", 0, HOST), clock=clock
        )
        beat.tick(clock.now(), clock.monotonic())
        assert beat.leadership.token is not None
        return beat, clock

    return make


def counted(beat: Beat) -> tuple[float, float]:
    """(fires emitted, emission lag observations) as the beat's metrics say."""
    registry = beat.metrics.registry
    emitted = registry.get_sample_value("beatd_fires_emitted_total", {"job": "a", "trigger": "schedule"})
    return emitted or 0.0, registry.get_sample_value("beatd_emission_lag_seconds_count") or 0.0


def test_duplicates_and_stale_token_writes_are_not_counted(
    leader: Callable[[], tuple[Beat, FixedClock]], shared_redis: RedisServer, namespace: str
) -> None:
    """Fires Redis reports as duplicates, and fires sent after the lease was lost, are not counted as emitted."""
    beat, clock = leader()
    client = shared_redis.client()
    clock.advance(2)
    beat.tick(clock.now(), clock.monotonic())
    assert counted(beat) == (2, 2) and len(messages(client, namespace)) == 2
    progress = int(client.hget(f"{namespace}:progress", "a") or 0)
    client.hset(f"{namespace}:progress", "a", progress + 2000)  # another writer got there first
    clock.advance(2)
    beat.tick(clock.now(), clock.monotonic())
    assert counted(beat) == (2, 2) and beat.counters.duplicates == 2
    client.set(f"{namespace}:leader", "9999:someone-else", px=30_000)  # the lease passed to another replica
    clock.advance(1)
    beat.tick(clock.now(), clock.monotonic())
    assert beat.leadership.token is None
    assert counted(beat) == (2, 2) and len(messages(client, namespace)) == 2


def test_refused_writes_are_not_counted_until_applied(
    leader: Callable[[], tuple[Beat, FixedClock]], shared_redis: RedisServer, namespace: str
) -> None:
    """Fires whose write Redis refuses (the queue key holds a string) are not counted; once retried and
    applied, they are."""
    beat, clock = leader()
    client = shared_redis.client()
    client.set(f"{namespace}:queue:default", "not a stream")
    clock.advance(2)
    beat.tick(clock.now(), clock.monotonic())
    assert counted(beat) == (0, 0) and beat.counters.emitted == 0
    client.delete(f"{namespace}:queue:default")
    clock.advance(5)  # the refused job is planned again after REFUSED_RETRY
    beat.tick(clock.now(), clock.monotonic())
    assert counted(beat) == (len(messages(client, namespace)),) * 2 and counted(beat)[0] >= 2


def test_a_sync_of_more_new_jobs_than_one_batch_starts_them_all(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New jobs are started in fenced calls of START_BATCH writes: all of them, in several calls."""
    import beatd.beat

    monkeypatch.setattr(beatd.beat, "START_BATCH", 2)
    body = "\n".join(f"j{index}: {{command: [x], every: 1s}}" for index in range(5))
    config = load_config(write_config(tmp_path / "beatd.yaml", shared_redis, namespace, body, lease="30s"), {})
    clock = FixedClock(HOST)
    store = Store(connect(shared_redis.url), Keys(namespace))
    calls: list[int] = []
    submit = store.submit  # the beat sends its writes through submit (apply is submit, then its result)
    monkeypatch.setattr(store, "submit", lambda token, writes: calls.append(len(writes)) or submit(token, writes))
    beat = Beat(config, store, Identity("one", "t", 0, HOST), clock=clock)
    beat.tick(clock.now(), clock.monotonic())
    assert beat.synced
    assert calls[:3] == [2, 2, 1]
    assert shared_redis.client().hlen(Keys(namespace).progress) == 5
