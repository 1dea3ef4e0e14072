"""zones: loading IANA zones, finding their offset transitions, and resolving wall times."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from beatd.errors import ScheduleError
from beatd.triggers import load_zone, next_transition, resolve_wall_time, transitions


def utc(text: str) -> datetime:
    """An ISO-8601 instant as an aware UTC datetime."""
    return datetime.fromisoformat(text).astimezone(UTC)


def test_load_zone_returns_the_zone() -> None:
    """A valid IANA name loads its ZoneInfo."""
    assert load_zone("Europe/London") is ZoneInfo("Europe/London")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "Europe/Londn",
            "unknown time zone 'Europe/Londn', expected an IANA name such as Europe/London "
            "(did you mean 'Europe/London'?)",
        ),
        ("europe/london", "(did you mean 'Europe/London'?)"),
        ("America/New_Yrok", "(did you mean 'America/New_York'?)"),
        ("Mars/Olympus", "unknown time zone 'Mars/Olympus', expected an IANA name such as Europe/London"),
        ("", "unknown time zone ''"),
        ("../../etc/passwd", "unknown time zone '../../etc/passwd'"),
        ("Europe", "unknown time zone 'Europe'"),  # a directory of zones, not a zone
        ("localtime", "may differ from that of other replicas"),
        ("/etc/localtime", "unknown time zone '/etc/localtime'"),
    ],
)
def test_load_zone_rejects_unknown_names_with_a_suggestion(name: str, message: str) -> None:
    """An unknown name raises ScheduleError, suggesting the closest known name when there is one."""
    with pytest.raises(ScheduleError) as raised:
        load_zone(name)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("America/New_York", ["2026-03-08T07:00:00Z", "2026-11-01T06:00:00Z"]),
        ("Europe/London", ["2026-03-29T01:00:00Z", "2026-10-25T01:00:00Z"]),
        ("Australia/Lord_Howe", ["2026-04-04T15:00:00Z", "2026-10-03T15:30:00Z"]),
        ("Pacific/Chatham", ["2026-04-04T14:00:00Z", "2026-09-26T14:00:00Z"]),
        ("America/Havana", ["2026-03-08T05:00:00Z", "2026-11-01T05:00:00Z"]),
        ("Asia/Kathmandu", []),
        ("UTC", []),
    ],
)
def test_transitions_are_found_to_the_second(zone: str, expected: list[str]) -> None:
    """The probed transitions of 2026 are the published ones, exactly."""
    assert transitions(ZoneInfo(zone), 2026) == tuple(utc(text) for text in expected)


def test_transitions_see_a_change_at_new_year() -> None:
    """A transition at exactly 00:00:00 UTC on 1 January belongs to that year, and only to it."""
    casey = ZoneInfo("Antarctica/Casey")  # went from -00 to +08 at 1969-01-01T00:00Z
    assert transitions(casey, 1969) == (utc("1969-01-01T00:00:00Z"),)
    assert transitions(casey, 1968) == ()
    assert next_transition(casey, utc("1968-12-31T23:59:59Z")) == utc("1969-01-01T00:00:00Z")


def test_next_transition_crosses_into_the_next_year_and_is_strict() -> None:
    """next_transition is strictly after its argument and looks into the next year; None without DST."""
    new_york = ZoneInfo("America/New_York")
    assert next_transition(new_york, utc("2026-03-08T07:00:00Z")) == utc("2026-11-01T06:00:00Z")
    assert next_transition(new_york, utc("2026-12-01T00:00:00Z")) == utc("2027-03-14T07:00:00Z")
    assert next_transition(ZoneInfo("Asia/Shanghai"), utc("2026-01-01T00:00:00Z")) is None


@pytest.mark.parametrize(
    ("wall", "expected"),
    [
        ("2026-06-01T12:00", "2026-06-01T16:00:00Z"),  # exists once
        ("2026-03-08T02:00", "2026-03-08T07:00:00Z"),  # the gap's start: the transition
        ("2026-03-08T02:59:59", "2026-03-08T07:00:00Z"),
        ("2026-03-08T03:00", "2026-03-08T07:00:00Z"),  # the gap's end: the same instant
        ("2026-11-01T01:00", "2026-11-01T05:00:00Z"),  # twice: the first occurrence
        ("2026-11-01T01:59", "2026-11-01T05:59:00Z"),
        ("2026-11-01T02:00", "2026-11-01T07:00:00Z"),
    ],
)
def test_resolve_wall_time_uses_first_occurrence_and_gap_end(wall: str, expected: str) -> None:
    """A wall time maps to its instant, its first occurrence, or the transition that skipped it."""
    assert resolve_wall_time(datetime.fromisoformat(wall), ZoneInfo("America/New_York")) == utc(expected)


def test_resolve_wall_time_takes_naive_wall_times_only() -> None:
    """An aware datetime is a programming error."""
    with pytest.raises(TypeError):
        resolve_wall_time(utc("2026-01-01T00:00Z"), ZoneInfo("UTC"))
