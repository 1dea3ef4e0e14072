"""beatd as the beat of a real Celery app: task messages Celery's own worker runs, exactly once.

A real ``celery -A tests.celery_app worker`` (Celery 5.x, solo pool) consumes from the test's own
redis-server, where beatd keeps its state in database 0 and the Celery broker and result backend live in
databases 1 and 2 (the beat's fenced script SELECTs the broker's database to push).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from beatd.celery_messages import build_task_message, celery_task_id
from beatd.config import load_config
from beatd.emission import celery_write
from beatd.keys import Keys, celery_queue
from beatd.messages import format_utc, parse_utc
from beatd.store import Store, connect
from tests.conftest import REPO
from tests.integration.conftest import Daemon, wait_for
from tests.integration.helpers import assert_contiguous, leader_token, runs
from tests.redis_server import RedisServer

celery = pytest.importorskip("celery", reason="Celery is in the dev extras (beatd[celery])")

JOB = "report"
ARGS = [1, "two", {"three": [3]}]
KWARGS = {"region": "eu", "limit": 10, "flag": True}


def _config(path: Path, server: RedisServer, namespace: str, *, lease: str = "1s") -> Path:
    path.write_text(
        f"""
redis: {{url: "redis://127.0.0.1:{server.port}/0"}}
namespace: {namespace}
leader: {{lease: {lease}}}
celery:
  broker_url: ${{CELERY_BROKER_URL}}
  result_backend: ${{CELERY_RESULT_BACKEND}}
jobs:
  {JOB}:
    celery: tests.record
    every: 1s
    catchup: all
    args: {json.dumps(ARGS)}
    kwargs: {json.dumps(KWARGS)}
    options: {{headers: {{trace: abc-123}}, time_limit: 30s, soft_time_limit: 20s}}
"""
    )
    return path


def _celery_env(server: RedisServer, ledger: Path, broker_db: int = 1) -> dict[str, str]:
    return {
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{server.port}/{broker_db}",
        "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:{server.port}/2",
        "CELERY_LEDGER": str(ledger),
    }


@pytest.fixture
def celery_worker(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``celery -A tests.celery_app worker`` subprocesses (solo pool; ``args`` added, such as ``-Q q``);
    stopped at the end of the test."""
    started: list[tuple[subprocess.Popen[bytes], Any]] = []

    def start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"celery-{len(started)}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker", "--pool", "solo",
             "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "info", *args],
            cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=log,
        )  # fmt: skip
        started.append((process, log))
        return process

    yield start
    for process, log in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def _ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _leader(replicas: list[Daemon], client: Any, namespace: str) -> Daemon:
    token = wait_for(lambda: leader_token(client, namespace), what="a leader")
    return next(daemon for daemon in replicas if f":{daemon.pid}:" in token)


