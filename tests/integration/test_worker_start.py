"""A worker started while Redis is down waits for it, as the beat does, and then runs fires."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Daemon, wait_for
from tests.integration.test_worker import config_file, enqueue, statuses
from tests.redis_server import RedisServer


@pytest.fixture
def later_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server on a chosen free port, not started yet."""
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()


def test_worker_started_before_redis_waits_then_runs(
    tmp_path: Path, later_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """With nothing listening on its Redis port the worker logs once that it waits, keeps running, and once
    redis-server starts on that port it says so and runs a fire."""
    config = config_file(tmp_path, later_redis, namespace, """
        quick: {call: tests.worker_jobs:noop, every: 1h}
    """)  # fmt: skip
    worker = daemons("worker", "-c", str(config), name="worker")
    worker.wait_log(r"worker waiting for Redis to start: .*retrying with backoff", timeout=30)
    assert worker.process is not None and worker.process.poll() is None
    later_redis.start()
    worker.wait_log("Redis reachable again", timeout=30)
    worker.wait_log("consuming default")
    enqueue(config, "quick")
    wait_for(lambda: statuses(later_redis, namespace, "quick") == ["succeeded"], timeout=30, what="the fire ran")
    assert worker.log().count("waiting for Redis") == 1
