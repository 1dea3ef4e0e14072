"""The private redis-server of beatd, plus a client for assertions."""

from __future__ import annotations

import redis

from beatd.localredis import RedisServer as _RedisServer

__all__ = ["RedisServer"]


class RedisServer(_RedisServer):
    """A real redis-server on a free port (no fakes), with a decoding client for tests."""

    def client(self) -> redis.Redis:
        """A decoding client to this server."""
        return redis.Redis(port=self.port, decode_responses=True)
