"""Ctrl-C in a terminal (SIGINT to the whole foreground process group): the first drains like SIGTERM and
leaves job processes untouched; a second stops at once and hands the runs back; no traceback anywhere."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.conftest import Daemon, wait_for
from tests.integration.test_worker import config_file, enqueue, lines, statuses
from tests.redis_server import RedisServer


@pytest.fixture
def grouped(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``beatd`` commands each in a process group of its own (as a shell puts a foreground job), with
    stdout and stderr in ``NAME.log``; whatever is left is killed at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, name: str) -> subprocess.Popen[bytes]:
        environment = {key: value for key, value in os.environ.items() if not key.startswith(("BEATD_", "NOTIFY_"))}
        with (tmp_path / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "beatd", *args], cwd=REPO, env=environment, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def ctrl_c(process: subprocess.Popen[bytes]) -> None:
    """What a terminal does on Ctrl-C: SIGINT to every process of the foreground process group."""
    os.killpg(process.pid, signal.SIGINT)


def test_first_ctrl_c_drains_and_running_jobs_succeed(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, grouped: Callable[..., subprocess.Popen[bytes]]
) -> None:
    """One Ctrl-C to a worker's process group: a running callable (with an idle child beside it) and a running
    command finish and are recorded succeeded, the worker exits 0, and nothing prints a traceback."""
    log = tmp_path / "runs.jsonl"
    config = config_file(tmp_path, shared_redis, namespace, f"""
        quick: {{call: tests.worker_jobs:noop, every: 1h, overlap: allow}}
        long: {{call: tests.worker_jobs:sleep_and_log, kwargs: {{seconds: 2, log: '{log}'}}, every: 1h}}
        wait: {{command: "sh -c 'echo started >> {tmp_path}/command.log; sleep 2'", every: 1h}}
    """)  # fmt: skip
    worker = grouped("worker", "-c", str(config), "--concurrency", "3", "--grace", "30", name="worker")
    for _ in range(3):
        enqueue(config, "quick")
    wait_for(lambda: statuses(shared_redis, namespace, "quick") == ["succeeded"] * 3, timeout=30, what="quick")
    enqueue(config, "long")
    enqueue(config, "wait")
    wait_for(lambda: lines(log) and (tmp_path / "command.log").exists(), timeout=30, what="both jobs started")
    ctrl_c(worker)
    assert worker.wait(60) == 0
    assert statuses(shared_redis, namespace, "long") == ["succeeded"]
    assert statuses(shared_redis, namespace, "wait") == ["succeeded"]
    output = (tmp_path / "worker.log").read_text()
    assert "draining" in output and "Traceback" not in output and "KeyboardInterrupt" not in output, output


def test_second_ctrl_c_stops_at_once_and_hands_the_run_back(
    tmp_path: Path,
    shared_redis: RedisServer,
    namespace: str,
    grouped: Callable[..., subprocess.Popen[bytes]],
    daemons: Callable[..., Daemon],
) -> None:
    """A second Ctrl-C while draining stops the running job at once: it is recorded lost, its entry is handed
    back (another worker runs it as the next attempt within seconds), and nothing prints a traceback."""
    log = tmp_path / "runs.jsonl"
    config = config_file(tmp_path, shared_redis, namespace, f"""
        batch: {{call: tests.worker_jobs:slow_first_attempt, kwargs: {{seconds: 60, log: '{log}'}}, every: 1h}}
    """)  # fmt: skip
    worker = grouped("worker", "-c", str(config), "--grace", "60", name="worker")
    enqueue(config, "batch")
    wait_for(lambda: lines(log), timeout=30, what="attempt 1 started")
    ctrl_c(worker)
    wait_for(lambda: "draining" in (tmp_path / "worker.log").read_text(), timeout=30, what="draining")
    ctrl_c(worker)
    assert worker.wait(20) == 0
    assert statuses(shared_redis, namespace, "batch") == ["lost"]
    output = (tmp_path / "worker.log").read_text()
    assert "asked again to stop" in output and "Traceback" not in output, output
    daemons("worker", "-c", str(config), name="second")
    wait_for(lambda: statuses(shared_redis, namespace, "batch") == ["lost", "succeeded"], timeout=30, what="rerun")


def test_dev_stops_cleanly_on_one_ctrl_c(tmp_path: Path, grouped: Callable[..., subprocess.Popen[bytes]]) -> None:
    """One Ctrl-C to `beatd dev`'s process group: the running job finishes and is printed succeeded, the
    private Redis outlives the drain, `dev` exits 0, and nothing prints a traceback."""
    log = tmp_path / "runs.jsonl"
    config = tmp_path / "beatd.yaml"
    config.write_text(
        f"pythonpath: ['{REPO}']\nredis: {{url: '${{BEATD_REDIS_URL}}'}}\n"
        f"jobs:\n  long: {{call: tests.worker_jobs:sleep_and_log, kwargs: {{seconds: 2, log: '{log}'}}, every: 1s}}\n"
    )
    dev = grouped("dev", "-c", str(config), "--data-dir", str(tmp_path / "redis"), name="dev")
    started = wait_for(lambda: lines(log), timeout=60, what="a run started")[0]
    ctrl_c(dev)
    assert dev.wait(60) == 0
    output = (tmp_path / "dev.log").read_text()
    assert re.search(rf"succeeded .* {re.escape(started['run_id'])}", output), output
    assert "stopped" in output and "Traceback" not in output and "KeyboardInterrupt" not in output, output
