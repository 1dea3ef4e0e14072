"""Waiting for fires a command emitted (``trigger --wait``, ``backfill --wait``) and for the workers that run them."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from beatd import defaults
from beatd.messages import parse_utc
from beatd.store import RunStore

__all__ = [
    "FIRE_ENDS",
    "GONE_CHECK_EVERY",
    "POLL",
    "PRUNED",
    "FireWatch",
    "heartbeat_age",
    "is_live",
    "live_workers",
    "wait_for_fires",
]

POLL = 0.25
"""How often (s) the awaited fires' records and the dead letters are read while waiting."""

GONE_CHECK_EVERY = 2.0
"""How often (s) a wait also looks for its fires in the queue, the retry set and the buffer (a read of the
whole queue): a fire found in none of them, with no end in its records or the dead letters, ended but its
records were pruned (other runs of the job pushed them past ``history.keep``)."""

PRUNED = "it ended, but its records were pruned (history.keep) before this wait read them"
"""The reason given for a fire that ended with its records gone (status ``unknown``)."""

FIRE_ENDS = ("succeeded", "dead", "skipped", "cancelled", "missed", "expired")
"""Statuses that end a fire: after any of these no attempt of it follows (``failed`` may be retried)."""


class FireWatch:
    """The ends of fires of ``job`` a command emitted into ``queue`` at ``since_ms`` (epoch ms, less the clock
    margin), found by polling: a fire's ending record, or the dead letter of a message the worker refused at
    intake (unknown job, bad signature, bad JSON: no run, no record), or, when its records were pruned before
    they were read, its absence from every place a fire waits (status ``unknown``). An end once found is kept,
    so a record that history prunes later (``history.keep``) does not bring the fire back."""

    def __init__(self, store: RunStore, job: str, queue: str, fire_ids: Sequence[str], since_ms: int) -> None:
        self.store, self.job, self.queue, self.since_ms = store, job, queue, since_ms
        self.fire_ids = tuple(dict.fromkeys(fire_ids))
        self.ended: dict[str, dict[str, Any]] = {}
        self._dead_after = str(since_ms)
        self._gone_checked = float("-inf")

    @property
    def pending(self) -> list[str]:
        """Fires not ended yet, in emit order."""
        return [fire for fire in self.fire_ids if fire not in self.ended]

    def poll(self, now: float | None = None) -> None:
        """Read the records of the pending fires written since the emit, then the new dead letters; and every
        GONE_CHECK_EVERY seconds (``now``: monotonic), first, which pending fires wait nowhere any more."""
        pending = self.pending
        if not pending:
            return
        now = time.monotonic() if now is None else now
        waiting_now: set[str] | None = None
        if now - self._gone_checked >= GONE_CHECK_EVERY:
            self._gone_checked = now
            # Read before the records: a fire that is gone now has written its end already.
            waiting_now = {_fire_of(text) or "" for text in self.store.waiting_messages(self.queue, self.job)}
        for fire, texts in self.store.records_of_fires(self.job, pending, self.since_ms).items():
            ending = _ending([json.loads(text) for text in texts])
            if ending is not None:
                self.ended[fire] = ending
        waiting: set[str] = set(self.pending)
        for entry in self.store.dead_since(self._dead_after):
            self._dead_after = entry["id"]
            refused = _fire_of(entry.get("message", ""))
            if refused is not None and refused in waiting:
                waiting.discard(refused)
                self.ended[refused] = {
                    "fire_id": refused, "job": self.job, "status": "dead", "dead_letter": entry["id"],
                    "reason": entry.get("reason", ""),
                }  # fmt: skip
        for fire in self.pending:
            if waiting_now is not None and fire not in waiting_now:
                self.ended[fire] = {"fire_id": fire, "job": self.job, "status": "unknown", "reason": PRUNED}

    def counts(self) -> Counter[str]:
        """Ended fires by status."""
        return Counter(record["status"] for record in self.ended.values())


def wait_for_fires(
    watch: FireWatch, on_progress: Callable[[int, Counter[str]], None], timeout: float | None = None
) -> bool:
    """Poll ``watch`` until every fire has ended (True) or ``timeout`` seconds have passed (False; the fires
    go on); ``on_progress(ended, counts by status)`` after each poll. Ctrl-C stops the wait (the fires go on)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        watch.poll()
        on_progress(len(watch.ended), watch.counts())
        if not watch.pending:
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(POLL if deadline is None else max(min(POLL, deadline - time.monotonic()), 0))


def heartbeat_age(beat: dict[str, Any], now: datetime) -> timedelta:
    """How old a worker's heartbeat is at ``now``."""
    return now - parse_utc(beat["heartbeat_at"])


def is_live(beat: dict[str, Any], now: datetime) -> bool:
    """Whether a worker with this heartbeat counts as alive (``defaults.WORKER_STALE_AFTER``)."""
    return heartbeat_age(beat, now) <= defaults.WORKER_STALE_AFTER


def live_workers(store: RunStore, queue: str, now: datetime) -> list[str]:
    """Workers whose heartbeat is fresh and which consume ``queue``."""
    return sorted(
        name for name, beat in store.workers().items() if queue in beat.get("queues", []) and is_live(beat, now)
    )


def _ending(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The record that ended a fire, of its records read at once (a success wins over an earlier death)."""
    ends = [record for record in records if record.get("status") in FIRE_ENDS]
    return next((record for record in ends if record["status"] == "succeeded"), ends[0] if ends else None)


def _fire_of(text: str) -> str | None:
    """The fire id a dead letter's message names, if it reads as one."""
    try:
        message = json.loads(text)
    except ValueError:
        return None
    fire = message.get("fire_id") if isinstance(message, dict) else None
    return fire if isinstance(fire, str) else None
