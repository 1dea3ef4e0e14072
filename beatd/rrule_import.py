"""An RFC 5545 recurrence rule (RedBeat's ``rrule`` schedule, dateutil's semantics) as a beatd schedule.

``Recurrence`` is the rule as RedBeat stores it (its fields, dateutil's numbering: ``freq`` 0 = YEARLY ..
6 = SECONDLY, weekdays 0 = Monday). ``to_schedule`` returns the beatd schedule keys that fire at exactly the
rule's instants (``every`` with ``start``, or ``cron`` with ``timezone``, both bounded by ``start``/``end``),
or why there is none. Two shapes convert:

* no ``by*`` part and a fixed-length period (seconds to weeks): ``every: interval x period`` from ``dtstart``;
* ``interval: 1`` with ``by*`` parts that act as filters (``bymonth``, ``bymonthday`` >= 1, ``byweekday``
  without an n-th, ``byhour``, ``byminute``, ``bysecond`` 0), in a zone beatd can name: a cron expression.

A ``dtstart`` in an IANA zone (a live rule, such as a ``beat_schedule``'s; RedBeat's Redis keeps only the UTC
offset) makes dateutil step wall-clock days: DAILY and WEEKLY with ``interval: 1`` then take the cron path in
that zone (following daylight saving time as dateutil does), and ``interval`` > 1 on days or weeks in a zone
with daylight saving time is refused (a fixed-length ``every`` would drift by an hour twice a year).

Everything else (``bysetpos``, ``byyearday``, ``byweekno``, ``byeaster``, the n-th weekday, negative month
days, both day fields, seconds, ``interval`` > 1 on a calendar period) is refused with the reason; ``by*``
values out of their range are a ValueError from ``Recurrence.from_parts``. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from beatd.durations import format_duration

__all__ = ["Recurrence", "to_schedule"]

YEARLY, MONTHLY, WEEKLY, DAILY, HOURLY, MINUTELY, SECONDLY = range(7)
_FREQUENCY_NAMES = ("YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY", "MINUTELY", "SECONDLY")
_PERIOD = {
    WEEKLY: timedelta(weeks=1),
    DAILY: timedelta(days=1),
    HOURLY: timedelta(hours=1),
    MINUTELY: timedelta(minutes=1),
    SECONDLY: timedelta(seconds=1),
}
_UNSUPPORTED = ("bysetpos", "byyearday", "byweekno", "byeaster")
_RANGES = {
    "bysetpos": (-366, 366),
    "byyearday": (-366, 366),
    "byweekno": (-53, 53),
    "byeaster": (-366, 366),
    "bymonth": (1, 12),
    "bymonthday": (-31, 31),
    "byweekday": (0, 6),
    "byhour": (0, 23),
    "byminute": (0, 59),
    "bysecond": (0, 59),
}
"""Each ``by*`` part's values as dateutil reads them (0 is no position nor month day, see ``_NONZERO``)."""
_NONZERO = ("bysetpos", "byyearday", "byweekno", "bymonthday")
_MOST_COUNT = 100_000
"""Longest ``count`` whose last instant is computed (by stepping the rule) for ``end``."""


class _Refusal(Exception):
    """The rule has no beatd equivalent; the message says why."""


