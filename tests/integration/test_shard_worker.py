"""Real `beatd worker` processes on a deployment of three shards (docs/sharding.md section 5): a worker reads
every shard's queues, runs each fire once, and writes its records in the job's shard."""

from __future__ import annotations

import json
import signal
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from beatd.config import load_config
from beatd.keys import Keys
from beatd.messages import Message, fire_id, format_utc
from beatd.sharding import shard_of
from beatd.store import RunStore
from tests.conftest import REPO
from tests.integration.conftest import Daemon, wait_for
from tests.redis_server import RedisServer

SHARDS = 3
JOBS = [f"job{number}" for number in range(9)]
"""Nine jobs: every one of the three shards holds some (checked in :func:`test_the_jobs_spread_over_every_shard`)."""


def shard_config(tmp_path: Path, server: RedisServer, namespace: str, jobs: dict[str, str], extra: str = "") -> Path:
    """A config of ``SHARDS`` shards with fast kill grace; ``jobs``: name -> its YAML flow mapping."""
    body = textwrap.indent("\n".join(f"{name}: {spec}" for name, spec in jobs.items()), "  ")
    path = tmp_path / "beatd.yaml"
    path.write_text(
        f"redis: {{url: '{server.url}'}}\nnamespace: {namespace}\nshards: {SHARDS}\npythonpath: ['{REPO}']\n"
        f"worker: {{kill_grace: 500ms, concurrency: 4}}\n{extra}jobs:\n{body}\n"
    )
    return path


def keys_of(namespace: str, job: str) -> Keys:
    """The keys of ``job``'s shard, worked out here from the layout (not through the config)."""
    return Keys(namespace, shard_of(job, SHARDS), tagged=True)


def put_fire(
    server: RedisServer, config: Path, job: str, scheduled: datetime, shard: int | None = None, fire_job: str = ""
) -> str:
    """XADD one scheduled fire of ``job`` into its queue in its shard (or in ``shard``), as the beat writes it
    (``fire_job``: a forged fire id of that job instead); return its fire id."""
    loaded = load_config(config, {})
    spec = loaded.jobs[job]
    now = datetime.now(UTC)
    message = Message(
        fire_id=fire_id(fire_job or job, scheduled), job=job, scheduled_at=format_utc(scheduled),
        emitted_at=format_utc(now), trigger="schedule", config_digest=spec.digest, args=list(spec.args),
        kwargs=dict(spec.kwargs),
    )  # fmt: skip
    keys = keys_of(loaded.namespace, job) if shard is None else Keys(loaded.namespace, shard, tagged=True)
    server.client().xadd(keys.queue(spec.queue), {"message": message.to_json(), "sig": ""})
    return message.fire_id


def records(server: RedisServer, keys: Keys, job: str) -> list[dict[str, Any]]:
    """Every run record of ``job`` under ``keys``."""
    return [json.loads(text) for text in server.client().hvals(keys.runs(job))]


def logged(path: Path) -> list[str]:
    """The run ids the test job logged, one line per run."""
    return [json.loads(line)["run_id"] for line in path.read_text().splitlines()] if path.exists() else []


def _jobs(log: Path) -> dict[str, str]:
    return dict.fromkeys(JOBS, f"{{call: tests.worker_jobs:report_context, kwargs: {{log: '{log}'}}, every: 1h}}")


def _fires(server: RedisServer, config: Path, per_job: int) -> list[str]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [put_fire(server, config, job, start + timedelta(hours=hour)) for hour in range(per_job) for job in JOBS]


def _all_succeeded(server: RedisServer, namespace: str, count: int) -> bool:
    found = [record for job in JOBS for record in records(server, keys_of(namespace, job), job)]
    return len(found) == count and all(record["status"] == "succeeded" for record in found)


def test_the_jobs_spread_over_every_shard() -> None:
    """The test jobs cover all three shards (so the other tests read across shards)."""
    assert {shard_of(job, SHARDS) for job in JOBS} == set(range(SHARDS))


