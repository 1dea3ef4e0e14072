"""Beat objects in-process with an injected clock against a real redis-server: fencing, clock steps, restarts.

The beat decides by Redis's clock carried on the injected monotonic clock, so each beat's "now" is real
Redis time at its first lease call plus the monotonic seconds the test advanced since.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from beatd.beat import PLANS_PER_TICK, Beat
from beatd.clock import FixedClock
from beatd.config import load_config
from beatd.identity import Identity
from beatd.keys import Keys
from beatd.messages import parse_utc, to_ms
from beatd.store import LeaderWrite, Store, connect
from tests.integration.helpers import assert_contiguous, messages, runs, write_config
from tests.redis_server import RedisServer

HOST = datetime(2030, 1, 1, tzinfo=UTC)  # the hosts' wall clock: far from Redis's, and it must not matter

MakeBeat = Callable[[str, FixedClock], Beat]


@pytest.fixture
def make_beat(tmp_path: Path, shared_redis: RedisServer, namespace: str) -> MakeBeat:
    """Build Beat objects sharing one config, namespace and Redis, each on the given injected clock."""
    config = load_config(
        write_config(tmp_path / "beatd.yaml", shared_redis, namespace, "a: {command: [x], every: 1s}", lease="30s"), {}
    )

    def make(name: str, clock: FixedClock) -> Beat:
        store = Store(connect(config.settings.redis), Keys(namespace))
        return Beat(config, store, Identity(id=name, host="test", pid=0, started_at=HOST), clock=clock)

    return make


def tick(beat: Beat, clock: FixedClock) -> float:
    """One loop step of ``beat`` at the clock's readings."""
    return beat.tick(clock.now(), clock.monotonic())


def emitted(server: RedisServer, namespace: str) -> list[datetime]:
    """Scheduled instants emitted so far."""
    return [parse_utc(item["scheduled_at"]) for item in messages(server.client(), namespace)]


def whole_seconds_after(beat: Beat, clock: FixedClock, count: int) -> list[datetime]:
    """The first ``count`` fires of an every-1s job after the beat's Redis-derived now."""
    start = beat.now(clock.now(), clock.monotonic()).replace(microsecond=0)
    return [start + timedelta(seconds=k) for k in range(1, count + 1)]


def test_ex_leader_writes_are_fenced(make_beat: MakeBeat, shared_redis: RedisServer, namespace: str) -> None:
    """Once another replica holds the lease, the old leader's token can write nothing, and it stands down."""
    clock = FixedClock(HOST)
    old = make_beat("old", clock)
    tick(old, clock)
    expected = whole_seconds_after(old, clock, 3)
    clock.advance(2)
    tick(old, clock)
    assert emitted(shared_redis, namespace) == expected[:2]
    stale_token = old.leadership.token
    assert stale_token is not None

    shared_redis.client().delete(f"{namespace}:leader")  # the lease lapsed while "old" was frozen
    new = make_beat("new", clock)
    tick(new, clock)
    assert new.leadership.token not in (None, stale_token)

    forged = LeaderWrite.emit("a", to_ms(expected[2]), Keys(namespace).queue("default"), "{}", "")
    refused = old.store.apply(stale_token, [forged])
    assert refused.leader is False and refused.statuses == ("unsent",)
    clock.advance(1)  # "old" wakes up still believing it leads (its local lease has not run out)
    tick(old, clock)
    assert old.leadership.token is None
    clock.advance(3)  # "new" sampled Redis's clock when it took over: three more seconds reach expected[2]
    tick(new, clock)
    instants = emitted(shared_redis, namespace)
    assert instants[:3] == expected
    assert_contiguous(instants, 1.0)


def test_host_clock_steps_change_nothing(make_beat: MakeBeat, shared_redis: RedisServer, namespace: str) -> None:
    """The host clock stepped back 2 s or forward 90 s changes nothing: no fire early, none missed or doubled."""
    clock = FixedClock(HOST)
    beat = make_beat("one", clock)
    tick(beat, clock)
    expected = whole_seconds_after(beat, clock, 5)
    clock.advance(3)
    tick(beat, clock)
    assert emitted(shared_redis, namespace) == expected[:3]
    clock.instant -= timedelta(seconds=2)  # NTP steps the host clock back; monotonic time goes on
    clock.elapsed += 1
    tick(beat, clock)
    assert emitted(shared_redis, namespace) == expected[:4]
    clock.instant += timedelta(seconds=90)  # and then 90 s forward
    tick(beat, clock)
    assert emitted(shared_redis, namespace) == expected[:4]  # nothing early
    clock.elapsed += 1
    tick(beat, clock)
    assert emitted(shared_redis, namespace) == expected
    assert runs(shared_redis.client(), namespace, "a") == []  # nothing that had not come was recorded missed


def test_restart_continues_from_persisted_progress(
    make_beat: MakeBeat, shared_redis: RedisServer, namespace: str
) -> None:
    """A new process (same config) carries on from the progress in Redis: no repeat, no hole."""
    clock = FixedClock(HOST)
    first = make_beat("first", clock)
    tick(first, clock)
    expected = whole_seconds_after(first, clock, 4)
    clock.advance(2)
    tick(first, clock)
    first.shutdown()
    second = make_beat("second", clock)
    tick(second, clock)  # takes over: its now is Redis's, a moment after first's start
    clock.advance(3)
    tick(second, clock)
    instants = emitted(shared_redis, namespace)
    assert instants[:3] == expected[:3]
    assert_contiguous(instants, 1.0)


def test_a_backlog_is_worked_off_over_several_ticks(tmp_path: Path, shared_redis: RedisServer, namespace: str) -> None:
    """A tick plans at most PLANS_PER_TICK jobs and asks to run again at once, so the lease is renewed between."""
    jobs = "\n".join(f"j{index}: {{command: [x], every: 1h}}" for index in range(PLANS_PER_TICK + 500))
    config = load_config(write_config(tmp_path / "beatd.yaml", shared_redis, namespace, jobs, lease="30s"), {})
    clock = FixedClock(HOST)
    store = Store(connect(config.settings.redis), Keys(namespace))
    beat = Beat(config, store, Identity("one", "test", 0, HOST), clock=clock)
    assert tick(beat, clock) == 0.0  # work left: come back at once
    now = beat.now(clock.now(), clock.monotonic())
    assert sum(1 for due in beat.queued.values() if due <= now) == 500
    assert tick(beat, clock) > 0.0  # done: sleep until the next fire
    assert all(due > now for due in beat.queued.values())
