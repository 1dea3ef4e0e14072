"""The outbox relay: celery fires for a broker on another server (a second redis-server, RabbitMQ), at least once.

The beat's fenced script writes each task message to the outbox in beatd's Redis; the leader's relay publishes
it to the broker (Redis: LPUSH; AMQP: publisher confirms) and deletes it once confirmed. A real ``celery -A
tests.celery_app worker`` consumes from that broker and writes a ledger; the tests count executions and
duplicates across a kill -9 of the beat leader.
"""

from __future__ import annotations

import functools
import json
import signal
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from beatd.celery_messages import celery_task_id
from beatd.keys import Keys
from tests.integration.conftest import Daemon, wait_for
from tests.integration.helpers import leader_token, runs
from tests.integration.test_celery import _leader, _ledger, celery_worker  # noqa: F401 - celery_worker: a fixture
from tests.redis_server import RedisServer

JOB = "report"
RABBITMQ = ("127.0.0.1", 5672)
"""The developers' and CI machines' RabbitMQ (guest/guest); the AMQP case skips when it does not answer."""


@functools.cache
def rabbitmq_unreachable() -> str | None:
    """Why the local RabbitMQ cannot be used, or None when it accepts an AMQP connection."""
    try:
        socket.create_connection(RABBITMQ, timeout=2).close()
        from kombu import Connection

        with Connection(f"amqp://guest:guest@{RABBITMQ[0]}:{RABBITMQ[1]}//", connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as error:  # any reason the broker is not usable is a reason to skip, reported as is
        return f"RabbitMQ at {RABBITMQ[0]}:{RABBITMQ[1]}: {type(error).__name__}: {error}"
    return None


def _config(path: Path, server: RedisServer, namespace: str, *, queue: str = "celery", extra: str = "") -> Path:
    path.write_text(
        f"""
redis: {{url: "redis://127.0.0.1:{server.port}/0"}}
namespace: {namespace}
leader: {{lease: 1s}}
celery:
  broker_url: ${{CELERY_BROKER_URL}}
  result_backend: ${{CELERY_RESULT_BACKEND}}
{extra}
jobs:
  {JOB}:
    celery: tests.record
    every: 1s
    catchup: all
    args: [1, "two"]
    options: {{queue: {queue}, headers: {{trace: abc-123}}}}
"""
    )
    return path


def _across_leader_kill(
    config: Path, env: dict[str, str], own: RedisServer, namespace: str, daemons: Callable[..., Daemon],
    ledger: Path,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], set[str]]:  # fmt: skip
    """Three beat replicas relay a 1 s job; kill -9 the leader after ten executions, let fifteen more run, stop;
    return the ledger, the `sent` records and the fire ids still in the outbox at the end."""
    replicas = [daemons("beat", "-c", str(config), env=env) for _ in range(3)]
    client = own.client()
    wait_for(lambda: len(_ledger(ledger)) >= 10, timeout=40, what="ten executions before the kill")
    leader = _leader(replicas, client, namespace)
    old_token = leader_token(client, namespace)
    leader.signal(signal.SIGKILL)
    wait_for(lambda: leader_token(client, namespace) not in (None, old_token), timeout=60, what="a new leader")
    executed = len(_ledger(ledger))
    wait_for(lambda: len(_ledger(ledger)) >= executed + 15, timeout=40, what="executions after the takeover")
    outbox = Keys(namespace).celery_outbox
    wait_for(lambda: client.xlen(outbox) == 0, timeout=60, what="the relay to empty the outbox")
    for replica in replicas:
        replica.stop()
    waiting = {
        json.loads(fields["envelope"])["headers"]["beatd_fire_id"] for _, fields in client.xrange(outbox, "-", "+")
    }
    sent = [record for record in runs(client, namespace, JOB) if record["status"] == "sent"]
    relayed = len(sent) - len(waiting)
    wait_for(lambda: len({line["fire_id"] for line in _ledger(ledger)}) >= relayed, timeout=60, what="every task run")
    return _ledger(ledger), sent, waiting


