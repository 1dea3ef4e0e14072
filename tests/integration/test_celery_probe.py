"""Where celery fires go is decided by the celery section, whatever declares the celery jobs: a broker on another
server gets them through the outbox even when no YAML job is a celery job at start (runtime jobs, a reload)."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

from beatd.config import load_config
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
        wait_for(lambda: len(_pushed(broker, 1)) >= 2, timeout=20, what="two fires in the broker's queue")
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
        wait_for(lambda: len(_pushed(broker, 1)) >= 2, timeout=20, what="two fires in the broker's queue")
        beat.stop()
        assert _pushed(own_redis, 1) == [] and _pushed(own_redis, 0) == []
    finally:
        broker.stop()
