"""The planner decides due, on-time, caught-up and missed fires from progress and an injected now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from beatd.planner import MISSED_RECORD_LIMIT, SCAN_LIMIT, CatchupPolicy, plan_job
from beatd.triggers import CronTrigger, IntervalTrigger

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
EVERY_10S = IntervalTrigger(timedelta(seconds=10), start=None, end=None)
LATE_AFTER = timedelta(seconds=11)


def no_jitter(_: datetime) -> timedelta:
    """Emission delay of zero."""
    return timedelta(0)


def at(seconds: float) -> datetime:
    """T0 plus seconds."""
    return T0 + timedelta(seconds=seconds)


def policy(catchup: str = "latest", grace: float = 3600, limit: int = 100) -> CatchupPolicy:
    """A catch-up policy."""
    return CatchupPolicy(catchup, timedelta(seconds=grace), limit)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("now", "expected_emits", "next_due"),
    [
        (at(9.999), [], at(10)),  # nothing due yet
        (at(10), [at(10)], at(20)),  # due exactly now
        (at(21), [at(10), at(20)], at(30)),  # a short gap (<= late_after) is not a miss
    ],
)
def test_on_time_fires_are_emitted_as_schedule(
    now: datetime, expected_emits: list[datetime], next_due: datetime
) -> None:
    """Fires late by at most late_after are emitted with trigger schedule, in order."""
    plan = plan_job(EVERY_10S, no_jitter, T0, now, policy(), LATE_AFTER)
    assert [step.scheduled_at for step in plan.steps] == expected_emits
    assert all(step.kind == "emit" and step.trigger == "schedule" for step in plan.steps)
    assert plan.next_due == next_due
    assert plan.progress == (expected_emits[-1] if expected_emits else T0)


# After a gap: progress at T0, now = T0 + 65 s, every 10 s, late_after 11 s.
# Due: 10, 20, 30, 40, 50, 60. Late (> 11 s): 10..50. On time: 60.
@pytest.mark.parametrize(
    ("catchup", "grace", "limit", "emits", "misses"),
    [
        ("none", 3600, 100, [(60, "schedule")], [10, 20, 30, 40, 50]),
        ("latest", 3600, 100, [(60, "schedule")], [10, 20, 30, 40, 50]),  # the on-time fire supersedes
        (
            "all",
            3600,
            100,
            [(10, "catchup"), (20, "catchup"), (30, "catchup"), (40, "catchup"), (50, "catchup"), (60, "schedule")],
            [],
        ),
        ("all", 3600, 2, [(40, "catchup"), (50, "catchup"), (60, "schedule")], [10, 20, 30]),
        ("all", 30, 100, [(40, "catchup"), (50, "catchup"), (60, "schedule")], [10, 20, 30]),  # grace 30 s
    ],
)
def test_catch_up_policies_with_an_on_time_fire(
    catchup: str, grace: float, limit: int, emits: list[tuple[int, str]], misses: list[int]
) -> None:
    """catchup none/latest/all, misfire_grace and catchup_limit decide which late fires are emitted."""
    plan = plan_job(EVERY_10S, no_jitter, T0, at(65), policy(catchup, grace, limit), LATE_AFTER)
    assert [(step.scheduled_at, step.trigger) for step in plan.steps if step.kind == "emit"] == [
        (at(second), trigger) for second, trigger in emits
    ]
    assert [step.scheduled_at for step in plan.steps if step.kind == "miss"] == [at(second) for second in misses]
    assert [step.scheduled_at for step in plan.steps] == sorted(step.scheduled_at for step in plan.steps)
    assert plan.progress == at(60)


@pytest.mark.parametrize(
    ("catchup", "grace", "emitted", "reason"),
    [
        ("latest", 3600, [50], "superseded by a later fire (catchup: latest)"),
        ("latest", 5, [], "older than misfire_grace"),
        ("none", 3600, [], "catchup: none"),
    ],
)
def test_latest_without_on_time_fire(catchup: str, grace: float, emitted: list[int], reason: str) -> None:
    """With only late fires, latest emits the newest one within grace; every other fire is missed with a reason."""
    # due 10..50, all late by more than 5 s
    plan = plan_job(EVERY_10S, no_jitter, T0, at(57), policy(catchup, grace), timedelta(seconds=5))
    assert [step.scheduled_at for step in plan.steps if step.kind == "emit"] == [at(s) for s in emitted]
    reasons = {step.reason for step in plan.steps if step.kind == "miss"}
    assert reason in reasons


def test_jitter_delays_due_but_keeps_instant() -> None:
    """A fire is due at its instant plus its jitter, and keeps its scheduled instant."""
    jitter = lambda _: timedelta(seconds=3)  # noqa: E731
    assert plan_job(EVERY_10S, jitter, T0, at(12), policy(), LATE_AFTER).steps == ()
    plan = plan_job(EVERY_10S, jitter, T0, at(13), policy(), LATE_AFTER)
    assert [step.scheduled_at for step in plan.steps] == [at(10)]
    assert plan.next_due == at(23)


def test_long_gap_is_summarised_not_lost() -> None:
    """A day-long gap of a 1 s job: fires before the grace window become one range, newer ones single records."""
    every_second = IntervalTrigger(timedelta(seconds=1), start=None, end=None)
    now = T0 + timedelta(days=1)
    plan = plan_job(every_second, no_jitter, T0, now, policy("latest", grace=60), LATE_AFTER)
    singles = [step for step in plan.steps if step.kind == "miss" and step.first is None]
    ranges = [step for step in plan.steps if step.first is not None]
    assert len(ranges) == 1 and ranges[0].first == at(1) and ranges[0].count >= SCAN_LIMIT
    assert not ranges[0].count_exact and ranges[0].scheduled_at < now - timedelta(seconds=60)
    assert len(singles) == 49 and all(now - step.scheduled_at <= timedelta(seconds=60) for step in singles)
    emitted = [step for step in plan.steps if step.kind == "emit"]
    assert len(emitted) == 12 and all(now - step.scheduled_at <= LATE_AFTER for step in emitted)  # ages 0..11 s
    assert [step.scheduled_at for step in plan.steps] == sorted(step.scheduled_at for step in plan.steps)
    assert plan.progress == now


@pytest.mark.parametrize(("catchup", "limit", "emitted"), [("all", 100, 100), ("latest", 100, 1), ("none", 100, 0)])
def test_catch_up_limits_hold_over_long_gaps(catchup: str, limit: int, emitted: int) -> None:
    """After a 20 h gap of a 1 s job with a day of grace, all emits catchup_limit fires and latest exactly one."""
    every_second = IntervalTrigger(timedelta(seconds=1), start=None, end=None)
    now = T0 + timedelta(hours=20, seconds=0.5)
    plan = plan_job(every_second, no_jitter, T0, now, policy(catchup, grace=86400, limit=limit), timedelta(0))
    catchups = [step.scheduled_at for step in plan.steps if step.kind == "emit"]
    assert len(catchups) == emitted
    if emitted:
        assert catchups[-1] == T0 + timedelta(hours=20)  # the most recent missed fire is among them
    assert len([step for step in plan.steps if step.kind == "miss"]) <= MISSED_RECORD_LIMIT + 1
    counted = sum(step.count for step in plan.steps if step.kind == "miss")
    if catchup == "none":  # nothing can be emitted: the gap is walked only SCAN_LIMIT far, then counted as a range
        assert counted >= SCAN_LIMIT and not any(step.count_exact for step in plan.steps if step.first is not None)
    else:
        assert counted == 72000 - emitted


def test_finished_trigger_has_no_next_due() -> None:
    """A trigger past its end plans nothing and is never looked at again."""
    ended = IntervalTrigger(timedelta(seconds=10), start=None, end=at(20))
    plan = plan_job(ended, no_jitter, at(20), at(100), policy(), LATE_AFTER)
    assert plan.steps == () and plan.next_due is None


def test_daily_cron_after_a_weekend_outage() -> None:
    """A nightly Shanghai job down from Friday to Monday morning catches up only Monday's fire under latest."""
    nightly = CronTrigger.parse("5 0 * * *", ZoneInfo("Asia/Shanghai"), hash_key="daily_signups")
    friday = datetime(2026, 11, 20, 0, 5, tzinfo=ZoneInfo("Asia/Shanghai"))
    monday_morning = datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    plan = plan_job(nightly, no_jitter, friday, monday_morning, policy("latest", grace=86400), LATE_AFTER)
    assert [(step.kind, step.scheduled_at.astimezone(ZoneInfo("Asia/Shanghai")).day) for step in plan.steps] == [
        ("miss", 21),
        ("miss", 22),
        ("emit", 23),
    ]
