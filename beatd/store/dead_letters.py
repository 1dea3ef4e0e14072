"""Dead letters in Redis: queue entries that must not run, and fires out of attempts, kept per shard in
``{ns}:dead`` (a stream, ``defaults.DEAD_MAXLEN`` long), moved there, listed, retried or dropped.

A dead letter's id is its stream entry id (``MS-SEQ``); with several shards each shard has its own stream, so
the readers merge them by id and give each entry its ``shard``. Moving an entry and settling one are each one
script call (``lua/dead_letter.lua``, ``lua/settle_dead.lua``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from beatd import defaults
from beatd.keys import GROUP, Keys
from beatd.sharding import shard_of
from beatd.store.base import AUDIT_MAXLEN, entry_order, reachable
from beatd.store.codec import BatchScript

if TYPE_CHECKING:
    from beatd.store.runs import Delivery, LostRun

__all__ = ["DeadLetter", "DeadLetterAction", "DeadLetters"]

BATCH_LIMIT = 500
"""Most items sent in one call of a batched script (as the worker's other scripts)."""


@dataclass(frozen=True)
class DeadLetter:
    """The wire layout of one entry in ``lua/dead_letter.lua``."""

    entry_id: str
    message: str
    signature: str
    reason: str
    fire_id: str
    lost_run: str
    lost_expect: str
    lost_record: str
    stream_key: str
    leases_key: str
    active_key: str
    records_key: str


@dataclass(frozen=True)
class DeadLetterAction:
    """The wire layout of one dead letter in ``lua/settle_dead.lua``: retry or drop it, with its audit record."""

    entry_id: str
    action: str  # retry | drop
    event: str
    audit: str
    queue_key: str


class DeadLetters:
    """The dead-letter streams of every shard (``shards``: each shard's keys, shard 0 first)."""

    def __init__(self, client: redis.Redis, shards: Sequence[Keys]) -> None:
        self.client: Any = client  # replies are decoded str
        self.shards = tuple(shards)
        self._move = BatchScript(client, "dead_letter", DeadLetter, BATCH_LIMIT)
        self._settle = BatchScript(client, "settle_dead", DeadLetterAction, BATCH_LIMIT)

    def add(
        self,
        delivery: Delivery,
        consumer: str,
        reason: str,
        fire_id: str = "",
        job: str = "",
        lost: LostRun | None = None,
    ) -> bool:
        """Move an entry that must not run (unknown job, bad JSON, forged) to the dead-letter stream of its
        shard; when its message names a fire (``fire_id`` of ``job``, a job of that shard), what earlier
        attempts of the fire left goes too, and a redelivered fire's previous attempt is recorded ``lost`` as a
        claim would (``lua/dead_letter.lua``). False (nothing done) when the entry is no longer pending for
        ``consumer``: a reclaimer took it over."""
        keys = self.shards[delivery.shard]
        if job and len(self.shards) > 1 and shard_of(job, len(self.shards)) != delivery.shard:
            job, lost = "", None  # a misplaced fire: its job's keys are in another slot
        item = DeadLetter(
            delivery.entry_id, delivery.message, delivery.signature, reason, fire_id if job else "",
            lost.run_id if lost else "", lost.expect if lost else "", lost.record if lost else "",
            keys.queue(delivery.queue), keys.leases(delivery.queue), keys.active(job) if job else "",
            keys.runs(job) if job else "",
        )  # fmt: skip
        with reachable():
            (replies,) = self._move(
                [keys.attempts, keys.cancel, keys.dead], [GROUP, defaults.DEAD_MAXLEN, consumer], [item]
            )
        return bool(replies == ["dead"])

    def newest(self, count: int, before: str = "+", before_shard: int | None = None) -> list[dict[str, str]]:
        """Dead letters, newest first, each with its ``id`` (and, with several shards, its ``shard``): at most
        ``count``, older than entry id ``before`` ("+": from the newest), so a caller can page back through
        them. With several shards the streams are merged by entry id (ties: the higher shard first), and
        ``before_shard`` (the ``shard`` of the last one read) keeps a tie across shards from being skipped."""
        if len(self.shards) == 1:
            with reachable():
                entries = self.client.xrevrange(
                    self.shards[0].dead, before if before == "+" else f"({before}", count=count
                )
            return [{"id": entry_id, **fields} for entry_id, fields in entries]
        merged = []
        for shard, keys in enumerate(self.shards):
            with reachable():
                # Inclusive of ``before`` (one more), so an entry of the same id in a lower shard is kept.
                entries = self.client.xrevrange(keys.dead, before, count=count + 1)
            for entry_id, fields in entries:
                position = (entry_order(entry_id), shard)
                if before == "+" or position < (entry_order(before), before_shard if before_shard is not None else -1):
                    merged.append((position, {"id": entry_id, "shard": str(shard), **fields}))
        merged.sort(key=lambda item: item[0], reverse=True)
        return [entry for _, entry in merged[:count]]

    def with_id(self, entry_id: str) -> list[dict[str, str]]:
        """The dead letters with stream entry id ``entry_id`` (``MS-SEQ``), each with its ``id`` (and, with
        several shards, its ``shard``): one at most per shard (ids are per stream), none when there is none."""
        found = []
        for shard, keys in enumerate(self.shards):
            with reachable():
                entries = self.client.xrange(keys.dead, entry_id, entry_id)
            tag = {"shard": str(shard)} if len(self.shards) > 1 else {}
            found += [{"id": entries[0][0], **tag, **entries[0][1]}] if entries else []
        return found

    def get(self, entry_id: str, shard: int = 0) -> dict[str, str] | None:
        """One dead letter by stream entry id (``MS-SEQ``) in shard ``shard``, with its ``id``; None when there
        is none."""
        with reachable():
            entries = self.client.xrange(self.shards[shard].dead, entry_id, entry_id)
        return {"id": entries[0][0], **entries[0][1]} if entries else None

    def retry(self, entry_id: str, queue_key: str, audit: dict[str, Any], shard: int = 0) -> bool:
        """Put a dead letter of shard ``shard`` back into ``queue_key`` (the queue stream it names, in its shard)
        and append ``audit``, in one step (``lua/settle_dead.lua``); False when it is gone (another operator took
        it): nothing is written. A fire that ran out of retries gets its attempt count back (from the dead
        letter's run id), so it runs as the next attempt."""
        action = DeadLetterAction(entry_id, "retry", audit["event"], json.dumps(audit), queue_key)
        return self._settle_one(action, self.shards[shard])

    def drop(self, entry_id: str, audit: dict[str, Any], shard: int = 0) -> bool:
        """Delete a dead letter of shard ``shard`` and append ``audit``, in one step; False when it is gone
        (nothing is audited)."""
        return self._settle_one(
            DeadLetterAction(entry_id, "drop", audit["event"], json.dumps(audit), ""), self.shards[shard]
        )

    def _settle_one(self, action: DeadLetterAction, keys: Keys) -> bool:
        with reachable():
            replies = self._settle([keys.dead, keys.audit, keys.attempts], [AUDIT_MAXLEN], [action])
        return bool(replies[0][0])