@dataclass(frozen=True)
class Recurrence:
    """A recurrence rule's parts, as RedBeat stores them; ``by*`` parts are None or a tuple of ints."""

    freq: int
    dtstart: datetime
    interval: int = 1
    count: int | None = None
    until: datetime | None = None
    bysetpos: tuple[int, ...] | None = None
    bymonth: tuple[int, ...] | None = None
    bymonthday: tuple[int, ...] | None = None
    byyearday: tuple[int, ...] | None = None
    byeaster: tuple[int, ...] | None = None
    byweekno: tuple[int, ...] | None = None
    byweekday: tuple[int, ...] | None = None
    byhour: tuple[int, ...] | None = None
    byminute: tuple[int, ...] | None = None
    bysecond: tuple[int, ...] | None = None
    nth_weekday: bool = False
    """A ``byweekday`` part named an n-th weekday (``MO(+1)``): refused. Only a live rule object shows it:
    RedBeat's encoder stores ``MO(+1)`` as ``{"wkday": 0}``, so a rule read from Redis has lost the n (and
    RedBeat itself then runs it on every such weekday)."""

    @classmethod
    def from_parts(cls, parts: dict[str, Any]) -> Recurrence:
        """The rule from RedBeat's decoded fields (ints, lists of ints, weekday objects, datetimes).

        Raises ValueError or TypeError on fields that are not a recurrence rule's."""
        freq = parts["freq"]
        if isinstance(freq, str):
            freq = _FREQUENCY_NAMES.index(freq.upper())
        if not isinstance(freq, int) or not 0 <= freq <= SECONDLY:
            raise ValueError(f"freq {freq!r} is not 0-6 or a frequency name")
        dtstart = parts.get("dtstart")
        if not isinstance(dtstart, datetime) or dtstart.tzinfo is None:
            raise ValueError("dtstart is missing or has no time zone")
        by, nth = {}, False
        for key in _RANGES:
            by[key], named_nth = _values(parts, key)
            nth = nth or named_nth
        until = parts.get("until")
        if until is not None and not isinstance(until, datetime):
            raise ValueError(f"until {until!r} is not an instant")
        interval, count = parts.get("interval") or 1, parts.get("count")
        if not isinstance(interval, int) or interval < 1 or (count is not None and not isinstance(count, int)):
            raise ValueError(f"interval {interval!r} or count {count!r} is not a positive integer")
        return cls(freq, dtstart, interval, count, until, nth_weekday=nth, **by)


def _values(parts: dict[str, Any], key: str) -> tuple[tuple[int, ...] | None, bool]:
    """The ``by*`` part ``key`` as sorted distinct ints (None if absent), and whether a weekday named an n-th.
    Raises ValueError on a value that is not an int in the part's range."""
    raw = parts.get(key)
    if raw is None:
        return None, False
    items = raw if isinstance(raw, list | tuple | set | frozenset) else [raw]
    out, nth = [], False
    low, high = _RANGES[key]
    for item in items:
        if hasattr(item, "weekday"):  # dateutil's weekday (MO, MO(+1)); RedBeat decodes its own this way
            nth = nth or bool(getattr(item, "n", None))
            item = item.weekday
        if not isinstance(item, int) or isinstance(item, bool):
            raise ValueError(f"{key} holds {item!r}, expected integers")
        if not low <= item <= high or (item == 0 and key in _NONZERO):
            zero = " other than 0" if key in _NONZERO else ""
            raise ValueError(f"{key} holds {item}, expected {low} to {high}{zero}")
        out.append(item)
    return tuple(sorted(set(out))), nth


def to_schedule(rule: Recurrence) -> dict[str, Any] | str:
    """The beatd schedule keys firing at the rule's instants, or the reason (a sentence) there are none."""
    unsupported = [key for key in _UNSUPPORTED if getattr(rule, key) is not None]
    if unsupported:
        return f"rrule with {', '.join(unsupported)} has no beatd equivalent (cron filters fields, it does not count)"
    if rule.nth_weekday:
        return "rrule with an n-th weekday (such as MO(+1)) has no beatd equivalent"
    try:
        return _schedule(rule)
    except _Refusal as refusal:
        return str(refusal)


def _schedule(rule: Recurrence) -> dict[str, Any]:
    end = _end(rule)
    bounds = {"start": rule.dtstart.isoformat(), **({"end": end.isoformat()} if end else {})}
    filters = ("bymonth", "bymonthday", "byweekday", "byhour", "byminute", "bysecond")
    calendar_days = rule.freq in (DAILY, WEEKLY) and has_daylight_saving(rule.dtstart)
    if calendar_days and rule.interval != 1:
        raise _Refusal(
            f"rrule {_FREQUENCY_NAMES[rule.freq]} with interval {rule.interval} in {_zone_name(rule.dtstart)}, a "
            "zone with daylight saving time: dateutil keeps the wall-clock time, a fixed-length every would move "
            "an hour twice a year; use interval 1 or a fixed-offset dtstart"
        )
    if rule.freq in _PERIOD and not calendar_days and all(getattr(rule, key) is None for key in filters):
        step = _PERIOD[rule.freq] * rule.interval
        return {"every": format_duration(step), **bounds}
    if rule.interval != 1:
        raise _Refusal(
            f"rrule {_FREQUENCY_NAMES[rule.freq]} with interval {rule.interval} and by-parts counts periods from "
            "dtstart, which cron cannot; keep interval 1 or drop the by-parts"
        )
    zone = _zone_name(rule.dtstart)
    if zone is None:
        raise _Refusal(f"dtstart's UTC offset {rule.dtstart.utcoffset()} is not whole hours: no IANA zone keeps it")
    return {"cron": _cron(rule), "timezone": zone, **bounds}


