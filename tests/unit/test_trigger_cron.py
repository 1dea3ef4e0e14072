"""CronTrigger: parsing, Vixie day fields, H hashing, DST rules in real zones, bounds, and peer contrasts.

Every expected instant in the DST tables was worked out by hand from the zone's published rules and is
written in UTC; the comment on each row gives the wall times in the zone.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from beatd.errors import ScheduleError
from beatd.triggers import CronTrigger, Trigger
from beatd.triggers.cron_fields import EXPECTED_FIELDS

NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
UTC_ZONE = ZoneInfo("UTC")


def utc(text: str) -> datetime:
    """An ISO-8601 instant as an aware UTC datetime."""
    return datetime.fromisoformat(text).astimezone(UTC)


def fires(trigger: CronTrigger, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fires after ``after``, checking each is UTC and strictly later than the last."""
    found: list[datetime] = []
    cursor = after
    for _ in range(count):
        fire = trigger.next_after(cursor)
        if fire is None:
            break
        assert fire > cursor
        assert fire.tzinfo is UTC
        found.append(fire)
        cursor = fire
    return found


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("expression", "minutes", "hours", "days_of_month", "months", "days_of_week"),
    [
        ("30 2 * * *", (30,), (2,), tuple(range(1, 32)), tuple(range(1, 13)), tuple(range(7))),
        ("0,15 9-11 1,15 * *", (0, 15), (9, 10, 11), (1, 15), tuple(range(1, 13)), tuple(range(7))),
        ("*/20 */6 */10 */4 */3", (0, 20, 40), (0, 6, 12, 18), (1, 11, 21, 31), (1, 5, 9), (0, 3, 6)),
        ("5-20/5 0 1 jan,JUL mon-FRI", (5, 10, 15, 20), (0,), (1,), (1, 7), (1, 2, 3, 4, 5)),
        ("0 0 * Mar-May sat,sun", (0,), (0,), tuple(range(1, 32)), (3, 4, 5), (0, 6)),
        ("0 0 * * 7", (0,), (0,), tuple(range(1, 32)), tuple(range(1, 13)), (0,)),
        ("0 0 * * 5-7", (0,), (0,), tuple(range(1, 32)), tuple(range(1, 13)), (0, 5, 6)),
        ("0 0 * * mon-sun", (0,), (0,), tuple(range(1, 32)), tuple(range(1, 13)), tuple(range(7))),
        ("  0   0  1  1  * ", (0,), (0,), (1,), (1,), tuple(range(7))),
    ],
)
def test_fields_expand_names_lists_ranges_and_steps(
    expression: str,
    minutes: tuple[int, ...],
    hours: tuple[int, ...],
    days_of_month: tuple[int, ...],
    months: tuple[int, ...],
    days_of_week: tuple[int, ...],
) -> None:
    """Names (any case), lists, ranges and steps expand to sorted value sets, with 7 meaning Sunday."""
    fields = CronTrigger(expression, UTC_ZONE).fields
    assert (fields.minutes, fields.hours, fields.days_of_month) == (minutes, hours, days_of_month)
    assert (fields.months, fields.days_of_week) == (months, days_of_week)


