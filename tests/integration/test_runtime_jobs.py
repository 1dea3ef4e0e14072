"""Runtime jobs against real beat and worker processes: picked up within a second, emitted exactly once across
a leader's kill -9, and a forged entry refused by the beat and by a worker."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from beatd.cli import cli
from beatd.cli.runtime import Runtime
from beatd.config import Config, load_config
from beatd.keys import Keys
from beatd.runtime_jobs import RuntimeJobs
from beatd.store import connect
from beatd.store.jobs import JobStore
from tests.integration.conftest import Daemon, wait_for
from tests.integration.helpers import assert_contiguous, leader_token, messages, scheduled
from tests.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[2]


def _config(path: Path, server: RedisServer, namespace: str, allow: str = "tests.worker_jobs:*") -> Config:
    path.write_text(
        f"redis: {{url: '{server.url}'}}\nnamespace: {namespace}\nleader: {{lease: 1s}}\npythonpath: [{REPO}]\n"
        f"runtime_jobs: {{allow: ['{allow}']}}\n"
        "jobs:\n  yaml_job: {every: 1h, call: tests.worker_jobs:noop}\n"
    )
    return load_config(path, {})


def _api(config: Config) -> RuntimeJobs:
    return RuntimeJobs(config, JobStore(connect(config.settings.redis), Keys(config.namespace)), actor="tester")


def _audit(client: Any, namespace: str, event: str) -> list[dict[str, Any]]:
    return [
        json.loads(fields["record"]) for _, fields in client.xrange(f"{namespace}:audit") if fields["event"] == event
    ]


def test_put_change_delete_are_picked_up_within_a_second(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A running leader starts a put job, follows its change and stops a deleted one, each within about a second,
    and every change is audited with its actor and diff."""
    config = _config(tmp_path / "beatd.yaml", shared_redis, namespace)
    beat = daemons("beat", "-c", str(config.path))
    client = shared_redis.client()
    wait_for(lambda: leader_token(client, namespace), what="a leader")
    beat.wait_log("leading 1 jobs")
    jobs = _api(config)

    put_at = time.monotonic()
    stored = jobs.put("customer_7", {"every": "1h", "call": "tests.worker_jobs:noop", "queue": "default"})
    beat.wait_log(r"runtime job added customer_7: every 1h", timeout=5)
    assert time.monotonic() - put_at < 1.5, "put not picked up within a second (plus slack)"

    changed_at = time.monotonic()
    jobs.put("customer_7", {"every": "200ms", "call": "tests.worker_jobs:noop"})
    wait_for(lambda: scheduled(messages(client, namespace), "customer_7"), timeout=5, what="fires of the changed job")
    assert time.monotonic() - changed_at < 1.5, "change not picked up within a second (plus slack)"

    wait_for(lambda: len(scheduled(messages(client, namespace), "customer_7")) >= 3, what="3 fires")
    assert jobs.delete("customer_7")
    beat.wait_log("runtime job removed customer_7", timeout=5)
    count = len(scheduled(messages(client, namespace), "customer_7"))
    time.sleep(0.6)  # a deleted job must stay stopped: three periods with no fire (nothing to poll for)
    assert len(scheduled(messages(client, namespace), "customer_7")) <= count + 1
    assert_contiguous(scheduled(messages(client, namespace), "customer_7"), 0.2)

    events = [_audit(client, namespace, event) for event in ("job-put", "job-change", "job-delete")]
    put, change, delete = (found[0] for found in events)
    assert put["actor"] == change["actor"] == delete["actor"] == "tester"
    assert change["diff"]["every"] == ["1h", "200ms"] and change["previous_version"] == stored.version
    assert delete["diff"]["call"] == ["tests.worker_jobs:noop", None]
    assert "leading 1 jobs" in beat.log() and "Traceback" not in beat.log()


