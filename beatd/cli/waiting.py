"""Waiting for fires a command emitted (``trigger --wait``, ``backfill --wait``) and for the workers that run them."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from beatd import defaults
from beatd.messages import parse_utc
from beatd.store import RunStore

__all__ = ["FIRE_ENDS", "POLL", "fire_outcomes", "live_workers", "wait_for_fires"]

POLL = 0.25
"""How often (s) the run records are read while waiting."""

FIRE_ENDS = ("succeeded", "dead", "skipped", "cancelled", "missed")
"""Statuses that end a fire: after any of these no attempt of it follows (``failed`` may be retried)."""


def fire_outcomes(store: RunStore, job: str, fire_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The record that ended each fire of ``fire_ids`` that has ended (a success wins over an earlier death)."""
    wanted, ended = set(fire_ids), dict[str, dict[str, Any]]()
    for text in store.job_records(job):
        record = json.loads(text)
        fire = record.get("fire_id")
        if fire not in wanted or record.get("status") not in FIRE_ENDS:
            continue
        known = ended.get(fire)
        if known is None or known["status"] != "succeeded":
            ended[fire] = record
    return ended


def wait_for_fires(
    store: RunStore, job: str, fire_ids: Sequence[str], on_progress: Callable[[int, Counter[str]], None]
) -> dict[str, dict[str, Any]]:
    """Poll until every fire of ``fire_ids`` has ended; ``on_progress(ended, counts by status)`` after each poll.
    Returns the ending record of each fire. Ctrl-C stops the wait (the fires go on)."""
    while True:
        ended = fire_outcomes(store, job, fire_ids)
        on_progress(len(ended), Counter(record["status"] for record in ended.values()))
        if len(ended) >= len(set(fire_ids)):
            return ended
        time.sleep(POLL)


def live_workers(store: RunStore, queue: str, now: datetime) -> list[str]:
    """Workers whose heartbeat is fresh and which consume ``queue``."""
    return sorted(
        name
        for name, beat in store.workers().items()
        if queue in beat.get("queues", []) and (now - parse_utc(beat["heartbeat_at"])) <= defaults.WORKER_STALE_AFTER
    )
