"""Everything beatd keeps in Redis. The only module that imports redis; Lua comes from ``beatd/lua``.

Redis errors that mean "not reachable right now" become :class:`StoreUnavailable`, which daemons treat as
a reason to back off and retry, never to crash.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import redis
import redis.exceptions

from beatd.errors import BeatdError
from beatd.keys import Keys

__all__ = ["AUDIT_MAXLEN", "ApplyResult", "Op", "Store", "StoreUnavailable", "connect"]

AUDIT_MAXLEN = 10_000
"""Audit records kept (approximately: Redis trims whole nodes)."""

BATCH_LIMIT = 1000
"""Most operations sent in one atomic script call."""


class StoreUnavailable(BeatdError):
    """Redis cannot be reached (connection refused, timeout, loading, failover in progress)."""


_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    OSError,
)


@contextmanager
def _reachable() -> Iterator[None]:
    try:
        yield
    except _UNAVAILABLE as error:
        raise StoreUnavailable(f"Redis unavailable: {error}") from error


def connect(url: str, timeout: float = 2.0) -> redis.Redis:
    """A Redis client for ``url`` (``redis://``, ``rediss://``, ``unix://``) with bounded timeouts."""
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True)


@dataclass(frozen=True)
class Op:
    """One fenced write of the leader: ``emit`` a message, record a ``miss``, or set a ``base`` line."""

    kind: Literal["emit", "miss", "base"]
    job: str
    scheduled_ms: int
    stream: str  # a full key, from Keys; "" for base
    maxlen: int
    payload: str


@dataclass(frozen=True)
class ApplyResult:
    """What a batch did; ``leader`` False means the lease was lost and nothing was written."""

    leader: bool
    emitted: int = 0
    missed: int = 0
    duplicates: int = 0


