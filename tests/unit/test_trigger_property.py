"""Property test: CronTrigger.next_after equals an independent minute-by-minute reference over a whole year.

The reference walks UTC minutes and decides each one from first principles (a minute fires when its wall
time matches, with the wall-time or elapsed-time DST rule of the contract). To stay fast it walks only the
minutes of hours in which the UTC offset changes; in an hour of constant offset it visits just the minutes
whose wall time is in the minute field, which is the same walk with the non-matching minutes skipped.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from beatd.triggers.cron import CronTrigger
from beatd.triggers.cron_fields import CronFields

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


def _list(values: list[int]) -> str:
    return ",".join(str(value) for value in sorted(set(values)))


minute_fields = st.one_of(
    st.lists(st.integers(0, 59), min_size=1, max_size=3).map(_list),
    st.integers(0, 56).map(lambda low: f"{low}-{low + 3}"),
    st.sampled_from(["*/10", "*/15", "*/20", "*/30", "5-59/20", "H", "H(0-29)", "H/20"]),
)
hour_fields = st.one_of(
    st.sampled_from(["*", "*/2", "*/3", "*/5", "1-23/4", "H", "H/6"]),
    st.lists(st.integers(0, 23), min_size=1, max_size=4).map(_list),
    st.integers(0, 21).map(lambda low: f"{low}-{low + 2}"),
)
day_of_month_fields = st.one_of(
    st.just("*"),
    st.sampled_from(["*/2", "*/10", "1-7", "13", "1,15", "28-31", "29", "31", "10-20/3"]),
    st.lists(st.integers(1, 31), min_size=1, max_size=3).map(_list),
)
month_fields = st.one_of(
    st.just("*"),
    st.sampled_from(["3,4", "mar-apr", "9-11", "*/3", "oct,NOV", "1-12/2", "2", "9,10,11,3,4"]),
)
day_of_week_fields = st.one_of(
    st.just("*"),
    st.sampled_from(["0", "7", "sun", "mon-fri", "sat,sun", "*/2", "1-5/2", "6-7", "Fri"]),
)


@st.composite
def expressions(draw: st.DrawFn) -> str:
    """A five-field cron expression with at most a few dozen fires a day."""
    fields = [draw(minute_fields), draw(hour_fields), draw(day_of_month_fields)]
    fields += [draw(month_fields), draw(day_of_week_fields)]
    return " ".join(fields)


def matches(fields: CronFields, day_fields_ored: bool, wall: datetime) -> bool:
    """Whether a naive wall time is named by the fields (written here independently of CronFields)."""
    if wall.minute not in fields.minutes or wall.hour not in fields.hours:
        return False
    return day_matches(fields, day_fields_ored, wall.date())


def day_matches(fields: CronFields, day_fields_ored: bool, day: date) -> bool:
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


def reference_fires(trigger: CronTrigger, year: int) -> list[datetime]:
    """Every fire in UTC ``year`` by the contract, decided minute by minute (see the module docstring)."""
    fields, zone = trigger.fields, trigger.zone
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


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    expression=expressions(),
    zone_name=st.sampled_from(ZONES),
    year=st.integers(2025, 2030),
    job=st.text(min_size=1, max_size=8),
)
def test_next_after_matches_minute_by_minute_reference(expression: str, zone_name: str, year: int, job: str) -> None:
    """Iterating next_after over a year gives exactly the fires of the brute-force reference, increasing."""
    trigger = CronTrigger(expression, ZoneInfo(zone_name), job)
    assume(len(trigger.fields.minutes) * len(trigger.fields.hours) <= 96)
    assert generated_fires(trigger, year) == reference_fires(trigger, year)
