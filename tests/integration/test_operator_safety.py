"""What keeps the operator's commands from hanging, doubling fires or reading the wrong place: waits that end
(pruned records, fires dead-lettered at intake, --timeout), backfill's skip check and lock, dead letters
settled once, the connection taken from --redis-url."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from beatd.client.emitting import fire_message
from beatd.client.waiting import PRUNED
from beatd.config import load_config
from beatd.keys import Keys
from beatd.messages import format_utc
from beatd.store import RunStore, Store
from tests.conftest import REPO
from tests.integration.conftest import Daemon, wait_for
from tests.integration.helpers import messages, runs
from tests.integration.test_operator_cli import cli
from tests.integration.test_worker import config_file
from tests.redis_server import RedisServer


def test_a_wait_ends_though_the_records_of_its_fire_are_pruned(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A fire whose records other runs of its job push past history.keep before the wait reads them still
    ends the wait, with the status its end notification carried (succeeded) and the reason that its records
    were pruned; a --wait for more fires than history.keep is
    refused before anything is emitted."""
    config = config_file(tmp_path, shared_redis, namespace, """
        slow: {call: tests.worker_jobs:hang, kwargs: {seconds: 1.5}, cron: '0 3 * * *', history: {keep: 2}}
    """)  # fmt: skip
    refused = cli(
        "backfill", "-c", str(config), "slow", "--from", "2026-11-01", "--to", "2026-11-03", "--wait", "--rerun"
    )
    assert refused.returncode == 2 and "--wait follows at most jobs.slow.history.keep (2)" in refused.stderr
    assert messages(shared_redis.client(), namespace) == []

    daemons("worker", "-c", str(config), name="worker")
    environment = {key: value for key, value in os.environ.items() if not key.startswith("BEATD_")}
    waiting = subprocess.Popen(
        [sys.executable, "-m", "beatd", "trigger", "-c", str(config), "slow", "--wait", "--timeout", "60", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=environment,
    )  # fmt: skip
    started = wait_for(lambda: runs(shared_redis.client(), namespace, "slow"), timeout=30, what="the run started")
    store = RunStore(shared_redis.client(), Keys(namespace))
    for n in range(3):  # later runs of the job (as the beat's missed fires would be): the slow run's end is pruned
        later = {**started[0], "run_id": f"slow@later-{n}#1", "fire_id": f"slow@later-{n}", "status": "missed"}
        store.write_record("slow", later["run_id"], json.dumps(later), int(time.time() * 1000) + 60_000)
    out, err = waiting.communicate(timeout=90)
    assert waiting.returncode == 0 and "timed out" not in err, err
    result = json.loads(out)["result"]
    assert result["status"] == "succeeded" and result["reason"] == PRUNED
    assert started[0]["run_id"] not in {record["run_id"] for record in runs(shared_redis.client(), namespace, "slow")}


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
                store.dead_letters.retry(entry, keys.queue("q"), record)
                if action == "retry"
                else store.dead_letters.drop(entry, record)
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