# One field of each row is under test; every row fails on the croniter-based parser, which widened a range
# whose two ends are equal (``9-9``, ``mon-mon``, ``3-3/2``) to the whole field or to ``*/step``.
SINGLE_VALUE_RANGES = [
    ("9-9 0 * * *", "minutes", (9,)),
    ("0-0 0 * * *", "minutes", (0,)),
    ("59-59/100 0 * * *", "minutes", (59,)),
    ("9-9/5 0 * * *", "minutes", (9,)),
    ("0,30-30 0 * * *", "minutes", (0, 30)),
    ("0 9-9 * * *", "hours", (9,)),
    ("0 23-23/2 * * *", "hours", (23,)),
    ("0 9-9,17-17 * * *", "hours", (9, 17)),
    ("0 0 5-5 * *", "days_of_month", (5,)),
    ("0 0 31-31/7 * *", "days_of_month", (31,)),
    ("0 0 1-1,15-15 * *", "days_of_month", (1, 15)),
    ("0 0 * 3-3 *", "months", (3,)),
    ("0 0 * jan-jan *", "months", (1,)),
    ("0 0 * Dec-DEC/2 *", "months", (12,)),
    ("0 0 * 1-jan *", "months", (1,)),
    ("0 0 * mar-3,9 *", "months", (3, 9)),
    ("0 0 * * 3-3", "days_of_week", (3,)),
    ("0 0 * * 3-3/2", "days_of_week", (3,)),
    ("0 0 * * mon-mon", "days_of_week", (1,)),
    ("0 0 * * Sat-sat/3", "days_of_week", (6,)),
    ("0 0 * * 5-fri", "days_of_week", (5,)),
    ("0 0 * * 0-0", "days_of_week", (0,)),
    ("0 0 * * 7-7", "days_of_week", (0,)),
    ("0 0 * * sun-sun", "days_of_week", (0,)),
    ("0 0 * * 7-sun", "days_of_week", (0,)),
    ("0 0 * * sun-0/2", "days_of_week", (0,)),
    ("0 0 * * 1-1,7-7", "days_of_week", (0, 1)),
    ("H(5-5)/10 0 * * *", "minutes", (5,)),
    ("0 H(7-7)/3 * * *", "hours", (7,)),
]


@pytest.mark.parametrize(("expression", "attribute", "values"), SINGLE_VALUE_RANGES)
def test_a_range_whose_ends_are_equal_is_that_one_value(
    expression: str, attribute: str, values: tuple[int, ...]
) -> None:
    """In every field, with numbers or names and with or without a step, ``a-a`` and ``a-a/n`` mean just ``a``."""
    assert getattr(CronTrigger(expression, UTC_ZONE, "job").fields, attribute) == values


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 9-9 * * *", ["2026-02-01 09:00", "2026-02-02 09:00", "2026-02-03 09:00"]),
        ("0 0 * * mon-mon", ["2026-02-02 00:00", "2026-02-09 00:00", "2026-02-16 00:00"]),
        ("0 0 * * 3-3/2", ["2026-02-04 00:00", "2026-02-11 00:00", "2026-02-18 00:00"]),
        ("0 0 1 jan-jan *", ["2027-01-01 00:00", "2028-01-01 00:00", "2029-01-01 00:00"]),
    ],
)
def test_single_value_ranges_fire_only_at_that_value(expression: str, expected: list[str]) -> None:
    """``0 9-9 * * *`` fires once a day, ``mon-mon`` and ``3-3/2`` once a week, ``jan-jan`` once a year."""
    found = fires(CronTrigger(expression, UTC_ZONE), utc("2026-02-01T00:00Z"), len(expected))
    assert [fire.strftime("%Y-%m-%d %H:%M") for fire in found] == expected


@pytest.mark.parametrize("job", ["job", "job-106", "nightly-report", "sync", "a", "b"])
@pytest.mark.parametrize(("text", "attribute", "width"), [("0 H/24", "hours", 24), ("H/60 0", "minutes", 60)])
def test_h_step_as_wide_as_the_field_picks_one_value(job: str, text: str, attribute: str, width: int) -> None:
    """``H/n`` with n at least the field's width is the single value hash % width, even the field's last."""
    field_name = "hour" if attribute == "hours" else "minute"
    fields = CronTrigger(f"{text} * * *", UTC_ZONE, job).fields
    assert getattr(fields, attribute) == (_sha256_int(f"{job}|{field_name}") % width,)


@pytest.mark.parametrize(
    ("expression", "attribute", "values"),
    [
        ("5/20 0 * * *", "minutes", (5, 25, 45)),
        ("0 22/5 * * *", "hours", (22,)),
        ("0 0 31/2 * *", "days_of_month", (31,)),
        ("0 0 * jan/5 *", "months", (1, 6, 11)),
        ("0 0 * * mon/2", "days_of_week", (1, 3, 5)),
        ("0 0 * * 7/2", "days_of_week", (0, 2, 4, 6)),
        ("0 0 * * 5-7/2", "days_of_week", (0, 5)),
        ("0 0 * * sat-sun", "days_of_week", (0, 6)),
        ("0 0 * * 0-7/2", "days_of_week", (0, 2, 4, 6)),
        ("0 0 * * */7", "days_of_week", (0,)),
        ("*/100 0 * * *", "minutes", (0,)),
        ("0-59/100 0 * * *", "minutes", (0,)),
        ("00 05 * * *", "hours", (5,)),
    ],
)
def test_steps_from_one_value_run_to_the_end_of_the_field(
    expression: str, attribute: str, values: tuple[int, ...]
) -> None:
    """``v/n`` runs from v to the field's end (Saturday in day-of-week, 7 read as Sunday); big steps keep one."""
    assert getattr(CronTrigger(expression, UTC_ZONE).fields, attribute) == values


