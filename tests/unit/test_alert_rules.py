"""The pure rules of alerting, table-driven with instants passed in: windows, grouping, backoff, deadlines,
silence, and which run records are events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from beatd.alert_rules import (
    Event,
    Group,
    closable,
    deadline_fires,
    group_events,
    retry_delay,
    silence_threshold,
    summaries,
    wants_event,
    window_of,
)
from beatd.config.alerts import AlertRule
from beatd.messages import to_ms
from beatd.triggers import IntervalTrigger

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def rule(on: str, **more: object) -> AlertRule:
    return AlertRule.model_validate({"on": on, "sinks": ["hook", "mail"], **more})


@pytest.mark.parametrize(
    ("at", "window", "expected"),
    [
        (T0, 10 * MINUTE, (T0, T0 + 10 * MINUTE)),
        (T0 + 9 * MINUTE, 10 * MINUTE, (T0, T0 + 10 * MINUTE)),
        (T0 + 10 * MINUTE, 10 * MINUTE, (T0 + 10 * MINUTE, T0 + 20 * MINUTE)),
        (T0 + timedelta(seconds=61), MINUTE, (T0 + MINUTE, T0 + 2 * MINUTE)),
    ],
)
def test_windows_are_aligned_to_the_epoch(at: datetime, window: timedelta, expected: tuple[datetime, datetime]) -> None:
    """An instant falls in the window [start, end) that holds it, windows aligned to the epoch."""
    assert window_of(to_ms(at), window) == (to_ms(expected[0]), to_ms(expected[1]))


@pytest.mark.parametrize(
    ("attempts", "low", "high"),
    [(1, 0.5, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (9, 128.0, 256.0), (10, 150.0, 300.0), (50, 150.0, 300.0)],
)
def test_retry_delay_doubles_with_jitter_up_to_its_cap(attempts: int, low: float, high: float) -> None:
    """The wait after n failed attempts is in [c/2, c], c = min(first * 2^(n-1), longest)."""
    first, longest = timedelta(seconds=1), timedelta(minutes=5)
    assert retry_delay(attempts, first, longest, lambda a, b: a).total_seconds() == pytest.approx(low)
    assert retry_delay(attempts, first, longest, lambda a, b: b).total_seconds() == pytest.approx(high)


EVERY_MINUTE = IntervalTrigger(MINUTE)


@pytest.mark.parametrize(
    ("judged", "now", "fires", "mark"),
    [
        (None, T0 + 30 * MINUTE, [], T0 + 20 * MINUTE),  # first look: the past is not judged
        (T0, T0 + 10 * MINUTE + timedelta(seconds=59), [], T0),  # the next fire's deadline not yet passed
        (T0, T0 + 11 * MINUTE, [T0 + MINUTE], T0 + MINUTE),  # exactly at its deadline
        (T0, T0 + 13 * MINUTE + timedelta(seconds=5), [T0 + n * MINUTE for n in (1, 2, 3)], T0 + 3 * MINUTE),
    ],
)
def test_deadline_fires_are_those_past_their_deadline_not_judged_yet(
    judged: datetime | None, now: datetime, fires: list[datetime], mark: datetime
) -> None:
    """With a 10-minute deadline, the fires judged are those after the mark whose instant + D has passed."""
    found, new_mark = deadline_fires(EVERY_MINUTE, 10 * MINUTE, to_ms(judged) if judged else None, now)
    assert found == fires
    assert new_mark == to_ms(mark)


@pytest.mark.parametrize(
    ("settings", "base", "expected"),
    [
        ({"intervals": 3}, T0 + timedelta(seconds=10), T0 + 3 * MINUTE),
        ({"intervals": 1}, T0, T0 + MINUTE),
        ({"after": "2h"}, T0 + timedelta(seconds=10), T0 + timedelta(hours=2, seconds=10)),
    ],
)
def test_silence_comes_n_intervals_or_a_duration_after_the_last_success(
    settings: dict[str, object], base: datetime, expected: datetime
) -> None:
    """A job is silent at the N-th fire instant after its last success, or a duration after it."""
    assert silence_threshold(EVERY_MINUTE, rule("silence", **settings), base) == expected


@pytest.mark.parametrize(
    ("ons", "status", "expected"),
    [
        (["dead"], "dead", True),
        (["dead"], "failed", False),
        (["failed"], "timeout", True),
        (["dead"], "succeeded", False),
        (["recovered"], "succeeded", True),
        (["silence"], "succeeded", True),
        (["missed"], "missed", True),
        (["expired"], "skipped", False),
        ([], "dead", False),
    ],
)
def test_only_records_a_rule_is_about_are_noted(ons: list[str], status: str, expected: bool) -> None:
    """A run record is noted as an event only if one of the job's rules is about its status."""
    rules = [rule(on, **({"after": "1m"} if on in ("deadline", "silence") else {})) for on in ons]
    assert wants_event(rules, status) is expected


