"""What keeps the operator's commands from hanging, doubling fires or reading the wrong place: waits that end
(pruned records, fires dead-lettered at intake, --timeout), backfill's skip check and lock, dead letters
settled once, the connection taken from --redis-url."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from beatd.cli.emitting import fire_message
from beatd.config import load_config
from beatd.keys import Keys
from beatd.messages import format_utc
from beatd.store import RunStore, Store
from tests.integration.conftest import Daemon
from tests.integration.helpers import messages
from tests.integration.test_operator_cli import cli
from tests.integration.test_worker import config_file, statuses
from tests.redis_server import RedisServer


def test_backfill_wait_ends_though_the_records_of_its_fires_are_pruned(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """Fires whose attempts outnumber history.keep still end the wait (an end once seen is kept, and a dead
    letter ends a fire too); a --wait for more fires than history.keep is refused before anything is emitted."""
    config = config_file(tmp_path, shared_redis, namespace, """
        bad: {call: tests.worker_jobs:fail, cron: '0 3 * * *', retries: 2, retry_delay: 0s, history: {keep: 4}}
    """)  # fmt: skip
    refused = cli(
        "backfill", "-c", str(config), "bad", "--from", "2026-11-01", "--to", "2026-11-05", "--wait", "--rerun"
    )
    assert refused.returncode == 2 and "--wait follows at most jobs.bad.history.keep (4)" in refused.stderr
    assert messages(shared_redis.client(), namespace) == []

    daemons("worker", "-c", str(config), name="worker")
    span = ["--from", "2026-11-01", "--to", "2026-11-03"]  # 3 fires, 3 attempts and a dead record each: 12 > 4
    done = cli("backfill", "-c", str(config), "bad", *span, "--wait", "--rerun", "--timeout", "60", "--json")
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["results"] == {"dead": 3}
    assert len(statuses(shared_redis, namespace, "bad")) == 4  # the first fires' records are gone


def test_waits_end_on_a_dead_letter_at_intake_and_on_timeout(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A fire the worker dead-letters before running it (its job is not in the worker's config) ends
    `trigger --wait` as dead with the reason; a fire no worker takes ends the wait at --timeout, exit 1."""
    worker_config = config_file(tmp_path, shared_redis, namespace, "known: {command: [/bin/true], every: 1h}")
    daemons("worker", "-c", str(worker_config), name="worker")
    (tmp_path / "cli").mkdir()
    config = config_file(tmp_path / "cli", shared_redis, namespace, """
        known: {command: [/bin/true], every: 1h}
        ghost: {command: [/bin/true], every: 1h}
        idle: {command: [/bin/true], every: 1h, queue: nobody}
    """)  # fmt: skip
    dead = cli("trigger", "-c", str(config), "ghost", "--wait", "--timeout", "60", "--json")
    assert dead.returncode == 1, dead.stderr
    result = json.loads(dead.stdout)["result"]
    assert result["status"] == "dead" and "ghost" in result["reason"] and result["dead_letter"]
    shown = cli("trigger", "-c", str(config), "ghost", "--wait", "--timeout", "60")
    assert shown.returncode == 1 and "status: dead" in shown.stdout

    late = cli("trigger", "-c", str(config), "idle", "--wait", "--timeout", "0.5")
    assert late.returncode == 1 and "timed out after 0.5s" in late.stderr and "carries on" in late.stderr
    late = cli("backfill", "-c", str(config), "idle", "--from", "2026-11-01", "--to", "2026-11-01T02:00", "--wait",
               "--timeout", "0.5")  # fmt: skip
    assert late.returncode == 1 and "0 of 3 fire(s) ended" in late.stderr and "the rest carry on" in late.stderr


