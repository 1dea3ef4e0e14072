"""RedBeat's rrule schedules as beatd schedules: a rule that converts fires at dateutil's own instants; one that
cannot keep its meaning is refused with the reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from beatd.config import load_config
from beatd.rrule_import import DAILY, HOURLY, MINUTELY, MONTHLY, SECONDLY, WEEKLY, YEARLY, Recurrence, to_schedule

dateutil_rrule = pytest.importorskip("dateutil.rrule", reason="python-dateutil comes with Celery (beatd[celery])")

PLUS_TWO = timezone(timedelta(hours=2))  # what RedBeat's decoder gives: dtstart's offset, not its zone
START = datetime(2026, 3, 1, 6, 0, tzinfo=PLUS_TWO)
AFTER = datetime(2026, 5, 29, 23, 50, tzinfo=UTC)

CONVERTED: list[tuple[str, dict[str, Any], str]] = [
    ("seconds", {"freq": SECONDLY, "interval": 45}, "every"),
    ("minutes", {"freq": MINUTELY, "interval": 7}, "every"),
    ("weekly x2", {"freq": WEEKLY, "interval": 2}, "every"),
    ("daily until", {"freq": DAILY, "until": datetime(2026, 6, 2, 6, 0, tzinfo=PLUS_TWO)}, "every"),
    ("hourly count", {"freq": HOURLY, "interval": 5, "count": 500}, "every"),
    ("monthly", {"freq": MONTHLY}, "cron"),
    ("yearly", {"freq": YEARLY, "bymonth": (6, 12)}, "cron"),
    ("weekdays", {"freq": DAILY, "byweekday": (0, 1, 2, 3, 4), "byhour": (8, 17), "byminute": (30,)}, "cron"),
    ("month days", {"freq": MONTHLY, "bymonthday": (1, 15), "byhour": (0,)}, "cron"),
    ("every minute of 9h", {"freq": MINUTELY, "byhour": (9,)}, "cron"),
    ("weekly sunday", {"freq": WEEKLY, "byweekday": (6,)}, "cron"),
]


def _dateutil(rule: Recurrence) -> Any:
    weekdays = [dateutil_rrule.weekdays[day] for day in rule.byweekday] if rule.byweekday else None
    return dateutil_rrule.rrule(
        rule.freq, dtstart=rule.dtstart, interval=rule.interval, count=rule.count, until=rule.until,
        bymonth=rule.bymonth, bymonthday=rule.bymonthday, byweekday=weekdays, byhour=rule.byhour,
        byminute=rule.byminute, bysecond=rule.bysecond,
    )  # fmt: skip


@pytest.mark.parametrize(("label", "parts", "kind"), CONVERTED, ids=[row[0] for row in CONVERTED])
def test_converted_rules_fire_at_dateutils_instants(
    tmp_path: Path, label: str, parts: dict[str, Any], kind: str
) -> None:
    """The converted schedule (every or cron, bounded by start and end) gives dateutil's next 8 instants."""
    rule = Recurrence(dtstart=START, **parts)
    schedule = to_schedule(rule)
    assert isinstance(schedule, dict), schedule
    assert kind in schedule
    path = tmp_path / "beatd.yaml"
    path.write_text(yaml.safe_dump({"jobs": {"job": {"command": ["true"], **schedule}}}))
    trigger = load_config(path, {}).jobs["job"].trigger()
    theirs = list(_dateutil(rule).xafter(AFTER, count=8))
    ours, at = [], AFTER
    for _ in range(8):
        upcoming = trigger.next_after(at)
        if upcoming is None:
            break
        ours.append(upcoming)
        at = upcoming
    assert ours == theirs and ours


@pytest.mark.parametrize(
    ("parts", "reason"),
    [
        ({"freq": MONTHLY, "byweekday": (4,), "bysetpos": (-1,)}, "rrule with bysetpos has no beatd equivalent"),
        ({"freq": YEARLY, "byweekno": (20,)}, "rrule with byweekno"),
        ({"freq": MONTHLY, "byweekday": (0,), "nth_weekday": True}, "n-th weekday"),
        ({"freq": MONTHLY, "bymonthday": (-1,)}, "counted from the month's end"),
        ({"freq": MONTHLY, "bymonthday": (13,), "byweekday": (4,)}, "days matching both"),
        ({"freq": MINUTELY, "bysecond": (15, 45)}, "seconds other than :00"),
        ({"freq": MONTHLY, "interval": 3}, "MONTHLY with interval 3"),
        ({"freq": DAILY, "interval": 2, "byhour": (9,)}, "counts periods from dtstart"),
        ({"freq": DAILY, "count": 10**6}, "count 1000000 is not 1-100000"),
    ],
)
def test_rules_cron_cannot_express_are_refused(parts: dict[str, Any], reason: str) -> None:
    """Each rule whose meaning beatd cannot keep is refused with a sentence naming what is in the way."""
    refusal = to_schedule(Recurrence(dtstart=START, **parts))
    assert isinstance(refusal, str) and reason in refusal


