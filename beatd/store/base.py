"""Connecting to Redis, loading Lua, and turning "Redis is unreachable" into one exception.

The ``beatd.store`` package is the only code that imports redis. Redis errors that mean "not reachable right
now" become :class:`StoreUnavailable`, which daemons treat as a reason to back off and retry, never to crash.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

import redis
import redis.exceptions

from beatd.errors import BeatdError

__all__ = ["StoreError", "StoreRejected", "StoreUnavailable", "connect", "reachable", "script"]


class StoreError(BeatdError):
    """A Redis operation failed; daemons log it, back off and try again, they never crash on it."""


class StoreUnavailable(StoreError):
    """Redis cannot be reached (connection refused, timeout, loading, failover in progress)."""


class StoreRejected(StoreError):
    """Redis refused an operation (out of memory, a key of the wrong type, no permission, ...)."""


_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    OSError,
)


@contextmanager
def reachable() -> Iterator[None]:
    """Turn Redis errors into StoreUnavailable (cannot reach) or StoreRejected (refused), cause chained."""
    try:
        yield
    except _UNAVAILABLE as error:
        raise StoreUnavailable(f"Redis unavailable: {error}") from error
    except redis.exceptions.RedisError as error:
        raise StoreRejected(f"Redis refused the operation: {type(error).__name__}: {error}") from error


def connect(url: str, timeout: float = 2.0) -> redis.Redis:
    """A Redis client for ``url`` (``redis://``, ``rediss://``, ``unix://``) with bounded timeouts."""
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True)


def script(name: str) -> str:
    """The text of ``beatd/lua/NAME.lua``."""
    return (resources.files("beatd") / "lua" / f"{name}.lua").read_text(encoding="utf-8")
