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

from collections import deque
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

    ``jitter(scheduled)`` gives the emission delay of a fire. All instants are timezone-aware. A gap is
    walked once; fires before the emission window (older than ``misfire_grace``, or than ``late_after``
    under ``catchup: none``) are skipped after SCAN_LIMIT of them and counted as a range.
    """
    emit_late = {"none": 0, "latest": 1, "all": policy.catchup_limit}[policy.catchup]
    window_start = now - max(late_after, policy.misfire_grace if emit_late else late_after)
    missed = _Missed("catchup: none" if not emit_late else "older than misfire_grace")
    candidates: deque[datetime] = deque()  # late fires that may still be caught up, newest last
    on_time: list[datetime] = []
    fire = trigger.next_after(progress)
    scanned = 0
    while fire is not None and fire + jitter(fire) <= now:
        if fire < window_start:
            if scanned >= SCAN_LIMIT:  # a long gap: jump to the window, counting the rest as a range
                missed.add_uncounted(window_start - _TINY)
                fire = trigger.next_after(window_start - _TINY)
                continue
            missed.add(fire)
        elif now - (fire + jitter(fire)) > late_after:
            candidates.append(fire)
            if len(candidates) > emit_late:
                missed.add(candidates.popleft(), _superseded(policy))
        else:
            on_time.append(fire)
        scanned += 1
        fire = trigger.next_after(fire)
    if policy.catchup == "latest" and on_time:  # the on-time fire is the latest: no catch-up needed
        for late in candidates:
            missed.add(late, _superseded(policy))
        candidates.clear()
    steps = [*missed.steps(), *(Step("emit", late, trigger="catchup") for late in candidates)]
    steps.extend(Step("emit", instant) for instant in on_time)
    steps.sort(key=lambda step: step.scheduled_at)
    last = max((step.scheduled_at for step in steps), default=progress)
    next_due = None if fire is None else fire + jitter(fire)
    return Plan(steps=tuple(steps), progress=max(last, progress), next_due=next_due)


def _superseded(policy: CatchupPolicy) -> str:
    if policy.catchup == "latest":
        return "superseded by a later fire (catchup: latest)"
    if policy.catchup == "all":
        return "beyond catchup_limit"
    return "catchup: none"


class _Missed:
    """Missed fires of one plan: the newest MISSED_RECORD_LIMIT as single steps, older ones as one range."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.singles: deque[tuple[datetime, str]] = deque()
        self.range_first: datetime | None = None
        self.range_last: datetime | None = None
        self.range_count = 0
        self.exact = True

    def add(self, instant: datetime, reason: str | None = None) -> None:
        self.singles.append((instant, reason or self.reason))
        if len(self.singles) > MISSED_RECORD_LIMIT:
            oldest, _ = self.singles.popleft()
            self._extend_range(oldest)

    def add_uncounted(self, until: datetime) -> None:
        """Fires up to ``until`` were skipped without counting them."""
        while self.singles and self.singles[0][0] <= until:
            self._extend_range(self.singles.popleft()[0])
        self.range_first = self.range_first or until
        self.range_last = until
        self.exact = False

    def _extend_range(self, instant: datetime) -> None:
        self.range_first = self.range_first or instant
        self.range_last = instant
        self.range_count += 1

    def steps(self) -> list[Step]:
        found = [Step("miss", instant, reason=reason) for instant, reason in self.singles]
        if self.range_last is not None:
            found.append(
                Step("miss", self.range_last, reason=self.reason, first=self.range_first, count=self.range_count,
                     count_exact=self.exact)
            )  # fmt: skip
        return found