def has_daylight_saving(instant: datetime) -> bool:
    """Whether the instant's zone is an IANA zone whose UTC offset changes within the instant's year."""
    if not isinstance(getattr(instant.tzinfo, "key", None), str):
        return False
    offsets = {datetime(instant.year, month, 1, tzinfo=instant.tzinfo).utcoffset() for month in range(1, 13)}
    return len(offsets) > 1


def _end(rule: Recurrence) -> datetime | None:
    if rule.count is None:
        return rule.until
    if rule.count < 1 or rule.count > _MOST_COUNT:
        raise _Refusal(f"rrule count {rule.count} is not 1-{_MOST_COUNT}")
    from dateutil import rrule as dateutil_rrule  # Celery's own dependency: the rule's meaning is dateutil's

    weekdays = [dateutil_rrule.weekdays[day] for day in rule.byweekday] if rule.byweekday else None
    filters = {key: getattr(rule, key) for key in ("bymonth", "bymonthday", "byhour", "byminute", "bysecond")}
    instants = dateutil_rrule.rrule(
        rule.freq,
        dtstart=rule.dtstart,
        interval=rule.interval,
        count=rule.count,
        until=rule.until,
        byweekday=weekdays,
        **filters,
    )
    last = None
    for last in instants:  # noqa: B007 (the last instant is the end)
        pass
    return last


def _cron(rule: Recurrence) -> str:
    start = rule.dtstart
    seconds = rule.bysecond if rule.bysecond is not None else ((start.second,) if rule.freq < SECONDLY else None)
    if seconds != (0,) or start.microsecond:
        raise _Refusal("rrule fires at seconds other than :00 (or every second): beatd's cron has minute resolution")
    day_parts = (rule.bymonthday, rule.byweekday)
    bymonth, bymonthday, byweekday = rule.bymonth, rule.bymonthday, rule.byweekday
    if all(part is None for part in day_parts):  # dateutil's defaults, taken from dtstart
        if rule.freq == YEARLY:
            bymonth, bymonthday = bymonth or (start.month,), (start.day,)
        elif rule.freq == MONTHLY:
            bymonthday = (start.day,)
        elif rule.freq == WEEKLY:
            byweekday = (start.weekday(),)
    if bymonthday is not None and byweekday is not None:
        raise _Refusal(
            "rrule with both bymonthday and byweekday runs on days matching both; beatd's cron, like cron, on "
            "days matching either: split it, or keep one and test the other in the task"
        )
    if bymonthday is not None and any(day < 1 or day > 31 for day in bymonthday):
        raise _Refusal("rrule with a bymonthday counted from the month's end (negative) has no cron equivalent")
    hours = rule.byhour if rule.byhour is not None else ((start.hour,) if rule.freq < HOURLY else None)
    minutes = rule.byminute if rule.byminute is not None else ((start.minute,) if rule.freq < MINUTELY else None)
    weekdays = tuple(sorted((day + 1) % 7 for day in byweekday)) if byweekday is not None else None
    return " ".join(_field(part) for part in (minutes, hours, bymonthday, bymonth, weekdays))


def _field(values: tuple[int, ...] | None) -> str:
    return "*" if values is None else ",".join(str(value) for value in values)


def _zone_name(instant: datetime) -> str | None:
    """An IANA name for the instant's zone: its own key, or ``Etc/GMT-N`` for a whole-hour fixed offset."""
    key = getattr(instant.tzinfo, "key", None)
    if isinstance(key, str):
        return key
    offset = instant.utcoffset() or timedelta(0)
    hours, rest = divmod(int(offset.total_seconds()), 3600)
    if rest:
        return None
    return "UTC" if hours == 0 else f"Etc/GMT{-hours:+d}"  # POSIX's inverted sign: Etc/GMT-2 is UTC+02:00
