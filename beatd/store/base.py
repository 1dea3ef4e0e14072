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
from typing import Any, cast
from urllib.parse import unquote, urlparse

import redis
import redis.cluster
import redis.exceptions
from redis.sentinel import MasterNotFoundError, Sentinel

from beatd.config.model import RedisSettings
from beatd.config.redis_urls import node_address
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
    "entry_order",
    "is_cluster",
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
    # Redis Cluster during a fail-over, once redis-py's own retries are spent: the cluster is down (a master
    # and its replicas gone), or a slot has no master yet.
    redis.exceptions.ClusterDownError,
    redis.exceptions.SlotNotCoveredError,
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
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as error:
        # RedisClusterException (the cluster client refusing keys of two slots, say) is no RedisError; one caused
        # by an outage ("Redis Cluster cannot be connected": no startup node answers) is an outage. A node that
        # turns replica in a fail-over ends the blocking reads it was serving with UNBLOCKED: an outage of a
        # moment (the next command follows the MOVED), not a refusal.
        if isinstance(error.__cause__, _UNAVAILABLE) or str(error).startswith("UNBLOCKED"):
            raise StoreUnavailable(f"Redis unavailable: {error}") from error
        raise StoreRejected(f"Redis refused the operation: {type(error).__name__}: {error}") from error


def connect(settings: RedisSettings | str, timeout: float = 2.0) -> redis.Redis:
    """A Redis client for the configured URL (or a bare URL), TLS options and Sentinel, with bounded timeouts.

    Behind Sentinel the client asks the sentinels for the master again after a failover; the errors in
    between are StoreUnavailable like any other outage. With ``cluster`` it is redis-py's ``RedisCluster``
    (seeded by the url and ``cluster_nodes``), which routes each command by the slot of its keys and follows
    the cluster's fail-overs; the store reaches a node itself only where redis-py's routing falls short
    (:class:`~beatd.store.codec.BatchScript`, :func:`redis_now`).
    """
    if isinstance(settings, str):
        settings = RedisSettings(url=settings)
    options = _options(settings, timeout)
    if settings.cluster:
        cluster: Any = redis.cluster.RedisCluster.from_url(
            settings.url, startup_nodes=_seeds(settings, redis.cluster.ClusterNode), **options
        )
        return cast(redis.Redis, cluster)  # it stands in for one: the store calls what both have (see is_cluster)
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
    if settings.cluster:
        import redis.asyncio.cluster

        seeds = _seeds(settings, redis.asyncio.cluster.ClusterNode)
        return redis.asyncio.cluster.RedisCluster.from_url(settings.url, startup_nodes=seeds, **options)
    if settings.sentinel is None:
        return redis.asyncio.Redis.from_url(settings.url, **options)
    return _sentinel_master(settings, options, timeout, redis.asyncio.sentinel.Sentinel)


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a Redis Cluster client (redis-py's or redis.asyncio's ``RedisCluster``)."""
    return hasattr(client, "get_node_from_key")


def _seeds(settings: RedisSettings, node: Any) -> list[Any]:
    """The cluster nodes of ``redis.cluster_nodes`` (``node``: the ClusterNode class of the client), tried
    after the url's."""
    return [node(*node_address(address)) for address in settings.cluster_nodes]


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
        """Every member's last heartbeat, stale ones included (callers judge by age). One that is not a JSON
        object with a ``heartbeat_at`` (written by something else) is left out, so one bad field cannot stop
        every reader (a sharded beat's lease plan, ``beatd status``); the leader's upkeep deletes it once it has
        not changed for ``HEARTBEAT_FORGET_AFTER``."""
        with reachable():
            raw = self.client.hgetall(self.key)
        found = {}
        for member, value in raw.items():
            try:
                record = json.loads(value)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("heartbeat_at"), str):
                found[member] = record
        return found

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


def redis_now(client: Any, key: str | None = None) -> datetime:
    """Redis's clock now (``TIME``, ms precision): what commands stamp fires with and judge heartbeats by, so
    every command agrees with the leader and the workers' deadline check, whatever the host's clock says.

    On a Redis Cluster each master has its own clock: ``key`` (one of a shard's keys) picks the master that
    holds it, whose clock that shard's scripts read (redis-py would send TIME to its default node)."""
    with reachable():
        if key is not None and is_cluster(client):
            seconds, micros = client.time(target_nodes=client.get_node_from_key(key))
        else:
            seconds, micros = client.time()
    return _EPOCH + timedelta(milliseconds=int(seconds) * 1000 + int(micros) // 1000)


def entry_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id (``MS-SEQ``, or ``MS``) as numbers, to merge the entries of several streams by id (the
    ms part is when its server appended it; the shards of one server share its clock)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
