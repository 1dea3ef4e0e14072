"""The leader's upkeep in Redis: heartbeats read and pruned, idle consumers deleted, queue backlogs measured,
waiting fires expired.

Reads are plain commands or read-only scripts; every delete is a script fenced by the leader's token, and
deletes only what is still as it was read (a heartbeat rewritten since, an entry delivered since, stays).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import redis

from beatd import defaults
from beatd.keys import GROUP, Keys
from beatd.messages import from_ms
from beatd.store.base import reachable, script
from beatd.store.codec import BatchScript, decode_items
from beatd.store.runs import tally_bucket

__all__ = ["Backlog", "ExpiredFire", "Retention", "StaleHeartbeat", "UpkeepStore", "WaitingEntry"]

BATCH_LIMIT = 500
"""Most expired fires written in one script call."""

HISTORY_BATCH = 20
"""Most jobs whose retention one script call applies: a call drops up to 2,000 records a job (the prelude's
prune_history), so 20 jobs keep one call to some 40,000 deletes (about 20 ms measured), never Redis blocked for long."""


class WaitingEntry(NamedTuple):
    """A queue entry not yet delivered, a reply item of ``lua/backlog.lua``."""

    entry_id: str
    message: str
    """The fire message JSON ('' when the entry has none)."""


@dataclass(frozen=True)
class StaleHeartbeat:
    """A heartbeat to delete if its value is still the one read, an item of ``lua/sweep_heartbeats.lua``."""

    member: str
    digest: str
    """SHA-1 hex of the value read."""


@dataclass(frozen=True)
class Backlog:
    """A queue's entries not yet delivered to any worker: how many, the oldest one's id (its ms part is when
    Redis appended it; '' when none waits), and the oldest few as (entry id, message JSON)."""

    waiting: int
    oldest_id: str = ""
    entries: tuple[WaitingEntry, ...] = ()

    def oldest_age(self, now: datetime) -> float:
        """Seconds the oldest waiting entry has waited at ``now`` (0 when none waits)."""
        if not self.oldest_id:
            return 0.0
        return max(0.0, (now - from_ms(int(self.oldest_id.split("-")[0]))).total_seconds())


@dataclass(frozen=True)
class ExpiredFire:
    """A waiting fire to record ``expired`` and delete from its queue, an item of ``lua/sweep_expired.lua``."""

    job: str
    fire_id: str
    entry_id: str
    record: str
    score_ms: int
    keep: int
    oldest_ms: int
    records_key: str = ""
    index_key: str = ""
    ended_key: str = ""
    alerts_key: str = ""


@dataclass(frozen=True)
class Retention:
    """A job's history retention, an item of ``lua/sweep_history.lua``."""

    keep: int
    oldest_ms: int
    records_key: str
    index_key: str


class UpkeepStore:
    """The leader's upkeep reads and fenced deletes in one namespace."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client: Any = client
        self.keys = keys
        self._forget = BatchScript(client, "sweep_heartbeats", StaleHeartbeat, BATCH_LIMIT)
        self._consumers = client.register_script(script("sweep_consumers"))
        self._backlog = client.register_script(script("backlog"))
        self._expire = BatchScript(client, "sweep_expired", ExpiredFire, BATCH_LIMIT)
        self._history = BatchScript(client, "sweep_history", Retention, HISTORY_BATCH)

    def scan_heartbeats(self, key: str, cursor: int, count: int) -> tuple[int, dict[str, str]]:
        """One HSCAN step of a heartbeat hash: the next cursor (0 when the pass is complete) and the values."""
        with reachable():
            following, values = self.client.hscan(key, cursor, count=count)
        return int(following), dict(values)

    def forget_heartbeats(self, token: str, key: str, stale: dict[str, str]) -> int:
        """Delete heartbeats (member -> SHA-1 of the value read) still unchanged, if ``token`` holds the lease."""
        items = [StaleHeartbeat(member, digest) for member, digest in stale.items()]
        with reachable():
            return sum(max(0, int(done)) for done in self._forget([self.keys.leader, key], [token], items))

    def forget_consumers(self, token: str, queues: Sequence[str], idle_ms: int) -> int:
        """Delete the consumers of ``queues``' groups with no pending entry, idle longer than ``idle_ms`` by
        Redis's clock, if ``token`` holds the lease (``lua/sweep_consumers.lua``); return how many."""
        if not queues:
            return 0
        keys = [self.keys.leader, *(self.keys.queue(queue) for queue in queues)]
        with reachable():
            return max(0, int(self._consumers(keys=keys, args=[token, GROUP, idle_ms])))

    def backlog(self, queue: str, scan: int, after: str = "") -> Backlog:
        """The entries of ``queue`` not yet delivered (``lua/backlog.lua``), with ``scan`` of them: the oldest,
        or the first after entry id ``after``."""
        with reachable():
            waiting, oldest, pairs = self._backlog(keys=[self.keys.queue(queue)], args=[GROUP, scan, after])
        return Backlog(int(waiting), str(oldest), tuple(decode_items(WaitingEntry, pairs)))

    def backlogs(self, queues: Sequence[str]) -> dict[str, Backlog]:
        """:meth:`backlog` of each queue, with only the oldest entry (for ``beatd status``)."""
        return {queue: self.backlog(queue, 1) for queue in queues}

    def expire(
        self, token: str, queue: str, fires: Sequence[ExpiredFire], alerting: frozenset[str] = frozenset()
    ) -> list[ExpiredFire]:
        """Record each fire ``expired`` and delete its entry, if it is still waiting, has started no attempt,
        and ``token`` holds the lease (``lua/sweep_expired.lua``); return those done. The records of jobs in
        ``alerting`` (with an ``expired`` rule) are noted as alert events."""
        keys = self.keys
        items = [
            ExpiredFire(
                fire.job, fire.fire_id, fire.entry_id, fire.record, fire.score_ms, fire.keep, fire.oldest_ms,
                keys.runs(fire.job), keys.runs_by_time(fire.job), keys.ended(fire.job),
                keys.alert_events if fire.job in alerting else "",
            )
            for fire in fires
        ]  # fmt: skip
        with reachable():
            tally = keys.tally(tally_bucket(int(time.time() * 1000)))  # expired records counted (the overview)
            replies = self._expire(
                [keys.leader, keys.queue(queue), keys.attempts, tally], [token, GROUP, *_ended_args()], items
            )
        done = {str(entry) for reply in replies if reply != -1 for entry in reply}
        return [fire for fire in fires if fire.entry_id in done]

    def prune_history(self, token: str, retention: dict[str, tuple[int, int]]) -> None:
        """Apply each job's retention (job -> (keep, oldest ms)) to its history, if ``token`` holds the lease."""
        keys = self.keys
        items = [
            Retention(keep, oldest_ms, keys.runs(job), keys.runs_by_time(job))
            for job, (keep, oldest_ms) in retention.items()
        ]
        with reachable():
            self._history([keys.leader], [token], items)


def _ended_args() -> list[int]:
    """The ended streams' bounds as scripts take them: max length, TTL in ms."""
    return [defaults.ENDED_MAXLEN, int(defaults.ENDED_TTL.total_seconds() * 1000)]
