"""Run output against a real `beatd worker` and redis-server: what jobs print, write to stderr, warn and log is
kept (its end) in the run record, shown by `show` and `logs`, and streamed live by `logs --follow`."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from beatd import defaults
from beatd.keys import Keys
from beatd.messages import format_utc
from beatd.store import RunStore
from beatd.worker.executor import ChildExecutor
from tests.conftest import REPO
from tests.integration.conftest import Daemon, wait_for
from tests.integration.helpers import runs
from tests.integration.test_beat_operations import cli
from tests.integration.test_worker import enqueue, statuses
from tests.redis_server import RedisServer


def config_file(tmp_path: Path, server: RedisServer, namespace: str, jobs: str, worker: str = "") -> Path:
    """A worker config; ``worker`` adds settings to ``worker:`` (YAML flow items)."""
    path = tmp_path / "beatd.yaml"
    body = textwrap.indent(textwrap.dedent(jobs).strip("\n"), "  ")
    path.write_text(
        f"redis: {{url: '{server.url}'}}\nnamespace: {namespace}\npythonpath: ['{REPO}']\n"
        f"worker: {{kill_grace: 500ms, concurrency: 2{', ' + worker if worker else ''}}}\njobs:\n{body}\n"
    )
    return path


def record(server: RedisServer, namespace: str, job: str) -> dict[str, object]:
    """The one run record of ``job``."""
    found = runs(server.client(), namespace, job)
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_what_a_callable_writes_and_logs_is_kept_and_not_in_the_worker_log(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon], isolation: str
) -> None:
    """print, stderr, a warning, ctx.logger and a library's logger land in the record's output in order (with
    either isolation); none of it reaches the worker's log bare, and the worker's line about the run names it."""
    config = config_file(tmp_path, shared_redis, namespace, """
        chatty: {call: tests.output_jobs:chatty, every: 1h}
    """)  # fmt: skip
    worker = daemons("worker", "-c", str(config), "--isolation", isolation, name="worker")
    fire = enqueue(config, "chatty")
    wait_for(lambda: statuses(shared_redis, namespace, "chatty") == ["succeeded"], what="chatty ran")
    output = str(record(shared_redis, namespace, "chatty")["output"])
    expected = [
        "printed line",
        "stderr line",
        "UserWarning: careful now",
        f"INFO beatd.job.chatty: logged by {fire}#1",
        "WARNING some.library: a library warns",
    ]
    positions = [output.find(text) for text in expected]
    assert -1 not in positions and positions == sorted(positions), output
    worker.wait_log(re.escape(f"chatty run {fire}#1 succeeded"))
    log = worker.log()
    assert not any(text in log for text in ("printed line", "stderr line", "careful now", "logged by", "library"))


def test_each_run_in_a_reused_child_shows_its_warnings(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """Two runs in one process-isolation child (one runner) both have the job's warning in their output."""
    config = config_file(tmp_path, shared_redis, namespace, """
        chatty: {call: tests.output_jobs:chatty, every: 1h}
    """)  # fmt: skip
    daemons("worker", "-c", str(config), "--concurrency", "1", name="worker")
    for count in (1, 2):
        enqueue(config, "chatty")
        wait_for(lambda count=count: statuses(shared_redis, namespace, "chatty") == ["succeeded"] * count, what="ran")
    outputs = [str(found["output"]) for found in runs(shared_redis.client(), namespace, "chatty")]
    assert all("UserWarning: careful now" in output for output in outputs), outputs


