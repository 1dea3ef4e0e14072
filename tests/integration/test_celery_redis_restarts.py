"""A celery job on beatd's own Redis server through Redis restarts: every fire pushed into Celery's queue once.

The chaos soak's claim for a celery job, in a short test: two beat replicas and a real ``celery -A
tests.celery_app worker`` share the test's redis-server (beatd in database 0, the broker in 1, results in 2;
``appendfsync always``), which is killed (kill -9 or SIGTERM, once with the beat leader beside it) and
restarted on its port and data directory four times. What Redis applied is read back from its append-only file:
each fire's task message was LPUSHed once, in the fenced transaction that wrote its ``sent`` record, and Celery
executed each fire once.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from beatd.celery_messages import celery_task_id
from beatd.messages import parse_utc
from tests.conftest import bench_module
from tests.integration.conftest import Daemon, wait_for
from tests.integration.helpers import assert_contiguous, leader_token, runs
from tests.integration.test_celery import JOB, _celery_env, _config, _leader, _ledger, celery_worker  # noqa: F401
from tests.redis_server import RedisServer

pytest.importorskip("celery", reason="Celery is in the dev extras (beatd[celery])")
chaos_aof = bench_module("chaos_aof")  # bench/chaos_aof.py, the soak's AOF reader

FAULTS = ("redis-kill", "redis-term", "redis-kill+leader-kill", "redis-kill")


def _restart(server: RedisServer, how: int, down_s: float) -> None:
    """Stop ``server`` with signal ``how`` (its AOF as it was), wait ``down_s``, start it on its port and data."""
    assert server.process is not None
    server.process.send_signal(how)
    server.process.wait(30)
    server.process = None
    time.sleep(down_s)  # the outage itself: nothing to poll for
    server.start(timeout=30)


def _pushes(server: RedisServer, namespace: str) -> list[str]:
    """The fire ids of the task messages LPUSHed onto the ``celery`` list by beatd's fenced scripts (a MULTI
    that also wrote beatd's keys), in the order Redis applied them, from the append-only file."""
    fires = []
    for block in chaos_aof.read_transactions(server.directory):
        if not any(len(command) > 1 and command[1].startswith(f"{namespace}:") for command in block):
            continue
        for command in block:
            if command[0].upper() == "LPUSH" and command[1] == "celery":
                fires += [json.loads(item)["headers"]["beatd_fire_id"] for item in command[2:]]
    return fires


def test_a_celery_job_is_pushed_and_run_once_through_redis_restarts(
    tmp_path: Path,
    own_redis: RedisServer,
    namespace: str,
    daemons: Callable[..., Daemon],
    celery_worker: Callable[..., subprocess.Popen[bytes]],  # noqa: F811 - the fixture imported above
) -> None:
    """Four Redis restarts (kill -9 and SIGTERM, one with the beat leader killed beside it): every fire of a 1 s
    `catchup: all` celery job was pushed into Celery's queue exactly once, atomically with its `sent` record (read
    from the AOF), with no gap, and the real Celery worker executed each once."""
    ledger = tmp_path / "ledger.jsonl"
    env = _celery_env(own_redis, ledger)
    config = _config(tmp_path / "beatd.yaml", own_redis, namespace)
    worker = celery_worker(env)
    replicas = [daemons("beat", "-c", str(config), env=env) for _ in range(2)]
    chance = random.Random(11)
    wait_for(lambda: len(_ledger(ledger)) >= 5, timeout=60, what="five executions before the faults")
    for fault in FAULTS:
        if "leader-kill" in fault:
            leader = _leader(replicas, own_redis.client(), namespace)
            leader.signal(signal.SIGKILL)
            replicas.append(daemons("beat", "-c", str(config), env=env))
        _restart(own_redis, signal.SIGTERM if fault == "redis-term" else signal.SIGKILL, chance.uniform(0.3, 1.5))
        executed = len(_ledger(ledger))
        wait_for(lambda done=executed: len(_ledger(ledger)) >= done + 3, timeout=60, what=f"executions after {fault}")
    client = own_redis.client()
    wait_for(lambda: leader_token(client, namespace) is not None, timeout=60, what="a leader at the end")
    for replica in replicas:
        replica.stop()
    sent = [record for record in runs(client, namespace, JOB) if record["status"] == "sent"]
    wait_for(lambda: len(_ledger(ledger)) >= len(sent), timeout=60, what="the worker to run every sent task")
    assert worker.poll() is None

    pushed = _pushes(own_redis, namespace)
    assert sorted(pushed) == sorted(record["fire_id"] for record in sent)
    doubled = [fire for fire, count in Counter(pushed).items() if count > 1]
    assert not doubled, f"pushed twice: {doubled}"
    assert_contiguous(sorted(parse_utc(record["scheduled_at"]) for record in sent), 1.0)
    assert len(sent) >= 15

    lines = _ledger(ledger)
    executions = Counter(line["fire_id"] for line in lines)
    assert [fire for fire, count in executions.items() if count > 1] == [], "executed twice"
    assert set(executions) == set(pushed)
    for line in lines:
        assert line["task_id"] == celery_task_id(namespace, line["fire_id"])


def test_a_beat_started_while_redis_is_down_pushes_directly_once_it_answers(
    tmp_path: Path, own_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A beat that starts while its Redis is down cannot probe the broker; it holds its celery fires and probes
    again once Redis answers, then pushes them inside the fenced script (exactly once), never through the
    outbox's at least once."""
    env = _celery_env(own_redis, tmp_path / "ledger.jsonl")
    config = _config(tmp_path / "beatd.yaml", own_redis, namespace)
    own_redis.stop()
    beat = daemons("beat", "-c", str(config), env=env)
    beat.wait_log(r"cannot probe the Celery broker yet", timeout=30)
    own_redis.start(timeout=30)
    client = own_redis.client()
    wait_for(lambda: len(runs(client, namespace, JOB)) >= 3, timeout=60, what="three fires sent")
    beat.stop()
    sent = [record["fire_id"] for record in runs(client, namespace, JOB)]
    assert sorted(_pushes(own_redis, namespace)) == sorted(sent)
    outbox = f"{namespace}:celery-outbox"
    assert not [block for block in chaos_aof.read_transactions(own_redis.directory)
                if any(command[0] == "XADD" and command[1] == outbox for command in block)]  # fmt: skip
    assert "go through the outbox" not in beat.log()
