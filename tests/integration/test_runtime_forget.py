"""A deleted runtime job leaves none of its per-job fields behind: the leader's fenced upkeep forgets them, so
runtime job churn keeps the progress, schedules and state hashes bounded by the jobs that exist."""

from __future__ import annotations

from pathlib import Path

import redis

from beatd.beat import Beat
from beatd.clock import SystemClock
from beatd.config import load_config
from beatd.identity import Identity
from beatd.keys import Keys
from beatd.runtime_follow import RuntimeFollower
from beatd.runtime_jobs import RuntimeJobs
from beatd.store import Store
from beatd.store.jobs import JobStore
from tests.redis_server import RedisServer

SPEC = {"every": "1h", "call": "app.tasks:send"}


def _leader(tmp_path: Path, server: RedisServer, namespace: str) -> tuple[Beat, RuntimeJobs, redis.Redis]:
    path = tmp_path / "beatd.yaml"
    path.write_text(
        f"redis: {{url: '{server.url}'}}\nnamespace: {namespace}\n"
        "runtime_jobs: {allow: ['app.tasks:*']}\njobs: {base: {every: 1h, call: app.tasks:base}}\n"
    )
    config = load_config(path, {})
    clock = SystemClock()
    client = server.client()
    store = Store(client, Keys(namespace))
    follower = RuntimeFollower(JobStore(client, Keys(namespace)), config, clock, "test", store.audit)
    beat = Beat(config, store, Identity.here(clock.now()), clock=clock, runtime=follower)
    while not beat.synced:
        beat.tick(clock.now(), clock.monotonic())
    return beat, RuntimeJobs(config, JobStore(client, Keys(namespace))), client


def _step(beat: Beat, *, upkeep: bool = False) -> None:
    """One tick after the runtime poll is due (and the upkeep, when asked)."""
    clock = SystemClock()
    beat._next_runtime_poll = 0.0
    if upkeep:
        beat.upkeep.next_at = 0.0
    beat.tick(clock.now(), clock.monotonic())


def _fields(client: redis.Redis, keys: Keys) -> set[str]:
    names: set[str] = set()
    for key in (keys.progress, keys.schedules, keys.last, keys.paused, keys.failing):
        names |= set(client.hkeys(key))
    return names | {field.partition(":")[2] for field in client.hkeys(keys.alert_state)}


def test_churn_of_runtime_jobs_leaves_no_fields_behind(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """20 rounds of put, schedule, pause, delete: after the upkeep only the YAML job's fields are left, and the
    deleted set is empty."""
    beat, jobs, client = _leader(tmp_path, shared_redis, namespace)
    keys = Keys(namespace)
    for round_ in range(20):
        name = f"customer-{round_}"
        jobs.put(name, SPEC)
        _step(beat)
        assert client.hexists(keys.progress, name) and client.hexists(keys.schedules, name)
        client.hset(keys.paused, name, "{}")  # as pause, the dashboard's failing and alerting would leave them
        client.hset(keys.failing, name, f"{name}@1")
        client.hset(keys.alert_state, mapping={f"open:{name}": "dead", f"success:{name}": "1"})
        assert jobs.delete(name)
    assert client.scard(keys.runtime_deleted) == 20
    _step(beat, upkeep=True)
    assert _fields(client, keys) == {"base"}
    assert client.scard(keys.runtime_deleted) == 0


def test_a_job_put_again_before_the_upkeep_keeps_its_fields(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """Deleted and put again before the upkeep ran, a job keeps its progress; a delete the leader has not read
    yet is forgotten only by a later step, once it no longer schedules the job."""
    beat, jobs, client = _leader(tmp_path, shared_redis, namespace)
    keys = Keys(namespace)
    jobs.put("again", SPEC)
    jobs.put("late", SPEC)
    _step(beat)
    jobs.delete("again")
    jobs.put("again", SPEC)
    jobs.delete("late")
    assert set(client.smembers(keys.runtime_deleted)) == {"late"}
    beat.upkeep.next_at = 0.0
    beat._upkeep(beat.leadership.token or "", beat._now, SystemClock().monotonic())  # before reading the delete
    assert client.hexists(keys.progress, "late") and client.sismember(keys.runtime_deleted, "late")
    _step(beat)
    _step(beat, upkeep=True)
    assert not client.hexists(keys.progress, "late") and client.scard(keys.runtime_deleted) == 0
    assert client.hexists(keys.progress, "again")


def test_a_standby_forgets_nothing(tmp_path: Path, shared_redis: RedisServer, namespace: str) -> None:
    """The forget script is fenced: a caller without the lease deletes no field."""
    beat, jobs, client = _leader(tmp_path, shared_redis, namespace)
    keys = Keys(namespace)
    jobs.put("gone", SPEC)
    _step(beat)
    jobs.delete("gone")
    assert JobStore(client, keys).forget("not-the-token", ["gone"]) == -1
    assert client.hexists(keys.progress, "gone")


def test_a_deleted_jobs_alert_marks_are_forgotten_too(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """The deadline and silence marks alerting keeps per job go with its other fields: left behind, a job put
    later under the name would be judged from its predecessor's (a deadline mark enumerates fires from it, a
    silence mark's ``since_ms`` makes the new job silent since long ago), and churn would grow the hash."""
    beat, jobs, client = _leader(tmp_path, shared_redis, namespace)
    keys = Keys(namespace)
    jobs.put("watched", SPEC)
    _step(beat)
    client.hset(keys.alert_state, mapping={"mark:deadline:watched": "1", "mark:silence:watched": '{"since_ms": 1}',
                                           "mark:deadline:base": "1", "mark:no_worker:default": "{}"})  # fmt: skip
    assert jobs.delete("watched")
    _step(beat)
    _step(beat, upkeep=True)
    assert client.scard(keys.runtime_deleted) == 0
    assert sorted(client.hkeys(keys.alert_state)) == ["mark:deadline:base", "mark:no_worker:default"]


def test_churn_of_runtime_jobs_leaves_nothing_in_the_leaders_memory(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """A leader that applied the deletes of 50 runtime jobs keeps no progress nor queue entry of them
    (a leader that leads for months under churn would grow by every job ever deleted)."""
    beat, jobs, _ = _leader(tmp_path, shared_redis, namespace)
    jobs.put_many({f"churn-{index}": SPEC for index in range(50)})
    _step(beat)
    assert len(beat.progress) == 51
    for index in range(50):
        jobs.delete(f"churn-{index}")
    _step(beat)
    assert set(beat.progress) == {"base"} and set(beat.queued) == {"base"}