def test_envelope_is_what_celery_send_task_writes(tmp_path: Path, own_redis: RedisServer, namespace: str) -> None:
    """beatd's envelope has the keys and values Celery's own send_task writes into the Redis list, priority
    list name included; only what Celery draws at random or from its process differs."""
    from kombu import Connection

    config = load_config(_config(tmp_path / "beatd.yaml", own_redis, namespace), _celery_env(own_redis, tmp_path / "l"))
    spec = config.jobs[JOB]
    options = spec.options
    assert options is not None
    options = options.model_copy(update={"priority": 5, "expires": timedelta(seconds=60)})
    spec = spec.model_copy(update={"options": options})
    fire = f"{JOB}@2026-12-01T00:00:00Z"
    now = datetime.now(UTC)
    ours = build_task_message(
        spec, namespace=namespace, fire_id=fire, scheduled_at="2026-12-01T00:00:00Z", trigger="schedule", emitted_at=now
    )
    app = celery.Celery("probe", broker=f"redis://127.0.0.1:{own_redis.port}/1")
    with Connection(app.conf.broker_url) as connection:
        app.send_task(
            "tests.record", args=ARGS, kwargs=KWARGS, task_id=ours.task_id, headers={"trace": "abc-123"},
            priority=5, expires=timedelta(seconds=60).total_seconds(), time_limit=30, soft_time_limit=20,
            connection=connection,
        )  # fmt: skip
    broker = own_redis.client()
    broker.select(1)  # type: ignore[no-untyped-call]
    assert ours.queue_key == celery_queue("celery", 5) == "celery\x06\x163"
    pushed = broker.lrange(ours.queue_key, 0, -1)
    assert len(pushed) == 1
    theirs, mine = json.loads(pushed[0]), json.loads(ours.envelope)
    assert json.loads(base64.b64decode(mine["body"])) == json.loads(base64.b64decode(theirs["body"]))
    for envelope in (theirs, mine):
        del envelope["body"]
        envelope["headers"]["expires"] = parse_utc(envelope["headers"]["expires"])
    assert abs(mine["headers"]["expires"] - theirs["headers"]["expires"]) < timedelta(seconds=30)
    assert {key: value for key, value in mine["headers"].items() if not key.startswith("beatd_")} | {
        "origin": None,
        "expires": None,
    } == theirs["headers"] | {"origin": None, "expires": None}
    assert mine.pop("headers")["beatd_fire_id"] == fire
    theirs.pop("headers")
    mine_properties, their_properties = mine.pop("properties"), theirs.pop("properties")
    assert mine == theirs == {"content-encoding": "utf-8", "content-type": "application/json"}
    differ = {"delivery_tag", "reply_to"}  # random per message; reply_to names Celery's RPC result consumer
    assert {key: value for key, value in their_properties.items() if key not in differ} == {
        key: value for key, value in mine_properties.items() if key not in differ
    }


