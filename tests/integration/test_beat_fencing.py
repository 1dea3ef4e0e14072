"""Beat objects in-process with an injected clock against a real redis-server: fencing, clock jumps, restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from beatd.beat import PLANS_PER_TICK, Beat
from beatd.clock import FixedClock
from beatd.config import load_config
from beatd.identity import Identity
from beatd.keys import Keys
from beatd.messages import parse_utc, to_ms
from beatd.store import Op, Store, connect
from tests.integration.helpers import messages, write_config
from tests.redis_server import RedisServer

T0 = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=10)  # near real time: lease TTLs are real


@pytest.fixture
def make_beat(tmp_path: Path, shared_redis: RedisServer, namespace: str):  # type: ignore[no-untyped-def]
    """Build Beat objects sharing one config, namespace and Redis."""
    config = load_config(
        write_config(tmp_path / "beatd.yaml", shared_redis, namespace, "a: {command: [x], every: 1s}", lease="30s"), {}
    )

    def make(name: str) -> Beat:
        store = Store(connect(config.settings.redis), Keys(namespace))
        return Beat(config, store, Identity(id=name, host="test", pid=0, started_at=T0))

    return make


def emitted(server: RedisServer, namespace: str) -> list[datetime]:
    """Scheduled instants emitted so far."""
    return [parse_utc(item["scheduled_at"]) for item in messages(server.client(), namespace)]


def test_ex_leader_writes_are_fenced(make_beat, shared_redis: RedisServer, namespace: str) -> None:  # type: ignore[no-untyped-def]
    """Once another replica holds the lease, the old leader's token can write nothing, and it stands down."""
    clock = FixedClock(T0)
    old, new = make_beat("old"), make_beat("new")
    old.tick(clock.now(), clock.monotonic())
    clock.advance(2)
    old.tick(clock.now(), clock.monotonic())
    assert emitted(shared_redis, namespace) == [T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)]
    stale_token = old.leadership.token
    assert stale_token is not None

    shared_redis.client().delete(f"{namespace}:leader")  # the lease lapsed while "old" was frozen
    new.tick(clock.now(), clock.monotonic())
    assert new.leadership.token not in (None, stale_token)

    forged = Op("emit", "a", to_ms(T0 + timedelta(seconds=3)), Keys(namespace).queue("default"), 0, "{}")
    assert old.store.apply(stale_token, [forged]).leader is False
    clock.advance(1)  # "old" wakes up still believing it leads (its local lease has not run out)
    old.tick(clock.now(), clock.monotonic())
    new.tick(clock.now(), clock.monotonic())
    assert old.leadership.token is None
    assert emitted(shared_redis, namespace) == [T0 + timedelta(seconds=s) for s in (1, 2, 3)]


def test_clock_jumping_back_emits_nothing_twice(make_beat, shared_redis: RedisServer, namespace: str) -> None:  # type: ignore[no-untyped-def]
    """A wall clock stepped backwards re-emits nothing; emission resumes once time passes the progress."""
    clock = FixedClock(T0)
    beat = make_beat("one")
    beat.tick(clock.now(), clock.monotonic())
    clock.advance(3)
    beat.tick(clock.now(), clock.monotonic())
    clock.instant -= timedelta(seconds=2)  # NTP steps the clock back; monotonic time goes on
    clock.elapsed += 1
    beat.tick(clock.now(), clock.monotonic())
    clock.advance(2)  # back at T0 + 3: still nothing new
    beat.tick(clock.now(), clock.monotonic())
    assert emitted(shared_redis, namespace) == [T0 + timedelta(seconds=s) for s in (1, 2, 3)]
    clock.advance(1)
    beat.tick(clock.now(), clock.monotonic())
    assert emitted(shared_redis, namespace) == [T0 + timedelta(seconds=s) for s in (1, 2, 3, 4)]


def test_restart_continues_from_persisted_progress(make_beat, shared_redis: RedisServer, namespace: str) -> None:  # type: ignore[no-untyped-def]
    """A new process (same config) carries on from the progress in Redis: no repeat, no hole."""
    clock = FixedClock(T0)
    first = make_beat("first")
    first.tick(clock.now(), clock.monotonic())
    clock.advance(2)
    first.tick(clock.now(), clock.monotonic())
    first.shutdown()
    second = make_beat("second")
    clock.advance(2)
    second.tick(clock.now(), clock.monotonic())
    assert emitted(shared_redis, namespace) == [T0 + timedelta(seconds=s) for s in (1, 2, 3, 4)]


def test_a_backlog_is_worked_off_over_several_ticks(tmp_path: Path, shared_redis: RedisServer, namespace: str) -> None:
    """A tick plans at most PLANS_PER_TICK jobs and asks to run again at once, so the lease is renewed between."""
    jobs = "\n".join(f"j{index}: {{command: [x], every: 1h}}" for index in range(PLANS_PER_TICK + 500))
    config = load_config(write_config(tmp_path / "beatd.yaml", shared_redis, namespace, jobs, lease="30s"), {})
    beat = Beat(config, Store(connect(config.settings.redis), Keys(namespace)), Identity("one", "test", 0, T0))
    clock = FixedClock(T0)
    assert beat.tick(clock.now(), clock.monotonic()) == 0.0  # work left: come back at once
    assert sum(1 for due, _ in beat.heap if due <= clock.now()) == 500
    assert beat.tick(clock.now(), clock.monotonic()) > 0.0  # done: sleep until the next fire
    assert all(due > clock.now() for due, name in beat.heap if beat.queued.get(name) == due)
