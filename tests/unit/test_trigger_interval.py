"""IntervalTrigger: fires at anchor + k * period in whole microseconds, aligned for every replica."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from beatd.errors import ScheduleError
from beatd.triggers import EPOCH, IntervalTrigger, Trigger


def utc(text: str) -> datetime:
    """An ISO-8601 instant as an aware UTC datetime."""
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("period", "after", "expected"),
    [
        (timedelta(seconds=30), "2026-01-01T12:00:10Z", "2026-01-01T12:00:30Z"),
        (timedelta(seconds=30), "2026-01-01T12:00:30Z", "2026-01-01T12:01:00Z"),  # strictly after
        (timedelta(minutes=17), "2026-01-01T00:00:00Z", "2026-01-01T00:15:00Z"),  # epoch, not midnight
        (timedelta(seconds=7), "2026-01-01T00:00:03Z", "2026-01-01T00:00:07Z"),
        (timedelta(hours=1), "2026-01-01T05:59:59.999999Z", "2026-01-01T06:00:00Z"),
        (timedelta(days=1), "1969-12-31T12:00:00Z", "1970-01-01T00:00:00Z"),  # before the epoch too
        (timedelta(milliseconds=250), "2026-01-01T00:00:00.1Z", "2026-01-01T00:00:00.25Z"),
    ],
)
def test_without_start_fires_align_to_the_unix_epoch(period: timedelta, after: str, expected: str) -> None:
    """Without start, fires are whole multiples of the period since 1970-01-01T00:00Z."""
    fire = IntervalTrigger(period).next_after(utc(after))
    assert fire == utc(expected)
    assert fire is not None and fire.tzinfo is UTC


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        ("2025-06-01T00:00:00Z", "2026-01-01T00:00:05Z"),  # before start: start itself
        ("2026-01-01T00:00:04Z", "2026-01-01T00:00:05Z"),
        ("2026-01-01T00:00:05Z", "2026-01-01T01:00:05Z"),
        ("2026-01-01T03:30:00Z", "2026-01-01T04:00:05Z"),
        ("2026-01-01T05:00:04Z", "2026-01-01T05:00:05Z"),  # end is inclusive
        ("2026-01-01T05:00:05Z", None),
    ],
)
def test_start_anchors_fires_and_end_bounds_them(after: str, expected: str | None) -> None:
    """With start, fires are start + k * period for k >= 0, and none is after end."""
    trigger = IntervalTrigger(timedelta(hours=1), start=utc("2026-01-01T00:00:05Z"), end=utc("2026-01-01T05:00:05Z"))
    assert trigger.next_after(utc(after)) == (utc(expected) if expected else None)


def test_whole_microsecond_arithmetic_does_not_drift() -> None:
    """A third of a second, a billion periods on, still lands exactly on a multiple of the period."""
    period = timedelta(microseconds=333_333)
    trigger = IntervalTrigger(period)
    after = EPOCH + 1_000_000_000 * period + timedelta(microseconds=1)
    assert trigger.next_after(after) == EPOCH + 1_000_000_001 * period


def test_dst_does_not_affect_intervals() -> None:
    """Across New York's spring-forward instant, hourly fires stay exactly one hour apart."""
    trigger = IntervalTrigger(timedelta(hours=1))
    first = trigger.next_after(utc("2026-03-08T05:30:00Z"))
    assert first is not None
    assert [trigger.next_after(first), first] == [first + timedelta(hours=1), utc("2026-03-08T06:00:00Z")]


@pytest.mark.parametrize("period", [timedelta(0), timedelta(seconds=-5)])
def test_period_must_be_positive(period: timedelta) -> None:
    """A zero or negative period raises ScheduleError."""
    with pytest.raises(ScheduleError, match="expected a period greater than zero"):
        IntervalTrigger(period)


def test_end_before_start_is_rejected() -> None:
    """An end before start raises ScheduleError."""
    with pytest.raises(ScheduleError, match="is before start"):
        IntervalTrigger(timedelta(minutes=1), start=utc("2026-01-02T00:00Z"), end=utc("2026-01-01T00:00Z"))


def test_naive_instants_are_programming_errors() -> None:
    """A naive start or instant raises TypeError."""
    with pytest.raises(TypeError):
        IntervalTrigger(timedelta(minutes=1), start=datetime(2026, 1, 1))
    with pytest.raises(TypeError):
        IntervalTrigger(timedelta(minutes=1)).next_after(datetime(2026, 1, 1))


def test_fires_near_the_end_of_time_give_none() -> None:
    """A fire past year 9999 is None, not an OverflowError."""
    assert IntervalTrigger(timedelta(days=365)).next_after(utc("9999-12-31T00:00:00Z")) is None


@pytest.mark.parametrize(
    ("trigger", "text"),
    [
        (IntervalTrigger(timedelta(seconds=30)), "every 30s"),
        (IntervalTrigger(timedelta(minutes=90)), "every 1h30m"),
        (
            IntervalTrigger(timedelta(days=1), start=utc("2026-01-01T06:00Z")),
            "every 1d, aligned to 2026-01-01 06:00 UTC",
        ),
    ],
)
def test_describe_names_the_period_and_anchor(trigger: IntervalTrigger, text: str) -> None:
    """describe() gives the period in duration units and the start it is aligned to, if any."""
    assert trigger.describe() == text
    assert isinstance(trigger, Trigger)
