"""The beat's side of Redis: the lease, fenced emission, progress, pause state, heartbeats, the audit log."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis

from beatd.keys import Keys
from beatd.store.base import Heartbeats, KeyTable, queue_lengths, reachable, script

__all__ = ["AUDIT_MAXLEN", "ApplyResult", "Op", "Store"]

AUDIT_MAXLEN = 10_000
"""Audit records kept (approximately: Redis trims whole nodes)."""

BATCH_LIMIT = 1000
"""Most operations sent in one atomic script call."""


@dataclass(frozen=True)
class Op:
    """One fenced write of the leader: ``emit`` a message, record a ``miss``, or set a ``base`` line.

    ``key`` and ``second_key`` are full keys from :class:`~beatd.keys.Keys` (the queue stream for emit; the
    run-record hash and its index for miss; empty for base); ``aux`` is the signature (emit) or run id (miss).
    """

    kind: Literal["emit", "miss", "base", "forget"]
    job: str
    scheduled_ms: int
    key: str
    payload: str
    second_key: str = ""
    keep: int = 0
    aux: str = ""
    score_ms: int = 0


@dataclass(frozen=True)
class ApplyResult:
    """What a batch did; ``leader`` False means the lease was lost and nothing was written. ``refused`` lists
    (job, Redis error) for steps Redis refused: those jobs' progress did not move."""

    leader: bool
    emitted: int = 0
    missed: int = 0
    duplicates: int = 0
    refused: tuple[tuple[str, str], ...] = ()


