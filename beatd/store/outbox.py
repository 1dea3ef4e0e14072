"""The Celery outbox's side of Redis: the relay's fenced step (``lua/relay.lua``) and the outbox's depth."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis

from beatd import defaults
from beatd.keys import Keys
from beatd.store.base import reachable, script
from beatd.store.codec import decode_items

__all__ = ["DeadOutboxEntry", "OutboxBatch", "OutboxEntry", "OutboxStore", "OutboxSummary"]


class OutboxEntry(NamedTuple):
    """A task message waiting for the relay: its stream id, the Celery queue's Redis list name (kombu's, priority
    step included) and the envelope JSON (kombu's Redis transport's)."""

    entry_id: str
    queue: str
    envelope: str


@dataclass(frozen=True)
class OutboxBatch:
    """The oldest entries to publish next, and how many the outbox holds (these included)."""

    depth: int
    entries: tuple[OutboxEntry, ...]


class DeadOutboxEntry(NamedTuple):
    """An outbox entry the broker refused too often, moved aside by the relay: its outbox id, why, the queue's list
    name and the task message's task id and fire id (None when the envelope cannot be read)."""

    entry_id: str
    reason: str
    queue: str
    task_id: str | None
    fire_id: str | None
    moved_at_ms: int


@dataclass(frozen=True)
class OutboxSummary:
    """What ``beatd status`` shows of the outbox: its depth, the oldest entry's write time (epoch ms, Redis's clock;
    None when empty), how many entries the dead stream holds and the newest of them (newest first)."""

    depth: int
    oldest_ms: int | None
    dead: int
    newest_dead: tuple[DeadOutboxEntry, ...]


class OutboxStore:
    """The Celery outbox of one namespace (:attr:`beatd.keys.Keys.celery_outbox`)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client: Any = client
        self.keys = keys
        self._step = client.register_script(script("relay"))

    def step(
        self, token: str, confirmed: Sequence[str], count: int, dead: Sequence[tuple[str, str]] = ()
    ) -> OutboxBatch | None:
        """Delete ``confirmed`` (entries the broker accepted), move ``dead`` ((id, reason): entries the broker
        refused too often) to the dead stream and read the next ``count``, if ``token`` still holds the lease;
        None when it does not (nothing deleted nor moved: the new leader's relay publishes them)."""
        keys = [self.keys.leader, self.keys.celery_outbox, self.keys.celery_outbox_dead]
        args: list[str | int] = [token, count, defaults.CELERY_OUTBOX_DEAD_LIMIT, len(confirmed), *confirmed]
        args += [part for pair in dead for part in pair]
        with reachable():
            reply = self._step(keys=keys, args=args)
        if int(reply[0]) == -1:
            return None
        return OutboxBatch(int(reply[1]), tuple(decode_items(OutboxEntry, reply[2])))

    def depth(self) -> int:
        """Entries in the outbox."""
        with reachable():
            return int(self.client.xlen(self.keys.celery_outbox))

    def summary(self, dead_count: int = 10) -> OutboxSummary:
        """The outbox's depth and oldest entry, and the dead stream's length and newest ``dead_count`` entries."""
        with reachable():
            pipe = self.client.pipeline(transaction=False)
            pipe.xlen(self.keys.celery_outbox)
            pipe.xrange(self.keys.celery_outbox, "-", "+", count=1)
            pipe.xlen(self.keys.celery_outbox_dead)
            pipe.xrevrange(self.keys.celery_outbox_dead, "+", "-", count=dead_count)
            depth, oldest, dead, newest = pipe.execute()
        oldest_ms = _stream_ms(oldest[0][0]) if oldest else None
        return OutboxSummary(int(depth), oldest_ms, int(dead), tuple(_dead_entry(*item) for item in newest))


def _stream_ms(entry_id: bytes | str) -> int:
    """The write time (epoch ms, Redis's clock) of an auto-id stream entry."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


def _dead_entry(entry_id: bytes | str, raw: dict[Any, Any]) -> DeadOutboxEntry:
    fields = {_text(key): _text(value) for key, value in raw.items()}
    task_id = fire_id = None
    try:
        headers = json.loads(fields.get("envelope", "")).get("headers", {})
        task_id, fire_id = headers.get("id"), headers.get("beatd_fire_id")
    except (ValueError, AttributeError):
        pass  # shown without: the entry may be dead because its envelope is unreadable
    return DeadOutboxEntry(
        fields.get("entry_id", ""), fields.get("reason", ""), fields.get("queue", ""), task_id, fire_id,
        _stream_ms(entry_id),
    )  # fmt: skip


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