def test_every_fire_runs_once_on_celery_across_leader_kill(
    tmp_path: Path,
    own_redis: RedisServer,
    namespace: str,
    daemons: Callable[..., Daemon],
    celery_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """Three beat replicas drive a real Celery worker: every fire of a 1 s job is executed exactly once across
    a kill -9 of the leader (about 25 fires), with args, kwargs and headers intact, and its result found by its task id
    (through Celery and through `beatd show` and `beatd history`)."""
    ledger = tmp_path / "ledger.jsonl"
    env = _celery_env(own_redis, ledger)
    config = _config(tmp_path / "beatd.yaml", own_redis, namespace)
    worker = celery_worker(env)
    replicas = [daemons("beat", "-c", str(config), env=env) for _ in range(3)]
    client = own_redis.client()
    wait_for(lambda: len(_ledger(ledger)) >= 10, timeout=40, what="ten executions before the kill")
    leader = _leader(replicas, client, namespace)
    old_token = leader_token(client, namespace)
    leader.signal(signal.SIGKILL)
    wait_for(lambda: leader_token(client, namespace) not in (None, old_token), timeout=60, what="a new leader")
    executed = len(_ledger(ledger))
    wait_for(lambda: len(_ledger(ledger)) >= executed + 15, timeout=40, what="executions after the takeover")
    for replica in replicas:
        replica.stop()
    sent = [record for record in runs(client, namespace, JOB) if record["status"] == "sent"]
    wait_for(lambda: len(_ledger(ledger)) >= len(sent), timeout=60, what="the worker to run every sent task")
    assert worker.poll() is None
    lines = _ledger(ledger)

    fires = [line["fire_id"] for line in lines]
    assert len(fires) == len(set(fires)), "a fire was executed twice"
    assert sorted(fires) == sorted(record["fire_id"] for record in sent)
    assert_contiguous(sorted(parse_utc(line["scheduled_at"]) for line in lines), 1.0)
    for line in lines:
        assert line["task_id"] == celery_task_id(namespace, line["fire_id"])
        assert (line["args"], line["kwargs"], line["trace"]) == (ARGS, KWARGS, "abc-123")
        assert (line["queue"], line["timelimit"]) == ("celery", [30, 20])
    assert {record["extra"]["task_id"] for record in sent} == {line["task_id"] for line in lines}

    app = celery.Celery("probe", broker=env["CELERY_BROKER_URL"], backend=env["CELERY_RESULT_BACKEND"])
    from celery.result import AsyncResult

    result = AsyncResult(sent[-1]["extra"]["task_id"], app=app)
    assert result.get(timeout=20) == {"args": ARGS, "kwargs": KWARGS}
    assert client.xlen(f"{namespace}:queue:default") == 0  # nothing for beatd's own workers

    beatd = [sys.executable, "-m", "beatd"]
    environ = {**os.environ, **env}
    done = subprocess.run(
        [*beatd, "show", "-c", str(config), sent[-1]["fire_id"], "--json"],
        env=environ, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (shown,) = json.loads(done.stdout)
    assert shown["status"] == "sent" and shown["celery"]["state"] == "SUCCESS"
    assert shown["celery"]["result"] == {"args": ARGS, "kwargs": KWARGS} and shown["celery"]["date_done"]
    assert 0 <= shown["celery"]["done_after_s"] < 30
    done = subprocess.run(
        [*beatd, "history", "-c", str(config), JOB, "--limit", "3"], env=environ, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def _celery_writes(
    tmp_path: Path, server: RedisServer, namespace: str, instants: list[datetime], broker_db: int = 1
) -> list[Any]:
    config = load_config(
        _config(tmp_path / "beatd.yaml", server, namespace), _celery_env(server, tmp_path / "l", broker_db)
    )
    assert config.settings.celery is not None
    spec, keys = config.jobs[JOB], Keys(namespace)
    return [
        celery_write(spec, f"{JOB}@{format_utc(at)}", at, "schedule", "{}", at, keys, config.settings.celery).write
        for at in instants
    ]


def test_fenced_push_is_once_and_a_refused_push_writes_nothing(
    tmp_path: Path, own_redis: RedisServer, namespace: str
) -> None:
    """emit.lua pushes a celery fire into the broker's database once (a second apply is a duplicate); a push
    Redis refuses (the queue key holds a string) writes no record and leaves progress where it was."""
    store = Store(connect(f"redis://127.0.0.1:{own_redis.port}/0"), Keys(namespace))
    token, _ = store.acquire("one", 10_000, {"event": "leader"})
    assert token is not None
    at = datetime(2026, 12, 1, 8, tzinfo=UTC)
    first, second = _celery_writes(tmp_path, own_redis, namespace, [at, at + timedelta(seconds=1)])
    broker = own_redis.client()
    broker.select(1)  # type: ignore[no-untyped-call]
    broker.set("celery", "not a list")
    refused = store.apply(token, [first])
    assert refused.statuses == ("refused",) and "WRONGTYPE" in refused.errors[0]
    assert store.progress() == {} and runs(own_redis.client(), namespace, JOB) == []
    broker.delete("celery")
    assert store.apply(token, [first, second]).statuses == ("applied", "applied")
    assert store.apply(token, [first, second]).statuses == ("duplicate", "duplicate")
    pushed = [json.loads(item)["headers"]["beatd_fire_id"] for item in broker.lrange("celery", 0, -1)]
    assert pushed == [f"{JOB}@2026-12-01T08:00:01Z", f"{JOB}@2026-12-01T08:00:00Z"]  # LPUSH: newest first
    assert [record["status"] for record in runs(own_redis.client(), namespace, JOB)] == ["sent", "sent"]
    assert own_redis.client().keys("celery*") == []  # nothing pushed into beatd's own database


def test_a_refused_select_refuses_that_fire_only(tmp_path: Path, own_redis: RedisServer, namespace: str) -> None:
    """A broker database Redis will not SELECT (past `databases`) refuses that fire like a refused push: no
    `sent` record left behind, progress unmoved, and the batch's other fires applied; `beatd trigger` says so
    and exits 2 with no record either."""
    store = Store(connect(f"redis://127.0.0.1:{own_redis.port}/0"), Keys(namespace))
    token, _ = store.acquire("one", 10_000, {"event": "leader"})
    assert token is not None
    at = datetime(2026, 12, 1, 8, tzinfo=UTC)
    (bad,) = _celery_writes(tmp_path, own_redis, namespace, [at], broker_db=99)
    (good,) = _celery_writes(tmp_path, own_redis, namespace, [at + timedelta(seconds=1)])
    good = good._replace(job="other")
    result = store.apply(token, [bad, good])
    assert result.statuses == ("refused", "applied") and "SELECT 99" in result.errors[0], result.errors
    assert store.progress() == {"other": good.scheduled_ms}
    assert [record["run_id"] for record in runs(own_redis.client(), namespace, JOB)] == [good.run_id]
    env = {**os.environ, **_celery_env(own_redis, tmp_path / "l", broker_db=99)}
    config = str(_config(tmp_path / "beatd.yaml", own_redis, namespace))
    done = subprocess.run(
        [sys.executable, "-m", "beatd", "trigger", "-c", config, JOB], env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "SELECT 99" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert [record["run_id"] for record in runs(own_redis.client(), namespace, JOB)] == [good.run_id]


def test_trigger_and_backfill_send_celery_tasks(tmp_path: Path, own_redis: RedisServer, namespace: str) -> None:
    """`beatd trigger` and `beatd backfill` of a celery job push task messages to the broker, each recorded
    `sent` with its task id, and audited."""
    env = {**os.environ, **_celery_env(own_redis, tmp_path / "l")}
    config = str(_config(tmp_path / "beatd.yaml", own_redis, namespace))
    beatd = [sys.executable, "-m", "beatd"]
    done = subprocess.run([*beatd, "trigger", "-c", config, JOB], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "to Celery queue celery as task" in done.stdout
    done = subprocess.run(
        [*beatd, "backfill", "-c", config, JOB, "--from", "2026-12-01T00:00:00Z", "--to", "2026-12-01T00:00:02Z"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    broker = own_redis.client()
    broker.select(1)  # type: ignore[no-untyped-call]
    headers = [json.loads(item)["headers"] for item in reversed(broker.lrange("celery", 0, -1))]
    assert [header["beatd_trigger"] for header in headers] == ["manual", "backfill", "backfill", "backfill"]
    records = runs(own_redis.client(), namespace, JOB)
    assert sorted(record["extra"]["task_id"] for record in records) == sorted(header["id"] for header in headers)
    assert all(record["status"] == "sent" for record in records)
    events = [fields["event"] for _, fields in own_redis.client().xrange(f"{namespace}:audit")]
    assert events == ["trigger", "backfill"]
    done = subprocess.run(
        [*beatd, "status", "-c", config, "--json"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["queues"] == {}  # no beatd queue stream: the celery job's queue is Celery's


def test_probe_finds_what_would_refuse_every_push(tmp_path: Path, own_redis: RedisServer) -> None:
    """The start probe: the same server under another spelling is pushed to directly (no outbox); a database a
    script cannot SELECT, and an ACL user that may not LPUSH the queue, are errors said at start; another
    server, one that does not answer, and AMQP go through the outbox."""
    from beatd.celery_broker import probe_broker
    from beatd.config.model import CelerySettings

    same = CelerySettings(broker_url=f"redis://localhost:{own_redis.port}/1")
    found = probe_broker(own_redis.client(), 0, same, ["celery"])
    assert (found.outbox, found.errors, found.notes) == (None, [], []), found
    far = CelerySettings(broker_url=f"redis://127.0.0.1:{own_redis.port}/99")
    found = probe_broker(own_redis.client(), 0, far, ["celery"])
    assert found.outbox is None and any("cannot SELECT database 99" in error for error in found.errors), found
    own_redis.client().execute_command("ACL", "SETUSER", "limited", "on", ">pw", "~*", "+@all", "-lpush")
    limited = connect(f"redis://limited:pw@127.0.0.1:{own_redis.port}/0")
    found = probe_broker(limited, 0, same, ["celery"])
    assert found.outbox is None and any("'limited' may not LPUSH Celery queue 'celery'" in e for e in found.errors)
    other = RedisServer(tmp_path / "other")
    other.start()
    try:
        found = probe_broker(own_redis.client(), 0, CelerySettings(broker_url=other.url), ["celery"])
        assert found.outbox is not None and "reaches another Redis server (run_id" in found.outbox
    finally:
        other.stop()
    found = probe_broker(own_redis.client(), 0, CelerySettings(broker_url=other.url), ["celery"])
    assert found.outbox is not None and "did not answer" in found.outbox
    found = probe_broker(own_redis.client(), 0, CelerySettings(broker_url="amqp://guest@127.0.0.1//"), ["celery"])
    assert found.outbox is not None and "is AMQP" in found.outbox
