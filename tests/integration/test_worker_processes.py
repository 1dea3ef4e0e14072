"""Job processes die with their worker: a worker killed with SIGKILL leaves no callable child, fork server,
command or grandchild of a command running."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import Daemon, wait_for
from tests.integration.test_worker import config_file, enqueue, lines
from tests.redis_server import RedisServer

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PDEATHSIG is Linux's")


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def in_group(group: int) -> list[int]:
    """Live processes whose process group is ``group``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == group and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def group_of(pid: int) -> int:
    """The process group of a live process."""
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[2])


def test_kill_9_of_the_worker_kills_its_job_processes(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """After kill -9 of a worker running a callable (process isolation) and a shell command with a background
    grandchild, every job process, the fork server and the command's whole process group are gone within a
    few seconds (well before the runs' leases end and a rerun could start)."""
    callable_log, command_log = tmp_path / "callable.jsonl", tmp_path / "command.pids"
    config = config_file(tmp_path, shared_redis, namespace, f"""
        hang: {{call: tests.worker_jobs:write_pids_and_hang, kwargs: {{log: '{callable_log}'}}, every: 1h,
                timeout: 5m}}
        shell: {{command: "echo $$ >> {command_log}; sleep 60 & echo $! >> {command_log};
                 sh -c 'echo $$ >> {command_log}; exec sleep 60'", shell: true, every: 1h,
                 timeout: 5m}}
    """)  # fmt: skip
    worker = daemons("worker", "-c", str(config), "--isolation", "process", name="worker")
    enqueue(config, "hang")
    enqueue(config, "shell")
    child = wait_for(lambda: lines(callable_log), timeout=30, what="the callable started")[0]
    wait_for(
        lambda: command_log.exists() and len(command_log.read_text().split()) == 3,
        timeout=30,
        what="the shell, its background and foreground sleep",
    )
    command_pids = [int(pid) for pid in command_log.read_text().split()]
    group = group_of(command_pids[0])
    watched = [child["pid"], child["parent"], *command_pids]
    assert all(running(pid) for pid in watched) and group != group_of(worker.pid)
    worker.signal(signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: not any(running(pid) for pid in watched), timeout=5, what=f"job processes {watched} gone")
    gone_after = time.monotonic() - killed
    wait_for(lambda: not in_group(group), timeout=5, what=f"process group {group} empty")
    print(f"job processes gone {gone_after:.3f}s after kill -9 of the worker")
    assert gone_after < 5