def test_a_list_holding_star_is_the_whole_field_and_still_restricted() -> None:
    """``1,*`` allows every value; it does not start with '*', so the day fields are ORed (Vixie's rule)."""
    fields = CronTrigger("0 0 1,* * fri", UTC_ZONE).fields
    assert fields.days_of_month == tuple(range(1, 32))
    assert fields.day_of_month_restricted and fields.day_of_week_restricted


@pytest.mark.parametrize(
    ("alias", "equivalent"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_aliases_mean_their_five_field_forms(alias: str, equivalent: str) -> None:
    """Each alias parses to the same fields and DST rule as the five fields it stands for."""
    aliased, plain = CronTrigger(alias, NEW_YORK), CronTrigger(equivalent, NEW_YORK)
    assert aliased.fields == plain.fields
    assert aliased.hour_follows_elapsed_time == plain.hour_follows_elapsed_time
    assert aliased.expression == alias


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("* * * * * *", f"{EXPECTED_FIELDS} (got 6)"),
        ("0 0 * * * * 2026", f"{EXPECTED_FIELDS} (got 7)"),
        ("0 0 * *", f"{EXPECTED_FIELDS} (got 4)"),
        ("", f"{EXPECTED_FIELDS} (got 0)"),
        ("0 0 L * *", "'L' (last) in the day-of-month field is not supported"),
        ("0 0 * * 5L", "'L' (last) in the day-of-week field is not supported"),
        ("0 0 15W * *", "'W' (weekday) in the day-of-month field is not supported"),
        ("0 0 LW * *", "'L' (last)"),
        ("0 0 * * 5#3", "'#' (nth weekday) in the day-of-week field is not supported"),
        ("0 0 ? * *", "'?' in the day-of-month field is not supported"),
        ("@reboot", "@reboot is not supported"),
        ("@fortnightly", "unknown alias '@fortnightly'"),
        ("60 * * * *", "minute value 60 is out of range: expected 0-59"),
        ("0 24 * * *", "hour value 24 is out of range: expected 0-23"),
        ("0 0 0 * *", "day-of-month value 0 is out of range: expected 1-31"),
        ("0 0 * 13 *", "month value 13 is out of range: expected 1-12"),
        ("0 0 * * 8", "day-of-week value 8 is out of range: expected 0-7"),
        ("*/0 * * * *", "the step after '/' must be at least 1"),
        ("5-1 * * * *", "range 5-1 in the minute field goes backwards"),
        ("0 0 * * fri-mon", "range fri-mon in the day-of-week field goes backwards"),
        ("0 0 * * 7-0", "range 7-0 in the day-of-week field goes backwards"),
        ("0 0 * dec-jan *", "range dec-jan in the month field goes backwards"),
        ("0 23-1 * * *", "range 23-1 in the hour field goes backwards"),
        ("0 0 * * 7-mon", "range 7-mon in the day-of-week field goes backwards"),
        ("1,,2 * * * *", "bad minute field '1,,2'"),
        ("0 0 * * funday", "unknown word 'funday' in the day-of-week field"),
        ("0 0 * jan-foo *", "unknown word 'foo' in the month field"),
        ("0 jan * * *", "unknown word 'jan' in the hour field"),
        ("0 0 H * *", "'H' is only allowed in the minute and hour fields, not in day-of-month"),
        ("0 0 * * H", "'H' is only allowed in the minute and hour fields"),
        ("H,5 * * * *", "expected H, H(a-b), H/n or H(a-b)/n"),
        ("H(50-70) * * * *", "H(a-b) needs a <= b within 0-59"),
        ("H(20-10) * * * *", "H(a-b) needs a <= b within 0-59"),
        ("H/0 * * * *", "the step after '/' must be at least 1"),
    ],
)
def test_invalid_expressions_are_rejected_with_a_reason(expression: str, fragment: str) -> None:
    """Unsupported or malformed expressions raise ScheduleError naming the expression and the problem."""
    with pytest.raises(ScheduleError) as raised:
        CronTrigger.parse(expression, "UTC", hash_key="job")
    assert fragment in str(raised.value)
    assert f"invalid cron expression {expression!r}" in str(raised.value)


