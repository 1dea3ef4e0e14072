"""The interval trigger: every fixed period of elapsed time, aligned so that every replica agrees."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from beatd.durations import format_duration
from beatd.errors import ScheduleError
from beatd.triggers.at import format_instant
from beatd.triggers.base import ensure_aware

__all__ = ["EPOCH", "IntervalTrigger"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""The anchor of an interval without ``start``: fires fall on whole multiples of the period since it."""

_ONE_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class IntervalTrigger:
    """Fires at ``anchor + k * period`` for whole ``k``; ``anchor`` is ``start`` if given, else :data:`EPOCH`.

    With ``start`` there is no fire before it (``k >= 0``); with ``end`` none after it (inclusive). The
    arithmetic is in whole microseconds, so fires never drift, and wall clocks and DST play no part.
    Raises :class:`ScheduleError` when ``period`` is not positive or ``end`` is before ``start``.
    """

    period: timedelta
    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.period, timedelta) or self.period <= timedelta(0):
            raise ScheduleError(f"invalid interval {self.period!r}: expected a period greater than zero")
        start = None if self.start is None else ensure_aware(self.start)
        end = None if self.end is None else ensure_aware(self.end)
        if start is not None and end is not None and end < start:
            raise ScheduleError(f"end {format_instant(end)} is before start {format_instant(start)}")
        # A frozen dataclass normalises its own fields once, here, through object.__setattr__.
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    def next_after(self, instant: datetime) -> datetime | None:
        """The first fire strictly after the aware ``instant``, as UTC, or ``None`` past ``end``."""
        anchor = EPOCH if self.start is None else self.start
        period = self.period // _ONE_MICROSECOND
        elapsed = (ensure_aware(instant) - anchor) // _ONE_MICROSECOND
        count = elapsed // period + 1  # floor division: also right before the anchor
        if self.start is not None:
            count = max(count, 0)
        try:
            fire = anchor + timedelta(microseconds=count * period)
        except OverflowError:  # past year 9999
            return None
        if self.end is not None and fire > self.end:
            return None
        return fire

    def describe(self) -> str:
        """``every 30s``, with ``, aligned to 2026-01-01 00:00 UTC`` when ``start`` is given."""
        text = f"every {format_duration(self.period)}"
        if self.start is not None:
            text += f", aligned to {format_instant(self.start)}"
        return text
