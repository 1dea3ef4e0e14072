"""Cron expressions as text -> the sets of values they allow, and matching naive wall times against them.

The accepted language is Vixie cron's five fields, ``minute hour day-of-month month day-of-week``, with
names (``jan``, ``mon``; any case), lists, ranges, steps, ``0`` or ``7`` for Sunday, and the aliases
``@yearly @annually @monthly @weekly @daily @midnight @hourly``. In the minute and hour fields ``H``,
``H(a-b)``, ``H/n`` and ``H(a-b)/n`` pick a value that is stable for a job name (Jenkins' hashed cron).
The fields are parsed here, by no library, exactly as :func:`_field_values` states (``a-a`` is just ``a``).
Everything here is about naive wall times; time zones and DST belong to :mod:`beatd.triggers.cron`.
"""

from __future__ import annotations

import bisect
import calendar
import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime

from beatd.errors import ScheduleError

__all__ = [
    "ALIASES",
    "EXPECTED_FIELDS",
    "FIELD_NAMES",
    "HORIZON_YEARS",
    "CronFields",
    "expand_hashes",
    "parse_cron_fields",
]

FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
EXPECTED_FIELDS = "expected 5 fields: minute hour day-of-month month day-of-week"
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTH_NAMES = {name.lower(): number for number, name in enumerate(calendar.month_abbr) if name}
_DAY_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_NAMES_BY_FIELD: dict[int, dict[str, int]] = {3: _MONTH_NAMES, 4: _DAY_NAMES}
_HASH_FORM = re.compile(r"h(?:\((\d+)-(\d+)\))?(?:/(\d+))?")
_PART = re.compile(r"(?:\*|([0-9]+|[a-z]+)(?:-([0-9]+|[a-z]+))?)(?:/([0-9]+))?")
_LONGEST_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# Horizon of the naive search: 400 years is one full Gregorian cycle of dates and weekdays, so any
# expression that can fire at all fires within it.
HORIZON_YEARS = 400


@dataclass(frozen=True, slots=True)
class CronFields:
    """The values each cron field allows, as sorted tuples, and the Vixie day-field rule.

    ``days_of_week`` uses 0 for Sunday (``7`` is folded into 0). ``day_of_month_restricted`` and
    ``day_of_week_restricted`` say whether that field's text does *not* start with ``*``: when both are
    restricted a day matches if either field matches, otherwise both must match (Vixie cron).
    """

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_month: tuple[int, ...]
    months: tuple[int, ...]
    days_of_week: tuple[int, ...]
    day_of_month_restricted: bool
    day_of_week_restricted: bool

    def day_matches(self, day: date) -> bool:
        """Whether the calendar ``day`` is allowed by the month and both day fields."""
        if day.month not in self.months:
            return False
        by_month_day = day.day in self.days_of_month
        by_week_day = (day.weekday() + 1) % 7 in self.days_of_week
        if self.day_of_month_restricted and self.day_of_week_restricted:
            return by_month_day or by_week_day
        return by_month_day and by_week_day

    def matches(self, wall: datetime) -> bool:
        """Whether the naive wall time ``wall`` (seconds ignored) is one the expression names."""
        return wall.minute in self.minutes and wall.hour in self.hours and self.day_matches(wall.date())

    def next_match(self, wall: datetime) -> datetime | None:
        """The first naive wall minute ``>= wall`` that matches, or ``None`` within :data:`HORIZON_YEARS`.

        ``wall`` must be naive and whole-minute. Skips whole months, days and hours that cannot match, so
        a call costs a few dozen steps rather than one per minute.
        """
        if not self._can_ever_match():
            return None
        year, month, day, hour, minute = wall.year, wall.month, wall.day, wall.hour, wall.minute
        last_year = min(year + HORIZON_YEARS, 9999)
        while year <= last_year:
            if month not in self.months or not self._month_can_match(year, month):
                year, month = _next_month(year, month)
                day, hour, minute = 1, 0, 0
                continue
            if day > calendar.monthrange(year, month)[1]:
                year, month = _next_month(year, month)
                day, hour, minute = 1, 0, 0
                continue
            if not self.day_matches(date(year, month, day)):
                day, hour, minute = day + 1, 0, 0
                continue
            hour_index = bisect.bisect_left(self.hours, hour)
            if hour_index == len(self.hours):
                day, hour, minute = day + 1, 0, 0
                continue
            if self.hours[hour_index] != hour:
                hour, minute = self.hours[hour_index], 0
            minute_index = bisect.bisect_left(self.minutes, minute)
            if minute_index == len(self.minutes):
                hour, minute = hour + 1, 0
                continue
            return datetime(year, month, day, hour, self.minutes[minute_index])
        return None

    def _can_ever_match(self) -> bool:
        """False for dates that never exist, such as 30 February (unless ORed with a weekday)."""
        if self.day_of_month_restricted and self.day_of_week_restricted:
            return True
        return any(self.days_of_month[0] <= _LONGEST_MONTH[month] for month in self.months)

    def _month_can_match(self, year: int, month: int) -> bool:
        if self.day_of_month_restricted and self.day_of_week_restricted:
            return True  # every month has every weekday
        return self.days_of_month[0] <= calendar.monthrange(year, month)[1]


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _stable_hash(key: str, field: str) -> int:
    """A hash of ``key`` that is the same in every process and Python version (unlike ``hash()``)."""
    return int.from_bytes(hashlib.sha256(f"{key}|{field}".encode()).digest(), "big")


