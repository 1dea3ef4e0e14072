"""The run context a job's callable may take as its first argument (named ``ctx`` or ``context``).

Jobs compute "yesterday" from ``scheduled_at``, never from the wall clock, so retries, catch-up and backfill
compute the right day.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from beatd.triggers import Trigger

__all__ = ["CONTEXT_PARAMETERS", "RunContext", "previous_fire"]

CONTEXT_PARAMETERS = ("ctx", "context")
"""A callable whose first parameter has one of these names receives the RunContext."""


@dataclass(frozen=True)
class RunContext:
    """What a run knows about itself.

    ``scheduled_at`` is the fire's logical instant in the job's time zone; ``data_interval`` runs from the
    previous scheduled instant (None for the first) to this one; ``attempt`` counts from 1.
    """

    run_id: str
    fire_id: str
    job: str
    scheduled_at: datetime
    data_interval: tuple[datetime | None, datetime]
    attempt: int
    trigger: str
    logger: logging.Logger


def previous_fire(trigger: Trigger, instant: datetime, horizon: timedelta = timedelta(days=800)) -> datetime | None:
    """The last scheduled instant of ``trigger`` strictly before ``instant`` (None within ``horizon``).

    Triggers only look forward, so this searches back in growing windows.
    """
    window = timedelta(minutes=1)
    while window <= horizon:
        found = None
        probe = trigger.next_after(instant - window)
        while probe is not None and probe < instant:
            found = probe
            probe = trigger.next_after(probe)
        if found is not None:
            return found
        window *= 4
    return None