def test_parse_takes_a_zone_name_and_rejects_an_unknown_one() -> None:
    """CronTrigger.parse loads an IANA name, and an unknown name is a ScheduleError."""
    assert CronTrigger.parse("0 0 * * *", "Europe/London").zone is LONDON
    with pytest.raises(ScheduleError, match="unknown time zone 'Europe/Londn'"):
        CronTrigger.parse("0 0 * * *", "Europe/Londn")


def test_cron_trigger_is_a_trigger() -> None:
    """CronTrigger satisfies the Trigger protocol."""
    assert isinstance(CronTrigger("0 0 * * *", UTC_ZONE), Trigger)


@pytest.mark.parametrize(
    ("expression", "elapsed"),
    [
        ("30 2 * * *", False),
        ("0 9-17 * * *", False),
        ("H 3 * * *", False),
        ("0 0-23/2 * * *", False),
        ("0 H/4 * * *", False),
        ("0 * * * *", True),
        ("*/15 * * * *", True),
        ("30 */2 * * *", True),
        ("@hourly", True),
        ("@daily", False),
    ],
)
def test_hour_field_text_chooses_the_dst_rule(expression: str, elapsed: bool) -> None:
    """An hour field starting with '*' follows elapsed time; any other hour field follows wall time."""
    assert CronTrigger(expression, NEW_YORK, "job").hour_follows_elapsed_time is elapsed


# ---------------------------------------------------------------- H (hashed values)


def _sha256_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")


@pytest.mark.parametrize("job", ["nightly-report", "sync", "", "ünïcode job"])
def test_h_is_sha256_of_the_job_name_per_field(job: str) -> None:
    """H picks minute sha256(job|minute) % 60 and hour sha256(job|hour) % 24, the same in every process."""
    fields = CronTrigger("H H * * *", UTC_ZONE, job).fields
    assert fields.minutes == (_sha256_int(f"{job}|minute") % 60,)
    assert fields.hours == (_sha256_int(f"{job}|hour") % 24,)
    assert CronTrigger("H H * * *", UTC_ZONE, job).fields == fields


@pytest.mark.parametrize(("low", "high"), [(0, 29), (10, 20), (45, 45), (0, 59)])
def test_h_range_stays_within_the_range(low: int, high: int) -> None:
    """H(a-b) picks a + hash % (b - a + 1), always inside a..b."""
    for job in (f"job-{index}" for index in range(40)):
        (minute,) = CronTrigger(f"H({low}-{high}) 0 * * *", UTC_ZONE, job).fields.minutes
        assert minute == low + _sha256_int(f"{job}|minute") % (high - low + 1)


@pytest.mark.parametrize(("text", "step", "maximum"), [("H/15 0", 15, 59), ("0 H/6", 6, 23), ("H/7 0", 7, 59)])
def test_h_step_starts_below_the_step_and_repeats_every_step(text: str, step: int, maximum: int) -> None:
    """H/n starts at hash % n and then every n to the end of the field."""
    for job in (f"job-{index}" for index in range(20)):
        fields = CronTrigger(f"{text} * * *", UTC_ZONE, job).fields
        values = fields.minutes if text.startswith("H") else fields.hours
        field_name = "minute" if text.startswith("H") else "hour"
        first = _sha256_int(f"{job}|{field_name}") % step
        assert values == tuple(range(first, maximum + 1, step))


def test_h_spreads_jobs_and_shows_substituted_values_in_the_description() -> None:
    """Different job names get different H minutes, and describe() shows the chosen time."""
    minutes = {CronTrigger("H 3 * * *", UTC_ZONE, f"job-{index}").fields.minutes for index in range(30)}
    assert len(minutes) > 10
    trigger = CronTrigger("H 3 * * *", UTC_ZONE, "nightly-report")
    assert trigger.describe() == f"at 03:{trigger.fields.minutes[0]:02d}"


# ---------------------------------------------------------------- day fields (Vixie)