def expand_hashes(fields: list[str], hash_key: str, expression: str) -> list[str]:
    """Replace ``H`` forms in the minute and hour fields by plain cron text chosen from ``hash_key``.

    ``H`` is one value in the field's range; ``H(a-b)`` one value in ``a..b``; ``H/n`` every ``n`` starting
    at a hashed value below ``n``; ``H(a-b)/n`` the same within ``a..b``. The hash is SHA-256 of
    ``"{hash_key}|{field name}"``, so minute and hour are chosen independently and every replica agrees.
    """
    expanded = list(fields)
    for index, text in enumerate(fields):
        if "h" not in re.findall(r"[a-z]+", text):
            continue
        name = FIELD_NAMES[index]
        if index > 1:
            raise _error(expression, f"'H' is only allowed in the minute and hour fields, not in {name}")
        match = _HASH_FORM.fullmatch(text)
        if match is None:
            raise _error(expression, f"bad {name} field {text!r}: expected H, H(a-b), H/n or H(a-b)/n")
        low, high = _BOUNDS[index]
        if match.group(1) is not None:
            low, high = int(match.group(1)), int(match.group(2))
            if not _BOUNDS[index][0] <= low <= high <= _BOUNDS[index][1]:
                bounds = f"{_BOUNDS[index][0]}-{_BOUNDS[index][1]}"
                raise _error(expression, f"bad {name} field {text!r}: H(a-b) needs a <= b within {bounds}")
        digest = _stable_hash(hash_key, name)
        if match.group(3) is None:
            expanded[index] = str(low + digest % (high - low + 1))
            continue
        step = int(match.group(3))
        if step == 0:
            raise _error(expression, f"bad {name} field {text!r}: the step after '/' must be at least 1")
        first = low + digest % min(step, high - low + 1)
        expanded[index] = f"{first}-{high}/{step}"
    return expanded


def _error(expression: str, reason: str) -> ScheduleError:
    return ScheduleError(f"invalid cron expression {expression!r}: {reason}")


def _split_expression(expression: str) -> list[str]:
    """The five lower-cased field texts of ``expression`` (an alias is replaced by its five fields)."""
    text = " ".join(expression.split()).lower()
    if text.startswith("@"):
        if text == "@reboot":
            raise _error(expression, "@reboot is not supported: beatd runs jobs on a schedule, not at boot")
        if text not in ALIASES:
            known = ", ".join(ALIASES)
            raise _error(expression, f"unknown alias {text!r}: expected one of {known} or 5 fields")
        text = ALIASES[text]
    fields = text.split(" ") if text else []
    if len(fields) != 5:
        raise _error(expression, f"{EXPECTED_FIELDS} (got {len(fields)})")
    return fields


