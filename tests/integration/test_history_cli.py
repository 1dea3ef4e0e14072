"""The audit-trail commands (history, show, export, workers, dead) read what real workers recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import Daemon, wait_for
from tests.integration.test_beat_operations import cli
from tests.integration.test_worker import config_file, enqueue, statuses
from tests.redis_server import RedisServer


def test_history_show_export_workers_and_dead(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """Runs of two jobs can be listed, filtered, shown, exported; dead letters retried and dropped."""
    config = config_file(tmp_path, shared_redis, namespace, """
        good: {call: tests.worker_jobs:noop, every: 1h}
        bad: {call: tests.worker_jobs:fail, every: 1h}
    """)  # fmt: skip
    daemons("worker", "-c", str(config), name="worker")
    good = enqueue(config, "good")
    bad = enqueue(config, "bad")
    wait_for(lambda: statuses(shared_redis, namespace, "bad") == ["failed", "dead"], what="bad is dead")
    wait_for(lambda: statuses(shared_redis, namespace, "good") == ["succeeded"], what="good ran")

    records = json.loads(cli("history", "-c", str(config), "--json").stdout)
    assert {record["run_id"] for record in records} == {f"{good}#1", f"{bad}#1", f"{bad}#dead-1"}
    failed = json.loads(cli("history", "-c", str(config), "--status", "failed", "--json").stdout)
    assert [record["run_id"] for record in failed] == [f"{bad}#1"]
    only_good = json.loads(cli("history", "-c", str(config), "good", "--json").stdout)
    assert [record["status"] for record in only_good] == ["succeeded"]
    table = cli("history", "-c", str(config)).stdout
    assert "RuntimeError: boom" in table and table.splitlines()[0].startswith("RUN")

    shown = json.loads(cli("show", "-c", str(config), f"{good}#1", "--json").stdout)
    assert shown["status"] == "succeeded" and shown["fire_id"] == good
    attempts = json.loads(cli("show", "-c", str(config), bad, "--json").stdout)
    assert [record["status"] for record in attempts] == ["failed", "dead"]
    assert cli("show", "-c", str(config), "good@nope").returncode == 2

    exported = [json.loads(line) for line in cli("export", "-c", str(config)).stdout.splitlines()]
    assert len(exported) == 3

    wait_for(lambda: json.loads(cli("workers", "-c", str(config), "--json").stdout), what="the worker's heartbeat")
    workers = json.loads(cli("workers", "-c", str(config), "--json").stdout)
    assert len(workers) == 1 and workers[0]["queues"] == ["default"]

    dead = json.loads(cli("dead", "-c", str(config), "--json").stdout)
    assert len(dead) == 1 and "no retries left" in dead[0]["reason"]
    assert cli("dead", "-c", str(config), "drop", "0-1").returncode == 2
    assert cli("dead", "retry", dead[0]["id"], "-c", str(config)).returncode == 0
    wait_for(lambda: statuses(shared_redis, namespace, "bad") == ["failed", "dead", "failed", "dead"],
             what="the retried fire ran again and died again, with a dead record of its own")  # fmt: skip
    dead = json.loads(cli("dead", "-c", str(config), "--json").stdout)
    assert cli("dead", "-c", str(config), "drop", dead[0]["id"]).stdout.startswith("dropped")