@pytest.mark.parametrize(
    ("expression", "expected_days"),
    [
        # Both restricted: the 13th OR any Friday.
        ("0 0 13 * fri", ["02-06", "02-13", "02-20", "02-27", "03-06", "03-13", "03-20"]),
        # Day-of-month starts with '*': AND, odd days that are Fridays.
        ("0 0 */2 * fri", ["02-13", "02-27", "03-13", "03-27", "04-03", "04-17", "05-01"]),
        # Day-of-week starts with '*': AND, the 13th when it falls on Sun, Tue, Thu or Sat.
        ("0 0 13 * */2", ["06-13", "08-13", "09-13", "10-13", "12-13", "02-13", "03-13"]),
        # Only one field restricted: that one decides.
        ("0 0 * * fri", ["02-06", "02-13", "02-20", "02-27", "03-06", "03-13", "03-20"]),
        ("0 0 13 * *", ["02-13", "03-13", "04-13", "05-13", "06-13", "07-13", "08-13"]),
    ],
)
def test_day_fields_follow_vixie_or_and_rule(expression: str, expected_days: list[str]) -> None:
    """Day-of-month and day-of-week are ORed when both are restricted, else ANDed (Vixie cron)."""
    found = fires(CronTrigger(expression, UTC_ZONE), utc("2026-02-01T00:00Z"), len(expected_days))
    assert [fire.strftime("%m-%d") for fire in found] == expected_days


# ---------------------------------------------------------------- DST tables


def times_2026(text: str) -> list[datetime]:
    """UTC instants in 2026 written compactly: ``MM-DD`` sets the day for the ``HH:MM`` times after it."""
    found, day = [], ""
    for token in text.split():
        if len(token) == 5 and token[2] == "-":
            day = token
        else:
            found.append(datetime.fromisoformat(f"2026-{day}T{token}+00:00"))
    return found