def test_fixed_offsets_become_etc_zones_and_odd_offsets_are_refused() -> None:
    """A whole-hour offset is an Etc/GMT zone (POSIX's inverted sign); a half-hour one has no IANA name."""
    assert to_schedule(Recurrence(MONTHLY, START))["timezone"] == "Etc/GMT-2"  # type: ignore[index]
    odd = datetime(2026, 3, 1, 6, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert "not whole hours" in str(to_schedule(Recurrence(MONTHLY, odd)))


def test_a_beat_schedule_rrule_converts_through_the_celery_importer() -> None:
    """RedBeat's rrule object in a Celery app's beat_schedule takes the same path as a stored one."""
    celery = pytest.importorskip("celery")
    schedules = pytest.importorskip("redbeat.schedules", reason="celery-redbeat is in the dev extras")
    from beatd.celery_import import convert

    app = celery.Celery("rrule-in-beat-schedule", set_as_current=False)
    rule = schedules.rrule("WEEKLY", dtstart=START, byweekday=[0], byhour=[7], byminute=[30])
    app.conf.beat_schedule = {"monday": {"task": "proj.tasks.weekly", "schedule": rule}}
    (entry,) = convert(app).entries
    assert entry.job == {"celery": "proj.tasks.weekly", "cron": "30 7 * * 1", "timezone": "Etc/GMT-2",
                         "start": START.isoformat()}  # fmt: skip


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ({"byhour": [99]}, "byhour holds 99, expected 0 to 23"),
        ({"bymonth": [13]}, "bymonth holds 13, expected 1 to 12"),
        ({"byweekday": [9]}, "byweekday holds 9, expected 0 to 6"),
        ({"byminute": [60]}, "byminute holds 60"),
        ({"bymonthday": [0]}, "bymonthday holds 0, expected -31 to 31 other than 0"),
    ],
)
def test_out_of_range_by_parts_are_refused(parts: dict[str, Any], message: str) -> None:
    """A by-part value out of its range is a ValueError naming the part, never a cron beatd misreads."""
    with pytest.raises(ValueError, match=message):
        Recurrence.from_parts({"freq": DAILY, "dtstart": START, **parts})


PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("parts", "kind"),
    [({"freq": DAILY}, "cron"), ({"freq": DAILY, "byhour": (9,)}, "cron"), ({"freq": WEEKLY}, "cron"),
     ({"freq": HOURLY, "interval": 3}, "every")],
)  # fmt: skip
def test_an_iana_dtstart_follows_daylight_saving_as_dateutil(tmp_path: Path, parts: dict[str, Any], kind: str) -> None:
    """With dtstart in Europe/Paris, DAILY and WEEKLY (with or without by-parts) keep 09:00 local across the
    DST change, as dateutil does: both become cron in the zone."""
    rule = Recurrence(dtstart=datetime(2026, 1, 5, 9, 0, tzinfo=PARIS), **parts)
    schedule = to_schedule(rule)
    assert isinstance(schedule, dict) and kind in schedule, schedule
    path = tmp_path / "beatd.yaml"
    path.write_text(yaml.safe_dump({"jobs": {"job": {"command": ["true"], **schedule}}}))
    trigger = load_config(path, {}).jobs["job"].trigger()
    after = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)  # the change is on Sunday 29 March
    theirs = list(_dateutil(rule).xafter(after, count=10))
    ours, at = [], after
    for _ in range(10):
        at = trigger.next_after(at)
        assert at is not None
        ours.append(at)
    assert ours == theirs


def test_days_with_interval_in_a_dst_zone_are_refused() -> None:
    """Every 2 days at 09:00 Paris time is no fixed length: refused with the reason, not an every that drifts."""
    refusal = to_schedule(Recurrence(DAILY, datetime(2026, 1, 5, 9, 0, tzinfo=PARIS), interval=2))
    assert isinstance(refusal, str) and "daylight saving time" in refusal
    tokyo = to_schedule(Recurrence(DAILY, datetime(2026, 1, 5, 9, 0, tzinfo=ZoneInfo("Asia/Tokyo")), interval=2))
    assert isinstance(tokyo, dict) and tokyo["every"] == "2d"
