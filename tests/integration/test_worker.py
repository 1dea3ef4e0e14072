"""Real `beatd worker` processes against a real redis-server: execution, reclaim, timeouts, retries, overlap."""

from __future__ import annotations

import itertools
import json
import signal
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from beatd.audit import audit_record
from beatd.config import load_config
from beatd.keys import Keys
from beatd.messages import Message, fire_id, format_utc
from beatd.signing import Signer
from beatd.store import Store, connect
from tests.conftest import REPO
from tests.integration.conftest import Daemon, wait_for
from tests.integration.helpers import runs
from tests.redis_server import RedisServer

KEY = "k" * 32


def config_file(tmp_path: Path, server: RedisServer, namespace: str, jobs: str, extra: str = "") -> Path:
    """A worker config with fast kill grace; ``jobs`` is the YAML body of ``jobs:``."""
    path = tmp_path / "beatd.yaml"
    body = textwrap.indent(textwrap.dedent(jobs).strip("\n"), "  ")
    path.write_text(
        f"redis: {{url: '{server.url}'}}\nnamespace: {namespace}\npythonpath: ['{REPO}']\n"
        f"worker: {{kill_grace: 500ms, concurrency: 2}}\n{extra}jobs:\n{body}\n"
    )
    return path


def enqueue(config: Path, job: str, scheduled: datetime | None = None, trigger: str = "schedule") -> str:
    """Put one fire of ``job`` into its queue as the beat or the CLI would; return its fire id."""
    loaded = load_config(config, {})
    spec = loaded.jobs[job]
    now = datetime.now(UTC)
    scheduled = scheduled or now
    message = Message(
        fire_id=fire_id(job, scheduled, trigger, now),  # type: ignore[arg-type]
        job=job,
        scheduled_at=format_utc(scheduled),
        emitted_at=format_utc(now),
        trigger=trigger,  # type: ignore[arg-type]
        config_digest=spec.digest,
        args=list(spec.args),
        kwargs=dict(spec.kwargs),
    )
    key = loaded.settings.security.signing_key
    text = message.to_json()
    store = Store(connect(loaded.settings.redis), Keys(loaded.namespace))
    store.enqueue(spec.queue, [(text, Signer(key).sign(text) if key else "")], audit_record("trigger", now, job=job))
    return message.fire_id


def statuses(server: RedisServer, namespace: str, job: str) -> list[str]:
    """Statuses of ``job``'s run records, oldest fire first, attempts in order."""
    return [record["status"] for record in sorted(runs(server.client(), namespace, job), key=_order)]


def _order(record: dict[str, Any]) -> tuple[str, int, bool]:
    return (record["scheduled_at"], record["attempt"], record["status"] == "dead")


def lines(path: Path) -> list[dict[str, Any]]:
    """JSON lines a test job wrote."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_callable_and_command_run_and_are_recorded(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A callable's result and a command's exit code and output tail land in the run record."""
    log = tmp_path / "ctx.jsonl"
    config = config_file(tmp_path, shared_redis, namespace, f"""
        report: {{call: tests.worker_jobs:report_context, kwargs: {{log: '{log}'}}, every: 1h}}
        shout: {{command: "sh -c 'echo out; echo err >&2; exit 0'", every: 1h}}
    """)  # fmt: skip
    daemons("worker", "-c", str(config), name="worker")
    enqueue(config, "report")
    enqueue(config, "shout")
    wait_for(lambda: statuses(shared_redis, namespace, "report") == ["succeeded"], what="report ran")
    wait_for(lambda: statuses(shared_redis, namespace, "shout") == ["succeeded"], what="shout ran")
    report = runs(shared_redis.client(), namespace, "report")[0]
    assert report["result"]["attempt"] == 1 and report["lag_s"] >= 0 and report["duration_s"] >= 0
    assert report["worker"].endswith(tuple("0123456789"))
    shout = runs(shared_redis.client(), namespace, "shout")[0]
    assert (shout["exit_code"], shout["output"]) == (0, "out\nerr\n")
    assert shared_redis.client().xlen(f"{namespace}:queue:default") == 0  # acknowledged and deleted


