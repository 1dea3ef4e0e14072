"""A fire's start deadline (its job's ``expires``) and the ``expired`` record of a fire not started by then:
one rule for the leader's upkeep (fires still waiting) and the workers (fires delivered late)."""

from __future__ import annotations

from datetime import datetime, timedelta

from beatd.config.compact import JobView
from beatd.durations import format_duration
from beatd.messages import Message, format_utc, parse_utc
from beatd.records import RunRecord, run_id

__all__ = ["REQUESTED", "expired_record", "start_deadline"]

REQUESTED = frozenset({"manual", "backfill"})
"""Triggers of fires asked for on purpose. Their scheduled instant is a logical date (a backfilled day), so
their deadline counts from the request (the message's ``emitted_at``, stamped with Redis's time); and a worker
defers one that finds its job running instead of skipping it."""


def start_deadline(expires: timedelta | None, message: Message) -> datetime | None:
    """The latest instant a fire may start: its scheduled instant plus ``expires`` (for manual and backfill
    fires, their request instant plus ``expires``); None without ``expires``. Raises ValueError for an instant
    that does not read as one."""
    if expires is None:
        return None
    origin = message.emitted_at if message.trigger in REQUESTED else message.scheduled_at
    return parse_utc(origin) + expires


def expired_record(spec: JobView, message: Message, queue: str, now: datetime) -> RunRecord:
    """The ``expired`` record (attempt 0) of ``message``'s fire, found unstarted past its deadline at ``now``."""
    expires = spec.expires or timedelta(0)
    deadline = start_deadline(expires, message)
    return RunRecord(
        run_id=run_id(message.fire_id, 0), fire_id=message.fire_id, job=spec.name,
        scheduled_at=message.scheduled_at, trigger=message.trigger, attempt=0, status="expired",
        emitted_at=message.emitted_at, finished_at=format_utc(now), config_digest=message.config_digest,
        reason=f"not started within expires ({format_duration(expires)}): no worker took it from queue {queue} "
        f"by {format_utc(deadline) if deadline else '-'}",
    )  # fmt: skip
