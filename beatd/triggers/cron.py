"""The cron trigger: Vixie cron fields read as wall-clock times in a job's IANA time zone.

DST rules (the contract, which differs from croniter and APScheduler 3 on purpose):

* A job whose hour field is *fixed* (its text does not start with ``*``: ``30 2 * * *``, ``0 9-17 * * *``,
  ``H 3 * * *``) follows wall time. A matching wall time in a spring-forward gap fires once, at the
  transition instant (the first instant after the gap); all matching wall times in one gap, and a match at
  the wall time that ends the gap, are that one fire. A matching wall time that occurs twice at fall-back
  fires once, at its first occurrence.
* A job whose hour field starts with ``*`` (``*``, ``*/2``) follows elapsed time: a wall time that does not
  exist does not fire, and one that occurs twice fires at both occurrences, so ``0 * * * *`` runs every
  real hour and ``*/15 * * * *`` every 15 real minutes through any transition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cron_descriptor import Options, get_description

from beatd.errors import ScheduleError
from beatd.triggers.at import format_instant
from beatd.triggers.base import ensure_aware
from beatd.triggers.cron_fields import HORIZON_YEARS, CronFields, parse_cron_fields
from beatd.triggers.zones import load_zone, offset_at, offset_segment_end, resolve_wall_time

__all__ = ["CronTrigger"]

_ONE_MINUTE = timedelta(minutes=1)
_ONE_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class CronTrigger:
    """Fires at the instants a five-field cron expression names, read in the IANA time zone ``zone``.

    ``expression`` is kept as written; ``hash_key`` (the job name) chooses the values of ``H`` fields.
    ``start`` and ``end`` (aware; stored as UTC) bound the fires: every fire is ``>= start`` and
    ``<= end``. Constructing one parses the expression and raises :class:`ScheduleError` when it is invalid
    or when ``end`` is before ``start``. ``fields`` holds the allowed values after ``H`` substitution and
    ``hour_follows_elapsed_time`` says which DST rule applies (see the module docstring).
    """

    expression: str
    zone: ZoneInfo
    hash_key: str = ""
    start: datetime | None = None
    end: datetime | None = None
    fields: CronFields = field(init=False, repr=False, compare=False)
    expanded_expression: str = field(init=False, repr=False, compare=False)
    hour_follows_elapsed_time: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields, expanded = parse_cron_fields(self.expression, self.hash_key)
        start = None if self.start is None else ensure_aware(self.start)
        end = None if self.end is None else ensure_aware(self.end)
        if start is not None and end is not None and end < start:
            raise ScheduleError(f"end {format_instant(end)} is before start {format_instant(start)}")
        # A frozen dataclass sets its derived fields once, here, through object.__setattr__.
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "expanded_expression", expanded)
        object.__setattr__(self, "hour_follows_elapsed_time", expanded.split(" ")[1].startswith("*"))

    @classmethod
    def parse(
        cls,
        expression: str,
        zone: ZoneInfo | str,
        hash_key: str = "",
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> CronTrigger:
        """Build a trigger from user input; ``zone`` may be an IANA name. Raises :class:`ScheduleError`."""
        if not isinstance(expression, str):
            raise ScheduleError(f"invalid cron expression {expression!r}: expected a string of 5 fields")
        return cls(expression, load_zone(zone) if isinstance(zone, str) else zone, hash_key, start, end)

    def next_after(self, instant: datetime) -> datetime | None:
        """The first fire strictly after the aware ``instant``, as UTC, or ``None`` if there is none.

        Honours ``start`` and ``end``; an expression that can never match (``0 0 30 2 *``) gives ``None``
        after a bounded search of :data:`~beatd.triggers.cron_fields.HORIZON_YEARS` years.
        """
        after = ensure_aware(instant)
        if self.start is not None and after < self.start:
            after = self.start - _ONE_MICROSECOND
        if self.end is not None and after >= self.end:
            return None
        try:
            if self.hour_follows_elapsed_time:
                fire = self._next_by_elapsed_time(after)
            else:
                fire = self._next_by_wall_time(after)
        except OverflowError:  # the search ran past year 9999
            return None
        if fire is None or (self.end is not None and fire > self.end):
            return None
        return fire

    def _next_by_wall_time(self, after: datetime) -> datetime | None:
        """Fixed-hour rule: walk matching wall times in wall order, resolving each to an instant.

        The resolution (first occurrence; gap -> transition) never goes backwards in time as the wall time
        increases, so the first resolved instant after ``after`` is the answer.
        """
        wall = after.astimezone(self.zone).replace(tzinfo=None, second=0, microsecond=0, fold=0)
        # Wall times before ``wall`` resolve no later than ``after``; those from ``wall`` on in the repeated
        # hour after a fall-back may resolve before it too, and are skipped by the loop.
        while True:
            match = self.fields.next_match(wall)
            if match is None:
                return None
            fire = resolve_wall_time(match, self.zone)
            if fire > after:
                return fire
            wall = match + _ONE_MINUTE

    def _next_by_elapsed_time(self, after: datetime) -> datetime | None:
        """Elapsed-time rule: walk runs of constant UTC offset; inside one, wall time is a plain calendar."""
        low = after + _ONE_MICROSECOND  # the first candidate instant, inclusive
        last_year = after.year + HORIZON_YEARS
        while low.year <= last_year:
            offset = offset_at(self.zone, low)
            segment_end = offset_segment_end(self.zone, low)
            first_wall = _ceil_to_minute((low + offset).replace(tzinfo=None))
            match = self.fields.next_match(first_wall)
            if match is None:
                return None
            fire = (match - offset).replace(tzinfo=UTC)
            if fire < segment_end:
                return fire
            low = segment_end
        return None

    def describe(self) -> str:
        """The schedule in words in 24-hour time, from cron-descriptor (``at 02:30``); no zone is added."""
        options = Options()
        options.use_24hour_time_format = True
        options.verbose = False
        try:
            text = str(get_description(self.expanded_expression, options))
        except Exception:  # cron-descriptor rejects a few forms beatd accepts; fall back to the text
            return f"cron {self.expanded_expression}"
        if not (self.fields.day_of_month_restricted and self.fields.day_of_week_restricted):
            # cron-descriptor says "or on Friday" whenever day-of-month is not exactly "*"; by the Vixie
            # rule a day-of-month starting with "*" (such as */2) is ANDed with the day of the week.
            text = text.replace(", or on ", ", only on ")
        return text[:1].lower() + text[1:]


def _ceil_to_minute(wall: datetime) -> datetime:
    floored = wall.replace(second=0, microsecond=0)
    return floored if floored == wall else floored + _ONE_MINUTE
