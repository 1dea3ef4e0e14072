"""Run output against a real `beatd worker` and redis-server: what jobs print, write to stderr, warn and log is
kept (its end) in the run record, shown by `show` and `logs`, and streamed live by `logs --follow`."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from beatd import defaults
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
