"""beatd.Client and beatd.AsyncClient against a real redis-server and real worker and beat processes (issue 12):
results, failures with tracebacks, timeouts that lose nothing, overrides refused before anything is enqueued,
and 100 concurrent waits under asyncio."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from beatd import defaults
from beatd.client import AsyncClient, Client, OverridesRefused, RunFailed
from beatd.keys import Keys
from tests.conftest import REPO
from tests.integration.conftest import Daemon
from tests.redis_server import RedisServer

JOBS = """
add:
  call: tests.worker_jobs:add
  every: 1h
  args: [1]
  overrides:
    schema: {type: object, properties: {a: {type: integer}, b: {type: integer}}, additionalProperties: false}
fail: {call: tests.worker_jobs:fail, every: 1h, retries: 0, overrides: true}
plain: {call: tests.worker_jobs:add, every: 1h, args: [1]}
"""


def config_file(tmp_path: Path, server: RedisServer, namespace: str, jobs: str = JOBS, extra: str = "") -> Path:
    """A config with the client tests' jobs, a worker of concurrency 8 and fast kill grace."""
    path = tmp_path / "beatd.yaml"
    body = textwrap.indent(textwrap.dedent(jobs).strip("\n"), "  ")
    path.write_text(
        f"redis: {{url: '{server.url}'}}\nnamespace: {namespace}\npythonpath: ['{REPO}']\n"
        f"worker: {{kill_grace: 500ms, concurrency: 8}}\n{extra}jobs:\n{body}\n"
    )
    return path


