"""A reader's full read of the runtime jobs comes page by page (a leader keeps renewing its lease meanwhile),
and a reload judges every entry again without validating each shape of job more than once."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from beatd import defaults
from beatd.beat import Beat
from beatd.clock import SystemClock
from beatd.config import Config, load_config
from beatd.identity import Identity
from beatd.keys import Keys
from beatd.runtime_follow import RuntimeFollower
from beatd.store import Store, StoreError
from beatd.store.jobs import JobChange, JobStore
from tests.redis_server import RedisServer

SPEC = {"every": "1h", "call": "app.tasks:send"}


def _config(tmp_path: Path, redis: RedisServer, namespace: str, allow: str, name: str = "beatd.yaml") -> Config:
    path = tmp_path / name
    path.write_text(
        f"redis: {{url: '{redis.url}'}}\nnamespace: {namespace}\n"
        f"runtime_jobs: {{allow: ['{allow}']}}\njobs: {{base: {{every: 1h, call: app.tasks:base}}}}\n"
    )
    return load_config(path, {})


def _put(store: JobStore, count: int) -> None:
    """``count`` hourly jobs whose fires fall half an hour from now (within one minute, a second apart): none is
    due while a test runs. At minute 00 of 00:00:SS starts, a test run in an hour's first minute saw some fire."""
    minute = (time.gmtime().tm_min + 30) % 60
    for start in range(0, count, 1000):
        changes = [
            JobChange.put(f"c{index}", {**SPEC, "start": f"2026-01-01T00:{minute:02d}:{index % 60:02d}Z"}, "me", "now")
            for index in range(start, min(count, start + 1000))
        ]
        store.write(changes, None)