# (zone, expression, after, the next fires): all instants UTC in 2026; comments give the wall times.
DST_TABLE = [
    # America/New_York springs forward at 03-08 07:00Z: wall 02:00 EST -> 03:00 EDT.
    ("America/New_York", "30 1 * * *", "03-07 12:00", "03-08 06:30 03-09 05:30"),
    ("America/New_York", "30 2 * * *", "03-07 12:00", "03-08 07:00 03-09 06:30"),  # 02:30 -> 03:00 EDT
    ("America/New_York", "*/15 2 * * *", "03-08 00:00", "03-08 07:00 03-09 06:00 06:15"),  # 4 -> 1 fire
    ("America/New_York", "0,30 2,3 * * *", "03-08 00:00", "03-08 07:00 07:30 03-09 06:00"),  # 03:00 too
    ("America/New_York", "30 0-23/2 * * *", "03-08 05:00", "03-08 05:30 07:00 08:30"),  # wall time
    ("America/New_York", "30 */2 * * *", "03-08 05:00", "03-08 05:30 08:30"),  # elapsed: no 02:30
    ("America/New_York", "0 * * * *", "03-08 04:30", "03-08 05:00 06:00 07:00 08:00"),
    ("America/New_York", "*/30 * * * *", "03-08 05:50", "03-08 06:00 06:30 07:00 07:30"),
    # America/New_York falls back at 11-01 06:00Z: wall 02:00 EDT -> 01:00 EST.
    ("America/New_York", "30 1 * * *", "10-31 12:00", "11-01 05:30 11-02 06:30"),  # not 01:30 EST
    ("America/New_York", "*/15 1 * * *", "11-01 00:00", "11-01 05:00 05:15 05:30 05:45 11-02 06:00"),
    ("America/New_York", "0 1,2 * * *", "11-01 00:00", "11-01 05:00 07:00 11-02 06:00"),
    ("America/New_York", "30 2 * * *", "11-01 00:00", "11-01 07:30 11-02 07:30"),
    ("America/New_York", "0 * * * *", "11-01 03:30", "11-01 04:00 05:00 06:00 07:00"),  # 01:00 twice
    ("America/New_York", "*/30 * * * *", "11-01 04:50", "11-01 05:00 05:30 06:00 06:30 07:00"),
    # Europe/London springs forward at 03-29 01:00Z: wall 01:00 GMT -> 02:00 BST.
    ("Europe/London", "30 0 * * *", "03-28 12:00", "03-29 00:30 23:30"),
    ("Europe/London", "30 1 * * *", "03-28 12:00", "03-29 01:00 03-30 00:30"),  # 01:30 -> 02:00 BST
    ("Europe/London", "*/20 1 * * *", "03-29 00:00", "03-29 01:00 03-30 00:00"),
    ("Europe/London", "30 2 * * *", "03-29 00:00", "03-29 01:30 03-30 01:30"),
    ("Europe/London", "0 * * * *", "03-28 23:30", "03-29 00:00 01:00 02:00"),
    # Europe/London falls back at 10-25 01:00Z: wall 02:00 BST -> 01:00 GMT.
    ("Europe/London", "30 1 * * *", "10-24 12:00", "10-25 00:30 10-26 01:30"),
    ("Europe/London", "*/30 1 * * *", "10-24 22:00", "10-25 00:00 00:30 10-26 01:00"),
    ("Europe/London", "*/30 * * * *", "10-24 23:50", "10-25 00:00 00:30 01:00 01:30"),
    ("Europe/London", "0 * * * *", "10-24 22:30", "10-24 23:00 10-25 00:00 01:00 02:00"),
    # Australia/Lord_Howe falls back 30 minutes at 04-04 15:00Z: wall 02:00 +11 -> 01:30 +10:30.
    ("Australia/Lord_Howe", "30 1 * * *", "04-04 00:00", "04-04 14:30 04-05 15:00"),  # first 01:30
    ("Australia/Lord_Howe", "45 1 * * *", "04-04 00:00", "04-04 14:45 04-05 15:15"),
    ("Australia/Lord_Howe", "0 2 * * *", "04-04 00:00", "04-04 15:30 04-05 15:30"),
    ("Australia/Lord_Howe", "*/15 * * * *", "04-04 14:20", "04-04 14:30 14:45 15:00 15:15 15:30"),
    ("Australia/Lord_Howe", "30 * * * *", "04-04 13:00", "04-04 13:30 14:30 15:00 16:00"),  # 01:30 x2
    ("Australia/Lord_Howe", "0 * * * *", "04-04 12:30", "04-04 13:00 14:00 15:30 16:30"),  # 01:00 x1
    # Australia/Lord_Howe springs forward 30 minutes at 10-03 15:30Z: wall 02:00 +10:30 -> 02:30 +11.
    ("Australia/Lord_Howe", "15 2 * * *", "10-03 00:00", "10-03 15:30 10-04 15:15"),  # 02:15 -> 02:30
    ("Australia/Lord_Howe", "0,15,30 2 * * *", "10-03 00:00", "10-03 15:30 10-04 15:00"),  # one fire
    ("Australia/Lord_Howe", "45 2 * * *", "10-03 00:00", "10-03 15:45 10-04 15:45"),
    ("Australia/Lord_Howe", "*/15 * * * *", "10-03 15:00", "10-03 15:15 15:30 15:45"),
    ("Australia/Lord_Howe", "0 * * * *", "10-03 14:00", "10-03 14:30 16:00 17:00"),  # no 02:00
    # America/Santiago falls back at midnight, 04-05 03:00Z: wall 00:00 -03 -> Saturday 23:00 -04.
    ("America/Santiago", "30 23 * * *", "04-03 12:00", "04-04 02:30 04-05 02:30 04-06 03:30"),
    ("America/Santiago", "30 * * * sat", "04-05 01:00", "04-05 01:30 02:30 03:30 04-11 04:30"),
    ("America/Santiago", "5 0 * * *", "04-03 12:00", "04-04 03:05 04-05 04:05"),
    ("America/Santiago", "0 * * * *", "04-05 01:30", "04-05 02:00 03:00 04:00"),
    # America/Santiago springs forward at midnight, 09-06 04:00Z: wall 00:00 -04 -> 01:00 -03.
    ("America/Santiago", "5 0 * * *", "09-05 00:00", "09-05 04:05 09-06 04:00 09-07 03:05"),
    ("America/Santiago", "30 0 * * sun", "09-01 00:00", "09-06 04:00 09-13 03:30"),
    ("America/Santiago", "0 1 * * *", "09-05 12:00", "09-06 04:00 09-07 04:00"),
    ("America/Santiago", "0 * * * *", "09-06 02:30", "09-06 03:00 04:00 05:00"),
    # America/Havana springs forward at midnight, 03-08 05:00Z: wall 00:00 -05 -> 01:00 -04.
    ("America/Havana", "5 0 * * *", "03-06 12:00", "03-07 05:05 03-08 05:00 03-09 04:05"),
    ("America/Havana", "@daily", "03-07 12:00", "03-08 05:00 03-09 04:00"),  # no midnight on the 8th
    # America/Havana falls back at 11-01 05:00Z: wall 01:00 -04 -> 00:00 -05.
    ("America/Havana", "5 0 * * *", "10-31 12:00", "11-01 04:05 11-02 05:05"),
    ("America/Havana", "*/30 * * * *", "11-01 03:50", "11-01 04:00 04:30 05:00 05:30 06:00"),
]