class Store:
    """beatd's state in one Redis namespace."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        # Typed as Any: redis-py types replies as bytes | str for both decode modes; ours decodes to str.
        self.client: Any = client
        self.keys = keys
        self._acquire = client.register_script(script("acquire"))
        self._renew = client.register_script(script("renew"))
        self._release = client.register_script(script("release"))
        self._emit = client.register_script(script("emit"))
        self._resume = client.register_script(script("resume"))
        self._heartbeats = Heartbeats(self.client, keys.replicas)

    # -- the lease ---------------------------------------------------------------------------------------
    def acquire(self, replica: str, lease_ms: int, record: dict[str, Any]) -> str | None:
        """Take the lease if free; return the fencing token, or None when another replica holds it."""
        with reachable():
            token = self._acquire(
                keys=[self.keys.leader, self.keys.epoch, self.keys.audit],
                args=[replica, lease_ms, json.dumps(record), AUDIT_MAXLEN],
            )
        return str(token) if token else None

    def renew(self, token: str, lease_ms: int) -> bool:
        """Extend the lease; False when ``token`` no longer holds it."""
        with reachable():
            return bool(self._renew(keys=[self.keys.leader], args=[token, lease_ms]))

    def release(self, token: str) -> bool:
        """Give the lease up; False when ``token`` did not hold it."""
        with reachable():
            return bool(self._release(keys=[self.keys.leader], args=[token]))

    def leader(self) -> tuple[str, int] | None:
        """The current fencing token and the lease's remaining ms, or None when nobody leads."""
        with reachable():
            pipe = self.client.pipeline(transaction=False)
            pipe.get(self.keys.leader)
            pipe.pttl(self.keys.leader)
            token, ttl = pipe.execute()
        return (str(token), int(ttl)) if token else None

    # -- progress and emission ---------------------------------------------------------------------------
    def progress(self, jobs: Sequence[str] | None = None) -> dict[str, int]:
        """Last passed scheduled instant (epoch ms) per job; all jobs, or only ``jobs``."""
        with reachable():
            if jobs is None:
                raw = self.client.hgetall(self.keys.progress)
                return {job: int(value) for job, value in raw.items()}
            values = self.client.hmget(self.keys.progress, list(jobs)) if jobs else []
        return {job: int(value) for job, value in zip(jobs, values, strict=True) if value is not None}

    def schedule_digests(self) -> dict[str, str]:
        """The schedule digest each job's progress belongs to."""
        with reachable():
            return dict(self.client.hgetall(self.keys.schedules))

    def apply(self, token: str, ops: Sequence[Op]) -> ApplyResult:
        """Apply ``ops`` in order, each batch atomically and fenced by ``token`` (see ``lua/emit.lua``)."""
        total = ApplyResult(leader=True)
        for start in range(0, len(ops), BATCH_LIMIT):
            result = self._apply_batch(token, ops[start : start + BATCH_LIMIT])
            total = ApplyResult(
                result.leader,
                total.emitted + result.emitted,
                total.missed + result.missed,
                total.duplicates + result.duplicates,
                total.refused + result.refused,
            )
            if not result.leader:
                break
        return total

    def _apply_batch(self, token: str, ops: Sequence[Op]) -> ApplyResult:
        table = KeyTable(self.keys.leader, self.keys.progress, self.keys.schedules, self.keys.last)

        def position(key: str) -> int:
            return table.position(key) if key else 1  # base and forget name no key

        args: list[Any] = [token]
        for op in ops:
            args.extend(
                (
                    op.kind,
                    op.job,
                    op.scheduled_ms,
                    position(op.key),
                    position(op.second_key),
                    op.keep,
                    op.payload,
                    op.aux,
                    op.score_ms,
                )
            )
        with reachable():
            reply = self._emit(keys=table.keys, args=args)
        if int(reply[0]) == -1:
            return ApplyResult(leader=False)
        refused = tuple((str(job), str(error)) for job, error in zip(reply[3::2], reply[4::2], strict=True))
        return ApplyResult(True, int(reply[0]), int(reply[1]), int(reply[2]), refused)

    def last_emitted(self) -> dict[str, dict[str, Any]]:
        """The last message emitted per job."""
        with reachable():
            raw = self.client.hgetall(self.keys.last)
        return {job: json.loads(value) for job, value in raw.items()}

    def enqueue(self, queue: str, messages: Sequence[tuple[str, str]], audit: dict[str, Any]) -> None:
        """Append manual or backfill messages (text, signature) to ``queue``, in order, and one audit record.

        Each chunk of BATCH_LIMIT messages is one transaction; the audit record goes with the last one.
        """
        with reachable():
            for start in range(0, max(len(messages), 1), BATCH_LIMIT):
                pipe = self.client.pipeline(transaction=True)
                for message, signature in messages[start : start + BATCH_LIMIT]:
                    pipe.xadd(self.keys.queue(queue), {"message": message, "sig": signature})
                if start + BATCH_LIMIT >= len(messages):
                    pipe.xadd(
                        self.keys.audit, {"event": audit["event"], "record": json.dumps(audit)}, maxlen=AUDIT_MAXLEN
                    )
                pipe.execute()

    def queue_lengths(self, queues: Sequence[str]) -> dict[str, int]:
        """Entries in each queue stream."""
        return queue_lengths(self.client, {queue: self.keys.queue(queue) for queue in queues})

    def read_queue(self, queue: str, count: int = 1000) -> list[tuple[str, str]]:
        """The oldest ``count`` entries of a queue as (entry id, message JSON); for tests and tools."""
        with reachable():
            entries = self.client.xrange(self.keys.queue(queue), count=count)
        return [(str(entry_id), str(fields["message"])) for entry_id, fields in entries]

    # -- pause -------------------------------------------------------------------------------------------
    def paused(self) -> dict[str, dict[str, Any]]:
        """Paused jobs and their pause records."""
        with reachable():
            raw = self.client.hgetall(self.keys.paused)
        return {job: json.loads(value) for job, value in raw.items()}

    def pause(self, job: str, record: dict[str, Any]) -> bool:
        """Pause ``job``; False when it was already paused. The pause is audited in the same transaction."""
        with reachable():
            pipe = self.client.pipeline(transaction=True)
            pipe.hsetnx(self.keys.paused, job, json.dumps(record))
            pipe.xadd(self.keys.audit, {"event": "pause", "record": json.dumps(record)}, maxlen=AUDIT_MAXLEN)
            added, _ = pipe.execute()
        return bool(added)

    def resume(self, job: str, now_ms: int, record: dict[str, Any]) -> bool:
        """Resume ``job`` with no catch-up of the paused period; False when it was not paused."""
        with reachable():
            return bool(
                self._resume(
                    keys=[self.keys.paused, self.keys.progress, self.keys.audit],
                    args=[job, now_ms, json.dumps(record), AUDIT_MAXLEN],
                )
            )

    # -- audit and replicas ------------------------------------------------------------------------------
    def audit(self, record: dict[str, Any]) -> None:
        """Append an audit record (its ``event`` names what happened)."""
        with reachable():
            self.client.xadd(
                self.keys.audit, {"event": record["event"], "record": json.dumps(record)}, maxlen=AUDIT_MAXLEN
            )

    def read_audit(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` audit records, newest first, each with its stream ``id``."""
        with reachable():
            entries = self.client.xrevrange(self.keys.audit, count=limit)
        return [
            {"id": entry_id, "event": fields["event"], **json.loads(fields["record"])} for entry_id, fields in entries
        ]

    def heartbeat(self, replica: str, record: dict[str, Any]) -> None:
        """Publish this replica's heartbeat."""
        self._heartbeats.publish(replica, record)

    def replicas(self) -> dict[str, dict[str, Any]]:
        """Every replica's last heartbeat, stale ones included (callers judge by age)."""
        return self._heartbeats.read()

    def forget_replicas(self, replicas: Sequence[str]) -> None:
        """Drop heartbeats of replicas that are long gone."""
        self._heartbeats.forget(replicas)
