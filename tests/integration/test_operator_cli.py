"""The operator's commands against real processes: reading with a broken config, backfill, dead letters, and
reading the output (issue 10, items 4, 5, 6 and 8)."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from beatd.keys import Keys
from beatd.store import RunStore
from tests.conftest import REPO, run_cli
from tests.integration.conftest import Daemon, wait_for
from tests.integration.helpers import messages, runs
from tests.integration.test_worker import config_file, enqueue, statuses
from tests.redis_server import RedisServer

cli = run_cli  # the commands in this process; `beatd logs --follow` on a terminal below is a real one


def test_read_only_commands_work_with_a_broken_config(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """With broken jobs in the file, audit/history/show/workers/dead/status read Redis with a warning (status
    lists the beat's jobs); with a file that does not parse, or none, --redis-url and --namespace do."""
    config = config_file(tmp_path, shared_redis, namespace, """
        a: {command: [/bin/true], every: 300ms}
        b: {command: [/bin/true], every: 300ms}
    """)  # fmt: skip
    daemons("beat", "-c", str(config))
    daemons("worker", "-c", str(config), name="worker")
    wait_for(lambda: runs(shared_redis.client(), namespace, "b"), what="b ran")
    good = config.read_text()
    config.write_text(good.replace("every: 300ms}", "every: nonsense}", 1))

    for command in (["audit"], ["history"], ["workers"], ["dead"], ["export"]):
        result = cli(*command, "-c", str(config))
        assert result.returncode == 0, (command, result.stderr)
        assert "warning:" in result.stderr and "jobs.a.every" in result.stderr, command
    history = json.loads(cli("history", "-c", str(config), "--json").stdout)
    assert {record["job"] for record in history} == {"a", "b"}
    assert cli("show", "-c", str(config), history[0]["run_id"]).returncode == 0
    status = json.loads(cli("status", "-c", str(config), "--json").stdout)
    assert {job["name"] for job in status["jobs"]} == {"a", "b"}
    assert status["config_digest"] is None and status["leader"] is not None
    assert "jobs: 2" in cli("status", "-c", str(config)).stdout

    config.write_text("redis: {url: [unclosed\n")  # not even the connection can be read from it
    assert cli("history", "-c", str(config)).returncode == 2
    flags = ["--redis-url", shared_redis.url, "--namespace", namespace]
    for path in (str(config), str(tmp_path / "missing.yaml")):
        result = cli("history", "-c", path, *flags, "--json")
        assert result.returncode == 0, result.stderr
        assert {record["job"] for record in json.loads(result.stdout)} == {"a", "b"}
        assert cli("audit", "-c", path, *flags).returncode == 0
    assert cli("history", "--redis-url", "http://nope", "--namespace", namespace).returncode == 2


def test_backfill_dry_run_inclusive_ends_idempotent_wait_and_retention(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """--dry-run lists the instants (a plain --to date includes its day); --wait runs them with progress lines;
    the same backfill again emits nothing (unless --rerun); retention that would drop records is warned of, and
    without --rerun refused (its skip check would be incomplete); a date past year 9999 is a usage error."""
    config = config_file(tmp_path, shared_redis, namespace, """
        nightly: {call: tests.worker_jobs:noop, cron: '30 1 * * *', timezone: America/New_York,
                  history: {keep: 14}}
    """)  # fmt: skip
    span = ["nightly", "--from", "2026-11-01", "--to", "2026-11-07"]
    dry = cli("backfill", "-c", str(config), *span, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["instants"][0] == "2026-11-01T05:30:00Z" and plan["instants"][-1] == "2026-11-07T06:30:00Z"
    assert len(plan["instants"]) == 7 and plan["warnings"] == []
    assert messages(shared_redis.client(), namespace) == []
    for option in ("--to", "--from"):
        overflow = cli("backfill", "-c", str(config), "nightly", "--from", "2026-11-01", option, "9999-12-31")
        assert overflow.returncode == 2 and "Traceback" not in overflow.stderr, overflow.stderr

    daemons("worker", "-c", str(config), name="worker")
    done = cli("backfill", "-c", str(config), *span, "--wait")
    assert done.returncode == 0, done.stderr
    assert "emitted 7 backfill fire(s)" in done.stdout and "ended: succeeded 7" in done.stdout
    assert "enqueue nightly: 7/7" in done.stderr and "run nightly: 7/7" in done.stderr
    assert statuses(shared_redis, namespace, "nightly") == ["succeeded"] * 7

    again = json.loads(cli("backfill", "-c", str(config), *span, "--json").stdout)
    assert again["instants"] == [] and len(again["skipped"]) == 7
    assert statuses(shared_redis, namespace, "nightly") == ["succeeded"] * 7
    wider = ["nightly", "--from", "2026-11-01", "--to", "2026-11-08"]
    rerun = cli("backfill", "-c", str(config), *wider, "--rerun", "--dry-run")
    assert len(rerun.stdout.splitlines()) == 8
    assert "keeps 14 run records (history.keep) and has 7" in rerun.stderr and "drop the oldest 1" in rerun.stderr
    # 8 new fires of a range whose 7 done instants fill half of keep (14): the oldest done one would go
    refused = cli("backfill", "-c", str(config), "nightly", "--from", "2026-11-01", "--to", "2026-11-15")
    assert refused.returncode == 2 and "skip check would be incomplete" in refused.stderr, refused.stderr
    assert "push out records of 1 instant(s)" in refused.stderr
    assert "--rerun" in refused.stderr and messages(shared_redis.client(), namespace) == []
    other = cli("backfill", "-c", str(config), *wider, "--wait")  # one new fire: nothing is pushed out
    assert other.returncode == 0 and "emitted 1 backfill fire(s) of nightly to queue default" in other.stdout
    more = cli("backfill", "-c", str(config), "nightly", "--from", "2026-11-09", "--to", "2026-11-14", "--wait")
    assert more.returncode == 0 and len(statuses(shared_redis, namespace, "nightly")) == 14  # history full
    # a full history covers from its oldest kept instant on: a range before it is refused, a later one is not
    earlier = cli("backfill", "-c", str(config), "nightly", "--from", "2026-10-31", "--to", "2026-11-02")
    assert earlier.returncode == 2 and "before it" in earlier.stderr, earlier.stderr
    recent = cli("backfill", "-c", str(config), "nightly", "--from", "2026-11-10", "--to", "2026-11-15", "--wait")
    assert recent.returncode == 0 and "emitted 1 backfill fire(s)" in recent.stdout, recent.stderr


def test_backfill_draws_a_progress_bar_on_a_terminal(tmp_path: Path, shared_redis: RedisServer, namespace: str) -> None:
    """On a terminal (a pty with no size set) backfill's progress is a bar, not plain lines."""
    config = config_file(tmp_path, shared_redis, namespace, "n: {command: [/bin/true], every: 1m}")
    leader, follower = pty.openpty()
    environment = {key: value for key, value in os.environ.items() if not key.startswith("BEATD_")}
    environment.pop("COLUMNS", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "beatd", "backfill", "-c", str(config), "n", "--from", "2026-11-01", "--to",
         "2026-11-01", "--rerun"],
        stdin=follower, stdout=follower, stderr=follower, cwd=REPO, env=environment,
    )  # fmt: skip
    os.close(follower)
    output = b""
    while chunk := _read(leader):
        output += chunk
    os.close(leader)
    assert process.wait(timeout=60) == 0
    text = output.decode()
    assert "enqueue n: 100%|" in text and "1440/1440" in text and "enqueue n: 1440/1440\r\n" not in text


def _read(descriptor: int) -> bytes:
    try:
        return os.read(descriptor, 65536)
    except OSError:  # the other end closed (EIO on Linux)
        return b""


def test_dead_letters_located_errors_own_records_audit_and_columns(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A bad id is a located exit 2; a fire retried past its attempts gets a dead record of its own with a
    true reason; a fire that then succeeds no longer reads as dead; retry and drop are audited; DIED shows."""
    log = tmp_path / "attempts.jsonl"
    config = config_file(tmp_path, shared_redis, namespace, f"""
        bad: {{call: tests.worker_jobs:fail, every: 1h, retries: 1, retry_delay: 0s}}
        flaky: {{call: tests.worker_jobs:fail_first_attempt, kwargs: {{log: '{log}'}}, every: 1h, retries: 0}}
    """)  # fmt: skip
    for nonsense in ("nonsense", "0-1", f"{2**64}-0", f"1-{2**64}", "1-0\n", "\u0661-\u0660", "\u00b2:1-0"):
        result = cli("dead", "retry", nonsense, "-c", str(config))
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.startswith("beatd: dead retry: ") and "`beatd dead` lists them" in result.stderr
    daemons("worker", "-c", str(config), name="worker")
    bad, flaky = enqueue(config, "bad"), enqueue(config, "flaky")
    wait_for(lambda: statuses(shared_redis, namespace, "bad") == ["failed", "failed", "dead"], what="bad died")
    wait_for(lambda: statuses(shared_redis, namespace, "flaky") == ["failed", "dead"], what="flaky died")

    table = cli("dead", "-c", str(config)).stdout.splitlines()
    assert table[0].split() == ["ID", "DIED", "AFTER", "JOB", "REASON"]
    assert any("2 attempts" in line and " bad " in line for line in table)
    entries = {entry["job"]: entry for entry in json.loads(cli("dead", "-c", str(config), "--json").stdout)}
    assert entries["bad"]["died_at"].endswith("Z") and entries["bad"]["attempts"] == 2

    requeued = cli("dead", "retry", entries["bad"]["id"], "-c", str(config))
    assert requeued.returncode == 0 and requeued.stdout == f"requeued {entries['bad']['id']} to queue default\n"
    assert cli("dead", "-c", str(config), "retry", entries["flaky"]["id"]).returncode == 0
    wait_for(lambda: statuses(shared_redis, namespace, "bad") == ["failed", "failed", "dead", "failed", "dead"],
             what="bad died again")  # fmt: skip
    wait_for(lambda: statuses(shared_redis, namespace, "flaky") == ["failed", "dead", "succeeded"], what="flaky ran")
    records = {record["run_id"]: record for record in runs(shared_redis.client(), namespace, "bad")}
    assert records[f"{bad}#dead-2"]["reason"].endswith("of 2: no retries left")
    assert "attempt 3 (retried from dead letters; the job allows 2)" in records[f"{bad}#dead-3"]["reason"]

    dead_now = json.loads(cli("history", "-c", str(config), "--status", "dead", "--json").stdout)
    assert [record["run_id"] for record in dead_now] == [f"{bad}#dead-3", f"{bad}#dead-2"]
    shown = json.loads(cli("history", "-c", str(config), "flaky", "--json").stdout)
    assert next(r for r in shown if r["status"] == "dead")["succeeded_later"] == f"{flaky}#2"

    again = json.loads(cli("dead", "-c", str(config), "--json").stdout)
    assert [entry["fire_id"] for entry in again] == [bad]
    # A slow former owner of the fire writes its success after the fire died (a reclaim race): not dead now.
    store = RunStore(shared_redis.client(), Keys(namespace))
    late = {**records[f"{bad}#1"], "run_id": f"{bad}#9", "attempt": 9, "status": "succeeded", "error": None}
    store.write_record("bad", f"{bad}#9", json.dumps(late), 1)
    assert json.loads(cli("dead", "-c", str(config), "--json").stdout) == []
    assert [entry["fire_id"] for entry in json.loads(cli("dead", "-c", str(config), "--all", "--json").stdout)] == [bad]
    assert cli("dead", "drop", again[0]["id"], "-c", str(config)).returncode == 0
    audit = json.loads(cli("audit", "-c", str(config), "--json").stdout)
    events = [(record["event"], record.get("fire_id")) for record in audit if record["event"].startswith("dead-")]
    assert events == [("dead-drop", bad), ("dead-retry", flaky), ("dead-retry", bad)]
    assert all(record["user"] and record["host"] for record in audit if record["event"].startswith("dead-"))


def test_reading_the_output(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """history has SOURCE and STARTED and cuts with an ellipsis; show prints a traceback as lines; status is all
    UTC with the records' job digest; jobs fits the terminal unless --wide; trigger warns with no worker, and
    --wait prints the result and exits 1 when the run failed."""
    config = config_file(tmp_path, shared_redis, namespace, """
        talk: {call: tests.worker_jobs:long_text, every: 1h, timezone: Asia/Singapore}
        bad: {call: tests.worker_jobs:fail, every: 1h, retries: 0}
    """)  # fmt: skip
    lonely = cli("trigger", "-c", str(config), "talk", "--json")
    assert lonely.returncode == 0 and "no live worker consumes queue 'default'" in lonely.stderr
    assert json.loads(lonely.stdout)["fire_id"].startswith("talk@")
    daemons("worker", "-c", str(config), name="worker")
    wait_for(lambda: cli("workers", "-c", str(config), "--json").stdout.strip() not in ("", "[]"), what="a worker")
    waited = cli("trigger", "-c", str(config), "talk", "--wait", "--json")
    assert waited.returncode == 0 and "no live worker" not in waited.stderr
    result = json.loads(waited.stdout)["result"]
    assert result["status"] == "succeeded" and result["result"].startswith("word word")
    failed = cli("trigger", "-c", str(config), "bad", "--wait")
    assert failed.returncode == 1 and "RuntimeError: boom" in failed.stdout and "traceback:" in failed.stdout

    table = cli("history", "-c", str(config), "talk").stdout.splitlines()
    assert table[0].split()[:5] == ["RUN", "STATUS", "TRIGGER", "SOURCE", "STARTED"]
    assert table[1].rstrip().endswith("…") and result["started_at"] in table[1]
    bad_fire = json.loads(cli("history", "-c", str(config), "bad", "--json").stdout)[0]["fire_id"]
    shown = cli("show", "-c", str(config), bad_fire).stdout
    assert "Traceback (most recent call last):" in shown and "\\n" not in shown
    assert any(line.strip().startswith("raise RuntimeError(message)") for line in shown.splitlines())

    status = cli("status", "-c", str(config))
    assert "+08:00" not in status.stdout and "T" in status.stdout
    digests = {
        job["name"]: job["config_digest"]
        for job in json.loads(cli("status", "-c", str(config), "--json").stdout)["jobs"]
    }
    assert digests["talk"] == result["config_digest"]
    assert all(
        job["next_fire"].endswith("Z") for job in json.loads(cli("status", "-c", str(config), "--json").stdout)["jobs"]
    )

    narrow = cli("jobs", "-c", str(config), env={"COLUMNS": "90"}).stdout.splitlines()
    wide = cli("jobs", "-c", str(config), "--wide", env={"COLUMNS": "90"}).stdout.splitlines()
    assert max(map(len, narrow)) <= 90 < max(map(len, wide)) and "…" in "".join(narrow)


def test_dev_prints_only_runs_of_this_session(tmp_path: Path, shared_redis: RedisServer, namespace: str) -> None:
    """`beatd dev` against a Redis that holds earlier runs does not print them as new."""
    config = config_file(tmp_path, shared_redis, namespace, "tick: {call: tests.worker_jobs:noop, every: 500ms}")
    store = RunStore(shared_redis.client(), Keys(namespace))
    earlier = "tick@2026-01-01T00:00:00Z#1"
    record = {"run_id": earlier, "fire_id": earlier[:-2], "job": "tick", "scheduled_at": "2026-01-01T00:00:00Z",
              "trigger": "schedule", "attempt": 1, "status": "succeeded", "v": 1}  # fmt: skip
    store.write_record("tick", earlier, json.dumps(record), 1)
    process = subprocess.Popen(  # --duration is only a backstop: the test stops it at its first run
        [sys.executable, "-m", "beatd", "dev", "-c", str(config), "--redis-url", shared_redis.url, "--no-web",
         "--duration", "120"],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    assert process.stdout is not None
    seen = ""
    while "succeeded" not in seen:
        line = process.stdout.readline()
        assert line, f"beatd dev ended before a run succeeded: {seen}"
        seen += line
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0 and earlier not in seen + out