def _script(name: str) -> str:
    return (resources.files("beatd") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


class Store:
    """beatd's state in one Redis namespace."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        # Typed as Any: redis-py types replies as bytes | str for both decode modes; ours decodes to str.
        self.client: Any = client
        self.keys = keys
        self._acquire = client.register_script(_script("acquire"))
        self._renew = client.register_script(_script("renew"))
        self._release = client.register_script(_script("release"))
        self._emit = client.register_script(_script("emit"))
        self._resume = client.register_script(_script("resume"))

    # -- the lease ---------------------------------------------------------------------------------------
    def acquire(self, replica: str, lease_ms: int, record: dict[str, Any]) -> str | None:
        """Take the lease if free; return the fencing token, or None when another replica holds it."""
        with _reachable():
            token = self._acquire(
                keys=[self.keys.leader, self.keys.epoch, self.keys.audit],
                args=[replica, lease_ms, json.dumps(record), AUDIT_MAXLEN],
            )
        return str(token) if token else None

    def renew(self, token: str, lease_ms: int) -> bool:
        """Extend the lease; False when ``token`` no longer holds it."""
        with _reachable():
            return bool(self._renew(keys=[self.keys.leader], args=[token, lease_ms]))

    def release(self, token: str) -> bool:
        """Give the lease up; False when ``token`` did not hold it."""
        with _reachable():
            return bool(self._release(keys=[self.keys.leader], args=[token]))

    def leader(self) -> tuple[str, int] | None:
        """The current fencing token and the lease's remaining ms, or None when nobody leads."""
        with _reachable():
            pipe = self.client.pipeline(transaction=False)
            pipe.get(self.keys.leader)
            pipe.pttl(self.keys.leader)
            token, ttl = pipe.execute()
        return (str(token), int(ttl)) if token else None

    # -- progress and emission ---------------------------------------------------------------------------
    def progress(self, jobs: Sequence[str] | None = None) -> dict[str, int]:
        """Last passed scheduled instant (epoch ms) per job; all jobs, or only ``jobs``."""
        with _reachable():
            if jobs is None:
                raw = self.client.hgetall(self.keys.progress)
                return {job: int(value) for job, value in raw.items()}
            values = self.client.hmget(self.keys.progress, list(jobs)) if jobs else []
        return {job: int(value) for job, value in zip(jobs, values, strict=True) if value is not None}

    def schedule_digests(self) -> dict[str, str]:
        """The schedule digest each job's progress belongs to."""
        with _reachable():
            return dict(self.client.hgetall(self.keys.schedules))

    def apply(self, token: str, ops: Sequence[Op]) -> ApplyResult:
        """Apply ``ops`` in order, each batch atomically and fenced by ``token`` (see ``lua/emit.lua``)."""
        total = ApplyResult(leader=True)
        for start in range(0, len(ops), BATCH_LIMIT):
            result = self._apply_batch(token, ops[start : start + BATCH_LIMIT])
            if not result.leader:
                return ApplyResult(False, total.emitted, total.missed, total.duplicates)
            total = ApplyResult(
                True, total.emitted + result.emitted, total.missed + result.missed, total.duplicates + result.duplicates
            )
        return total

    def _apply_batch(self, token: str, ops: Sequence[Op]) -> ApplyResult:
        keys = [self.keys.leader, self.keys.progress, self.keys.schedules, self.keys.last]
        index: dict[str, int] = {}
        args: list[Any] = [token]
        for op in ops:
            if op.stream and op.stream not in index:
                keys.append(op.stream)
                index[op.stream] = len(keys)
            args.extend((op.kind, op.job, op.scheduled_ms, index.get(op.stream, 1), op.maxlen, op.payload))
        with _reachable():
            reply = self._emit(keys=keys, args=args)
        if int(reply[0]) == -1:
            return ApplyResult(leader=False)
        return ApplyResult(True, int(reply[0]), int(reply[1]), int(reply[2]))

    def last_emitted(self) -> dict[str, dict[str, Any]]:
        """The last message emitted per job."""
        with _reachable():
            raw = self.client.hgetall(self.keys.last)
        return {job: json.loads(value) for job, value in raw.items()}

    def enqueue(self, queue: str, message: str, audit: dict[str, Any]) -> str:
        """Append a manual or backfill message to ``queue`` together with its audit record; return its id."""
        with _reachable():
            pipe = self.client.pipeline(transaction=True)
            pipe.xadd(self.keys.queue(queue), {"message": message})
            pipe.xadd(self.keys.audit, {"event": audit["event"], "record": json.dumps(audit)}, maxlen=AUDIT_MAXLEN)
            entry_id, _ = pipe.execute()
        return str(entry_id)

    def queue_lengths(self, queues: Sequence[str]) -> dict[str, int]:
        """Entries in each queue stream."""
        with _reachable():
            pipe = self.client.pipeline(transaction=False)
            for queue in queues:
                pipe.xlen(self.keys.queue(queue))
            return dict(zip(queues, (int(length) for length in pipe.execute()), strict=True))

    def read_queue(self, queue: str, count: int = 1000) -> list[tuple[str, str]]:
        """The oldest ``count`` entries of a queue as (entry id, message JSON); for tests and tools."""
        with _reachable():
            entries = self.client.xrange(self.keys.queue(queue), count=count)
        return [(str(entry_id), str(fields["message"])) for entry_id, fields in entries]

    # -- pause -------------------------------------------------------------------------------------------
    def paused(self) -> dict[str, dict[str, Any]]:
        """Paused jobs and their pause records."""
        with _reachable():
            raw = self.client.hgetall(self.keys.paused)
        return {job: json.loads(value) for job, value in raw.items()}

    def pause(self, job: str, record: dict[str, Any]) -> bool:
        """Pause ``job``; False when it was already paused. The pause is audited in the same transaction."""
        with _reachable():
            pipe = self.client.pipeline(transaction=True)
            pipe.hsetnx(self.keys.paused, job, json.dumps(record))
            pipe.xadd(self.keys.audit, {"event": "pause", "record": json.dumps(record)}, maxlen=AUDIT_MAXLEN)
            added, _ = pipe.execute()
        return bool(added)

    def resume(self, job: str, now_ms: int, record: dict[str, Any]) -> bool:
        """Resume ``job`` with no catch-up of the paused period; False when it was not paused."""
        with _reachable():
            return bool(
                self._resume(
                    keys=[self.keys.paused, self.keys.progress, self.keys.audit],
                    args=[job, now_ms, json.dumps(record), AUDIT_MAXLEN],
                )
            )

    # -- audit and replicas ------------------------------------------------------------------------------
    def audit(self, record: dict[str, Any]) -> None:
        """Append an audit record (its ``event`` names what happened)."""
        with _reachable():
            self.client.xadd(
                self.keys.audit, {"event": record["event"], "record": json.dumps(record)}, maxlen=AUDIT_MAXLEN
            )

    def read_audit(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` audit records, newest first, each with its stream ``id``."""
        with _reachable():
            entries = self.client.xrevrange(self.keys.audit, count=limit)
        return [
            {"id": entry_id, "event": fields["event"], **json.loads(fields["record"])} for entry_id, fields in entries
        ]

    def heartbeat(self, replica: str, record: dict[str, Any]) -> None:
        """Publish this replica's heartbeat."""
        with _reachable():
            self.client.hset(self.keys.replicas, replica, json.dumps(record))

    def replicas(self) -> dict[str, dict[str, Any]]:
        """Every replica's last heartbeat, stale ones included (callers judge by age)."""
        with _reachable():
            raw = self.client.hgetall(self.keys.replicas)
        return {replica: json.loads(value) for replica, value in raw.items()}

    def forget_replicas(self, replicas: Sequence[str]) -> None:
        """Drop heartbeats of replicas that are long gone."""
        if replicas:
            with _reachable():
                self.client.hdel(self.keys.replicas, *replicas)

    def runs(self, job: str, limit: int = 100) -> list[dict[str, Any]]:
        """The newest run records of ``job``, newest first."""
        with _reachable():
            entries = self.client.xrevrange(self.keys.runs(job), count=limit)
        return [json.loads(fields["record"]) for _, fields in entries]