def test_runtime_job_is_emitted_once_across_a_leader_kill_9(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """Three replicas: after kill -9 of the leader, the runtime job's fires go on with no gap and no duplicate."""
    config = _config(tmp_path / "beatd.yaml", shared_redis, namespace)
    replicas = [daemons("beat", "-c", str(config.path)) for _ in range(3)]
    client = shared_redis.client()
    _api(config).put("tick", {"every": "200ms", "catchup": "all", "call": "tests.worker_jobs:noop"})
    wait_for(lambda: len(scheduled(messages(client, namespace), "tick")) >= 3, what="first fires")
    token = wait_for(lambda: leader_token(client, namespace), what="a leader")
    leader = next(daemon for daemon in replicas if f":{daemon.pid}:" in token)
    leader.signal(signal.SIGKILL)
    wait_for(lambda: leader_token(client, namespace) not in (None, token), timeout=5, what="takeover")
    count = len(scheduled(messages(client, namespace), "tick"))
    wait_for(lambda: len(scheduled(messages(client, namespace), "tick")) >= count + 5, what="fires after takeover")
    assert_contiguous(scheduled(messages(client, namespace), "tick"), 0.2)


def _forge(client: Any, namespace: str, name: str, spec: dict[str, Any]) -> None:
    """Write a runtime job entry straight into Redis, bypassing every check of the API."""
    keys = Keys(namespace)
    version = client.incr(keys.runtime_version)
    client.hset(keys.runtime_jobs, name, json.dumps({"version": version, "spec": spec, "by": "mallory", "at": ""}))
    client.xadd(keys.runtime_changes, {"job": name, "version": version})


def test_a_forged_entry_is_refused_by_the_beat_and_the_worker(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """An entry naming a target the beat's allow-list lacks is never emitted (refused, audited); one the beat
    allows but a worker's own allow-list does not is dead-lettered by that worker (refused, audited)."""
    beat_config = _config(tmp_path / "beat.yaml", shared_redis, namespace)
    worker_config = _config(tmp_path / "worker.yaml", shared_redis, namespace, allow="tests.worker_jobs:noop")
    beat = daemons("beat", "-c", str(beat_config.path))
    worker = daemons("worker", "-c", str(worker_config.path), name="worker")
    client = shared_redis.client()
    wait_for(lambda: leader_token(client, namespace), what="a leader")

    _forge(client, namespace, "evil", {"every": "200ms", "call": "os:system", "args": ["touch /tmp/pwned"]})
    _api(beat_config).put("sneaky2", {"every": "200ms", "call": "tests.worker_jobs:fail"})

    beat.wait_log("runtime job evil refused by the beat", timeout=5)
    dead = wait_for(
        lambda: [f for _, f in client.xrange(Keys(namespace).dead) if "sneaky2" in f.get("reason", "")], what="dead"
    )
    assert "refused by this worker" in dead[0]["reason"]
    worker.wait_log("runtime job sneaky2 refused by the worker", timeout=5)
    refusals = _audit(client, namespace, "runtime-job-refused")
    assert {(record["job"], record["by"].split()[0]) for record in refusals} >= {
        ("evil", "beat"),
        ("sneaky2", "worker"),
    }
    # Never emitted: not in the queue, and (the worker deletes what it acknowledges) neither run nor dead-lettered.
    assert not scheduled(messages(client, namespace), "evil")
    assert client.hlen(Keys(namespace).runs("evil")) == 0
    assert "evil" not in {json.loads(f["message"]).get("job") for _, f in client.xrange(Keys(namespace).dead)}
    assert not (Path("/tmp/pwned")).exists()


def test_jobs_and_next_list_runtime_jobs_with_their_source(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """`beatd jobs` lists runtime jobs beside the YAML's with a SOURCE; `beatd next` and `job list` know them."""
    config = _config(tmp_path / "beatd.yaml", shared_redis, namespace)
    spec = tmp_path / "spec.yaml"
    spec.write_text("every: 1h\nstart: 2026-01-01T00:00:00Z\ncall: tests.worker_jobs:noop\n")
    runner, runtime = CliRunner(), Runtime(environ={}, cwd=tmp_path)
    put = runner.invoke(cli, ["job", "put", "hourly", "-c", str(config.path), "-f", str(spec)], obj=runtime)
    assert put.exit_code == 0 and put.stdout.startswith("put hourly: version ")
    rows = json.loads(runner.invoke(cli, ["jobs", "-c", str(config.path), "--json"], obj=runtime).stdout)
    assert {row["name"]: row["source"] for row in rows} == {"yaml_job": "yaml", "hourly": "runtime"}
    table = runner.invoke(cli, ["jobs", "-c", str(config.path), "--wide"], obj=runtime).stdout.splitlines()
    assert table[0].split()[-1] == "SOURCE" and table[-1].split()[-1] == "runtime"
    upcoming = runner.invoke(
        cli, ["next", "-c", str(config.path), "hourly", "-n", "1", "--after", "2026-01-01T00:30:00Z"], obj=runtime
    )
    assert upcoming.stdout.strip() == "2026-01-01T01:00:00+00:00"
    listed = runner.invoke(cli, ["job", "list", "-c", str(config.path)], obj=runtime).stdout
    assert "hourly" in listed and "yaml_job" not in listed
    assert runner.invoke(cli, ["job", "rm", "hourly", "-c", str(config.path)], obj=runtime).exit_code == 0
    assert runner.invoke(cli, ["job", "rm", "hourly", "-c", str(config.path)], obj=runtime).exit_code == 2


def test_a_deeply_nested_forged_entry_stops_neither_the_beat_nor_the_worker(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A forged entry nested deeper than the JSON parser recurses (about 10 KB) is refused (logged, audited) by
    the beat and a worker; the YAML job and a runtime job put after it keep firing and running; `job list`
    shows it as unreadable and `job rm` deletes it."""
    path = tmp_path / "beatd.yaml"
    path.write_text(
        f"redis: {{url: '{shared_redis.url}'}}\nnamespace: {namespace}\nleader: {{lease: 1s}}\npythonpath: [{REPO}]\n"
        "runtime_jobs: {allow: ['tests.worker_jobs:*']}\n"
        "jobs:\n  yaml_job: {every: 200ms, call: tests.worker_jobs:noop}\n"
    )
    config = load_config(path, {})
    client = shared_redis.client()
    keys = Keys(namespace)
    deep = '"spec":{"every":"1m","call":"tests.worker_jobs:noop","kwargs":{"a":' + "[" * 5000 + "]" * 5000 + "}}}"
    version = client.incr(keys.runtime_version)
    client.hset(keys.runtime_jobs, "deep", '{"version":' + str(version) + "," + deep)
    client.xadd(keys.runtime_changes, {"job": "deep", "version": version})
    beat = daemons("beat", "-c", str(path))
    worker = daemons("worker", "-c", str(path), name="worker")
    _api(config).put("after", {"every": "200ms", "call": "tests.worker_jobs:noop"})

    beat.wait_log(r"runtime job deep refused by the beat .*: unreadable entry: not JSON: nested too deep", timeout=10)
    worker.wait_log("runtime job deep refused by the worker", timeout=10)
    # Fired by the beat and run by the worker: counted in run records, since the worker deletes what it has
    # acknowledged from the queue stream (counting queue entries raced the worker).
    for job in ("yaml_job", "after"):
        wait_for(lambda job=job: client.hlen(keys.runs(job)) >= 3, timeout=60, what=f"runs of {job} by the worker")
    assert {record["job"] for record in _audit(client, namespace, "runtime-job-refused")} == {"deep"}
    assert "RecursionError" not in beat.log() + worker.log()

    runtime = Runtime(environ={}, cwd=tmp_path)
    listed = CliRunner().invoke(cli, ["job", "list", "-c", str(path), "--json"], obj=runtime)
    assert listed.exit_code == 0, listed.output
    assert {entry["name"]: "unreadable" in entry for entry in json.loads(listed.output)} == {
        "after": False,
        "deep": True,
    }
    removed = CliRunner().invoke(cli, ["job", "rm", "deep", "-c", str(path)], obj=runtime)
    assert removed.exit_code == 0, removed.output
    assert not client.hexists(keys.runtime_jobs, "deep")