def test_a_storm_in_one_window_is_one_message_per_sink_and_one_summary() -> None:
    """10,000 events of one job and rule in a window: one delivery per sink at once, one close at the window's
    end, and the close's summary counts the 9,999 others."""
    dead = rule("dead")
    events = [(Event("nightly", "dead", to_ms(T0) + n, f"dead {n}"), dead) for n in range(10_000)]
    grouped = group_events("ns", events, {}, 10 * MINUTE)
    kinds = sorted((delivery.kind, delivery.sink) for delivery, _ in grouped.deliveries)
    assert kinds == [("alert", "hook"), ("alert", "mail"), ("close", "")]
    close, due = next((d, due) for d, due in grouped.deliveries if d.kind == "close")
    assert due == to_ms(T0 + 10 * MINUTE)
    (group,) = grouped.groups.values()
    assert group.count == 10_000
    told = summaries("ns", close, group)
    assert [(d.sink, d.payload["count"], d.key) for d in told] == [
        ("hook", 9_999, close.key), ("mail", 9_999, close.key)
    ]  # fmt: skip
    assert told[0].payload["summary"].startswith("9999 more dead of nightly")


def test_a_window_with_one_event_closes_without_a_summary() -> None:
    """A group that counted one event says nothing more when its window closes."""
    grouped = group_events("ns", [(Event("j", "dead", to_ms(T0), "x"), rule("dead"))], {}, MINUTE)
    close = next(d for d, _ in grouped.deliveries if d.kind == "close")
    assert summaries("ns", close, next(iter(grouped.groups.values()))) == []


def test_events_in_the_next_window_open_a_new_group() -> None:
    """The same job and rule in the next window is told again (its own idempotency key)."""
    events = [(Event("j", "dead", to_ms(T0 + n * MINUTE), "x"), rule("dead")) for n in range(3)]
    grouped = group_events("ns", events, {}, MINUTE)
    keys = {d.key for d, _ in grouped.deliveries if d.kind == "alert"}
    assert len(grouped.groups) == 3 and len(keys) == 3


@pytest.mark.parametrize(
    ("oldest_waiting", "expected"),
    [
        (None, True),  # nothing waits to be grouped
        (to_ms(T0 + MINUTE), True),  # the oldest waiting event is of the next window
        (to_ms(T0 + MINUTE) - 1, False),  # one of this window's events is not counted yet
        (to_ms(T0), False),
    ],
)
def test_a_window_closes_only_once_its_waiting_events_are_counted(oldest_waiting: int | None, expected: bool) -> None:
    """A group whose window ended closes (tells its summary) only when no event of its window still waits."""
    group = Group("j", "dead", to_ms(T0), to_ms(T0 + MINUTE), 7, ("hook",), {})
    assert closable(group, oldest_waiting) is expected
    assert closable(None, oldest_waiting)  # a close whose group is gone just goes


def test_the_prelude_bounds_alert_events_like_the_defaults() -> None:
    """`ALERT_EVENTS_LIMIT` in the Lua prelude is the Python default."""
    import re

    from beatd import defaults
    from beatd.store.base import script

    found = re.search(r"^local ALERT_EVENTS_LIMIT = (\d+)$", script("_prelude", prelude=False), re.MULTILINE)
    assert found is not None and int(found[1]) == defaults.ALERT_EVENTS_LIMIT


def test_an_event_routed_by_two_rules_counts_once_and_tells_each_rules_sinks() -> None:
    """Two dead rules selecting one job (by name, by tag) with different sinks: each sink is told once, at the
    first event; the event counts once, and a later one of the window only counts."""
    by_name = AlertRule.model_validate({"on": "dead", "sinks": ["hook"], "jobs": ["j"]})
    by_tag = AlertRule.model_validate({"on": "dead", "sinks": ["mail", "hook"], "tags": ["nightly"]})
    first, later = Event("j", "dead", to_ms(T0), "one"), Event("j", "dead", to_ms(T0) + 5, "two")
    grouped = group_events("ns", [(first, by_name), (first, by_tag), (later, by_name), (later, by_tag)], {}, MINUTE)
    told = sorted(d.sink for d, _ in grouped.deliveries if d.kind == "alert")
    assert told == ["hook", "mail"]
    (group,) = grouped.groups.values()
    assert group.count == 2 and group.sinks == ("hook", "mail")
    assert [how for _, how in grouped.raised] == ["told", "counted"]


def test_a_rule_with_new_sinks_joining_a_known_group_tells_them() -> None:
    """A group read back from Redis (told to hook) that an event reaches through a rule with another sink: that
    sink gets the first message now, the group counts the event."""
    known = Group("j", "no_worker", to_ms(T0), to_ms(T0 + MINUTE), 1, ("hook",), {})
    pager = AlertRule.model_validate({"on": "no_worker", "after": "5m", "sinks": ["pager"]})
    grouped = group_events("ns", [(Event("j", "no_worker", to_ms(T0) + 9, "late"), pager)], {known.id: known}, MINUTE)
    assert [(d.kind, d.sink) for d, _ in grouped.deliveries] == [("alert", "pager")]
    assert grouped.groups[known.id].count == 2 and grouped.groups[known.id].sinks == ("hook", "pager")
