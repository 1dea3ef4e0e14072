"""Fixtures for integration tests: real redis-server processes and real beatd processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.redis_cluster import RedisClusterProcesses, cluster_support
from tests.redis_server import RedisServer


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.02, what: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy or the deadline passes (then fail the test).

    The default deadline is generous: a passing test returns as soon as the condition holds, and a 2-core
    machine running three test processes can take many seconds to start a daemon."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the tests that do not stop it; each test uses its own namespace."""
    server = RedisServer(tmp_path_factory.mktemp("redis-shared"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for one test, which may stop and restart it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    """A real six-node Redis Cluster (3 masters, 3 replicas) for one test module; skipped where none can start."""
    reason = cluster_support()
    if reason is not None:
        pytest.skip(f"no local Redis Cluster: {reason}")
    cluster = RedisClusterProcesses(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}"


@dataclass
class Daemon:
    """A real ``beatd`` subprocess whose stderr goes to a file."""

    args: list[str]
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    _log: Any = field(default=None, repr=False)

    def start(self) -> Daemon:
        """Spawn the process."""
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "beatd", *self.args], cwd=REPO, env=self.env, stdout=self._log, stderr=self._log
        )
        return self

    @property
    def pid(self) -> int:
        """The process id."""
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        """Everything the process has logged so far."""
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Wait until a log line matches ``pattern``."""
        return wait_for(lambda: re.search(pattern, self.log()), timeout, what=f"log {pattern!r} in {self.log_path}")

    def signal(self, signum: int) -> None:
        """Send a signal."""
        assert self.process is not None
        self.process.send_signal(signum)

    def exited(self, timeout: float = 60.0) -> int:
        """Wait for the process to exit by itself (after the signal the test sent); its exit code. Not
        :meth:`stop`'s second SIGTERM: one landing while Python finalizes (its handlers reset to the default)
        kills the process, and the exit code is -15 instead of the daemon's own."""
        assert self.process is not None
        code = self.process.wait(timeout)
        if self._log:
            self._log.close()
        return int(code)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log:
            self._log.close()
        return int(self.process.returncode)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start ``beatd`` subprocesses; all are stopped at the end of the test."""
    started: list[Daemon] = []

    def start(*args: str, env: dict[str, str] | None = None, name: str = "beat") -> Daemon:
        environment = {key: value for key, value in os.environ.items() if not key.startswith(("BEATD_", "NOTIFY_"))}
        environment.update(env or {})
        daemon = Daemon(list(args), tmp_path / f"{name}-{len(started)}.log", environment).start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
