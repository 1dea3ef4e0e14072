"""emit.lua's batched form against a real redis-server: one progress read and write per run of emits, packed
items, and calls sent before the previous reply is read, with every guarantee of the one-write-at-a-time form."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from beatd.beat import PLANS_PER_TICK, Beat
from beatd.clock import FixedClock
from beatd.config import load_config
from beatd.identity import Identity
from beatd.keys import Keys
from beatd.messages import format_utc, to_ms
from beatd.store import InFlight, LeaderWrite, Store, connect
from tests.integration.helpers import messages, write_config
from tests.redis_server import RedisServer

HOST = datetime(2030, 1, 1, tzinfo=UTC)


def _store(shared_redis: RedisServer, namespace: str) -> tuple[Store, str]:
    store = Store(connect(shared_redis.url), Keys(namespace))
    token, _ = store.acquire("one", 30_000, {"event": "leader"})
    assert token is not None
    return store, token


def _emit(keys: Keys, job: str, at: int, text: str = "", queue: str = "default") -> LeaderWrite:
    return LeaderWrite.emit(job, at, keys.queue(queue), text or json.dumps({"job": job, "at": at}), "", f"{at} x d")


def test_a_mixed_batch_moves_progress_in_order(shared_redis: RedisServer, namespace: str) -> None:
    """Emits, a miss and a start of the same and other jobs in one call: each judged against the progress the
    steps before it left, progress and last emission end at the last applied step of each job."""
    store, token = _store(shared_redis, namespace)
    keys = store.keys
    client = shared_redis.client()
    client.hset(keys.progress, mapping={"a": 100, "b": 100})
    writes = [
        _emit(keys, "a", 200),
        _emit(keys, "a", 150),  # behind the step before it: a duplicate
        LeaderWrite.miss("a", 300, keys.runs("a"), keys.runs_by_time("a"), "a@300#0", "{}", 1, 10),
        _emit(keys, "a", 300),  # the miss moved progress to 300
        _emit(keys, "a", 400),
        _emit(keys, "b", 100),  # at progress: a duplicate
        LeaderWrite.base("c", 50, "digest-c"),
        _emit(keys, "c", 60),
    ]
    result = store.apply(token, writes)
    assert result.statuses == (
        "applied", "duplicate", "applied", "duplicate", "applied", "duplicate", "applied", "applied",
    )  # fmt: skip
    assert client.hgetall(keys.progress) == {"a": "400", "b": "100", "c": "60"}
    assert client.hget(keys.last, "a") == "400 x d"
    assert client.hget(keys.schedules, "c") == "digest-c"
    assert [json.loads(fields["message"])["at"] for _, fields in client.xrange(keys.queue("default"))] == [
        200, 400, 60,
    ]  # fmt: skip


def test_a_refused_emit_leaves_its_progress_and_the_others_apply(shared_redis: RedisServer, namespace: str) -> None:
    """An XADD Redis refuses (the queue key holds a string) refuses that step alone; the run's other fires are
    in their queue with their progress moved."""
    store, token = _store(shared_redis, namespace)
    keys = store.keys
    client = shared_redis.client()
    client.set(keys.queue("broken"), "not a stream")
    writes = [_emit(keys, "a", 10), _emit(keys, "b", 10, queue="broken"), _emit(keys, "c", 10)]
    result = store.apply(token, writes)
    assert result.statuses == ("applied", "refused", "applied")
    assert "WRONGTYPE" in result.errors[1] and result.errors[0] == result.errors[2] == ""
    assert client.hgetall(keys.progress) == {"a": "10", "c": "10"}
    assert client.xlen(keys.queue("default")) == 2


def test_values_holding_the_separators_travel_intact(shared_redis: RedisServer, namespace: str) -> None:
    """A message holding the packed form's separator characters is sent another way and arrives unchanged."""
    store, token = _store(shared_redis, namespace)
    keys = store.keys
    client = shared_redis.client()
    text = 'odd \x1e row \x1f field "quoted" é'
    result = store.apply(token, [_emit(keys, "a", 10, text), _emit(keys, "b", 10)])
    assert result.statuses == ("applied", "applied")
    [(_, first), _] = client.xrange(keys.queue("default"))
    assert first["message"] == text


