"""The private redis-server of ``beatd dev``, the tests and the benchmarks: what it keeps, and at what cost."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.redis_server import RedisServer


def test_every_acknowledged_write_survives_a_kill_9_without_an_fsync_per_write(tmp_path: Path) -> None:
    """The server writes its AOF without an fsync per command (``always`` stalled every private Redis on a
    busy disk at once: the suite's Redis timeouts), yet each write a client heard back from is in the file:
    a kill -9 and a restart on the same data keep all of them."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        client = server.client()
        assert client.config_get("appendfsync") == {"appendfsync": "no"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        for index in range(2000):
            client.xadd("stream", {"n": str(index)})
        client.hset("hash", mapping={str(index): "x" for index in range(500)})
        client.close()
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
        server.process = None
        server.start()
        client = server.client()
        assert client.xlen("stream") == 2000
        assert client.xrevrange("stream", count=1)[0][1] == {"n": "1999"}
        assert client.hlen("hash") == 500
    finally:
        server.stop()


def test_a_port_taken_before_the_first_start_is_given_up_for_another(tmp_path: Path) -> None:
    """Another process may bind the free port chosen for a server before it starts (parallel tests): the first
    start then takes another free port instead of failing; a restart keeps the port it has."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = RedisServer(tmp_path / "redis", port=port)
        server.start()
        try:
            assert server.port != port and server.client().ping()
            first = server.port
            server.stop()
            server.start()
            assert server.port == first
        finally:
            server.stop()
