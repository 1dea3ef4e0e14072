"""AtTrigger and parse_instant: one-off fires, and instants as users write them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from beatd.errors import ScheduleError
from beatd.triggers import AtTrigger, Trigger, format_instant, parse_instant

NEW_YORK = ZoneInfo("America/New_York")
HAVANA = ZoneInfo("America/Havana")


def utc(text: str) -> datetime:
    """An ISO-8601 instant as an aware UTC datetime."""
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("text", "zone", "expected"),
    [
        ("2026-12-01T00:05:00+08:00", NEW_YORK, "2026-11-30T16:05:00Z"),  # an offset wins over the zone
        ("2026-12-01T00:05:00Z", NEW_YORK, "2026-12-01T00:05:00Z"),
        ("2026-12-01T00:05Z", NEW_YORK, "2026-12-01T00:05:00Z"),
        ("2026-12-01T00:05:00", NEW_YORK, "2026-12-01T05:05:00Z"),  # naive: wall time in the zone
        ("2026-12-01 00:05", NEW_YORK, "2026-12-01T05:05:00Z"),
        ("  2026-12-01T00:05  ", NEW_YORK, "2026-12-01T05:05:00Z"),
        ("2026-12-01", NEW_YORK, "2026-12-01T05:00:00Z"),  # a date: local midnight
        ("2026-07-01", NEW_YORK, "2026-07-01T04:00:00Z"),
        ("2026-03-08T02:30", NEW_YORK, "2026-03-08T07:00:00Z"),  # in the gap: the transition instant
        ("2026-11-01T01:30", NEW_YORK, "2026-11-01T05:30:00Z"),  # twice: the first occurrence
        ("2026-03-08", HAVANA, "2026-03-08T05:00:00Z"),  # midnight does not exist: 01:00 -04
    ],
)
def test_parse_instant_reads_iso_8601_in_the_jobs_zone(text: str, zone: ZoneInfo, expected: str) -> None:
    """ISO-8601 text becomes a UTC instant; a value without offset is a wall time resolved by the DST rule."""
    parsed = parse_instant(text, zone)
    assert parsed == utc(expected)
    assert parsed.tzinfo is UTC


def test_parse_instant_accepts_yaml_dates_and_datetimes() -> None:
    """A date or datetime object (as YAML may produce) is read like its text."""
    assert parse_instant(date(2026, 12, 1), NEW_YORK) == utc("2026-12-01T05:00:00Z")
    assert parse_instant(datetime(2026, 12, 1, 0, 5), NEW_YORK) == utc("2026-12-01T05:05:00Z")
    assert parse_instant(datetime(2026, 12, 1, 0, 5, tzinfo=UTC), NEW_YORK) == utc("2026-12-01T00:05:00Z")


@pytest.mark.parametrize(
    "text", ["", "tomorrow", "2026-13-01", "2026-12-01T25:00", "01/12/2026", "2026-12-01T00:05+99:00"]
)
def test_parse_instant_rejects_other_text(text: str) -> None:
    """Anything that is not ISO-8601 raises ScheduleError with an example of what is expected."""
    with pytest.raises(ScheduleError) as raised:
        parse_instant(text, NEW_YORK)
    assert str(raised.value) == f"invalid instant {text!r}: expected ISO-8601 such as 2026-12-01T00:05:00+08:00"


def test_parse_instant_rejects_other_types() -> None:
    """A number is not an instant."""
    with pytest.raises(ScheduleError, match="invalid instant 20261201"):
        parse_instant(20261201, NEW_YORK)  # type: ignore[arg-type]


def test_at_trigger_fires_at_each_instant_once_in_order() -> None:
    """Instants are sorted and deduplicated (the same instant in two zones is one fire)."""
    one = utc("2026-12-01T00:05Z")
    trigger = AtTrigger([utc("2026-12-03T00:05Z"), one, one.astimezone(NEW_YORK), utc("2026-12-02T00:05Z")])
    assert trigger.instants == (one, utc("2026-12-02T00:05Z"), utc("2026-12-03T00:05Z"))
    assert trigger.next_after(utc("2026-01-01T00:00Z")) == one
    assert trigger.next_after(one) == utc("2026-12-02T00:05Z")  # strictly after
    assert trigger.next_after(utc("2026-12-03T00:05Z")) is None
    assert isinstance(trigger, Trigger)


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        ("2026-01-01T00:00Z", "2026-12-02T00:05Z"),  # the first is before start
        ("2026-12-02T00:05Z", "2026-12-03T00:05Z"),  # end is inclusive
        ("2026-12-03T00:05Z", None),  # the last is after end
    ],
)
def test_at_trigger_honours_start_and_end(after: str, expected: str | None) -> None:
    """Instants before start or after end never fire."""
    instants = [utc(f"2026-12-0{day}T00:05Z") for day in (1, 2, 3, 4)]
    trigger = AtTrigger(instants, start=utc("2026-12-02T00:00Z"), end=utc("2026-12-03T00:05Z"))
    assert trigger.next_after(utc(after)) == (utc(expected) if expected else None)


def test_at_trigger_rejects_no_instants_and_end_before_start() -> None:
    """An empty list or an end before start raises ScheduleError."""
    with pytest.raises(ScheduleError, match="at least one instant"):
        AtTrigger([])
    with pytest.raises(ScheduleError, match="is before start"):
        AtTrigger([utc("2026-12-01T00:05Z")], start=utc("2026-12-02T00:00Z"), end=utc("2026-12-01T00:00Z"))


@pytest.mark.parametrize(
    ("instants", "text"),
    [
        (["2026-12-01T00:05Z"], "once at 2026-12-01 00:05 UTC"),
        (["2026-12-01T08:05:30+08:00"], "once at 2026-12-01 00:05:30 UTC"),
        (
            ["2026-12-03T00:05Z", "2026-12-01T00:05Z", "2026-12-02T00:05Z"],
            "at 3 instants from 2026-12-01 00:05 UTC to 2026-12-03 00:05 UTC",
        ),
    ],
)
def test_describe_lists_when(instants: list[str], text: str) -> None:
    """describe() names the single instant, or the count and range of several, in UTC."""
    assert AtTrigger([utc(instant) for instant in instants]).describe() == text


def test_format_instant_shows_utc_with_seconds_only_when_needed() -> None:
    """format_instant gives minutes, and seconds or microseconds only when they are not zero."""
    assert format_instant(utc("2026-12-01T00:05:00Z")) == "2026-12-01 00:05 UTC"
    assert format_instant(utc("2026-12-01T00:05:07Z")) == "2026-12-01 00:05:07 UTC"
    assert format_instant(utc("2026-12-01T00:05:07.25Z")) == "2026-12-01 00:05:07.250000 UTC"