def test_result_returns_the_value_of_the_overridden_call(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """trigger(kwargs=...) then result(timeout=10) returns what the callable returned with those kwargs; the
    audit record names the actor and the overrides; the end was notified on the job's ended stream."""
    config = config_file(tmp_path, shared_redis, namespace)
    daemons("worker", "-c", str(config), name="worker")
    with Client.from_config(config, environ={}, actor="billing-app") as client:
        handle = client.trigger("add", kwargs={"b": 41})
        assert handle.result(timeout=10) == 42  # args [1] from the YAML, b from the trigger
        assert client.trigger("add", args=[40], kwargs={"b": 2}).result(timeout=10) == 42
        record = handle.wait(timeout=1)
        assert record.status == "succeeded" and record.fire_id == handle.fire_id and record.attempt == 1
        trigger_audit = next(r for r in client.audit(10) if r.get("fire_id") == handle.fire_id)
        assert trigger_audit["actor"] == "billing-app" and trigger_audit["kwargs"] == {"b": 41}
        ended = shared_redis.client().xrange(Keys(namespace).ended("add"))
        assert {"fire_id": handle.fire_id, "run_id": f"{handle.fire_id}#1", "status": "succeeded"} in [
            dict(fields) for _, fields in ended
        ]
        ttl_ms = shared_redis.client().pttl(Keys(namespace).ended("add"))
        assert 0 < ttl_ms <= defaults.ENDED_TTL.total_seconds() * 1000


def test_a_failing_job_raises_run_failed_with_its_traceback(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """result() of a fire whose run raised raises RunFailed with the error's type, message and traceback."""
    config = config_file(tmp_path, shared_redis, namespace)
    daemons("worker", "-c", str(config), name="worker")
    with Client.from_config(config, environ={}) as client:
        handle = client.trigger("fail", kwargs={"message": "no such customer"})
        with pytest.raises(RunFailed) as caught:
            handle.result(timeout=10)
    failure = caught.value
    assert failure.status == "dead" and failure.fire_id == handle.fire_id
    assert failure.error_type == "RuntimeError" and failure.error_message == "no such customer"
    assert "raise RuntimeError(message)" in failure.traceback and "worker_jobs.py" in failure.traceback


def test_a_timeout_raises_and_the_fire_still_runs(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """wait(timeout) with no worker raises TimeoutError; the fire stays queued and a later wait, once a worker
    runs, returns its record."""
    config = config_file(tmp_path, shared_redis, namespace)
    with Client.from_config(config, environ={}) as client:
        handle = client.trigger("add", args=[1], kwargs={"b": 1})
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="carries on"):
            handle.wait(timeout=0.5)
        assert time.monotonic() - started < 5
        assert shared_redis.client().xlen(Keys(namespace).queue("default")) == 1
        daemons("worker", "-c", str(config), name="worker")
        assert handle.wait(timeout=20).status == "succeeded"
        assert handle.result(timeout=1) == 2


def test_a_fire_expired_by_the_beat_ends_the_wait(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A fire no worker takes within its job's expires is recorded expired by the leader's upkeep, whose end
    notification wakes the waiter: result() raises RunFailed with status expired."""
    config = config_file(tmp_path, shared_redis, namespace, """
        late: {call: tests.worker_jobs:add, at: "2099-01-01T00:00:00Z", args: [1], expires: 1s}
    """, extra="leader: {lease: 1s}\n")  # fmt: skip
    daemons("beat", "-c", str(config))
    with Client.from_config(config, environ={}) as client:
        handle = client.trigger("late")
        with pytest.raises(RunFailed) as caught:
            handle.result(timeout=30)
    assert caught.value.status == "expired" and "not started within expires" in caught.value.reason


def test_overrides_refused_before_anything_is_enqueued(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """Overrides for a job that does not allow them, that are not JSON, too large or against the job's schema
    are refused with OverridesRefused saying why, and nothing reaches the queue or the audit log; the CLI exits
    2 for the same."""
    config = config_file(tmp_path, shared_redis, namespace)
    refused = {
        "does not accept": ("plain", None, {"b": 1}),
        "not JSON (no NaN": ("fail", None, {"message": float("nan")}),
        "a set is not JSON": ("fail", [{1, 2}], None),
        "is not a string": ("fail", None, {"message": {1: "x"}}),
        "more than the limit": ("fail", None, {"message": "x" * defaults.OVERRIDES_MAX_BYTES}),
        "kwargs['a']: 'two' is not of type 'integer'": ("add", None, {"a": "two"}),
        "Additional properties": ("add", None, {"c": 1}),
    }
    with Client.from_config(config, environ={}) as client:
        for expected, (job, args, kwargs) in refused.items():
            with pytest.raises(OverridesRefused, match=expected.replace("(", r"\(").replace("[", r"\[")):
                client.trigger(job, args=args, kwargs=kwargs)
        for bad in (["--kwargs", "{not json"], ["--kwargs", '{"a": "two"}'], ["--args", "[1]"]):
            job = "plain" if bad[0] == "--args" else "add"
            done = subprocess.run([sys.executable, "-m", "beatd", "trigger", "-c", str(config), job, *bad],
                                  capture_output=True, text=True, cwd=REPO, timeout=60, check=False)  # fmt: skip
            assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
            assert done.stderr.startswith("beatd: "), done.stderr
        assert client.audit(10) == []
    assert shared_redis.client().xlen(Keys(namespace).queue("default")) == 0


def test_the_worker_dead_letters_forged_overrides_and_the_wait_says_so(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A message written into Redis with arguments its job does not accept is dead-lettered by the worker, not
    run; a wait on it ends dead with the reason."""
    config = config_file(tmp_path, shared_redis, namespace)
    with Client.from_config(config, environ={}) as client:
        spec = client.job("plain")
        from beatd.client.emitting import fire_message

        now = client.store.redis_now()
        message = fire_message(spec, now, now, "manual", ([1], {"b": 99}))
        client.store.enqueue(spec.queue, [(message.to_json(), "")], {"event": "test"})
        from beatd.client.handles import FireHandle

        handle = FireHandle(client, message.fire_id, "plain", spec.queue, message.scheduled_at, 0)
        daemons("worker", "-c", str(config), name="worker")
        record = handle.wait(timeout=20)
    assert record.status == "dead" and "does not accept overrides" in (record.reason or "")


def test_async_client_100_concurrent_waits(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """100 concurrent trigger(...).wait() under asyncio all return their own fire's succeeded record."""
    config = config_file(tmp_path, shared_redis, namespace)
    daemons("worker", "-c", str(config), name="worker")

    async def main() -> list[tuple[str, object]]:
        async with AsyncClient.from_config(config, environ={}) as client:

            async def one(number: int) -> tuple[str, object]:
                handle = await client.trigger("add", args=[number], kwargs={"b": 1000})
                record = await handle.wait(timeout=120)
                assert record.fire_id == handle.fire_id
                return record.status, record.result

            return await asyncio.gather(*(one(number) for number in range(100)))

    started = time.monotonic()
    results = asyncio.run(main())
    assert sorted(results, key=lambda item: json.dumps(item)) == sorted(
        [("succeeded", number + 1000) for number in range(100)], key=lambda item: json.dumps(item)
    )
    print(f"100 concurrent trigger().wait(): {time.monotonic() - started:.1f}s")


def test_backfill_reads_and_pause_through_the_client(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """backfill returns a handle per fire and skips done instants when run again; history, show, next, pause,
    resume and status read and act as the CLI does; a client from a bare URL and namespace reads the same."""
    config = config_file(tmp_path, shared_redis, namespace)
    daemons("worker", "-c", str(config), name="worker")
    with Client.from_config(config, environ={}) as client:
        done = client.backfill("add", "2026-11-01T00:00:00Z", "2026-11-01T02:00:00Z")
        assert len(done.handles) == 3 and done.report["skipped"] == []
        assert [handle.result(timeout=20) for handle in done.handles] == [1, 1, 1]
        again = client.backfill("add", "2026-11-01T00:00:00Z", "2026-11-01T02:00:00Z")
        assert again.handles == [] and len(again.report["skipped"]) == 3
        assert [record.status for record in client.history("add")] == ["succeeded"] * 3
        assert [record.attempt for record in client.show(done.handles[0].fire_id)] == [1]
        assert len(client.next("add", 3)) == 3
        assert client.pause("add", "maintenance") and not client.pause("add")
        assert client.status()["paused"]["add"]["reason"] == "maintenance"
        assert client.resume("add") and not client.resume("add")
        events = [record["event"] for record in client.audit(10)]
        assert events[0] == "resume" and "pause" in events and "backfill" in events
    with Client(shared_redis.url, namespace=namespace) as bare:
        assert len(bare.history("add", status="succeeded")) == 3