def test_backfill_skips_fires_between_attempts_deferred_or_buffered(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """Instants waiting in the retry set (between attempts, or deferred) or held back by buffer_one are not
    emitted again by a backfill."""
    config = config_file(tmp_path, shared_redis, namespace, "n: {command: [/bin/true], cron: '0 * * * *'}")
    spec = load_config(config, {}).jobs["n"]
    keys, client = Keys(namespace), shared_redis.client()
    now = datetime.now(UTC)
    retried, buffered = (datetime(2026, 11, 1, hour, tzinfo=UTC) for hour in (1, 2))
    member = {"message": fire_message(spec, retried, now, "backfill").to_json(), "sig": ""}
    client.zadd(keys.retry("default"), {json.dumps(member): 1})
    client.hset(keys.buffer("n"), mapping={"message": fire_message(spec, buffered, now, "manual").to_json(), "sig": ""})
    plan = cli("backfill", "-c", str(config), "n", "--from", "2026-11-01T00:00", "--to", "2026-11-01T03:00", "--json")
    assert plan.returncode == 0, plan.stderr
    report = json.loads(plan.stdout)
    assert report["skipped"] == [format_utc(retried), format_utc(buffered)]
    assert report["instants"] == ["2026-11-01T00:00:00Z", "2026-11-01T03:00:00Z"]


def test_a_second_backfill_of_a_job_is_refused_while_one_emits(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """While a backfill of the job holds its lock nothing is emitted (exit 2, who holds it); the lock is freed
    only by its token, and a backfill frees its own when done."""
    config = config_file(tmp_path, shared_redis, namespace, "n: {command: [/bin/true], cron: '0 * * * *'}")
    store = Store(shared_redis.client(), Keys(namespace))
    assert store.lock_backfill("n", "other", {"user": "ann", "host": "h1", "at": "now"}, 60_000) is None
    span = ["n", "--from", "2026-11-01T00:00", "--to", "2026-11-01T03:00"]
    busy = cli("backfill", "-c", str(config), *span)
    assert busy.returncode == 2 and "another backfill of n is emitting now (by ann@h1" in busy.stderr, busy.stderr
    assert messages(shared_redis.client(), namespace) == []
    assert store.lock_backfill("n", "mine", {}, 60_000) is not None and not store.unlock_backfill("n", "mine")
    assert store.unlock_backfill("n", "other")
    first = cli("backfill", "-c", str(config), *span)
    assert first.returncode == 0 and len(messages(shared_redis.client(), namespace)) == 4, first.stderr
    assert not shared_redis.client().exists(Keys(namespace).backfill_lock("n"))


def test_a_dead_letter_is_retried_or_dropped_once_under_concurrent_operators(
    shared_redis: RedisServer, namespace: str
) -> None:
    """Operators retrying and dropping the same dead letters at once: each is requeued at most once, and each
    settles with exactly one audit record."""
    keys = Keys(namespace)
    client = shared_redis.client()
    ids = [
        client.xadd(
            keys.dead, {"message": f'{{"fire_id": "f{n}"}}', "sig": "", "reason": "r", "queue": keys.queue("q")}
        )
        for n in range(30)
    ]
    barrier = threading.Barrier(6)
    settled: list[bool] = []

    def operator(action: str) -> None:
        store = RunStore(shared_redis.client(), keys)
        barrier.wait()
        for entry in ids:
            record = {"event": f"dead-{action}"}
            settled.append(
                store.retry_dead(entry, keys.queue("q"), record)
                if action == "retry"
                else store.drop_dead(entry, record)
            )

    threads = [threading.Thread(target=operator, args=(action,)) for action in ("retry", "drop") * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    requeued = client.xrange(keys.queue("q"))
    audited = client.xrange(keys.audit)
    assert sum(settled) == len(ids) == len(audited) and client.xlen(keys.dead) == 0
    assert len({fields["message"] for _, fields in requeued}) == len(requeued)
    assert len(requeued) == sum(1 for _, fields in audited if fields["event"] == "dead-retry")


def test_dead_limit_counts_only_the_letters_shown(tmp_path: Path, shared_redis: RedisServer, namespace: str) -> None:
    """`dead --limit 1` shows the newest dead letter whose fire did not succeed later, though a newer one's did."""
    config = config_file(tmp_path, shared_redis, namespace, "n: {command: [/bin/true], every: 1h}")
    keys, client = Keys(namespace), shared_redis.client()
    for fire in ("n@old", "n@new"):
        client.xadd(keys.dead, {"message": json.dumps({"job": "n", "fire_id": fire}), "queue": keys.queue("default")})
    record = {"run_id": "n@new#1", "fire_id": "n@new", "job": "n", "status": "succeeded", "attempt": 1}
    RunStore(client, keys).write_record("n", "n@new#1", json.dumps(record), 1)
    shown = json.loads(cli("dead", "-c", str(config), "--limit", "1", "--json").stdout)
    assert [entry["fire_id"] for entry in shown] == ["n@old"]


def test_redis_url_alone_reads_the_files_namespace_and_needs_no_file(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """With a file whose redis section is broken, --redis-url reads the file's namespace; with no file at all
    (none found, none named), --redis-url reads without a warning."""
    record = {"run_id": "n@x#1", "fire_id": "n@x", "job": "n", "status": "succeeded", "attempt": 1,
              "scheduled_at": "2026-11-01T00:00:00Z"}  # fmt: skip
    RunStore(shared_redis.client(), Keys(namespace)).write_record("n", "n@x#1", json.dumps(record), 1)
    broken = tmp_path / "broken.yaml"
    broken.write_text(f"redis: {{url: 5}}\nnamespace: {namespace}\njobs: {{}}\n")
    result = cli("history", "-c", str(broken), "--redis-url", shared_redis.url, "--json")
    assert result.returncode == 0, result.stderr
    assert [entry["run_id"] for entry in json.loads(result.stdout)] == ["n@x#1"]
    assert "namespace" in result.stderr

    environment = {key: value for key, value in os.environ.items() if not key.startswith("BEATD_")}
    bare = subprocess.run(
        [sys.executable, "-m", "beatd", "history", "--redis-url", shared_redis.url, "--namespace", namespace, "--json"],
        capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=120, check=False,
    )  # fmt: skip
    assert bare.returncode == 0 and bare.stderr == "", bare.stderr
    assert [entry["run_id"] for entry in json.loads(bare.stdout)] == ["n@x#1"]
