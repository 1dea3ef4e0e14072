"""Property test: CronTrigger.next_after equals an independent minute-by-minute reference over a whole year.

The reference walks UTC minutes and decides each one from first principles (a minute fires when its wall
time matches, with the wall-time or elapsed-time DST rule of the contract). To stay fast it walks only the
minutes of hours in which the UTC offset changes; in an hour of constant offset it visits just the minutes
whose wall time is in the minute field, which is the same walk with the non-matching minutes skipped.

The reference reads the fields itself, value by value, as Vixie cron does (``a-a`` is ``a``, ``a-a/n`` is
``a``, ``7`` and ``sun`` are Sunday), never through beatd's parser; the generated fields include single-value
ranges, ranges of random widths with and without steps, names in any case, and ``v/n``. Backwards and
wrapping ranges are not generated: the contract rejects them (see test_trigger_cron.py).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from beatd.triggers.cron import CronTrigger

ZONES = (
    "UTC",
    "America/New_York",
    "Europe/London",
    "Europe/Dublin",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/Santiago",
    "America/Havana",
    "Asia/Shanghai",
    "Pacific/Chatham",
)
ONE_MINUTE = timedelta(minutes=1)
ONE_HOUR = timedelta(hours=1)


MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# minute, hour, day-of-month, month, day-of-week (0 and 7 are Sunday), as Vixie cron numbers them.
FIELD_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
HASH_LABELS = ("minute", "hour")


def _list(values: list[int]) -> str:
    return ",".join(str(value) for value in sorted(set(values)))


def _spell(index: int, value: int, draw: st.DrawFn, as_range_end: bool = False) -> str:
    """``value`` as a number or, sometimes and in any case, as a month or day name."""
    if index == 3 and draw(st.booleans()):
        name = MONTH_NAMES[value - 1]
    elif index == 4 and value < 7 and draw(st.booleans()):
        name = DAY_NAMES[value]
    elif index == 4 and value == 7 and as_range_end and draw(st.booleans()):
        name = "sun"  # as a range's end 'sun' is 7: mon-sun
    else:
        return str(value)
    return draw(st.sampled_from([name, name.upper(), name.title()]))


@st.composite
def range_parts(draw: st.DrawFn, index: int, max_width: int) -> str:
    """One range part: ``a-a`` or ``a-b`` of a random width up to ``max_width``, often with ``/step``."""
    low, high = FIELD_RANGES[index]
    first = draw(st.integers(low, high))
    last = first if draw(st.booleans()) else draw(st.integers(first, min(high, first + max_width)))
    text = f"{_spell(index, first, draw)}-{_spell(index, last, draw, as_range_end=True)}"
    if index == 4 and first == 0 and last == 0 and draw(st.booleans()):
        text = "sun-sun"
    if draw(st.booleans()):
        text += f"/{draw(st.integers(1, high - low + 2))}"
    return text


@st.composite
def stepped_value_parts(draw: st.DrawFn, index: int, min_step: int) -> str:
    """``v/n``: from v to the end of the field every n."""
    low, high = FIELD_RANGES[index]
    value = draw(st.integers(low, high))
    return f"{_spell(index, value, draw)}/{draw(st.integers(min_step, high - low + 2))}"


def field_lists(index: int, max_width: int, min_step: int) -> st.SearchStrategy[str]:
    """A comma-separated list of one to three values, ranges and stepped values of field ``index``."""
    low, high = FIELD_RANGES[index]
    value = st.integers(low, high).map(str)
    part = st.one_of(value, range_parts(index, max_width), stepped_value_parts(index, min_step))
    return st.lists(part, min_size=1, max_size=3).map(",".join)


minute_fields = st.one_of(
    st.lists(st.integers(0, 59), min_size=1, max_size=3).map(_list),
    st.integers(0, 56).map(lambda low: f"{low}-{low + 3}"),
    st.sampled_from(["*/10", "*/15", "*/20", "*/30", "5-59/20", "H", "H(0-29)", "H/20", "H(7-7)/5", "30-30/7"]),
    field_lists(0, max_width=6, min_step=12),
)
hour_fields = st.one_of(
    st.sampled_from(["*", "*/2", "*/3", "*/5", "1-23/4", "H", "H/6", "9-9", "9-9/2", "H(3-3)/4"]),
    st.lists(st.integers(0, 23), min_size=1, max_size=4).map(_list),
    st.integers(0, 21).map(lambda low: f"{low}-{low + 2}"),
    field_lists(1, max_width=23, min_step=3),
)
day_of_month_fields = st.one_of(
    st.just("*"),
    st.sampled_from(["*/2", "*/10", "1-7", "13", "1,15", "28-31", "29", "31", "10-20/3", "31-31", "5-5/3"]),
    st.lists(st.integers(1, 31), min_size=1, max_size=3).map(_list),
    field_lists(2, max_width=31, min_step=1),
)
month_fields = st.one_of(
    st.just("*"),
    st.sampled_from(["3,4", "mar-apr", "9-11", "*/3", "oct,NOV", "1-12/2", "2", "9,10,11,3,4", "jan-jan", "feb-2"]),
    field_lists(3, max_width=12, min_step=1),
)
day_of_week_fields = st.one_of(
    st.just("*"),
    st.sampled_from(["0", "7", "sun", "mon-fri", "sat,sun", "*/2", "1-5/2", "6-7", "Fri", "mon-mon", "3-3/2"]),
    st.sampled_from(["sun-sun", "7-7", "0-0", "7-sun", "mon-sun", "sat-sun/2", "1/2", "7/3"]),
    field_lists(4, max_width=7, min_step=1),
)


@st.composite
def expressions(draw: st.DrawFn) -> str:
    """A five-field cron expression with at most a few dozen fires a day."""
    fields = [draw(minute_fields), draw(hour_fields), draw(day_of_month_fields)]
    fields += [draw(month_fields), draw(day_of_week_fields)]
    return " ".join(fields)


# ---------------------------------------------------------------- the reference reading of the fields


def _number(index: int, word: str) -> int:
    if index == 3 and word in MONTH_NAMES:
        return MONTH_NAMES.index(word) + 1
    if index == 4 and word in DAY_NAMES:
        return DAY_NAMES.index(word)
    return int(word)


def part_allows(index: int, part: str, value: int, job: str) -> bool:
    """Whether one comma-separated part of field ``index`` allows ``value``, as Vixie cron (and H) reads it.

    Written from the contract, not from the parser: ``a-b`` is a..b inclusive, so ``a-a`` is ``a``; ``/n``
    keeps every n-th value from the first; ``v/n`` runs from v to the field's end (Saturday for
    day-of-week, where 7 is Sunday); ``sun`` ending a range that starts after Sunday is 7.
    """
    low, high = FIELD_RANGES[index]
    body, _, step_text = part.partition("/")
    step = int(step_text) if step_text else 1
    if body.startswith("h"):
        first, last = (int(end) for end in body[2:-1].split("-")) if body.startswith("h(") else (low, high)
        digest = int.from_bytes(hashlib.sha256(f"{job}|{HASH_LABELS[index]}".encode()).digest(), "big")
        if not step_text:
            return value == first + digest % (last - first + 1)
        first += digest % min(step, last - first + 1)
    elif body == "*":
        first, last = low, high
    elif "-" in body:
        first_word, last_word = body.split("-")
        first, last = _number(index, first_word), _number(index, last_word)
        if index == 4 and last_word == "sun" and first > 0:
            last = 7
    else:
        first = _number(index, body)
        if not step_text:
            return value == first
        first, last = (first % 7, 6) if index == 4 else (first, high)
    return first <= value <= last and (value - first) % step == 0


def field_allows(index: int, text: str, value: int, job: str) -> bool:
    """Whether field ``index`` (its text) allows ``value``; in day-of-week a part naming 7 allows Sunday."""
    parts = text.lower().split(",")
    if any(part_allows(index, part, value, job) for part in parts):
        return True
    return index == 4 and value == 0 and any(part_allows(index, part, 7, job) for part in parts)


@dataclass(frozen=True)
class ReferenceFields:
    """The values each field allows, decided value by value by :func:`field_allows`."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]

    @classmethod
    def read(cls, expression: str, job: str) -> ReferenceFields:
        """The reference reading of a single-spaced five-field ``expression`` for the job named ``job``."""
        texts = expression.split(" ")
        allowed = [
            frozenset(
                value
                for value in range(low, (6 if index == 4 else high) + 1)  # Sunday is 0
                if field_allows(index, texts[index], value, job)
            )
            for index, (low, high) in enumerate(FIELD_RANGES)
        ]
        return cls(*allowed)