@pytest.mark.parametrize(("zone", "expression", "after", "expected"), DST_TABLE)
def test_dst_transitions_follow_the_contract(zone: str, expression: str, after: str, expected: str) -> None:
    """Fixed-hour jobs follow wall time (gap -> transition, repeat -> first); '*' hours follow elapsed time."""
    wanted = times_2026(expected)
    (start,) = times_2026(after)
    assert fires(CronTrigger(expression, ZoneInfo(zone), "job"), start, len(wanted)) == wanted


@pytest.mark.parametrize(
    ("zone", "expression"),
    [
        ("America/New_York", "*/15 * * * *"),
        ("Australia/Lord_Howe", "*/10 * * * *"),
        ("America/Santiago", "*/20 * * * *"),
    ],
)
def test_elapsed_minute_steps_are_evenly_spaced_in_real_time_through_every_transition(
    zone: str, expression: str
) -> None:
    """A '*/n * * * *' job fires every n real minutes across a whole year of transitions."""
    trigger = CronTrigger(expression, ZoneInfo(zone))
    step = timedelta(minutes=int(expression.split()[0][2:]))
    cursor = trigger.next_after(utc("2026-01-01T00:00Z"))
    while cursor is not None and cursor < utc("2027-01-01T00:00Z"):
        following = trigger.next_after(cursor)
        assert following == cursor + step
        cursor = following


def test_fires_from_other_offsets_are_the_same_instants() -> None:
    """next_after accepts an aware instant in any zone and answers the same as for its UTC equivalent."""
    trigger = CronTrigger("30 2 * * *", NEW_YORK)
    instant = utc("2026-03-07T12:00Z")
    assert trigger.next_after(instant.astimezone(LORD_HOWE)) == trigger.next_after(instant)


def test_naive_instant_is_a_programming_error() -> None:
    """A naive datetime passed to next_after raises TypeError."""
    with pytest.raises(TypeError, match="naive datetime"):
        CronTrigger("0 0 * * *", UTC_ZONE).next_after(datetime(2026, 1, 1))


# ---------------------------------------------------------------- bounds and never-firing


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        ("2026-01-01T00:00Z", "2026-03-01T09:00"),  # before start: the first fire at or after start
        ("2026-03-01T08:59Z", "2026-03-01T09:00"),
        ("2026-03-01T09:00Z", "2026-03-02T09:00"),
        ("2026-03-04T08:00Z", "2026-03-04T09:00"),  # end is inclusive
        ("2026-03-04T09:00Z", None),
        ("2027-01-01T00:00Z", None),
    ],
)
def test_start_and_end_bound_fires_inclusively(after: str, expected: str | None) -> None:
    """Fires are >= start and <= end; past end there is none."""
    trigger = CronTrigger("0 9 * * *", UTC_ZONE, start=utc("2026-03-01T09:00Z"), end=utc("2026-03-04T09:00Z"))
    fire = trigger.next_after(utc(after))
    assert (fire.strftime("%Y-%m-%dT%H:%M") if fire else None) == expected


def test_end_before_start_is_rejected() -> None:
    """An end before start raises ScheduleError."""
    with pytest.raises(ScheduleError, match="is before start"):
        CronTrigger("0 9 * * *", UTC_ZONE, start=utc("2026-03-02T00:00Z"), end=utc("2026-03-01T00:00Z"))


