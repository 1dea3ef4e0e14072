"""Which fires of one job are due, given its persisted progress and the current instant. Pure.

Rules (the contract of catch-up):

- A fire is due when its scheduled instant plus its jitter offset has passed.
- A due fire is *on time* when it is late by at most ``late_after`` (the beat passes about two lease
  periods, so a failover is not a gap): it is emitted with ``trigger: schedule``.
- Older due fires were missed by a gap with no leader, and the job's ``catchup`` decides:
  ``none`` emits none of them; ``latest`` emits the most recent one, within ``misfire_grace``, unless an on-time
  fire supersedes it; ``all`` emits each within ``misfire_grace``, in order, at most ``catchup_limit`` (the
  most recent ones). They carry ``trigger: catchup``.
- Every due fire not emitted becomes a ``missed`` step, so an audit hole is visible, never silent. Beyond
  ``MISSED_RECORD_LIMIT`` single records, the rest of a long gap is one step covering a range.
- Steps come in scheduled order, so progress only moves forward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from beatd.triggers import Trigger

__all__ = ["MISSED_RECORD_LIMIT", "SCAN_LIMIT", "CatchupPolicy", "Plan", "Step", "plan_job"]

MISSED_RECORD_LIMIT = 100
"""Most single ``missed`` records one plan writes; older missed fires of the same gap share one range record."""

SCAN_LIMIT = 10_000
"""Most fires one plan walks through; a longer gap is skipped to the emission window and counted as a range."""

_TINY = timedelta(microseconds=1)


@dataclass(frozen=True)
class CatchupPolicy:
    """The job keys that govern missed fires."""

    catchup: Literal["none", "latest", "all"]
    misfire_grace: timedelta
    catchup_limit: int


@dataclass(frozen=True)
class Step:
    """One decision about one fire (or, for a long gap, a range of missed fires ending at ``scheduled_at``).

    ``kind`` is ``emit`` or ``miss``; ``trigger`` is ``schedule`` or ``catchup`` for emits; for a missed range,
    ``first`` is its first instant and ``count`` how many fires it covers (``count_exact`` False: at least).
    """

    kind: Literal["emit", "miss"]
    scheduled_at: datetime
    trigger: Literal["schedule", "catchup"] = "schedule"
    reason: str = ""
    first: datetime | None = None
    count: int = 1
    count_exact: bool = True


@dataclass(frozen=True)
class Plan:
    """The steps to apply now, the progress they leave, and when to look at the job again (None: never)."""

    steps: tuple[Step, ...]
    progress: datetime
    next_due: datetime | None


def plan_job(
    trigger: Trigger,
    jitter: Callable[[datetime], timedelta],
    progress: datetime,
    now: datetime,
    policy: CatchupPolicy,
    late_after: timedelta,
) -> Plan:
    """Decide the steps for one job whose last passed scheduled instant is ``progress``, at ``now``.

    ``jitter(scheduled)`` gives the emission delay of a fire. All instants are timezone-aware.
    """
    window_start = now - max(late_after, policy.misfire_grace if policy.catchup != "none" else late_after)
    steps: list[Step] = []
    fire = trigger.next_after(progress)
    last = progress
    if fire is not None and fire < window_start and fire + jitter(fire) <= now:
        reason = "catchup: none" if policy.catchup == "none" else "older than misfire_grace"
        fire, last = _skip_old(trigger, fire, window_start, steps, reason)
    window: list[datetime] = []
    while fire is not None and fire + jitter(fire) <= now and len(window) < SCAN_LIMIT:
        window.append(fire)
        fire = trigger.next_after(fire)
    steps.extend(_decide(window, jitter, now, policy, late_after))
    if window:
        last = window[-1]
    next_due = None if fire is None else fire + jitter(fire)
    return Plan(steps=tuple(steps), progress=last, next_due=next_due)


def _skip_old(
    trigger: Trigger, fire: datetime, window_start: datetime, steps: list[Step], reason: str
) -> tuple[datetime | None, datetime]:
    """Record the fires before the emission window as missed; return the first fire inside it and the last
    one recorded."""
    singles: list[datetime] = []
    range_first: datetime | None = None
    range_count = 0
    exact = True
    current: datetime | None = fire
    last = fire
    scanned = 0
    while current is not None and current < window_start:
        if scanned >= SCAN_LIMIT:
            exact = False
            current = trigger.next_after(window_start - _TINY)
            break
        if len(singles) < MISSED_RECORD_LIMIT:
            singles.append(current)
        else:
            range_first = range_first or current
            range_count += 1
        last = current
        scanned += 1
        current = trigger.next_after(current)
    steps.extend(Step("miss", instant, reason=reason) for instant in singles)
    if range_first is not None or not exact:
        end = last if exact else window_start - _TINY
        steps.append(Step("miss", end, reason=reason, first=range_first or end, count=range_count, count_exact=exact))
        last = end
    return current, last


def _decide(
    window: list[datetime],
    jitter: Callable[[datetime], timedelta],
    now: datetime,
    policy: CatchupPolicy,
    late_after: timedelta,
) -> list[Step]:
    late = [fire for fire in window if now - (fire + jitter(fire)) > late_after]
    late_set = set(late)
    any_on_time = len(late) < len(window)
    chosen: set[datetime] = set()
    if policy.catchup == "latest" and late and not any_on_time and now - late[-1] <= policy.misfire_grace:
        chosen = {late[-1]}
    elif policy.catchup == "all":
        eligible = [fire for fire in late if now - fire <= policy.misfire_grace]
        chosen = set(eligible[-policy.catchup_limit :])
    steps: list[Step] = []
    for fire in window:
        if fire not in late_set:
            steps.append(Step("emit", fire))
        elif fire in chosen:
            steps.append(Step("emit", fire, trigger="catchup"))
        else:
            steps.append(Step("miss", fire, reason=_miss_reason(policy, fire, now)))
    return steps


def _miss_reason(policy: CatchupPolicy, fire: datetime, now: datetime) -> str:
    if policy.catchup == "none":
        return "catchup: none"
    if now - fire > policy.misfire_grace:
        return "older than misfire_grace"
    if policy.catchup == "latest":
        return "superseded by a later fire (catchup: latest)"
    return "beyond catchup_limit"