def matches(fields: ReferenceFields, day_fields_ored: bool, wall: datetime) -> bool:
    """Whether a naive wall time is named by the fields (written here independently of CronFields)."""
    if wall.minute not in fields.minutes or wall.hour not in fields.hours:
        return False
    return day_matches(fields, day_fields_ored, wall.date())


def day_matches(fields: ReferenceFields, day_fields_ored: bool, day: date) -> bool:
    """Vixie's day rule: OR when both day fields are restricted, else AND."""
    if day.month not in fields.months:
        return False
    sunday_first = day.isoweekday() % 7
    in_month_days, in_week_days = day.day in fields.days_of_month, sunday_first in fields.days_of_week
    return (in_month_days or in_week_days) if day_fields_ored else (in_month_days and in_week_days)


def offset(zone: ZoneInfo, utc: datetime) -> timedelta:
    """The UTC offset of ``zone`` at ``utc``."""
    found = utc.astimezone(zone).utcoffset()
    assert found is not None
    return found


@functools.lru_cache(maxsize=64)
def hour_edges(zone: ZoneInfo, year: int) -> tuple[tuple[timedelta, ...], tuple[timedelta, ...]]:
    """Offsets one minute before each UTC hour of ``year`` (and after it), and the zone's distinct offsets."""
    start = datetime(year, 1, 1, tzinfo=UTC)
    hours = (datetime(year + 1, 1, 1, tzinfo=UTC) - start) // ONE_HOUR
    edges = tuple(offset(zone, start + index * ONE_HOUR - ONE_MINUTE) for index in range(hours + 1))
    distinct = set(edges) | {offset(zone, start - timedelta(days=1))}
    return edges, tuple(sorted(distinct))


