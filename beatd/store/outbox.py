"""The Celery outbox's side of Redis: the relay's fenced step (``lua/relay.lua``) and the outbox's depth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis

from beatd import defaults
from beatd.keys import Keys
from beatd.store.base import reachable, script
from beatd.store.codec import decode_items

__all__ = ["OutboxBatch", "OutboxEntry", "OutboxStore"]


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
