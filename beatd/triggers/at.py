"""One-off fires at given instants, and how users write instants (``at``, ``start``, ``end``, ``--after``)."""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from beatd.errors import ScheduleError
from beatd.triggers.base import ensure_aware
from beatd.triggers.zones import resolve_wall_time

__all__ = ["AtTrigger", "format_instant", "parse_instant"]

_EXPECTED = "expected ISO-8601 such as 2026-12-01T00:05:00+08:00"
_PLAIN_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


MIN_YEAR, MAX_YEAR = 1900, 9000
"""Instants outside these years are refused: far from the limits of datetime, where time-zone arithmetic
would overflow."""


def parse_instant(value: str | date | datetime, zone: ZoneInfo) -> datetime:
    """Read an instant as a user wrote it and return it as an aware UTC datetime.

    ISO-8601 text (``2026-12-01T00:05:00+08:00``, ``2026-12-01T00:05Z``, ``2026-12-01 00:05``); a plain
    date (``2026-12-01``) means midnight at its start. A value without an offset is a wall time in ``zone``:
    one that occurs twice (clocks went back) means its first occurrence, and one that does not exist (clocks
    went forward) means the instant the clocks jumped. A ``date`` or ``datetime`` (YAML may produce them)
    is read the same way. Raises :class:`ScheduleError` for anything else.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        try:
            if _PLAIN_DATE.fullmatch(text):
                parsed = datetime.combine(date.fromisoformat(text), datetime.min.time())
            else:
                parsed = datetime.fromisoformat(text)
        except ValueError as error:
            raise ScheduleError(f"invalid instant {value!r}: {_EXPECTED}") from error
    else:
        raise ScheduleError(f"invalid instant {value!r}: {_EXPECTED}")
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise ScheduleError(f"invalid instant {value!r}: expected a year from {MIN_YEAR} to {MAX_YEAR}")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return resolve_wall_time(parsed.replace(tzinfo=None), zone)
    return parsed.astimezone(UTC)


def format_instant(instant: datetime) -> str:
    """An aware instant as users read it in UTC: ``2026-12-01 00:05 UTC`` (seconds only when not zero)."""
    utc = ensure_aware(instant)
    if utc.microsecond:
        return utc.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    if utc.second:
        return utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    return utc.strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True, slots=True, init=False)
class AtTrigger:
    """Fires once at each of ``instants`` (aware; kept sorted, without duplicates, as UTC).

    ``start`` and ``end``, when given, drop instants before ``start`` or after ``end`` (both inclusive
    bounds). Raises :class:`ScheduleError` when no instant is given or ``end`` is before ``start``.
    """

    instants: tuple[datetime, ...]
    start: datetime | None = None
    end: datetime | None = None
    _sorted: tuple[datetime, ...] = field(init=False, repr=False, compare=False)

    def __init__(
        self, instants: Sequence[datetime], start: datetime | None = None, end: datetime | None = None
    ) -> None:
        if isinstance(instants, datetime):
            instants = [instants]
        if not instants:
            raise ScheduleError("a one-off schedule needs at least one instant")
        ordered = tuple(sorted({ensure_aware(instant) for instant in instants}))
        start_utc = None if start is None else ensure_aware(start)
        end_utc = None if end is None else ensure_aware(end)
        if start_utc is not None and end_utc is not None and end_utc < start_utc:
            raise ScheduleError(f"end {format_instant(end_utc)} is before start {format_instant(start_utc)}")
        kept = tuple(
            instant
            for instant in ordered
            if (start_utc is None or instant >= start_utc) and (end_utc is None or instant <= end_utc)
        )
        # A frozen dataclass sets its own fields through object.__setattr__.
        object.__setattr__(self, "instants", ordered)
        object.__setattr__(self, "start", start_utc)
        object.__setattr__(self, "end", end_utc)
        object.__setattr__(self, "_sorted", kept)

    def next_after(self, instant: datetime) -> datetime | None:
        """The first given instant strictly after the aware ``instant`` (within the bounds), or ``None``."""
        index = bisect.bisect_right(self._sorted, ensure_aware(instant))
        return self._sorted[index] if index < len(self._sorted) else None

    def describe(self) -> str:
        """``once at 2026-12-01 00:05 UTC``, or ``at 3 instants from ... to ...`` for several."""
        if len(self.instants) == 1:
            return f"once at {format_instant(self.instants[0])}"
        first, last = format_instant(self.instants[0]), format_instant(self.instants[-1])
        return f"at {len(self.instants)} instants from {first} to {last}"