def reference_fires(trigger: CronTrigger, job: str, year: int) -> list[datetime]:
    """Every fire in UTC ``year`` by the contract, decided minute by minute (see the module docstring)."""
    fields, zone = ReferenceFields.read(trigger.expression, job), trigger.zone
    texts = trigger.expression.split(" ")
    elapsed = texts[1].startswith("*")
    day_fields_ored = not texts[2].startswith("*") and not texts[4].startswith("*")
    edges, offsets = hour_edges(zone, year)
    start = datetime(year, 1, 1, tzinfo=UTC)
    fires: set[datetime] = set()

    def first_occurrence(wall: datetime, own_offset: timedelta) -> bool:
        # Another occurrence of ``wall`` earlier in time would have a larger offset.
        return all(offset(zone, (wall - other).replace(tzinfo=UTC)) != other for other in offsets if other > own_offset)

    def consider(instant: datetime, wall: datetime, own_offset: timedelta) -> None:
        if matches(fields, day_fields_ored, wall) and (elapsed or first_occurrence(wall, own_offset)):
            fires.add(instant)

    for index in range(len(edges) - 1):
        hour = start + index * ONE_HOUR
        if edges[index] == edges[index + 1]:
            own_offset = edges[index]
            wall_low = (hour + own_offset).replace(tzinfo=None)
            wall_hour = wall_low.replace(minute=0)
            for candidate_hour in (wall_hour, wall_hour + ONE_HOUR):
                if candidate_hour.hour not in fields.hours:
                    continue
                if not day_matches(fields, day_fields_ored, candidate_hour.date()):
                    continue
                for minute in fields.minutes:
                    wall = candidate_hour.replace(minute=minute)
                    if wall_low <= wall < wall_low + ONE_HOUR:
                        consider((wall - own_offset).replace(tzinfo=UTC), wall, own_offset)
            continue
        for minute_index in range(60):
            instant = hour + minute_index * ONE_MINUTE
            own_offset = offset(zone, instant)
            consider(instant, (instant + own_offset).replace(tzinfo=None), own_offset)
            previous = offset(zone, instant - ONE_MINUTE)
            if not elapsed and own_offset > previous:
                skipped_walls = (instant + previous).replace(tzinfo=None)
                skipped_count = (own_offset - previous) // ONE_MINUTE
                walls = (skipped_walls + step * ONE_MINUTE for step in range(skipped_count))
                if any(matches(fields, day_fields_ored, wall) for wall in walls):
                    fires.add(instant)
    return sorted(fires)


def generated_fires(trigger: CronTrigger, year: int) -> list[datetime]:
    """Every fire in UTC ``year`` by iterating ``next_after`` from just before the year starts."""
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    cursor = datetime(year, 1, 1, tzinfo=UTC) - timedelta(microseconds=1)
    fires = []
    while (fire := trigger.next_after(cursor)) is not None and fire < end:
        assert fire > cursor
        assert fire.tzinfo is UTC
        fires.append(fire)
        cursor = fire
    return fires


@settings(max_examples=200, deadline=None)
@given(expression=expressions(), job=st.text(max_size=8))
def test_parsed_fields_equal_the_reference_reading(expression: str, job: str) -> None:
    """Every field parses to exactly the values the reference reading allows, value by value."""
    parsed, reference = CronTrigger(expression, ZoneInfo("UTC"), job).fields, ReferenceFields.read(expression, job)
    assert set(parsed.minutes) == reference.minutes
    assert set(parsed.hours) == reference.hours
    assert set(parsed.days_of_month) == reference.days_of_month
    assert set(parsed.months) == reference.months
    assert set(parsed.days_of_week) == reference.days_of_week


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    expression=expressions(),
    zone_name=st.sampled_from(ZONES),
    year=st.integers(2025, 2030),
    job=st.text(min_size=1, max_size=8),
)
def test_next_after_matches_minute_by_minute_reference(expression: str, zone_name: str, year: int, job: str) -> None:
    """Iterating next_after over a year gives exactly the fires of the brute-force reference, increasing."""
    reference = ReferenceFields.read(expression, job)
    assume(len(reference.minutes) * len(reference.hours) <= 96)
    trigger = CronTrigger(expression, ZoneInfo(zone_name), job)
    assert generated_fires(trigger, year) == reference_fires(trigger, job, year)
