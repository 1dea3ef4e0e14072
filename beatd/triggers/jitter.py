"""Deterministic jitter: spread fires of many jobs due at the same instant, identically on every replica."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from beatd.errors import ScheduleError
from beatd.triggers.base import ensure_aware

__all__ = ["jitter_offset"]

_ONE_MICROSECOND = timedelta(microseconds=1)


def jitter_offset(job: str, scheduled: datetime, jitter: timedelta) -> timedelta:
    """A delay in ``[0, jitter)``, in whole microseconds, fixed by the job name and the scheduled instant.

    Derived from SHA-256 of ``"{job}|{scheduled as UTC ISO-8601}"``, so every replica and every restart
    picks the same delay for the same fire, and successive fires of one job get different delays. A zero
    ``jitter`` gives ``timedelta(0)``; a negative one raises :class:`ScheduleError`.
    """
    if jitter < timedelta(0):
        raise ScheduleError(f"invalid jitter {jitter!r}: must not be negative")
    span = jitter // _ONE_MICROSECOND
    if span == 0:
        return timedelta(0)
    key = f"{job}|{ensure_aware(scheduled).isoformat()}"
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest(), "big")
    return timedelta(microseconds=digest % span)