def test_kill_9_mid_run_is_reclaimed_as_next_attempt(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A worker killed with SIGKILL mid-run: its run is recorded lost and another worker runs attempt 2."""
    log = tmp_path / "runs.jsonl"
    config = config_file(tmp_path, shared_redis, namespace, f"""
        batch: {{call: tests.worker_jobs:slow_first_attempt, kwargs: {{seconds: 60, log: '{log}'}}, every: 1h,
                 timeout: 2s}}
    """)  # fmt: skip
    first = daemons("worker", "-c", str(config), name="first")
    enqueue(config, "batch")
    wait_for(lambda: lines(log), what="attempt 1 started")
    first.signal(signal.SIGKILL)
    daemons("worker", "-c", str(config), name="second")
    wait_for(lambda: statuses(shared_redis, namespace, "batch") == ["lost", "succeeded"], timeout=60, what="reclaim")
    records = sorted(runs(shared_redis.client(), namespace, "batch"), key=_order)
    assert [record["attempt"] for record in records] == [1, 2]
    assert "stopped renewing" in records[0]["reason"]
    assert records[1]["result"] == "attempt 2"


@pytest.mark.parametrize(
    ("target", "timeout"),
    [("call: tests.worker_jobs:hang", "1s"), ("command: [sleep, '60']", "1s"), ("command: 'sleep 60'", "1s")],
)
def test_hanging_job_times_out_and_worker_carries_on(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon], target: str,
    timeout: str,
) -> None:  # fmt: skip
    """A hanging callable or command is terminated at its timeout, recorded timeout, and the worker goes on."""
    config = config_file(tmp_path, shared_redis, namespace, f"""
        stuck: {{{target}, every: 1h, timeout: {timeout}}}
        quick: {{call: tests.worker_jobs:noop, every: 1h}}
    """)  # fmt: skip
    daemons("worker", "-c", str(config), "--concurrency", "1", name="worker")
    enqueue(config, "stuck")
    enqueue(config, "quick")
    wait_for(lambda: statuses(shared_redis, namespace, "stuck") == ["timeout", "dead"], timeout=60, what="timeout")
    wait_for(lambda: statuses(shared_redis, namespace, "quick") == ["succeeded"], what="the next job ran")
    record = runs(shared_redis.client(), namespace, "stuck")[0]
    assert 1.0 <= record["duration_s"] < 4.0
    assert shared_redis.client().xlen(f"{namespace}:dead") == 1


def test_crashing_child_does_not_take_the_worker_down(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A job that kills its own process is recorded failed; the worker replaces the child and goes on."""
    config = config_file(tmp_path, shared_redis, namespace, """
        crash: {call: tests.worker_jobs:crash, every: 1h}
        quick: {call: tests.worker_jobs:noop, every: 1h}
    """)  # fmt: skip
    worker = daemons("worker", "-c", str(config), "--concurrency", "1", name="worker")
    enqueue(config, "crash")
    enqueue(config, "quick")
    wait_for(lambda: statuses(shared_redis, namespace, "quick") == ["succeeded"], what="the next job ran")
    record = runs(shared_redis.client(), namespace, "crash")
    assert record[0]["status"] == "failed" and "exit code 17" in record[0]["error"]["message"]
    assert worker.process is not None and worker.process.poll() is None


def test_retries_with_backoff_then_dead(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A failing job is retried `retries` times with capped exponential backoff, then dead and dead-lettered."""
    config = config_file(tmp_path, shared_redis, namespace, """
        flaky: {call: tests.worker_jobs:fail, every: 1h, retries: 2, retry_delay: 200ms, retry_delay_max: 300ms}
    """)  # fmt: skip
    daemons("worker", "-c", str(config), name="worker")
    fire = enqueue(config, "flaky")
    wait_for(lambda: statuses(shared_redis, namespace, "flaky") == ["failed"] * 3 + ["dead"], what="three attempts")
    records = sorted(runs(shared_redis.client(), namespace, "flaky"), key=_order)
    assert [record["attempt"] for record in records] == [1, 2, 3, 3]
    assert records[0]["error"] == {
        "type": "RuntimeError",
        "message": "boom",
        "traceback": records[0]["error"]["traceback"],
    }
    assert "retry in" in records[0]["reason"] and "retry in" in records[1]["reason"]
    assert "no retries left" in records[3]["reason"] and records[3]["run_id"] == f"{fire}#dead-3"
    starts = [datetime.fromisoformat(record["started_at"]) for record in records[:3]]
    # Each retry waits its delay (200 ms, then capped at 300 ms), and nothing near the uncapped growth: the upper
    # bound is generous for a loaded machine (over 2 s was seen with the suite in parallel on 2 cores).
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert all(timedelta(milliseconds=200) <= gap <= timedelta(seconds=15) for gap in gaps), gaps
    dead = shared_redis.client().xrange(f"{namespace}:dead")
    assert len(dead) == 1 and json.loads(dead[0][1]["message"])["fire_id"] == fire


@pytest.mark.parametrize("policy", ["skip", "allow", "buffer_one", "replace"])
def test_overlap_policies(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon], policy: str
) -> None:
    """Three fires of a 1.5 s job sent together: skip, allow, buffer_one and replace each behave as documented
    (the `allow` job runs 4 s, so that starting two more child processes under load still overlaps it)."""
    log = tmp_path / "overlap.jsonl"
    seconds = 4 if policy == "allow" else 1.5
    config = config_file(tmp_path, shared_redis, namespace, f"""
        long: {{call: tests.worker_jobs:sleep_and_log, kwargs: {{seconds: {seconds}, log: '{log}'}}, every: 1h,
                overlap: {policy}}}
    """)  # fmt: skip
    daemons("worker", "-c", str(config), "--concurrency", "3", name="worker")
    enqueue(config, "long")
    wait_for(lambda: lines(log), what="the first run started")
    enqueue(config, "long", datetime.now(UTC) + timedelta(milliseconds=1))
    enqueue(config, "long", datetime.now(UTC) + timedelta(milliseconds=2))
    expected = {
        "skip": ["succeeded", "skipped", "skipped"],
        "allow": ["succeeded", "succeeded", "succeeded"],
        "buffer_one": ["succeeded", "succeeded", "skipped"],
        "replace": ["cancelled", "cancelled", "succeeded"],
    }[policy]
    wait_for(lambda: sorted(statuses(shared_redis, namespace, "long")) == sorted(expected), timeout=60, what=policy)
    started = [entry for entry in lines(log) if entry["event"] == "start"]
    if policy == "allow":
        ends = sorted(entry["t"] for entry in lines(log) if entry["event"] == "end")
        assert max(entry["t"] for entry in started) < ends[0]  # all three ran at once
    if policy == "buffer_one":
        first_end = min(entry["t"] for entry in lines(log) if entry["event"] == "end")
        assert sorted(entry["t"] for entry in started)[1] >= first_end  # the buffered one waited
    if policy == "replace":
        records = runs(shared_redis.client(), namespace, "long")
        assert all("replaced by" in record["reason"] for record in records if record["status"] == "cancelled")


@pytest.mark.parametrize("concurrency", ["1", "3"])
def test_a_backlog_of_a_quick_skip_job_runs_one_fire_after_another(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon], concurrency: str
) -> None:
    """Twenty fires of a 6 ms `overlap: skip` job waiting in the queue (a delay) are claimed together and all
    run, one after another: a fire is skipped only when a run of its job is really running when it would start."""
    log = tmp_path / "quick.jsonl"
    config = config_file(tmp_path, shared_redis, namespace, f"""
        quick: {{call: tests.worker_jobs:sleep_and_log, kwargs: {{seconds: 0.006, log: '{log}'}}, every: 1s,
                 overlap: skip}}
    """)  # fmt: skip
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    for second in range(20):
        enqueue(config, "quick", start + timedelta(seconds=second))
    daemons("worker", "-c", str(config), "--concurrency", concurrency, name="worker")
    wait_for(lambda: statuses(shared_redis, namespace, "quick").count("succeeded") == 20, timeout=60, what="20 runs")
    assert statuses(shared_redis, namespace, "quick") == ["succeeded"] * 20
    spans = sorted((entry["t"], entry["event"]) for entry in lines(log))
    assert [event for _, event in spans] == ["start", "end"] * 20  # never two at once


@pytest.mark.parametrize("policy", ["skip", "buffer_one"])
def test_requested_fires_wait_instead_of_being_skipped(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon], policy: str
) -> None:
    """Backfill and manual fires of a job that is running wait for it rather than being skipped or dropped."""
    log = tmp_path / "overlap.jsonl"
    config = config_file(tmp_path, shared_redis, namespace, f"""
        long: {{call: tests.worker_jobs:sleep_and_log, kwargs: {{seconds: 0.5, log: '{log}'}}, every: 1h,
                overlap: {policy}}}
    """)  # fmt: skip
    daemons("worker", "-c", str(config), "--concurrency", "3", name="worker")
    start = datetime.now(UTC)
    for index in range(3):
        enqueue(config, "long", start + timedelta(milliseconds=index), trigger="backfill")
    wait_for(lambda: statuses(shared_redis, namespace, "long") == ["succeeded"] * 3, timeout=60, what="all three")
    spans = sorted((entry["t"], entry["event"]) for entry in lines(log))
    assert [event for _, event in spans] == ["start", "end"] * 3  # one at a time


def test_unknown_bad_and_forged_messages_are_dead_lettered(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """Undeclared jobs, bad JSON, malformed fields, unknown versions, unsigned and forged messages are never run."""
    config = config_file(tmp_path, shared_redis, namespace, """
        good: {call: tests.worker_jobs:noop, every: 1h}
    """, extra=f"security: {{signing_key: '{KEY}'}}\n")  # fmt: skip
    client = shared_redis.client()
    queue = f"{namespace}:queue:default"
    signer = Signer(KEY)
    evil = json.dumps({"v": 1, "fire_id": "x@1", "job": "rm_rf", "scheduled_at": "2026-01-01T00:00:00Z",
                       "emitted_at": "2026-01-01T00:00:00Z", "trigger": "manual", "config_digest": "", "args": [],
                       "kwargs": {}})  # fmt: skip
    good = json.loads(evil) | {"job": "good"}
    client.xadd(queue, {"message": evil, "sig": signer.sign(evil)})
    client.xadd(queue, {"message": "{not json", "sig": ""})
    client.xadd(queue, {"message": json.dumps(good | {"v": 99}), "sig": signer.sign(json.dumps(good | {"v": 99}))})
    client.xadd(queue, {"message": json.dumps(good), "sig": ""})
    client.xadd(queue, {"message": json.dumps(good), "sig": Signer("x" * 32).sign(json.dumps(good))})
    for malformed in (good | {"job": ["good"]}, good | {"scheduled_at": "yesterday"}):
        client.xadd(queue, {"message": json.dumps(malformed), "sig": signer.sign(json.dumps(malformed))})
    daemons("worker", "-c", str(config), name="worker")
    enqueue(config, "good")
    wait_for(lambda: statuses(shared_redis, namespace, "good") == ["succeeded"], what="the signed good message ran")
    wait_for(lambda: client.xlen(f"{namespace}:dead") == 7, what="seven dead letters")
    reasons = sorted(fields["reason"] for _, fields in client.xrange(f"{namespace}:dead"))
    assert reasons == sorted(
        [
            "not run: job 'rm_rf' is not declared in this worker's config",
            "not run: not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
            "not run: unknown message version 99, expected 1",
            "not run: message unsigned",
            "not run: message signature does not match",
            "not run: malformed message: job is not a string",
            "not run: malformed message: scheduled_at: Invalid isoformat string: 'yesterday'",
        ]
    )


def test_sigterm_drains_running_jobs(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """On SIGTERM a worker takes no new fire, lets the running one finish within the grace, and exits 0."""
    log = tmp_path / "drain.jsonl"
    config = config_file(tmp_path, shared_redis, namespace, f"""
        long: {{call: tests.worker_jobs:sleep_and_log, kwargs: {{seconds: 1, log: '{log}'}}, every: 1h}}
    """)  # fmt: skip
    worker = daemons("worker", "-c", str(config), "--grace", "10", name="worker")
    enqueue(config, "long")
    wait_for(lambda: lines(log), what="the run started")
    worker.signal(signal.SIGTERM)
    assert worker.process is not None and worker.process.wait(15) == 0
    assert statuses(shared_redis, namespace, "long") == ["succeeded"]


def test_claimed_fires_wait_for_a_runner_and_are_given_back_on_sigterm(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """Fires claimed beyond the runners show their real start once they run; on SIGTERM the ones not started
    are given back, so the next worker runs them as attempt 1 and no run is recorded lost."""
    log = tmp_path / "runs.jsonl"
    config = config_file(tmp_path, shared_redis, namespace, f"""
        long: {{call: tests.worker_jobs:sleep_and_log, kwargs: {{seconds: 2, log: '{log}'}}, every: 1h,
                overlap: allow}}
    """)  # fmt: skip
    first = daemons("worker", "-c", str(config), "--concurrency", "1", "--prefetch", "3", "--grace", "10", name="1st")
    now = datetime.now(UTC)
    fires = [enqueue(config, "long", now + timedelta(milliseconds=index)) for index in range(3)]
    wait_for(lambda: statuses(shared_redis, namespace, "long") == ["running"] * 3, what="all three claimed")
    second_start = wait_for(lambda: [line for line in lines(log) if line["event"] == "start"][1:], what="2nd started")
    first_end = next(line["t"] for line in lines(log) if line["event"] == "end")
    client = shared_redis.client()
    second = json.loads(client.hget(Keys(namespace).runs("long"), f"{fires[1]}#1") or "{}")
    assert second["status"] == "running" and second_start
    assert datetime.fromisoformat(second["started_at"]).timestamp() >= first_end - 0.01  # not the claim's instant
    first.signal(signal.SIGTERM)
    assert first.process is not None and first.process.wait(15) == 0
    assert statuses(shared_redis, namespace, "long") == ["succeeded", "succeeded"]
    assert client.hget(Keys(namespace).attempts, fires[2]) is None and client.hlen(Keys(namespace).active("long")) == 0
    daemons("worker", "-c", str(config), name="2nd")
    wait_for(lambda: statuses(shared_redis, namespace, "long") == ["succeeded"] * 3, timeout=60, what="third ran")
    third = json.loads(client.hget(Keys(namespace).runs("long"), f"{fires[2]}#1") or "{}")
    assert third["attempt"] == 1


def test_sigterm_past_grace_leaves_the_run_to_be_reclaimed(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A run still going when the grace ends is recorded lost and run again by another worker: nothing is lost."""
    log = tmp_path / "runs.jsonl"
    config = config_file(tmp_path, shared_redis, namespace, f"""
        batch: {{call: tests.worker_jobs:slow_first_attempt, kwargs: {{seconds: 60, log: '{log}'}}, every: 1h}}
    """)  # fmt: skip
    first = daemons("worker", "-c", str(config), "--grace", "0.5", name="first")
    enqueue(config, "batch")
    wait_for(lambda: lines(log), what="attempt 1 started")
    first.signal(signal.SIGTERM)
    assert first.process is not None and first.process.wait(15) == 0
    assert statuses(shared_redis, namespace, "batch") == ["lost"]
    daemons("worker", "-c", str(config), name="second")
    wait_for(lambda: statuses(shared_redis, namespace, "batch") == ["lost", "succeeded"], timeout=60, what="rerun")


def test_sighup_reloads_and_a_broken_config_keeps_the_running_one(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """SIGHUP makes a worker run a job added to its config, on a new queue; a broken config is rejected with
    a located message and the worker goes on with the config it had."""
    config = config_file(tmp_path, shared_redis, namespace, """
        first: {call: tests.worker_jobs:noop, every: 1h}
    """)  # fmt: skip
    worker = daemons("worker", "-c", str(config), name="worker")
    worker.wait_log("consuming default")
    good = config.read_text() + "  second: {call: tests.worker_jobs:noop, every: 1h, queue: other}\n"
    config.write_text(good)
    worker.signal(signal.SIGHUP)
    worker.wait_log("reloaded ")
    enqueue(config, "second")
    wait_for(lambda: statuses(shared_redis, namespace, "second") == ["succeeded"], what="the added job ran")
    copy = tmp_path / "copy.yaml"
    copy.write_text(good)
    config.write_text(good + "  third: {call: tests.worker_jobs:noop, evry: 1h}\n")
    worker.signal(signal.SIGHUP)
    worker.wait_log(r"reload rejected: .*beatd\.yaml:8:\d+: jobs\.third\.evry: .*did you mean 'every'")
    enqueue(copy, "second", datetime.now(UTC) + timedelta(seconds=1))
    wait_for(lambda: statuses(shared_redis, namespace, "second") == ["succeeded"] * 2, what="still running jobs")
    assert worker.process is not None and worker.process.poll() is None


def test_sighup_applies_the_signing_key_and_names_settings_that_need_a_restart(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A reload takes over a new signing key (an unsigned fire is then dead-lettered) and says, in the log and
    the audit record, that a changed worker.concurrency needs a restart."""
    config = config_file(tmp_path, shared_redis, namespace, """
        first: {call: tests.worker_jobs:noop, every: 1h}
    """)  # fmt: skip
    worker = daemons("worker", "-c", str(config), name="worker")
    worker.wait_log("consuming default")
    unsigned = config.read_text()
    signed = unsigned.replace("\njobs:\n", f"\nsecurity: {{signing_key: {KEY}}}\njobs:\n", 1)
    config.write_text(signed.replace("concurrency: 2}", "concurrency: 3}"))
    worker.signal(signal.SIGHUP)
    worker.wait_log(r"reload: worker\.concurrency changed and take effect only after a restart")
    copy = tmp_path / "unsigned.yaml"
    copy.write_text(unsigned)
    enqueue(copy, "first")
    client = shared_redis.client()
    wait_for(lambda: client.xlen(f"{namespace}:dead") == 1, what="the unsigned fire dead-lettered")
    assert "unsigned" in client.xrange(f"{namespace}:dead")[0][1]["reason"]
    reloads = [json.loads(fields["record"]) for _, fields in client.xrange(f"{namespace}:audit")
               if fields["event"] == "reload"]  # fmt: skip
    assert [record["restart_required"] for record in reloads] == [["worker.concurrency"]]


def test_history_retention_keep_and_max_age(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """history.keep bounds the records of a job; records written longer ago than history.max_age are pruned."""
    config = config_file(tmp_path, shared_redis, namespace, """
        often: {call: tests.worker_jobs:noop, every: 1h, overlap: allow, history: {keep: 3, max_age: 30d}}
    """)  # fmt: skip
    client = shared_redis.client()
    keys = Keys(namespace)
    old = datetime.now(UTC) - timedelta(days=40)
    client.hset(keys.runs("often"), "often@old#1", json.dumps({"run_id": "often@old#1", "status": "succeeded"}))
    client.zadd(keys.runs_by_time("often"), {"often@old#1": int(old.timestamp() * 1000)})
    daemons("worker", "-c", str(config), name="worker")
    enqueue(config, "often")
    wait_for(lambda: client.hget(keys.runs("often"), "often@old#1") is None, what="the 40-day-old record pruned")
    now = datetime.now(UTC)
    for index in range(5):
        enqueue(config, "often", now + timedelta(milliseconds=index + 1))
    wait_for(lambda: client.xlen(keys.queue("default")) == 0 and client.hlen(keys.active("often")) == 0, what="all ran")
    wait_for(lambda: len(runs(client, namespace, "often")) == 3, what="three records kept")
    assert all(record["status"] == "succeeded" for record in runs(client, namespace, "often"))


def test_context_scheduled_at_on_retry_and_backfill(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """The context's scheduled_at is the fire's logical instant, in the job's zone, on a retry and on backfill."""
    log = tmp_path / "ctx.jsonl"
    config = config_file(tmp_path, shared_redis, namespace, f"""
        nightly: {{call: tests.worker_jobs:fail_first_attempt, kwargs: {{log: '{log}'}}, cron: '5 0 * * *',
                   timezone: Asia/Shanghai, retries: 1, retry_delay: 100ms}}
    """)  # fmt: skip
    daemons("worker", "-c", str(config), name="worker")
    scheduled = datetime(2026, 3, 10, 0, 5, tzinfo=UTC) - timedelta(hours=8)  # 00:05 in Shanghai
    enqueue(config, "nightly", scheduled, trigger="backfill")
    wait_for(lambda: len(lines(log)) == 2, what="two attempts")
    first, second = lines(log)
    assert (first["attempt"], second["attempt"]) == (1, 2)
    assert first["scheduled_at"] == second["scheduled_at"] == "2026-03-10T00:05:00+08:00"
    assert second["previous_at"] == "2026-03-09T00:05:00+08:00" and second["trigger"] == "backfill"