def _check_at_least_once(
    lines: list[dict[str, Any]], sent: list[dict[str, Any]], waiting: set[str], namespace: str
) -> int:
    """Every sent fire not left in the outbox was executed at least once, by its deterministic task id, args
    and headers intact; return the number of duplicate executions."""
    executions = Counter(line["fire_id"] for line in lines)
    assert set(executions) == {record["fire_id"] for record in sent} - waiting
    assert len(waiting) <= 2, waiting  # at most the fires emitted while the replicas stopped
    for line in lines:
        assert line["task_id"] == celery_task_id(namespace, line["fire_id"])
        assert (line["args"], line["trace"]) == ([1, "two"], "abc-123")
    return sum(count - 1 for count in executions.values())


def test_relay_to_another_redis_runs_every_fire_across_leader_kill(
    tmp_path: Path,
    own_redis: RedisServer,
    namespace: str,
    daemons: Callable[..., Daemon],
    celery_worker: Callable[..., subprocess.Popen[bytes]],  # noqa: F811 - the fixture imported above
) -> None:
    """A broker on a second redis-server (spelt 0.0.0.0, which the beat proves another server by run id): the
    outbox relay gets every fire of a 1 s job to a real Celery worker at least once across a kill -9 of the
    leader; nothing is pushed into beatd's own server."""
    broker = RedisServer(tmp_path / "broker")
    broker.start()
    try:
        ledger = tmp_path / "ledger.jsonl"
        env = {
            "CELERY_BROKER_URL": f"redis://0.0.0.0:{broker.port}/1",
            "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:{broker.port}/2",
            "CELERY_LEDGER": str(ledger),
        }
        worker = celery_worker(env)
        config = _config(tmp_path / "beatd.yaml", own_redis, namespace)
        lines, sent, waiting = _across_leader_kill(config, env, own_redis, namespace, daemons, ledger)
        duplicates = _check_at_least_once(lines, sent, waiting, namespace)
        print(f"redis relay: {len(sent)} fires sent, {len(lines)} executions, {duplicates} duplicate(s)")
        assert worker.poll() is None
        assert duplicates <= 2  # at most the entries published but not yet deleted when the leader died
        for database in (0, 1):
            client = own_redis.client()
            client.select(database)  # type: ignore[no-untyped-call]
            assert client.keys("celery*") == []
    finally:
        broker.stop()


def test_relay_to_rabbitmq_with_confirms_across_leader_kill(
    tmp_path: Path,
    own_redis: RedisServer,
    namespace: str,
    daemons: Callable[..., Daemon],
    celery_worker: Callable[..., subprocess.Popen[bytes]],  # noqa: F811 - the fixture imported above
) -> None:
    """An AMQP broker (the local RabbitMQ): fires published with publisher confirms to the job's queue, run by a
    real Celery worker with an amqp broker; every fire at least once across a kill -9 of the leader."""
    if (why := rabbitmq_unreachable()) is not None:
        pytest.skip(why)
    from kombu import Connection, Exchange, Queue

    queue = f"beatd-test-{uuid.uuid4().hex[:8]}"
    url = f"amqp://guest:guest@{RABBITMQ[0]}:{RABBITMQ[1]}//"
    ledger = tmp_path / "ledger.jsonl"
    env = {
        "CELERY_BROKER_URL": url,
        "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:{own_redis.port}/2",
        "CELERY_LEDGER": str(ledger),
    }
    try:
        worker = celery_worker(env, "-Q", queue)
        config = _config(tmp_path / "beatd.yaml", own_redis, namespace, queue=queue)
        lines, sent, waiting = _across_leader_kill(config, env, own_redis, namespace, daemons, ledger)
        duplicates = _check_at_least_once(lines, sent, waiting, namespace)
        print(f"amqp relay: {len(sent)} fires sent, {len(lines)} executions, {duplicates} duplicate(s)")
        assert worker.poll() is None
        assert duplicates <= 2
        assert {line["queue"] for line in lines} == {queue}
    finally:
        with Connection(url, connect_timeout=3) as connection:
            Queue(queue, Exchange(queue, type="direct"), routing_key=queue)(connection.default_channel).delete()