@pytest.mark.parametrize("expression", ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 2 *"])
def test_expression_that_never_matches_returns_none(expression: str) -> None:
    """A date that never exists gives None rather than searching forever."""
    assert CronTrigger(expression, LONDON).next_after(utc("2026-01-01T00:00Z")) is None


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 0 29 2 *", ["2028-02-29T00:00", "2032-02-29T00:00", "2036-02-29T00:00"]),
        ("0 12 29 2 *", ["2028-02-29T12:00", "2032-02-29T12:00", "2036-02-29T12:00"]),
        ("0 0 29 2 */7", ["2032-02-29T00:00", "2060-02-29T00:00", "2088-02-29T00:00"]),  # AND with Sunday
    ],
)
def test_leap_day_fires_every_four_years(expression: str, expected: list[str]) -> None:
    """29 February fires in leap years only, and ANDed with a weekday only when both agree."""
    found = fires(CronTrigger(expression, UTC_ZONE), utc("2026-01-01T00:00Z"), len(expected))
    assert [fire.strftime("%Y-%m-%dT%H:%M") for fire in found] == expected


# ---------------------------------------------------------------- describe


@pytest.mark.parametrize(
    ("expression", "text"),
    [
        ("30 2 * * *", "at 02:30"),
        ("*/15 * * * *", "every 15 minutes"),
        ("0 17 * * 5", "at 17:00, only on Friday"),
        ("0 0 13 * fri", "at 00:00, on day 13 of the month, or on Friday"),
        ("0 0 */2 * fri", "at 00:00, every 2 days, only on Friday"),
        ("@weekly", "at 00:00, only on Sunday"),
    ],
)
def test_describe_uses_24_hour_words_and_the_vixie_day_rule(expression: str, text: str) -> None:
    """describe() gives cron-descriptor's 24-hour text, saying 'or' only when the day fields are ORed."""
    assert CronTrigger(expression, NEW_YORK).describe() == text


# ---------------------------------------------------------------- peers differ, the contract wins


def test_croniter_fires_twice_on_fall_back_where_we_fire_once() -> None:
    """croniter runs a daily 01:30 job at both 01:30s of New York's fall-back day; we run it once."""
    croniter = pytest.importorskip("croniter").croniter
    iterator = croniter("30 1 * * *", datetime(2026, 10, 31, 12, 0, tzinfo=NEW_YORK))
    theirs = [iterator.get_next(datetime).astimezone(UTC) for _ in range(2)]
    assert theirs == [utc("2026-11-01T05:30Z"), utc("2026-11-01T06:30Z")]
    ours = fires(CronTrigger("30 1 * * *", NEW_YORK), utc("2026-10-31T16:00Z"), 2)
    assert ours == [utc("2026-11-01T05:30Z"), utc("2026-11-02T06:30Z")]


def test_apscheduler_moves_a_gap_job_to_an_hour_later_where_we_fire_at_the_transition() -> None:
    """APScheduler 3 runs 02:30 on New York's spring-forward day at 03:30 EDT; we run it at 03:00 EDT."""
    cron = pytest.importorskip("apscheduler.triggers.cron")
    aps = cron.CronTrigger.from_crontab("30 2 * * *", timezone=NEW_YORK)
    theirs = aps.get_next_fire_time(None, datetime(2026, 3, 7, 12, 0, tzinfo=NEW_YORK))
    assert theirs.astimezone(UTC) == utc("2026-03-08T07:30Z")
    assert CronTrigger("30 2 * * *", NEW_YORK).next_after(utc("2026-03-07T17:00Z")) == utc("2026-03-08T07:00Z")


def test_apscheduler_ands_the_day_fields_where_we_or_them() -> None:
    """APScheduler 3 reads '0 0 13 * fri' as Friday the 13th; Vixie and we read it as the 13th or Friday."""
    cron = pytest.importorskip("apscheduler.triggers.cron")
    aps = cron.CronTrigger.from_crontab("0 0 13 * fri", timezone=UTC)
    theirs = aps.get_next_fire_time(None, datetime(2026, 2, 1, tzinfo=UTC))
    assert theirs == utc("2026-02-13T00:00Z")
    assert CronTrigger("0 0 13 * fri", UTC_ZONE).next_after(utc("2026-02-01T00:00Z")) == utc("2026-02-06T00:00Z")
