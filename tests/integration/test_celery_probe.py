"""Where celery fires go is decided by the celery section, whatever declares the celery jobs: a broker on another
server gets them through the outbox even when no YAML job is a celery job at start (runtime jobs, a reload)."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

from beatd.config import Config, load_config
from beatd.keys import Keys
from beatd.runtime_jobs import RuntimeJobs
from beatd.store import connect
from beatd.store.jobs import JobStore
from tests.integration.conftest import Daemon, wait_for
from tests.integration.helpers import leader_token
from tests.redis_server import RedisServer


def _celery_config(path: Path, own: RedisServer, namespace: str, jobs: str) -> Path:
    path.write_text(
        f"""
redis: {{url: "redis://127.0.0.1:{own.port}/0"}}
namespace: {namespace}
leader: {{lease: 1s}}
celery:
  broker_url: ${{CELERY_BROKER_URL}}
runtime_jobs: {{allow: ['tests.*']}}
jobs:
  plain: {{every: 1h, call: tests.worker_jobs:noop}}
{jobs}"""
    )
    return path


def _pushed(server: RedisServer, database: int) -> list[str]:
    client = server.client()
    client.select(database)  # type: ignore[no-untyped-call]
    return [json.loads(item)["headers"]["beatd_fire_id"] for item in client.lrange("celery", 0, -1)]


def test_a_runtime_celery_job_reaches_a_broker_on_another_server(
    tmp_path: Path, own_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """With no YAML celery job, a runtime celery job's fires go through the outbox to the broker on another
    redis-server (the probe is made for the celery section), never into beatd's own server."""
    broker = RedisServer(tmp_path / "broker")
    broker.start()
    try:
        env = {"CELERY_BROKER_URL": f"redis://127.0.0.1:{broker.port}/1"}
        path = _celery_config(tmp_path / "beatd.yaml", own_redis, namespace, "")
        beat = daemons("beat", "-c", str(path), env=env)
        wait_for(lambda: leader_token(own_redis.client(), namespace), what="a leader")
        config = load_config(path, env)
        jobs = RuntimeJobs(config, JobStore(connect(config.settings.redis), Keys(namespace)), actor="tester")
        jobs.put("remote", {"every": "1s", "celery": "tests.record"})
        beat.wait_log("runtime job added remote", timeout=10)
        wait_for(lambda: len(_pushed(broker, 1)) >= 2, timeout=60, what="two fires in the broker's queue")
        beat.stop()
        assert _pushed(own_redis, 1) == [] and _pushed(own_redis, 0) == []
    finally:
        broker.stop()


def test_a_celery_job_added_by_reload_reaches_a_broker_on_another_server(
    tmp_path: Path, own_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A reload that adds the first celery job (the celery section unchanged) sends its fires through the outbox
    to the broker on another server, never into beatd's own server."""
    broker = RedisServer(tmp_path / "broker")
    broker.start()
    try:
        env = {"CELERY_BROKER_URL": f"redis://127.0.0.1:{broker.port}/1"}
        path = _celery_config(tmp_path / "beatd.yaml", own_redis, namespace, "")
        beat = daemons("beat", "-c", str(path), env=env)
        wait_for(lambda: leader_token(own_redis.client(), namespace), what="a leader")
        beat.wait_log("leading")
        _celery_config(path, own_redis, namespace, "  remote: {every: 1s, celery: tests.record}\n")
        beat.signal(signal.SIGHUP)
        beat.wait_log("reload: added remote", timeout=10)
        wait_for(lambda: len(_pushed(broker, 1)) >= 2, timeout=60, what="two fires in the broker's queue")
        beat.stop()
        assert _pushed(own_redis, 1) == [] and _pushed(own_redis, 0) == []
    finally:
        broker.stop()


def test_a_reload_moving_the_broker_settles_the_old_schedule_through_the_outbox(
    tmp_path: Path, own_redis: RedisServer, namespace: str
) -> None:
    """A reload that moves the broker from beatd's own server to another one and changes a celery job's schedule
    settles the old schedule's due fires before the new broker is probed: they go to the outbox (the relay
    publishes them to the new broker), never LPUSHed into beatd's own server where no worker of the new broker
    reads; so do fires settled while the probe knows nothing (beatd's Redis did not answer it)."""
    from beatd.beat import Beat
    from beatd.clock import SystemClock
    from beatd.identity import Identity
    from beatd.store import Store

    def config(broker: str, every: str) -> Config:
        path = _celery_config(tmp_path / "beatd.yaml", own_redis, namespace, f"  remote: {{every: {every}, "
                              "celery: tests.record, catchup: all}\n")  # fmt: skip
        return load_config(path, {"CELERY_BROKER_URL": broker})

    clock, keys = SystemClock(), Keys(namespace)
    client = own_redis.client()
    beat = Beat(config(f"redis://127.0.0.1:{own_redis.port}/1", "1s"), Store(client, keys), Identity.here(clock.now()),
                clock=clock)  # fmt: skip
    while not beat.synced:
        beat.tick(clock.now(), clock.monotonic())
    assert beat.celery_outbox is False  # as the beat's probe found: the broker is beatd's own server
    # three seconds later, before the next tick emitted them: the old schedule's three fires are due
    beat.apply_config(config("redis://127.0.0.1:1/1", "2s"), clock.now(), clock.monotonic() + 3.2)
    settled = [
        json.loads(fields["envelope"])["headers"]["beatd_fire_id"] for _, fields in client.xrange(keys.celery_outbox)
    ]
    assert len(settled) >= 3 and _pushed(own_redis, 1) == []


def test_a_reload_changing_the_broker_url_probes_the_new_broker_and_relays_to_it(
    tmp_path: Path, own_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A reload that changes only celery.broker_url (from beatd's own server to another redis-server) probes the
    new broker and restarts the relay for it: the fires after the reload reach the new broker through the
    outbox, none is pushed into beatd's own server any more."""
    broker = RedisServer(tmp_path / "broker")
    broker.start()
    try:
        env = {"CELERY_BROKER_URL": f"redis://127.0.0.1:{own_redis.port}/1"}
        jobs = "  remote: {every: 1s, celery: tests.record}\n"
        path = _celery_config(tmp_path / "beatd.yaml", own_redis, namespace, jobs)
        beat = daemons("beat", "-c", str(path), env=env)
        wait_for(lambda: len(_pushed(own_redis, 1)) >= 2, timeout=60, what="two fires pushed directly")
        path.write_text(path.read_text().replace("${CELERY_BROKER_URL}", f"redis://127.0.0.1:{broker.port}/1"))
        beat.signal(signal.SIGHUP)
        beat.wait_log(r"reload: celery.broker_url changed, applied", timeout=10)
        direct = len(_pushed(own_redis, 1))
        wait_for(lambda: len(_pushed(broker, 1)) >= 3, timeout=60, what="three fires in the new broker's queue")
        beat.stop()
        assert len(_pushed(own_redis, 1)) <= direct + 1  # at most a fire emitted while the reload was read
        assert "go through the outbox" in beat.log()
    finally:
        broker.stop()
