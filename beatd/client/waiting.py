"""Waiting for fires to end (``FireHandle.wait``, ``trigger --wait``, ``backfill --wait``) and the one rule for
which workers are live.

A wait blocks on notifications, it does not poll: every path that ends a fire appends its end to the job's
ended stream (``{ns}:ended:{job}``: the finisher, ``finish.lua``, for runs, skips, cancels, expiries at
intake and fires out of attempts; the upkeep's ``sweep_expired.lua`` for fires expired while waiting), and a
message a worker refuses at intake (unknown job, bad signature, bad JSON: no run, no record) goes to the dead
letters. The waiter XREADs both streams from just before its emit, so an end written before the wait began is
read too. :class:`FireEnds` is the pure part (what an entry means), :class:`FireWatch` the blocking reads
with redis-py; the async client drives the same :class:`FireEnds` with redis.asyncio.

Every ``WAIT_RECHECK_EVERY`` without news the wait also reads the awaited fires' records and looks for them
where fires wait: the safety net for an end whose notification was trimmed before it was read, and a fire whose
records were pruned (other runs pushed them past ``history.keep``): found nowhere, it ended ``unknown``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from beatd import defaults
from beatd.keys import Keys
from beatd.messages import parse_utc
from beatd.store import RunStore

__all__ = [
    "BLOCK_LIMIT",
    "FIRE_ENDS",
    "PRUNED",
    "READ_COUNT",
    "FireEnds",
    "FireWatch",
    "heartbeat_age",
    "is_live",
    "live_workers",
    "wait_for_fires",
]

BLOCK_LIMIT = 1.0
"""Longest one blocking XREAD waits (s): well under the store's 2 s socket timeout, so a quiet wait on a loaded
machine is never taken for a dead connection. An end wakes the reader at once whatever this is."""

READ_COUNT = 1000
"""Entries of each stream one XREAD returns at most."""

PRUNED = "it ended, but its records were pruned (history.keep) before this wait read them"
"""The reason given for a fire that ended with its records gone (status ``unknown``)."""

FIRE_ENDS = ("succeeded", "dead", "skipped", "cancelled", "missed", "expired")
"""Statuses that end a fire: after any of these no attempt of it follows (``failed`` may be retried)."""


class FireEnds:
    """The ends of fires of ``job`` a caller emitted into ``queue`` at ``since_ms`` (Redis's epoch ms, less the
    clock margin), from the entries of its ended stream and the dead letters. An end once found is kept, so a
    record that history prunes later does not bring the fire back. No I/O: the watches feed it."""

    def __init__(self, keys: Keys, job: str, queue: str, fire_ids: Sequence[str], since_ms: int) -> None:
        self.keys, self.job, self.queue, self.since_ms = keys, job, queue, since_ms
        self.fire_ids = tuple(dict.fromkeys(fire_ids))
        self.ended: dict[str, dict[str, Any]] = {}
        self.after = {keys.ended(job): f"{since_ms}-0", keys.dead: f"{since_ms}-0"}

    @property
    def pending(self) -> list[str]:
        """Fires not ended yet, in emit order."""
        return [fire for fire in self.fire_ids if fire not in self.ended]

    def counts(self) -> Counter[str]:
        """Ended fires by status."""
        return Counter(record["status"] for record in self.ended.values())

    def take(self, reply: Sequence[Any]) -> list[tuple[str, str, str]]:
        """Apply an XREAD reply: dead letters of pending fires end them now; returns the (fire, run id, status)
        ends of pending fires from the ended stream, whose records the watch reads next (:meth:`found`)."""
        ends = []
        for stream, entries in reply or ():
            stream = str(stream)
            for entry_id, fields in entries:
                self.after[stream] = str(entry_id)
                if fields is None:
                    continue
                if stream == self.keys.dead:
                    refused = _fire_of(fields.get("message", ""))
                    if refused is not None and refused in self.fire_ids and refused not in self.ended:
                        self.ended[refused] = {
                            "fire_id": refused, "job": self.job, "status": "dead", "dead_letter": str(entry_id),
                            "reason": fields.get("reason", ""),
                        }  # fmt: skip
                    continue
                fire = str(fields.get("fire_id", ""))
                if fire in self.fire_ids and fire not in self.ended:
                    ends.append((fire, str(fields.get("run_id", "")), str(fields.get("status", ""))))
        return ends

    def found(self, fire: str, run: str, status: str, text: str | None) -> None:
        """The ending record of ``fire`` (JSON; None when it was pruned already: the notification's status)."""
        if fire in self.ended:
            return
        if text is not None:
            self.ended[fire] = json.loads(text)
        else:
            self.ended[fire] = {"fire_id": fire, "job": self.job, "run_id": run, "status": status, "reason": PRUNED}

    def settle(self, records: dict[str, list[str]]) -> None:
        """The pending fires' records (fire -> JSON texts), read by a recheck: a fire with an ending record ended."""
        for fire, texts in records.items():
            ending = _ending([json.loads(text) for text in texts])
            if ending is not None and fire not in self.ended:
                self.ended[fire] = ending

    def gone(self, waiting: list[str]) -> None:
        """The message JSON of every fire still waiting, read before the records and the streams a recheck read:
        a pending fire waiting nowhere ended with its records pruned."""
        still = {_fire_of(text) or "" for text in waiting}
        for fire in self.pending:
            if fire not in still:
                self.ended[fire] = {"fire_id": fire, "job": self.job, "status": "unknown", "reason": PRUNED}


class FireWatch(FireEnds):
    """:class:`FireEnds` read with a (synchronous) RunStore."""

    def __init__(self, store: RunStore, job: str, queue: str, fire_ids: Sequence[str], since_ms: int) -> None:
        super().__init__(store.keys_of(job), job, queue, fire_ids, since_ms)
        self.store = store

    def recheck(self) -> None:
        """Read where the pending fires wait, then their records and every end notified so far (a fire gone
        from where fires wait has written its end, or its dead letter, already); what is still pending then
        was pruned."""
        if not self.pending:
            return
        waiting = self.store.waiting_messages(self.queue, self.job)
        self.settle(self.store.records_of_fires(self.job, self.pending, self.since_ms))
        while self.block(None) >= READ_COUNT:
            pass
        self.gone(waiting)

    def block(self, seconds: float | None) -> int:
        """Read the ended stream and the dead letters, blocking up to ``seconds`` (None: not at all) for the
        first entry; returns how many entries came (of the longer stream)."""
        reply = self.store.read_streams(self.after, READ_COUNT, None if seconds is None else int(seconds * 1000))
        for fire, run, status in self.take(reply):
            self.found(fire, run, status, self.store.run_record(self.job, run) if run else None)
        return max((len(entries) for _, entries in reply), default=0)


def wait_for_fires(
    watch: FireWatch, on_progress: Callable[[int, Counter[str]], None], timeout: float | None = None
) -> bool:
    """Block until every fire of ``watch`` has ended (True) or ``timeout`` seconds have passed (False; the fires
    go on); ``on_progress(ended, counts by status)`` after each news. Ctrl-C stops the wait (the fires go on)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    recheck = defaults.WAIT_RECHECK_EVERY.total_seconds()
    watch.recheck()  # ends written before this wait began, and fires whose records are gone already
    last_check = time.monotonic()
    while True:
        on_progress(len(watch.ended), watch.counts())
        if not watch.pending:
            return True
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return False
        left = BLOCK_LIMIT if deadline is None else max(min(BLOCK_LIMIT, deadline - now), 0.001)
        if not watch.block(left) and time.monotonic() - last_check >= recheck:
            watch.recheck()
            last_check = time.monotonic()


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
