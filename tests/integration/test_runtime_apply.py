"""A leader applies a runtime job change to that job alone: the other jobs' schedules are not rebuilt."""

from __future__ import annotations

from pathlib import Path

from beatd.beat import Beat
from beatd.clock import SystemClock
from beatd.config import load_config
from beatd.config.job_documents import job_from_mapping
from beatd.identity import Identity
from beatd.keys import Keys
from beatd.runtime_jobs import check_job
from beatd.store import LeaderWrite, Store
from tests.redis_server import RedisServer


def test_one_put_among_thousands_touches_only_that_job(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """With 3,000 runtime jobs scheduled, changing one replans that one: every other job keeps its state object,
    its heap entry and its progress, and only the changed job gets a start write."""
    path = tmp_path / "beatd.yaml"
    path.write_text(
        f"redis: {{url: '{shared_redis.url}'}}\nnamespace: {namespace}\n"
        "runtime_jobs: {allow: ['app.tasks:*']}\njobs: {base: {every: 1h, call: app.tasks:base}}\n"
    )
    config = load_config(path, {})
    clock = SystemClock()
    client = shared_redis.client()
    beat = Beat(config, Store(client, Keys(namespace)), Identity.here(clock.now()), clock=clock)
    while not beat.synced:
        beat.tick(clock.now(), clock.monotonic())

    def spec(name: str, every: str) -> object:
        return check_job(config, name, job_from_mapping(name, {"every": every, "call": "app.tasks:x"}, name))

    now = beat.now(clock.now(), clock.monotonic())
    beat.apply_job_changes({f"c{index}": spec(f"c{index}", "1h") for index in range(3000)}, now)  # type: ignore[misc]
    states = dict(beat.jobs)
    heap_before, progress_before = sum(len(names) for names in beat.due.values()), dict(beat.progress)
    schedules_before = client.hgetall(Keys(namespace).schedules)

    lines = beat.apply_job_changes({"c7": spec("c7", "5m")}, now)  # type: ignore[dict-item]
    assert lines == ["changed c7: every 1h -> every 5m, from now on"]
    assert all(beat.jobs[name] is state for name, state in states.items() if name != "c7")
    assert beat.jobs["c7"] is not states["c7"]
    assert sum(len(names) for names in beat.due.values()) == heap_before + 1  # one push, no rebuild
    assert {name: value for name, value in beat.progress.items() if name != "c7"} == {
        name: value for name, value in progress_before.items() if name != "c7"
    }
    schedules_after = client.hgetall(Keys(namespace).schedules)
    assert {name for name in schedules_after if schedules_after[name] != schedules_before.get(name)} == {"c7"}

    assert beat.apply_job_changes({"c8": None}, now) == ["removed c8"]
    assert "c8" not in beat.jobs and "c8" not in beat.queued and len(beat.jobs) == 3000


def test_a_batch_of_start_writes_is_fenced_and_refuses_unreadable_progress(
    shared_redis: RedisServer, namespace: str
) -> None:
    """Start writes alone (the light start.lua) move progress forward only, refuse a job whose progress is not
    a number, and write nothing for a caller without the lease, as the same writes through emit.lua do."""
    client = shared_redis.client()
    keys = Keys(namespace)
    store = Store(client, keys)
    token, _ = store.acquire("me", 60_000, {"event": "leader"})
    assert token is not None
    client.hset(keys.progress, mapping={"later": 5000, "garbage": "x"})
    writes = [LeaderWrite.base(job, 1000, "d1") for job in ("new", "later", "garbage")]
    result = store.apply(token, writes)
    assert result.leader and result.statuses == ("applied", "applied", "refused")
    assert "not epoch ms" in result.errors[2]
    assert client.hgetall(keys.progress) == {"new": "1000", "later": "5000", "garbage": "x"}
    assert client.hgetall(keys.schedules) == {"new": "d1", "later": "d1"}
    assert not store.apply("1:someone-else", [LeaderWrite.base("other", 1000, "d1")]).leader
    assert client.hget(keys.progress, "other") is None