def test_broker_down_neither_blocks_emission_nor_grows_the_outbox_past_its_bound(
    tmp_path: Path, own_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """With the broker down, another job goes on being emitted, the outbox stops at celery.outbox_limit (said in
    the log and by the depth gauge, the refused fires' progress unmoved); once the broker is up the relay
    publishes every waiting task message once and empties the outbox."""
    broker = RedisServer(tmp_path / "broker")  # not started yet: its port refuses connections
    extra = "  outbox_limit: 3\n"
    config = _config(tmp_path / "beatd.yaml", own_redis, namespace, extra=extra)
    config.write_text(config.read_text() + "  other:\n    call: tests.worker_jobs:noop\n    every: 1s\n")
    env = {
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{broker.port}/1",
        "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:{own_redis.port}/2",
    }
    beat = daemons("beat", "-c", str(config), env=env)
    client, keys = own_redis.client(), Keys(namespace)
    beat.wait_log(r"did not answer, so is not proven to be beatd's own server")
    beat.wait_log(r"holds 3 task messages, its bound", timeout=20)
    assert client.xlen(keys.celery_outbox) == 3
    queued = client.xlen(keys.queue("default"))
    wait_for(lambda: client.xlen(keys.queue("default")) >= queued + 2, what="the other job still emitted")
    assert [record["status"] for record in runs(client, namespace, JOB)] == ["sent"] * 3
    broker.start()
    try:
        wait_for(lambda: client.xlen(keys.celery_outbox) == 0, timeout=60, what="the relay to empty the outbox")
        wait_for(lambda: len(runs(client, namespace, JOB)) >= 5, timeout=60, what="the refused fires sent later")
        beat.stop()
        pushed = broker.client()
        pushed.select(1)  # type: ignore[no-untyped-call]
        ids = [json.loads(item)["headers"]["id"] for item in pushed.lrange("celery", 0, -1)]
        ids += [json.loads(fields["envelope"])["headers"]["id"] for _, fields in client.xrange(keys.celery_outbox)]
        sent = [record["extra"]["task_id"] for record in runs(client, namespace, JOB)]
        assert sorted(ids) == sorted(sent) and len(set(ids)) == len(ids)
        assert "Celery broker: " in beat.log() and "retrying with backoff" in beat.log()
    finally:
        broker.stop()


def test_relay_steps_are_fenced_and_delete_only_what_the_broker_confirmed(
    tmp_path: Path, own_redis: RedisServer, namespace: str
) -> None:
    """The fenced emit writes celery fires to the outbox; a relay step whose broker is down deletes nothing
    (counted as a failure, backing off); a confirmed batch is deleted by the next step, but not by a step with a
    stale token (the new leader's relay publishes it again: at least once)."""
    from beatd.celery_publish import RedisPublisher
    from beatd.celery_relay import Relay
    from beatd.config import load_config
    from beatd.messages import format_utc
    from beatd.metrics import Metrics
    from beatd.store import Store, connect
    from beatd.store.outbox import OutboxStore

    broker = RedisServer(tmp_path / "broker")
    env = {"CELERY_BROKER_URL": f"redis://127.0.0.1:{broker.port}/1", "CELERY_RESULT_BACKEND": own_redis.url}
    config = load_config(_config(tmp_path / "beatd.yaml", own_redis, namespace), env)
    assert config.settings.celery is not None
    keys = Keys(namespace)
    store = Store(connect(own_redis.url), keys)
    token, _ = store.acquire("one", 10_000, {"event": "leader"})
    assert token is not None
    writes = _outbox_writes(config, keys)
    assert store.apply(token, writes).statuses == ("applied",) * 3
    client = own_redis.client()
    assert client.xlen(keys.celery_outbox) == 3 and client.keys("celery*") == []
    metrics = Metrics(1)
    relay = Relay(OutboxStore(store.client, keys), RedisPublisher(broker.url), metrics, limit=10)
    assert relay.step(token) > 0 and relay.confirmed == []
    assert (
        metrics.registry.get_sample_value("beatd_celery_publish_failures_total") == 1
        and client.xlen(keys.celery_outbox) == 3
    )
    broker.start()
    try:
        relay.publisher = RedisPublisher(f"redis://127.0.0.1:{broker.port}/1")
        assert relay.step(token) == 0 and len(relay.confirmed) == 3
        assert relay.step("0:stale") > 0 and relay.confirmed == []
        assert client.xlen(keys.celery_outbox) == 3  # a stale token deletes nothing
        assert relay.step(token) == 0 and len(relay.confirmed) == 3  # published again
        relay.step(token)
        assert client.xlen(keys.celery_outbox) == 0
        pushed = broker.client()
        pushed.select(1)  # type: ignore[no-untyped-call]
        ids = Counter(json.loads(item)["headers"]["id"] for item in pushed.lrange("celery", 0, -1))
        fires = [f"{JOB}@{format_utc(OUTBOX_START + timedelta(seconds=s))}" for s in range(3)]
        assert sorted(ids) == sorted(celery_task_id(namespace, fire) for fire in fires)
        assert set(ids.values()) == {2}  # published again after the stale step: recognisable by task id
        assert metrics.registry.get_sample_value("beatd_celery_published_total") == 6
    finally:
        broker.stop()


OUTBOX_START = datetime(2026, 12, 1, 8, tzinfo=UTC)
"""The instant of the first of the three fires ``_outbox_writes`` writes."""


def _outbox_writes(config: Any, keys: Keys) -> list[Any]:
    """The fenced writes of three celery fires of JOB (2026-12-01 08:00:00, :01, :02) into the outbox."""
    from beatd.emission import celery_write
    from beatd.messages import format_utc

    return [
        celery_write(config.jobs[JOB], f"{JOB}@{format_utc(at)}", at, "schedule", "{}", at, keys,
                     config.settings.celery, outbox=True).write
        for at in (OUTBOX_START + timedelta(seconds=second) for second in range(3))
    ]  # fmt: skip


def _outbox_with_entries(own_redis: RedisServer, namespace: str, tmp_path: Path, env: dict[str, str]) -> Any:
    """Three celery fires written to the outbox under a lease held by replica "one"; (store, token, keys)."""
    from beatd.config import load_config
    from beatd.store import Store, connect

    config = load_config(_config(tmp_path / "beatd.yaml", own_redis, namespace), env)
    assert config.settings.celery is not None
    keys = Keys(namespace)
    store = Store(connect(own_redis.url), keys)
    token, _ = store.acquire("one", 30_000, {"event": "leader"})
    assert token is not None
    writes = _outbox_writes(config, keys)
    assert store.apply(token, writes).statuses == ("applied",) * 3
    return store, token, keys


def test_stopping_a_relay_stuck_on_a_stalled_broker_does_not_block_the_caller(
    tmp_path: Path, own_redis: RedisServer, namespace: str
) -> None:
    """The main loop stops the relay on a reload: with its publish stuck on a broker that stopped answering, the
    stop returns within its short bound (it joined 5 s, and the lease could lapse), and the thread ends on its
    own once the publish times out, deleting nothing it was not confirmed."""
    from beatd.celery_publish import AmqpPublisher
    from beatd.celery_relay import Relay, RelayThread
    from beatd.metrics import Metrics
    from beatd.store.outbox import OutboxStore
    from tests.tcp_proxy import TcpProxy

    if (why := rabbitmq_unreachable()) is not None:
        pytest.skip(why)
    proxy = TcpProxy(RABBITMQ)
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}//"
    store, token, keys = _outbox_with_entries(own_redis, namespace, tmp_path, {"CELERY_BROKER_URL": url,
                                              "CELERY_RESULT_BACKEND": own_redis.url})  # fmt: skip
    proxy.stalled.set()  # the TCP connection opens, the AMQP handshake never completes
    relay = Relay(OutboxStore(store.client, keys), AmqpPublisher(url, timeout=3.0), Metrics(1), limit=10)
    running = RelayThread(relay, lambda: token).start()
    try:
        wait_for(lambda: proxy.connections > 0, what="the relay connecting to the stalled broker")
        started = time.monotonic()
        assert running.stop() is False  # its default bound: a reload waits no longer
        assert time.monotonic() - started < 2.5
        wait_for(lambda: not running.alive(), timeout=30, what="the relay thread ending after its timeout")
        assert own_redis.client().xlen(keys.celery_outbox) == 3
    finally:
        proxy.close()