def _field_values(index: int, text: str, expression: str) -> tuple[int, ...]:
    """The sorted values field ``index`` allows, read as Vixie cron reads them; rejects what beatd does not accept.

    Each comma-separated part is ``*``, ``v`` or ``a-b``, optionally followed by ``/step``, where a value is
    a number in the field's range or (month, day-of-week) a name. ``*`` is the whole field, ``a-b`` is
    ``a`` to ``b`` inclusive (so ``a-a`` is just ``a``), ``/n`` keeps every ``n``-th value from the first,
    and ``v/n`` runs from ``v`` to the end of the field. In day-of-week ``7`` is Sunday, like ``0``; as the
    end of a range ``sun`` means 7 (``mon-sun`` is Monday to Sunday, ``sun-sun`` is Sunday), and ``v/n``
    runs to Saturday. ``L``, ``W``, ``#``, ``?`` and backwards ranges are rejected with a precise reason.
    """
    name = FIELD_NAMES[index]
    for mark, meaning in (("#", "'#' (nth weekday)"), ("?", "'?'")):
        if mark in text:
            raise _error(expression, f"{meaning} in the {name} field is not supported; {EXPECTED_FIELDS}")
    for word in re.findall(r"[a-z]+", text):
        if word in _NAMES_BY_FIELD.get(index, {}):
            continue
        if "l" in word:
            raise _error(expression, f"'L' (last) in the {name} field is not supported; {EXPECTED_FIELDS}")
        if "w" in word:
            raise _error(expression, f"'W' (weekday) in the {name} field is not supported; {EXPECTED_FIELDS}")
        expected = {3: "1-12 or jan..dec", 4: "0-7 or sun..sat"}.get(index, "numbers")
        raise _error(expression, f"unknown word {word!r} in the {name} field: expected {expected}")
    values: set[int] = set()
    for part in text.split(","):
        match = _PART.fullmatch(part)
        if match is None:
            raise _error(
                expression,
                f"bad {name} field {text!r}: expected *, a value, a range a-b, any of them with /step, "
                "or a comma-separated list of those",
            )
        low_text, high_text, step_text = match.groups()
        step = 1 if step_text is None else int(step_text)
        if step == 0:
            raise _error(expression, f"bad {name} field {text!r}: the step after '/' must be at least 1")
        first, last = _part_bounds(index, low_text, high_text, step_text is not None, expression)
        values.update(range(first, last + 1, step))
    if index == 4:
        values = {day % 7 for day in values}  # 7 is Sunday, like 0
    return tuple(sorted(values))


def _part_bounds(
    index: int, low_text: str | None, high_text: str | None, stepped: bool, expression: str
) -> tuple[int, int]:
    """The first and last value of one part (``*``, ``v``, ``v/n``, ``a-b`` or ``a-b/n``) of field ``index``."""
    field_low, field_high = _BOUNDS[index]
    if low_text is None:  # '*'
        return field_low, field_high
    low = _field_value(index, low_text, expression)
    if high_text is None:
        if not stepped:
            return low, low
        if index == 4:  # v/n in day-of-week runs from v to Saturday, 7 being Sunday
            return low % 7, 6
        return low, field_high
    high = _field_value(index, high_text, expression)
    if index == 4 and high_text == "sun" and low > 0:
        high = 7  # mon-sun means Monday to Sunday; sun-sun is Sunday
    if low > high:
        reason = f"range {low_text}-{high_text} in the {FIELD_NAMES[index]} field goes backwards: expected low-high"
        raise _error(expression, reason)
    return low, high


def _field_value(index: int, text: str, expression: str) -> int:
    names = _NAMES_BY_FIELD.get(index, {})
    value = names[text] if text in names else int(text)
    low, high = _BOUNDS[index]
    if not low <= value <= high:
        raise _error(expression, f"{FIELD_NAMES[index]} value {value} is out of range: expected {low}-{high}")
    return value


def parse_cron_fields(expression: str, hash_key: str) -> tuple[CronFields, str]:
    """Parse ``expression`` into :class:`CronFields` and the five-field text after ``H`` substitution.

    Raises :class:`ScheduleError` saying what is wrong and what was expected.
    """
    fields = _split_expression(expression)
    fields = expand_hashes(fields, hash_key, expression)
    values = [_field_values(index, text, expression) for index, text in enumerate(fields)]
    parsed = CronFields(
        minutes=values[0],
        hours=values[1],
        days_of_month=values[2],
        months=values[3],
        days_of_week=values[4],
        day_of_month_restricted=not fields[2].startswith("*"),
        day_of_week_restricted=not fields[4].startswith("*"),
    )
    return parsed, " ".join(fields)