def test_calls_in_flight_apply_in_order_and_stop_at_a_lost_lease(shared_redis: RedisServer, namespace: str) -> None:
    """Batches submitted before the previous reply is read apply in the order sent; once the lease is gone,
    every later write is unsent and nothing of it is written."""
    store, token = _store(shared_redis, namespace)
    keys = store.keys
    client = shared_redis.client()
    first = store.submit(token, [_emit(keys, f"j{index}", 10) for index in range(2500)])  # three calls
    second = store.submit(token, [_emit(keys, "j0", 20), _emit(keys, "j1", 10)])
    assert first.result().count("applied") == 2500
    assert second.result().statuses == ("applied", "duplicate")
    assert client.hget(keys.progress, "j0") == "20" and client.xlen(keys.queue("default")) == 2501
    client.set(keys.leader, "9999:someone-else", px=30_000)
    lost = store.submit(token, [_emit(keys, "j0", 30)])
    result = lost.result()
    assert not result.leader and result.statuses == ("unsent",)
    assert client.hget(keys.progress, "j0") == "20" and client.xlen(keys.queue("default")) == 2501


def test_a_burst_of_jobs_sharing_a_schedule_emits_each_fire_once(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """Thousands of jobs due at the same instants (one plan shared, batches in flight over several ticks), one
    with jitter and one with arguments: every job gets each of its fires once, with its own message, and the
    metrics count exactly the messages."""
    same = [f"j{index}: {{command: [x], every: 1s}}" for index in range(PLANS_PER_TICK + 1500)]
    odd = ["jittered: {command: [x], every: 1s, jitter: 200ms}", "argued: {call: 'm:f', every: 1s, args: [1, é]}"]
    path = write_config(tmp_path / "beatd.yaml", shared_redis, namespace, "\n".join([*same, *odd]), lease="30s")
    config = load_config(path, {})
    clock = FixedClock(HOST)
    beat = Beat(config, Store(connect(shared_redis.url), Keys(namespace)), Identity("one", "t", 0, HOST), clock=clock)
    beat.tick(clock.now(), clock.monotonic())
    for _ in range(12):
        clock.advance(0.25)
        while beat.tick(clock.now(), clock.monotonic()) == 0.0:
            pass
    found = messages(shared_redis.client(), namespace)
    by_job: dict[str, list[str]] = {}
    for item in found:
        by_job.setdefault(item["job"], []).append(item["scheduled_at"])
        assert item["fire_id"] == f"{item['job']}@{item['scheduled_at']}"
    assert set(by_job) == {name.split(":")[0] for name in [*same, *odd]}
    instants = by_job["j0"]
    assert len(instants) >= 2 and len(set(instants)) == len(instants)
    assert all(by_job[name.split(":")[0]] == instants for name in same)
    assert len(set(by_job["jittered"])) == len(by_job["jittered"]) >= 1
    assert next(item["args"] for item in found if item["job"] == "argued") == [1, "é"]
    registry = beat.metrics.registry
    assert registry.get_sample_value("beatd_emission_lag_seconds_count") == len(found) == beat.counters.emitted


class _SlowStore(Store):
    """A store whose every batch takes ``seconds`` of the test clock to send (a loaded host, a busy Redis)."""

    def __init__(self, store: Store, clock: FixedClock, seconds: float) -> None:
        super().__init__(store.client, store.keys)
        self.clock, self.seconds, self.renewals = clock, seconds, 0

    def submit(self, token: str, writes: Sequence[LeaderWrite]) -> InFlight:
        self.clock.advance(self.seconds)
        return super().submit(token, writes)

    def renew(self, token: str, lease_ms: int) -> tuple[bool, float]:
        self.renewals += 1
        return super().renew(token, lease_ms)


def test_a_burst_longer_than_the_lease_renews_it_on_schedule(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A burst whose tick sends batches for longer than the whole lease (each batch takes 0.7 s of a 2 s
    lease) renews the lease between batches: the beat never stands down, and every job fires once an instant."""
    jobs = PLANS_PER_TICK + 500
    body = "\n".join(f"j{index}: {{command: [x], every: 1s}}" for index in range(jobs))
    path = write_config(tmp_path / "beatd.yaml", shared_redis, namespace, body, lease="2s")
    clock = FixedClock(HOST)
    store = _SlowStore(Store(connect(shared_redis.url), Keys(namespace)), clock, 0.7)
    beat = Beat(load_config(path, {}), store, Identity("one", "t", 0, HOST), clock=clock)
    caplog.set_level(logging.INFO, logger="beatd")
    beat.tick(clock.now(), clock.monotonic())  # leads; the start of every job is two batches
    renewed = store.renewals
    deadline = time.monotonic() + 60
    while beat.counters.emitted < jobs and time.monotonic() < deadline:  # due by Redis's clock: within 1 s
        if beat.tick(clock.now(), clock.monotonic()) > 0.0:
            clock.advance(0.05)
    assert not [record.message for record in caplog.records if "standing down" in record.message]
    assert beat.leadership.changes == 1 and store.renewals >= renewed + 4
    found = messages(shared_redis.client(), namespace)
    assert len({item["fire_id"] for item in found}) == len(found) >= jobs
    first = min(item["scheduled_at"] for item in found)
    assert sorted(item["job"] for item in found if item["scheduled_at"] == first) == sorted(
        f"j{index}" for index in range(jobs)
    )


def test_a_refused_fire_is_emitted_once_its_cause_is_gone_though_its_next_was_planned_ahead(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """A batch left in flight into the next tick (more jobs due than one tick plans) holds a write Redis
    refuses (job x's queue key holds a string). The next tick plans x's next fire before it reads that reply;
    the cause is gone by then. The next fire must not be sent past the refused one: x's refused instant is
    emitted on the retry, and every instant of x is in its queue once, in order."""
    client = shared_redis.client()
    seconds, _ = client.time()
    host = datetime.fromtimestamp(int(seconds), UTC)
    fresh = [f"j{index}: {{command: [x], every: 1h}}" for index in range(PLANS_PER_TICK - 1)]
    body = "\n".join([*fresh, "x: {command: [x], every: 1s, queue: xq}", "y: {command: [x], every: 1h}"])
    path = write_config(tmp_path / "beatd.yaml", shared_redis, namespace, body, lease="30s")
    config = load_config(path, {})
    keys = Keys(namespace)
    before = to_ms(host - timedelta(seconds=1))
    client.hset(keys.progress, mapping={"x": before, "y": before})
    client.hset(keys.schedules, mapping={name: config.jobs[name].schedule_digest for name in ("x", "y")})
    client.set(keys.queue("xq"), "not a stream")
    clock = FixedClock(host)
    beat = Beat(config, Store(connect(shared_redis.url), keys), Identity("one", "t", 0, host), clock=clock)
    for _ in range(3):  # leads, then plans x's fire at `host` into a batch it leaves in flight
        beat.tick(clock.now(), clock.monotonic())
        if beat.in_flight is not None:
            break
    assert beat.in_flight is not None
    client.delete(keys.queue("xq"))  # the refusal's cause goes away (memory freed, an outbox drained)
    for _ in range(9):  # past the refused write's retry
        clock.advance(1.0)
        while beat.tick(clock.now(), clock.monotonic()) == 0.0:
            pass
    beat.shutdown()
    sent = [json.loads(fields["message"])["scheduled_at"] for _, fields in client.xrange(keys.queue("xq"))]
    assert sent and sent[0] == format_utc(host), sent
    assert sent == sorted(set(sent)), sent


def test_emits_of_every_row_width_apply_alike(shared_redis: RedisServer, namespace: str) -> None:
    """Emits whose packed rows stop early (no signature, no last emission) or run to the end (signed) apply like
    any other: in the queue with their signature, progress and last emission moved."""
    store, token = _store(shared_redis, namespace)
    keys = store.keys
    client = shared_redis.client()
    queue = keys.queue("default")
    writes = [
        LeaderWrite.emit("short", 10, queue, '{"a":1}', "", ""),
        LeaderWrite.emit("signed", 10, queue, '{"a":2}', "sig-2", "10 schedule d"),
        LeaderWrite.emit("plain", 10, queue, '{"a":3}', "", "10 schedule d"),
        LeaderWrite.emit("short", 20, queue, '{"a":4}', "sig-4", ""),
    ]
    assert store.apply(token, writes).statuses == ("applied",) * 4
    assert [(fields["message"], fields["sig"]) for _, fields in client.xrange(queue)] == [
        ('{"a":1}', ""), ('{"a":2}', "sig-2"), ('{"a":3}', ""), ('{"a":4}', "sig-4"),
    ]  # fmt: skip
    assert client.hgetall(keys.progress) == {"short": "20", "signed": "10", "plain": "10"}
    assert client.hgetall(keys.last) == {"short": "", "signed": "10 schedule d", "plain": "10 schedule d"}