def test_a_full_read_comes_in_pages_and_drops_what_it_did_not_meet(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With pages of 200, a first read of 2,000 runtime jobs takes several polls, each with ``behind`` set
    until the last; a job deleted during the read is gone at its end, and one put during it is read after."""
    monkeypatch.setattr(defaults, "RUNTIME_CHANGES_PER_POLL", 200)
    store = JobStore(shared_redis.client(), Keys(namespace))
    _put(store, 2000)
    follower = RuntimeFollower(store, _config(tmp_path, shared_redis, namespace, "app.tasks:*"),
                               SystemClock(), "test", lambda record: None)  # fmt: skip
    first = follower.poll()
    assert 0 < len(first) < 2000 and follower.behind
    store.write([JobChange.delete("c1999"), JobChange.delete("c0"), JobChange.put("late", SPEC, "me", "now")], None)
    polls = 1
    while follower.behind:
        follower.poll()
        polls += 1
    assert polls >= 5
    follower.poll_all()  # the changes made during the full read
    assert "c0" not in follower.jobs and "c1999" not in follower.jobs and "late" in follower.jobs
    assert len(follower.jobs) == 1999
    assert follower.judge.fast >= 1990  # one shape: validated in full once (plus the two later puts)


def test_a_reload_judges_every_entry_again_under_the_new_allow_list(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a reload that no longer allows the jobs' target, a full read (in pages) refuses every one of them;
    a reload that changes nothing the verdict depends on keeps the judged shapes."""
    monkeypatch.setattr(defaults, "RUNTIME_CHANGES_PER_POLL", 300)
    store = JobStore(shared_redis.client(), Keys(namespace))
    _put(store, 1000)
    config = _config(tmp_path, shared_redis, namespace, "app.tasks:*")
    follower = RuntimeFollower(store, config, SystemClock(), "test", lambda record: None)
    follower.poll_all()
    assert len(follower.jobs) == 1000
    judge = follower.judge
    follower.set_config(_config(tmp_path, shared_redis, namespace, "app.tasks:*", "same.yaml"))
    follower.poll_all()
    assert follower.judge is judge and len(follower.jobs) == 1000
    follower.set_config(_config(tmp_path, shared_redis, namespace, "other.tasks:*", "other.yaml"))
    assert follower.behind
    follower.poll_all()
    assert follower.jobs == {} and len(follower.refused) == 1000
    assert "app.tasks:send is not allowed" in follower.refused["c5"]
    json.dumps(follower.refused)  # plain text reasons


def test_a_leaders_reload_rereads_runtime_jobs_in_pages_and_restarts_none(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload of a leader with 2,000 runtime jobs (pages of 200) judges them again one page a tick, the
    lease held all along, and leaves every job's progress as it was (nothing starts from now again)."""
    monkeypatch.setattr(defaults, "RUNTIME_CHANGES_PER_POLL", 200)
    client = shared_redis.client()
    store = JobStore(client, Keys(namespace))
    _put(store, 2000)
    config = _config(tmp_path, shared_redis, namespace, "app.tasks:*")
    clock = SystemClock()
    follower = RuntimeFollower(store, config, clock, "test", lambda record: None)
    follower.poll_all()
    beat = Beat(config, Store(client, Keys(namespace)), Identity.here(clock.now()), clock=clock, runtime=follower)
    while not beat.synced:
        beat.tick(clock.now(), clock.monotonic())
    progress = client.hgetall(Keys(namespace).progress)
    assert len(progress) == 2001
    beat.apply_config(_config(tmp_path, shared_redis, namespace, "app.tasks:*", "reloaded.yaml"),
                      clock.now(), clock.monotonic())  # fmt: skip
    ticks = 0
    while follower.behind:
        beat._next_runtime_poll = 0.0
        beat.tick(clock.now(), clock.monotonic())
        ticks += 1
        assert beat.leadership.is_leader(clock.monotonic())
    assert ticks >= 5 and len(beat.jobs) == 2001
    assert client.hgetall(Keys(namespace).progress) == progress


def test_a_standby_that_takes_the_lead_during_a_full_read_restarts_none(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A standby whose first read of 2,000 runtime jobs (pages of 200) is under way when the lease comes free (its
    start-up read found Redis down, say) leads once it has met them all: no job read after it took the lease is
    taken for a new one and started from now (which would skip a fire due during the failover)."""
    monkeypatch.setattr(defaults, "RUNTIME_CHANGES_PER_POLL", 200)
    client = shared_redis.client()
    store = JobStore(client, Keys(namespace))
    yearly = {"cron": "0 0 1 1 *", "call": "app.tasks:send"}  # no fire falls due during the test
    for start in range(0, 2000, 1000):
        store.write([JobChange.put(f"c{index}", yearly, "me", "now") for index in range(start, start + 1000)], None)
    config = _config(tmp_path, shared_redis, namespace, "app.tasks:*")
    clock = SystemClock()
    old = RuntimeFollower(store, config, clock, "old", lambda record: None)
    old.poll_all()
    leader = Beat(config, Store(client, Keys(namespace)), Identity.here(clock.now()), clock=clock, runtime=old)
    while not leader.synced:
        leader.tick(clock.now(), clock.monotonic())
    progress = client.hgetall(Keys(namespace).progress)
    assert len(progress) == 2001
    leader.leadership.release()  # gone, as a leader killed once its lease ran out

    follower = RuntimeFollower(store, config, clock, "standby", lambda record: None)
    standby = Beat(config, Store(client, Keys(namespace)), Identity.here(clock.now()), clock=clock, runtime=follower)
    ticks = 0
    while not standby.synced or follower.behind:
        standby._next_runtime_poll = 0.0
        standby.tick(clock.now(), clock.monotonic())
        ticks += 1
        assert ticks < 1000
    assert ticks >= 5 and len(standby.jobs) == 2001
    assert client.hgetall(Keys(namespace).progress) == progress


def test_a_reload_that_revokes_the_allow_list_stops_its_jobs_at_once(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leader's reload whose allow-list no longer allows its runtime jobs' target schedules none of them from
    that moment on, not only once the full read (in pages) has reached each; a job still allowed stays."""
    monkeypatch.setattr(defaults, "RUNTIME_CHANGES_PER_POLL", 200)
    client = shared_redis.client()
    store = JobStore(client, Keys(namespace))
    _put(store, 2000)
    store.write([JobChange.put("kept", {"every": "1h", "call": "kept.tasks:send"}, "me", "now")], None)
    path = tmp_path / "both.yaml"
    path.write_text(
        f"redis: {{url: '{shared_redis.url}'}}\nnamespace: {namespace}\n"
        "runtime_jobs: {allow: ['app.tasks:*', 'kept.tasks:*']}\njobs: {base: {every: 1h, call: app.tasks:base}}\n"
    )
    clock = SystemClock()
    follower = RuntimeFollower(store, load_config(path, {}), clock, "test", lambda record: None)
    follower.poll_all()
    beat = Beat(load_config(path, {}), Store(client, Keys(namespace)), Identity.here(clock.now()), clock=clock,
                runtime=follower)  # fmt: skip
    while not beat.synced:
        beat.tick(clock.now(), clock.monotonic())
    assert len(beat.jobs) == 2002
    beat.apply_config(_config(tmp_path, shared_redis, namespace, "kept.tasks:*", "revoked.yaml"),
                      clock.now(), clock.monotonic())  # fmt: skip
    assert follower.behind  # the full read has only begun
    assert set(beat.jobs) == {"base", "kept"} and set(follower.jobs) == {"kept"}
    follower.poll_all()
    assert set(follower.jobs) == {"kept"} and len(follower.refused) == 2000


def test_a_full_read_that_redis_restarts_under_meets_every_job(
    tmp_path: Path, own_redis: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis restarted (its data kept) between two pages of a full read: the next page's HSCAN cursor means
    nothing to the new process (another hash seed), so the read begins again rather than drop, as gone, the jobs
    the old cursor would skip."""
    monkeypatch.setattr(defaults, "RUNTIME_CHANGES_PER_POLL", 200)
    store = JobStore(own_redis.client(), Keys(namespace))
    _put(store, 2000)
    follower = RuntimeFollower(store, _config(tmp_path, own_redis, namespace, "app.tasks:*"),
                               SystemClock(), "test", lambda record: None)  # fmt: skip
    for _ in range(3):
        follower.poll()
    assert follower.behind
    assert own_redis.process is not None
    own_redis.process.send_signal(signal.SIGTERM)  # its append-only file has every job
    own_redis.process.wait(30)
    own_redis.process = None
    own_redis.start(timeout=30)
    deadline = time.monotonic() + 30
    while True:
        try:
            follower.poll_all()
            break
        except StoreError:
            assert time.monotonic() < deadline
    assert len(follower.jobs) == 2000
