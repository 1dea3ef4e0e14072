"""Connecting to Redis, loading Lua, and turning "Redis is unreachable" into one exception.

The ``beatd.store`` package is the only code that imports redis. Redis errors that mean "not reachable right
now" become :class:`StoreUnavailable`, which daemons treat as a reason to back off and retry, never to crash.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlparse

import redis
import redis.exceptions
from redis.sentinel import MasterNotFoundError, Sentinel

from beatd.config.model import RedisSettings
from beatd.errors import BeatdError

__all__ = [
    "AUDIT_MAXLEN",
    "Heartbeats",
    "KeyTable",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "connect",
    "connect_async",
    "queue_lengths",
    "reachable",
    "redis_now",
    "script",
]


AUDIT_MAXLEN = 10_000
"""Audit records kept (approximately: Redis trims whole nodes)."""


class StoreError(BeatdError):
    """A Redis operation failed; daemons log it, back off and try again, they never crash on it."""


class StoreUnavailable(StoreError):
    """Redis cannot be reached (connection refused, timeout, loading, failover in progress)."""


class StoreRejected(StoreError):
    """Redis refused an operation (out of memory, a key of the wrong type, no permission, ...)."""


_UNAVAILABLE = (
    MasterNotFoundError,
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
        # redis-py's MasterNotFoundError text ends with the whole client's repr: keep the sentence only.
        raise StoreUnavailable(f"Redis unavailable: {str(error).split(' : <')[0]}") from error
    except redis.exceptions.RedisError as error:
        raise StoreRejected(f"Redis refused the operation: {type(error).__name__}: {error}") from error


def connect(settings: RedisSettings | str, timeout: float = 2.0) -> redis.Redis:
    """A Redis client for the configured URL (or a bare URL), TLS options and Sentinel, with bounded timeouts.

    Behind Sentinel the client asks the sentinels for the master again after a failover; the errors in
    between are StoreUnavailable like any other outage.
    """
    if isinstance(settings, str):
        settings = RedisSettings(url=settings)
    options = _options(settings, timeout)
    if settings.sentinel is None:
        return redis.Redis.from_url(settings.url, **options)
    client: redis.Redis = _sentinel_master(settings, options, timeout, Sentinel)
    return client


def connect_async(settings: RedisSettings | str, timeout: float = 2.0, read_timeout: float | None = None) -> Any:
    """:func:`connect` for asyncio: a ``redis.asyncio.Redis`` with the same URL, TLS options and Sentinel;
    ``read_timeout`` (default ``timeout``): how long a reply may take once sent, for callers that block."""
    import redis.asyncio
    import redis.asyncio.sentinel

    if isinstance(settings, str):
        settings = RedisSettings(url=settings)
    options = _options(settings, timeout) | {"socket_timeout": read_timeout or timeout}
    if settings.sentinel is None:
        return redis.asyncio.Redis.from_url(settings.url, **options)
    return _sentinel_master(settings, options, timeout, redis.asyncio.sentinel.Sentinel)


def _options(settings: RedisSettings, timeout: float) -> dict[str, Any]:
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout, "decode_responses": True}
    tls = settings.tls
    if settings.url.startswith("rediss://") or (settings.sentinel and settings.sentinel.tls):
        options |= {
            "ssl_ca_certs": tls.ca_file,
            "ssl_certfile": tls.cert_file,
            "ssl_keyfile": tls.key_file,
            "ssl_cert_reqs": "required" if tls.verify else "none",
            "ssl_check_hostname": tls.verify,
        }
    return options


def _sentinel_master(settings: RedisSettings, options: dict[str, Any], timeout: float, factory: Any) -> Any:
    """The master client behind ``settings.sentinel``, by ``factory`` (redis-py's or redis.asyncio's Sentinel)."""
    assert settings.sentinel is not None
    parsed = urlparse(settings.url)
    sentinel = settings.sentinel
    addresses = [(host.rpartition(":")[0], int(host.rpartition(":")[2])) for host in sentinel.hosts]
    sentinel_options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if sentinel.password:
        sentinel_options |= {"username": sentinel.username, "password": sentinel.password}
    if sentinel.tls:
        sentinel_options |= {key: value for key, value in options.items() if key.startswith("ssl")} | {"ssl": True}
    if parsed.scheme == "rediss":
        options["ssl"] = True
    database = int(parsed.path.lstrip("/") or 0) if parsed.scheme != "unix" else 0
    manager = factory(addresses, sentinel_kwargs=sentinel_options, **{
        key: value for key, value in options.items() if key != "decode_responses"
    })  # fmt: skip
    return manager.master_for(
        sentinel.master,
        decode_responses=True,
        db=database,
        username=unquote(parsed.username) if parsed.username else None,
        password=unquote(parsed.password) if parsed.password else None,
    )


def script(name: str, *, prelude: bool = True) -> str:
    """The text of ``beatd/store/lua/NAME.lua``, after the prelude every script shares (``_prelude.lua``)."""
    folder = resources.files("beatd.store") / "lua"
    text = (folder / f"{name}.lua").read_text(encoding="utf-8")
    return (folder / "_prelude.lua").read_text(encoding="utf-8") + text if prelude else text


class KeyTable:
    """The KEYS of one batched script call: fixed keys first, then each other key numbered when first named
    (the script's per-item values carry these numbers)."""

    def __init__(self, *fixed: str) -> None:
        self.keys = list(fixed)
        self._index = {key: number for number, key in enumerate(self.keys, 1)}

    def position(self, key: str) -> int:
        """The 1-based index of ``key`` in ``keys``, adding it if new."""
        number = self._index.get(key)
        if number is None:
            self.keys.append(key)
            number = self._index[key] = len(self.keys)
        return number


class Heartbeats:
    """A hash of JSON heartbeats (member -> record): beat replicas or workers."""

    def __init__(self, client: Any, key: str) -> None:
        self.client = client
        self.key = key

    def publish(self, member: str, record: dict[str, Any]) -> None:
        """Write ``member``'s heartbeat."""
        with reachable():
            self.client.hset(self.key, member, json.dumps(record))

    def read(self) -> dict[str, dict[str, Any]]:
        """Every member's last heartbeat, stale ones included (callers judge by age)."""
        with reachable():
            raw = self.client.hgetall(self.key)
        return {member: json.loads(value) for member, value in raw.items()}

    def forget(self, members: Sequence[str]) -> None:
        """Drop the heartbeats of members that are gone."""
        if members:
            with reachable():
                self.client.hdel(self.key, *members)


def append_audit(client: Any, key: str, record: dict[str, Any], maxlen: int) -> None:
    """Append ``record`` (its ``event`` names what happened) to the capped audit stream ``key``."""
    with reachable():
        client.xadd(key, {"event": record["event"], "record": json.dumps(record)}, maxlen=maxlen)


def queue_lengths(client: Any, streams: dict[str, str]) -> dict[str, int]:
    """Entries in each queue stream: ``streams`` maps queue name -> stream key."""
    with reachable():
        pipe = client.pipeline(transaction=False)
        for key in streams.values():
            pipe.xlen(key)
        return dict(zip(streams, (int(length) for length in pipe.execute()), strict=True))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def redis_now(client: Any) -> datetime:
    """Redis's clock now (``TIME``, ms precision): what commands stamp fires with and judge heartbeats by, so
    every command agrees with the leader and the workers' deadline check, whatever the host's clock says."""
    with reachable():
        seconds, micros = client.time()
    return _EPOCH + timedelta(milliseconds=int(seconds) * 1000 + int(micros) // 1000)