def test_a_commands_stdout_and_stderr_are_kept(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A command job's stdout and stderr both land in the record's output."""
    config = config_file(tmp_path, shared_redis, namespace, """
        shout: {command: "sh -c 'echo to out; echo to err >&2'", every: 1h}
    """)  # fmt: skip
    daemons("worker", "-c", str(config), name="worker")
    enqueue(config, "shout")
    wait_for(lambda: statuses(shared_redis, namespace, "shout") == ["succeeded"], what="shout ran")
    output = str(record(shared_redis, namespace, "shout")["output"])
    assert "to out\n" in output and "to err\n" in output


def test_the_tail_is_bounded_keeps_the_end_and_says_it_was_cut(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """With worker.output_tail (a callable) and a job's output.tail (a command), the record keeps the last
    bytes only, starting with a line saying how many were cut, and is flagged output_truncated."""
    config = config_file(tmp_path, shared_redis, namespace, """
        many: {call: tests.output_jobs:numbered, kwargs: {count: 2000}, every: 1h}
        seq: {command: [seq, 1, 5000], every: 1h, output: {tail: 100}}
        few: {call: tests.output_jobs:numbered, kwargs: {count: 3}, every: 1h}
    """, worker="output_tail: 300")  # fmt: skip
    daemons("worker", "-c", str(config), name="worker")
    for job in ("many", "seq", "few"):
        enqueue(config, job)
    for job in ("many", "seq", "few"):
        wait_for(lambda job=job: statuses(shared_redis, namespace, job) == ["succeeded"], what=f"{job} ran")
    for job, limit, last, total in (("many", 300, "line 01999\n", 2000 * 11), ("seq", 100, "4999\n5000\n", 23893)):
        kept = record(shared_redis, namespace, job)
        marker, _, tail = str(kept["output"]).partition("\n")
        assert kept["output_truncated"] is True
        assert marker == f"[... {total - limit} earlier bytes not kept ...]"
        assert len(tail.encode()) == limit and tail.endswith(last)
    few = record(shared_redis, namespace, "few")
    assert few["output"] == "line 00000\nline 00001\nline 00002\n" and "output_truncated" not in few


def test_a_failed_run_is_logged_at_warning_with_its_error_and_show_and_logs_print_its_output(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """The worker logs a failed run at WARNING with its error, naming the run (with --log-format json also as a
    field of the line); `beatd show` and `beatd logs` (by fire id and by run id) print what it wrote."""
    config = config_file(tmp_path, shared_redis, namespace, """
        breaks: {call: tests.output_jobs:chatty_failure, every: 1h}
    """)  # fmt: skip
    worker = daemons("worker", "-c", str(config), "--log-format", "json", name="worker")
    fire = enqueue(config, "breaks")
    worker.wait_log(re.escape(f'"run_id": "{fire}#1"'))
    [line] = [json.loads(line) for line in worker.log().splitlines() if f'"run_id": "{fire}#1"' in line]
    assert (line["level"], line["job"], line["status"]) == ("warning", "breaks", "failed")
    assert re.fullmatch(
        rf"breaks run {re.escape(fire)}#1 failed in [0-9.]+s: ValueError: the data is wrong", line["message"]
    )
    shown = cli("show", "-c", str(config), f"{fire}#1")
    assert shown.returncode == 0 and "          output:\n                  about to fail\n" in shown.stdout
    for identifier in (fire, f"{fire}#1"):
        printed = cli("logs", "-c", str(config), identifier)
        assert (printed.returncode, printed.stdout) == (0, "about to fail\n")
    assert cli("logs", "-c", str(config), "breaks@nope").returncode == 2


class Lines:
    """The lines a subprocess prints, read by a thread so a test can wait for each with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.seen: queue.SimpleQueue[str] = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.seen.put(line)

    def next(self, timeout: float = 15.0) -> str:
        """The next line, failing the test if none comes in time."""
        try:
            return self.seen.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no line from {self.process.args} within {timeout}s")


@pytest.mark.parametrize(
    ("isolation", "target"),
    [
        ("process", "call: tests.output_jobs:gated, kwargs: {gate: 'GATE'}"),
        ("thread", "call: tests.output_jobs:gated, kwargs: {gate: 'GATE'}"),
        ("process", """command: "sh -c 'echo before the gate; until [ -e GATE ]; do sleep 0.02; done; echo after'\""""),
    ],
    ids=["process", "thread", "command"],
)
def test_logs_follow_streams_a_running_run_and_returns_when_it_ends(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon], isolation: str,
    target: str,
) -> None:  # fmt: skip
    """`beatd logs FIRE --follow` prints a line of a running job while the job still waits, then the rest, and
    exits 0 when the run ends."""
    gate = tmp_path / "gate"
    config = config_file(tmp_path, shared_redis, namespace, f"""
        waits: {{{target.replace("GATE", str(gate))}, every: 1h, timeout: 1m}}
    """)  # fmt: skip
    daemons("worker", "-c", str(config), "--isolation", isolation, name="worker")
    fire = enqueue(config, "waits")
    wait_for(lambda: statuses(shared_redis, namespace, "waits") == ["running"], what="the run started")
    environment = {key: value for key, value in os.environ.items() if not key.startswith("BEATD_")}
    follow = subprocess.Popen(
        [sys.executable, "-m", "beatd", "logs", "-c", str(config), fire, "--follow"],
        cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines = Lines(follow)
        assert lines.next() == "before the gate\n"
        assert statuses(shared_redis, namespace, "waits") == ["running"]  # streamed while the job waits
        gate.touch()
        rest = [lines.next()]
        while not rest[-1].startswith("after"):
            rest.append(lines.next())
        assert follow.wait(15) == 0
        assert follow.stderr is not None and f"run {fire}#1 succeeded" in follow.stderr.read()
        if isolation == "thread" or "call:" in target:
            assert rest[0] == "INFO beatd.job.waits: waiting at the gate\n"
        ttl = shared_redis.client().pttl(f"{namespace}:output:{fire}#1")  # the live stream goes soon after the run
        assert 0 < ttl <= defaults.OUTPUT_STREAM_TTL_ENDED.total_seconds() * 1000
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()


def test_logs_follow_of_a_run_that_writes_nothing_returns_when_it_ends(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A silent run has no live stream: `logs --follow`, blocked reading it, sees the run's end in its record
    and returns."""
    gate = tmp_path / "gate"
    config = config_file(tmp_path, shared_redis, namespace, f"""
        quiet: {{command: "sh -c 'until [ -e {gate} ]; do sleep 0.02; done'", every: 1h}}
    """)  # fmt: skip
    daemons("worker", "-c", str(config), name="worker")
    fire = enqueue(config, "quiet")
    wait_for(lambda: statuses(shared_redis, namespace, "quiet") == ["running"], what="the run started")
    environment = {key: value for key, value in os.environ.items() if not key.startswith("BEATD_")}
    follow = subprocess.Popen(
        [sys.executable, "-m", "beatd", "logs", "-c", str(config), fire, "--follow"],
        cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        client = shared_redis.client()
        wait_for(lambda: any(c["cmd"] == "xread" for c in client.client_list()), what="logs --follow reading")
        gate.touch()
        out, err = follow.communicate(timeout=15)
        assert (follow.returncode, out) == (0, "") and f"run {fire}#1 succeeded" in err
        assert client.exists(f"{namespace}:output:{fire}#1") == 0
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_bytes_and_click_echo_reach_the_output(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon], isolation: str
) -> None:
    """click.echo (text and bytes), sys.stdout.buffer (a character split across writes), reconfigure and
    line_buffering work in a run, and what they write is its output."""
    config = config_file(tmp_path, shared_redis, namespace, """
        binary: {call: tests.output_jobs:binary, every: 1h}
    """)  # fmt: skip
    daemons("worker", "-c", str(config), "--isolation", isolation, name="worker")
    enqueue(config, "binary")
    wait_for(lambda: statuses(shared_redis, namespace, "binary") not in ([], ["running"]), what="binary ran")
    found = record(shared_redis, namespace, "binary")
    assert found["status"] == "succeeded", found
    assert found["output"] == "click text\nclick bytes\ncafé bytes\nline buffering: False\n"


def test_a_handler_a_job_module_adds_at_import_writes_into_the_run(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """Thread isolation: a StreamHandler a job module creates when the worker's check imports it writes to
    the run's output (it holds the routed sys.stderr), not to the worker's log."""
    config = config_file(tmp_path, shared_redis, namespace, """
        handled: {call: tests.output_handler_jobs:logs_through_its_handler, every: 1h}
    """)  # fmt: skip
    worker = daemons("worker", "-c", str(config), "--isolation", "thread", name="worker")
    fire = enqueue(config, "handled")
    wait_for(lambda: statuses(shared_redis, namespace, "handled") == ["succeeded"], what="handled ran")
    output = str(record(shared_redis, namespace, "handled")["output"])
    assert "own handler: through the handler\n" in output
    assert "WARNING tests.handler_job: through the handler\n" in output
    worker.wait_log(re.escape(f"handled run {fire}#1 succeeded"))
    assert "through the handler" not in worker.log()


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_a_child_printing_as_fast_as_it_can_is_still_timed_out_and_cancelled(how: str) -> None:
    """A process-isolation child whose output keeps the worker busy (a slow sink) ends at its timeout, or when
    stopped, not never."""
    stop = threading.Event()
    bail = time.monotonic() + 30
    passed_on = 0

    def slow_sink(stream: str, text: str) -> None:
        nonlocal passed_on
        passed_on += 1
        time.sleep(0.005)  # slower than the child writes: a message is always waiting
        if time.monotonic() > bail:
            raise AssertionError("the run was never timed out nor cancelled")

    executor = ChildExecutor()
    task = {"target": "tests.output_jobs:flood", "args": [], "kwargs": {}, "pythonpath": [str(REPO)]}
    warm = {"target": "tests.output_jobs:quiet", "args": [], "kwargs": {}, "pythonpath": [str(REPO)]}
    try:
        assert executor.run(warm, 30.0, stop, 0.5, slow_sink).status == "succeeded"  # the child is up and imported
        if how == "cancel":
            threading.Timer(1.0, stop.set).start()
        started = time.monotonic()
        outcome = executor.run(task, 1.0 if how == "timeout" else 60.0, stop, 0.5, slow_sink)
    finally:
        executor.close()
    assert outcome.status == ("timeout" if how == "timeout" else "cancelled")
    assert time.monotonic() - started < 15 and passed_on > 50


def test_a_child_hands_over_its_output_in_batches() -> None:
    """A thousand prints of a process-isolation run reach the worker in a few hand-overs, whole and in order."""
    calls: list[str] = []
    executor = ChildExecutor()
    context = {"run_id": "j@x#1", "fire_id": "j@x", "job": "j", "scheduled_at": "2026-01-01T00:00:00+00:00",
               "timezone": "UTC", "attempt": 1, "trigger": "schedule"}  # fmt: skip
    task = {
        "target": "tests.output_jobs:numbered", "args": [], "kwargs": {"count": 1000}, "pythonpath": [str(REPO)],
        "context": context,
    }  # fmt: skip
    try:
        outcome = executor.run(task, 30.0, threading.Event(), 0.5, lambda stream, text: calls.append(text))
    finally:
        executor.close()
    assert outcome.status == "succeeded"
    assert "".join(calls) == "".join(f"line {number:05d}\n" for number in range(1000))
    assert len(calls) < 50, len(calls)


def test_logs_without_follow_prints_the_newest_of_a_stream_longer_than_one_read(
    shared_redis: RedisServer, namespace: str
) -> None:
    """The live stream's cap is approximate: reading a running run's output reads on past the first page,
    to its newest entry."""
    store = RunStore(shared_redis.client(), Keys(namespace))
    count = defaults.OUTPUT_STREAM_MAXLEN + 50  # under the cap plus one node of the stream: nothing trimmed
    store.append_output({"j@x#1": [json.dumps({"stream": "stdout", "text": f"{n}\n"}) for n in range(count)]})
    chunks = store.read_output("j@x#1")
    assert len(chunks) == count and json.loads(chunks[-1][1])["text"] == f"{count - 1}\n"
    assert [json.loads(text)["text"] for _, text in store.read_output("j@x#1", chunks[-3][0])] == [
        f"{count - 2}\n", f"{count - 1}\n",
    ]  # fmt: skip


@pytest.mark.parametrize("heartbeat", ["stale", "absent"])
def test_logs_follow_exits_1_when_the_runs_worker_is_killed(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon], heartbeat: str
) -> None:
    """`logs --follow` of a run whose worker was killed -9 (its record stays running) says the worker is gone
    and exits 1 once the worker's heartbeat is stale (aged past WORKER_STALE_AFTER here) or forgotten."""
    gate = tmp_path / "gate"
    config = config_file(tmp_path, shared_redis, namespace, f"""
        waits: {{call: tests.output_jobs:gated, kwargs: {{gate: '{gate}'}}, every: 1h, timeout: 1m}}
    """)  # fmt: skip
    worker = daemons("worker", "-c", str(config), name="worker")
    fire = enqueue(config, "waits")
    wait_for(lambda: statuses(shared_redis, namespace, "waits") == ["running"], what="the run started")
    environment = {key: value for key, value in os.environ.items() if not key.startswith("BEATD_")}
    follow = subprocess.Popen(
        [sys.executable, "-m", "beatd", "logs", "-c", str(config), fire, "--follow"],
        cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines = Lines(follow)
        assert lines.next() == "before the gate\n"
        assert lines.next() == "INFO beatd.job.waits: waiting at the gate\n"
        client, key = shared_redis.client(), f"{namespace}:workers"
        reads = int(client.info("commandstats").get("cmdstat_xread", {}).get("calls", 0))
        wait_for(
            lambda: client.info("commandstats")["cmdstat_xread"]["calls"] >= reads + 2, what="two reads of nothing"
        )
        assert follow.poll() is None  # the worker is alive: following goes on
        worker.signal(signal.SIGKILL)
        assert worker.process is not None and worker.process.wait(10) == -signal.SIGKILL
        [(name, beat)] = client.hgetall(key).items()
        if heartbeat == "stale":
            aged = datetime.now(UTC) - defaults.WORKER_STALE_AFTER - timedelta(seconds=5)
            client.hset(key, name, json.dumps({**json.loads(beat), "heartbeat_at": format_utc(aged)}))
        else:
            client.hdel(key, name)
        assert follow.wait(15) == 1
        assert follow.stderr is not None
        host_pid = record(shared_redis, namespace, "waits")["worker"]
        message = f"beatd: run {fire}#1: its worker {host_pid} is gone (the run will be recorded lost)\n"
        assert follow.stderr.read() == message
        assert statuses(shared_redis, namespace, "waits") == ["running"]
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