def test_a_leader_pushing_directly_still_relays_what_another_replica_left_in_the_outbox(
    tmp_path: Path, own_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """The broker is beatd's own server (direct mode), yet the outbox holds task messages another replica or
    `beatd celery fire` wrote with another view of the broker: the leader's relay publishes them (they were
    stranded: no relay ran in direct mode)."""
    env = {
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{own_redis.port}/0",
        "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:{own_redis.port}/2",
    }
    store, token, keys = _outbox_with_entries(own_redis, namespace, tmp_path, env)
    store.release(token)
    config = tmp_path / "beatd.yaml"
    beat = daemons("beat", "-c", str(config), env=env)
    client = own_redis.client()
    wait_for(lambda: client.xlen(keys.celery_outbox) == 0, timeout=60, what="the relay to empty the outbox")
    beat.stop()
    ids = {json.loads(item)["headers"]["beatd_fire_id"] for item in client.lrange("celery", 0, -1)}
    from beatd.messages import format_utc

    assert {f"{JOB}@{format_utc(OUTBOX_START + timedelta(seconds=s))}" for s in range(3)} <= ids


def test_a_broker_refusing_one_entry_confirms_the_others_once_and_moves_the_poisoned_one_aside(
    tmp_path: Path, own_redis: RedisServer, namespace: str
) -> None:
    """A Redis MULTI is not all-or-nothing: with one queue key of the wrong type, the other entries of the batch
    land and are confirmed (they were pushed again on every retry: duplicates), and the refused one, after
    RELAY_POISON_AFTER refusals, moves to the dead stream with its reason instead of blocking the outbox."""
    from beatd import defaults
    from beatd.celery_publish import RedisPublisher
    from beatd.celery_relay import Relay
    from beatd.metrics import Metrics
    from beatd.store import Store, connect
    from beatd.store.outbox import OutboxStore

    broker = RedisServer(tmp_path / "broker")
    broker.start()
    try:
        keys = Keys(namespace)
        store = Store(connect(own_redis.url), keys)
        token, _ = store.acquire("one", 30_000, {"event": "leader"})
        assert token is not None
        client = own_redis.client()
        ids = [client.xadd(keys.celery_outbox, {"queue": queue, "envelope": json.dumps({"n": n})})
               for n, queue in enumerate(["celery", "poisoned", "celery"])]  # fmt: skip
        pushed = broker.client()
        pushed.set("poisoned", "not a list")
        metrics = Metrics(1)
        relay = Relay(OutboxStore(store.client, keys), RedisPublisher(broker.url), metrics, limit=10)
        for _ in range(defaults.RELAY_POISON_AFTER):
            relay.step(token)
            assert pushed.llen("celery") == 2  # the accepted ones, once
        relay.step(token)
        assert client.xlen(keys.celery_outbox) == 0 and pushed.llen("celery") == 2
        [(_, dead)] = client.xrange(keys.celery_outbox_dead)
        assert dead["entry_id"] == ids[1] and dead["queue"] == "poisoned" and "WRONGTYPE" in dead["reason"]
        last = metrics.registry.get_sample_value("beatd_celery_relay_last_step_timestamp_seconds")
        assert last is not None and abs(last - time.time()) < 60  # the relay's liveness
    finally:
        broker.stop()


def test_status_shows_the_outbox_depth_its_oldest_entry_and_dead_entries(
    tmp_path: Path, own_redis: RedisServer, namespace: str
) -> None:
    """`beatd status` (text and --json) and `Client.status()` show the Celery outbox's depth, bound and oldest
    entry, the dead stream's count and newest entries (reason, queue, task and fire id), and warn about a stale
    outbox, one past half its bound and dead entries."""
    from click.testing import CliRunner

    from beatd.cli import cli as cli_main
    from beatd.cli.runtime import Runtime
    from beatd.client import Client
    from beatd.config import load_config

    env = {"CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//", "CELERY_RESULT_BACKEND": ""}
    config = _config(tmp_path / "beatd.yaml", own_redis, namespace, extra="  outbox_limit: 4\n")
    config.write_text(config.read_text().replace("  result_backend: ${CELERY_RESULT_BACKEND}\n", ""))
    runtime = Runtime(environ=env, cwd=tmp_path)

    def status() -> tuple[dict[str, Any], str]:
        as_json = CliRunner().invoke(cli_main, ["status", "-c", str(config), "--json"], obj=runtime)
        text = CliRunner().invoke(cli_main, ["status", "-c", str(config)], obj=runtime)
        assert as_json.exit_code == text.exit_code == 0, as_json.output + text.output
        return json.loads(as_json.output), text.output

    report, text = status()
    assert report["celery"] == {
        "broker": "amqp://guest:***@127.0.0.1:1//",
        "outbox": {"depth": 0, "limit": 4, "oldest_age_s": None},
        "dead": {"count": 0, "newest": []},
    }
    assert report["warnings"] == [] and "celery outbox: 0 of at most 4 waiting for the relay; dead: 0" in text

    client, keys = own_redis.client(), Keys(namespace)
    redis_ms = int(client.time()[0]) * 1000
    envelope = json.dumps({"headers": {"id": "task-1", "beatd_fire_id": f"{JOB}@2026-12-01T00:00:00Z"}})
    for n in range(2):  # written two minutes ago by Redis's clock: the relay has not published them
        client.xadd(keys.celery_outbox, {"queue": "celery", "envelope": envelope}, id=f"{redis_ms - 120_000 + n}-0")
    dead_fields = {"entry_id": "1-0", "reason": "WRONGTYPE x", "queue": "q", "envelope": envelope}
    client.xadd(keys.celery_outbox_dead, dead_fields)
    report, text = status()
    celery_part = report["celery"]
    assert celery_part["outbox"]["depth"] == 2 and 110 < celery_part["outbox"]["oldest_age_s"] < 300
    [dead] = celery_part["dead"]["newest"]
    assert celery_part["dead"]["count"] == 1
    assert (dead["entry_id"], dead["reason"], dead["queue"], dead["task_id"], dead["fire_id"]) == (
        "1-0", "WRONGTYPE x", "q", "task-1", f"{JOB}@2026-12-01T00:00:00Z",
    )  # fmt: skip
    warnings = report["warnings"]
    assert len(warnings) == 3, warnings
    assert "2 task messages waiting, the oldest for 2m" in warnings[0]
    assert "2 of at most 4 task messages (celery.outbox_limit)" in warnings[1]
    assert f"1 task messages the broker kept refusing were moved to {keys.celery_outbox_dead}" in warnings[2]
    assert "celery outbox: 2 of at most 4 waiting for the relay, oldest 1" in text and "; dead: 1" in text
    assert "dead 1-0 " in text and "queue q task task-1 fire report@2026-12-01T00:00:00Z: WRONGTYPE x" in text
    with Client(config=load_config(config, env)) as beatd_client:
        assert beatd_client.status()["celery"]["dead"]["count"] == 1


def test_a_shard_handed_over_deletes_what_its_relay_published_before_the_lease_goes(
    tmp_path: Path, own_redis: RedisServer, namespace: str
) -> None:
    """A sharded replica resigning a shard (a hand-over to its new owner) while the shard's relay is publishing
    waits for the publish, deletes the confirmed entries under the lease it still holds, then releases it: the
    next owner's relay has nothing to publish again (before, every hand-over during a publish duplicated it)."""
    import threading
    from collections.abc import Sequence

    from beatd.beat import Beat
    from beatd.celery_publish import RedisPublisher
    from beatd.celery_relay import Relay, RelayThread
    from beatd.config import load_config
    from beatd.identity import Identity
    from beatd.metrics import Metrics
    from beatd.shard_beat import shard_views
    from beatd.store import Store, connect
    from beatd.store.outbox import OutboxEntry, OutboxStore

    broker = RedisServer(tmp_path / "broker")
    broker.start()
    publishing, finish = threading.Event(), threading.Event()

    class SlowBroker(RedisPublisher):
        """The real Redis publisher, whose publish takes a while (a broker far away)."""

        def publish(self, entries: Sequence[OutboxEntry]) -> int:
            published = super().publish(entries)
            publishing.set()
            finish.wait(0.3)  # within the 0.5 s a hand-over waits for a publish
            return published

    try:
        env = {"CELERY_BROKER_URL": f"redis://127.0.0.1:{broker.port}/1", "CELERY_RESULT_BACKEND": own_redis.url}
        config = load_config(_config(tmp_path / "beatd.yaml", own_redis, namespace, extra="shards: 2\n"), env)
        assert config.settings.celery is not None
        keys = config.keys(1)
        store = Store(connect(own_redis.url), keys)
        beat = Beat(shard_views(config)[1], store, Identity.here(datetime.now(UTC)), shard=1)
        assert beat.leadership.step(time.monotonic()) and beat.leadership.token is not None
        writes = _outbox_writes(config, keys)
        assert store.apply(beat.leadership.token, writes).statuses == ("applied",) * 3
        relay = Relay(OutboxStore(store.client, keys), SlowBroker(env["CELERY_BROKER_URL"]), Metrics(1), limit=10)
        running = RelayThread(relay, lambda: beat.leadership.token).start()
        beat.handing_over.append(running.paused)  # as `beatd beat` wires each shard's relay
        try:
            wait_for(publishing.is_set, what="the relay publishing the batch")
            beat.resign()  # the publish is still under way
            assert beat.leadership.token is None
            client = own_redis.client()
            assert client.xlen(keys.celery_outbox) == 0, "the published entries are left for the next owner"
            assert client.get(keys.leader) is None, "the lease is released"
        finally:
            finish.set()
            assert running.stop()
    finally:
        broker.stop()


def test_the_outbox_depth_gauge_sums_the_shards_a_replica_relays(tmp_path: Path, own_redis: RedisServer) -> None:
    """Two shards' relays in one replica, sharing its metrics: `beatd_celery_outbox_depth` is the sum of their
    outboxes (each relay had set it to its own, so an empty shard's relay hid another's backlog), and a relay
    that no longer leads takes its part out."""
    from beatd.celery_publish import RedisPublisher
    from beatd.celery_relay import Relay, RelayThread
    from beatd.metrics import Metrics
    from beatd.store import Store, connect
    from beatd.store.outbox import OutboxStore

    namespace = f"t{uuid.uuid4().hex[:10]}"
    metrics = Metrics(1)
    relays, tokens = [], []
    for shard in (1, 2):
        keys = Keys(namespace, shard, tagged=True)
        store = Store(connect(own_redis.url), keys)
        token, _ = store.acquire(f"r{shard}", 10_000, {"event": "leader"})
        assert token is not None
        tokens.append(token)
        # The broker is down: the relay counts the depth, then fails to publish (nothing is deleted).
        relays.append(Relay(OutboxStore(store.client, keys), RedisPublisher("redis://127.0.0.1:1/0"), metrics, 10))
    client = own_redis.client()
    for number in range(3):
        client.xadd(Keys(namespace, 1, tagged=True).celery_outbox, {"queue": "celery", "envelope": f"{{{number}}}"})
    for relay, token in zip(relays, tokens, strict=True):
        relay.step(token)
    assert metrics.registry.get_sample_value("beatd_celery_outbox_depth") == 3
    RelayThread(relays[0], lambda: None)._step()  # shard 1's lease is gone: its relay steps without a token
    assert metrics.registry.get_sample_value("beatd_celery_outbox_depth") == 0