def test_one_worker_runs_every_shard_s_fires_once_with_records_in_the_job_s_shard(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """Fires put into each shard's queue are all run exactly once by one worker; each job's records are in its
    own shard only (no plain-layout key, none in another shard), and every shard's queue is acknowledged."""
    log = tmp_path / "runs.jsonl"
    config = shard_config(tmp_path, shared_redis, namespace, _jobs(log))
    fires = _fires(shared_redis, config, 2)
    daemons("worker", "-c", str(config), name="worker")
    wait_for(lambda: _all_succeeded(shared_redis, namespace, len(fires)), timeout=30, what="every fire ran")
    assert sorted(logged(log)) == sorted(f"{fire}#1" for fire in fires)
    client = shared_redis.client()
    for job in JOBS:
        home = keys_of(namespace, job)
        assert sorted(record["fire_id"] for record in records(shared_redis, home, job)) == sorted(
            fire for fire in fires if fire.startswith(f"{job}@")
        )
        others = [Keys(namespace, shard, tagged=True) for shard in range(SHARDS) if shard != home.shard]
        assert not any(client.exists(keys.runs(job), keys.active(job)) for keys in [*others, Keys(namespace)])
    assert all(client.xlen(Keys(namespace, shard, tagged=True).queue("default")) == 0 for shard in range(SHARDS))
    home = Keys(namespace, 0, tagged=True).workers  # the heartbeat lives in shard 0's slot
    wait_for(lambda: client.hlen(home) == 1, what="the worker's heartbeat")  # its first may follow the runs
    assert not client.exists(Keys(namespace).workers)


def test_two_workers_share_the_shards_and_run_each_fire_once(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """Two workers reading the same three shards run every fire exactly once between them."""
    log = tmp_path / "runs.jsonl"
    config = shard_config(tmp_path, shared_redis, namespace, _jobs(log))
    daemons("worker", "-c", str(config), name="first")
    daemons("worker", "-c", str(config), name="second")
    wait_for(lambda: len(shared_redis.client().hgetall(Keys(namespace, 0, tagged=True).workers)) == 2, timeout=60,
             what="both workers' heartbeats")  # fmt: skip
    fires = _fires(shared_redis, config, 4)
    wait_for(lambda: _all_succeeded(shared_redis, namespace, len(fires)), timeout=30, what="every fire ran")
    ran = logged(log)
    assert len(ran) == len(fires) and sorted(ran) == sorted(f"{fire}#1" for fire in fires)


def test_a_fire_in_another_shard_s_queue_is_dead_lettered_in_that_shard(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A fire found in a queue of a shard other than its job's is not run (its keys would be in two slots): it
    goes to that shard's dead letters saying where it belongs, and its job's shard has no record of it; so does
    a fire whose id names a job of another shard (its attempts would be counted there)."""
    log = tmp_path / "runs.jsonl"
    config = shard_config(tmp_path, shared_redis, namespace, _jobs(log))
    job = JOBS[0]
    home = shard_of(job, SHARDS)
    wrong = (home + 1) % SHARDS
    put_fire(shared_redis, config, job, datetime(2026, 1, 1, tzinfo=UTC), shard=wrong)
    elsewhere = next(other for other in JOBS if shard_of(other, SHARDS) != home)
    put_fire(shared_redis, config, job, datetime(2026, 1, 2, tzinfo=UTC), fire_job=elsewhere)
    daemons("worker", "-c", str(config), name="worker")
    letters = wait_for(lambda: shared_redis.client().xrange(Keys(namespace, wrong, tagged=True).dead), timeout=60,
                       what="the dead letter")  # fmt: skip
    assert f"(shard {home}) in a queue of shard {wrong}" in letters[0][1]["reason"]
    forged = wait_for(lambda: shared_redis.client().xrange(keys_of(namespace, job).dead), timeout=60,
                      what="the forged fire's dead letter")  # fmt: skip
    assert f"is not one of job {job!r}" in forged[0][1]["reason"]
    assert not logged(log) and not records(shared_redis, keys_of(namespace, job), job)


def _statuses(server: RedisServer, namespace: str, job: str) -> list[str]:
    found = sorted(records(server, keys_of(namespace, job), job), key=lambda record: record["run_id"])
    return [record["status"] for record in found]


def test_a_killed_worker_s_runs_are_reclaimed_and_retries_requeued_in_every_shard(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A worker killed with SIGKILL mid-run in every shard: another worker reclaims each run in its job's shard
    (recorded lost, then attempt 2 succeeds); a failed first attempt's retry is moved back into the queue of its
    job's shard (not only shard 0's) and runs."""
    log, flaky_log = tmp_path / "runs.jsonl", tmp_path / "flaky.jsonl"
    slow = {next(job for job in JOBS if shard_of(job, SHARDS) == shard): shard for shard in range(SHARDS)}
    flaky = next(job for job in JOBS if shard_of(job, SHARDS) != 0 and job not in slow)
    # The timeout (the run lease: reclaimed at most that long after the kill) leaves three child processes of a
    # loaded 2-core machine time to start before the kill, so none times out first.
    jobs = dict.fromkeys(slow, f"{{call: tests.worker_jobs:slow_first_attempt, kwargs: {{seconds: 60, log: '{log}'}}, "
                               "every: 1h, timeout: 8s}")  # fmt: skip
    jobs[flaky] = f"{{call: tests.worker_jobs:fail_first_attempt, kwargs: {{log: '{flaky_log}'}}, every: 1h, "
    jobs[flaky] += "retries: 1, retry_delay: 0s}"
    config = shard_config(tmp_path, shared_redis, namespace, jobs)
    first = daemons("worker", "-c", str(config), name="first")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for job in slow:
        put_fire(shared_redis, config, job, start)
    wait_for(lambda: len(log.read_text().splitlines()) == len(slow) if log.exists() else False, what="attempts 1")
    first.signal(signal.SIGKILL)
    put_fire(shared_redis, config, flaky, start)
    daemons("worker", "-c", str(config), name="second")
    for job in slow:
        wait_for(lambda job=job: _statuses(shared_redis, namespace, job) == ["lost", "succeeded"], timeout=60,
                 what=f"{job} reclaimed in shard {slow[job]}")  # fmt: skip
    wait_for(lambda: _statuses(shared_redis, namespace, flaky) == ["failed", "succeeded"], timeout=30,
             what="the retried fire")  # fmt: skip
    client = shared_redis.client()
    for shard in range(SHARDS):
        keys = Keys(namespace, shard, tagged=True)
        assert client.xlen(keys.queue("default")) == 0 and client.zcard(keys.retry("default")) == 0


def test_a_read_takes_no_more_than_asked_and_the_rotation_reaches_every_shard(
    shared_redis: RedisServer, namespace: str
) -> None:
    """Reading across shards takes at most ``count`` entries in all, and a shard whose queue is always full does
    not starve the others: with one entry asked for per read, a lone entry in the last shard comes within one
    rotation; each delivery names the shard it came from."""
    shards = [Keys(namespace, shard, tagged=True) for shard in range(SHARDS)]
    client = shared_redis.client()
    store = RunStore(client, shards[0], shards)
    store.ensure_groups(["default"])
    for number in range(10):
        client.xadd(shards[0].queue("default"), {"message": f"busy {number}", "sig": ""})
    client.xadd(shards[SHARDS - 1].queue("default"), {"message": "lone", "sig": ""})
    assert len(store.read(["default"], "reader", 4, block_ms=10)) == 4
    seen = []
    for _ in range(SHARDS):
        (delivery,) = store.read(["default"], "reader", 1, block_ms=10)
        seen.append((delivery.shard, delivery.message))
    assert (SHARDS - 1, "lone") in seen and all(message.startswith("busy") for shard, message in seen if shard == 0)
    rest = store.read(["default"], "reader", 100, block_ms=10)
    assert len(rest) == 11 - 4 - SHARDS and {delivery.shard for delivery in rest} == {0}
    assert store.read(["default"], "reader", 100, block_ms=10) == []
    for keys in shards[1:]:
        for number in range(2):
            client.xadd(keys.queue("default"), {"message": f"more {number}", "sig": ""})
    assert len(store.read(["default"], "reader", 3, block_ms=10)) == 3  # 2 of one shard, 1 of the next


def test_an_idle_read_is_one_blocking_command_with_one_shard_and_one_more_per_shard_with_several(
    shared_redis: RedisServer, namespace: str
) -> None:
    """An idle intake round with one shard (plain layout) is today's single blocking XREADGROUP; with three it
    is a read that does not wait of each shard and one blocking read (counted by the server)."""
    client = shared_redis.client()

    def reads() -> int:
        return int(client.info("commandstats").get("cmdstat_xreadgroup", {}).get("calls", 0))

    tagged = [Keys(namespace, shard, tagged=True) for shard in range(SHARDS)]
    for store in (RunStore(client, Keys(namespace)), RunStore(client, tagged[0], tagged)):
        store.ensure_groups(["default", "other"])
        before = reads()
        assert store.read(["default", "other"], "reader", 10, block_ms=10) == []
        assert reads() - before == (1 if len(store.shards) == 1 else SHARDS + 1)
