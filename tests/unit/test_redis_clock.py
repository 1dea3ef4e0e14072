"""Redis's clock carried on the monotonic clock decides what is due, whatever the host's wall clock does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from beatd.planner import CatchupPolicy, plan_job
from beatd.redis_clock import RedisClock
from beatd.triggers import IntervalTrigger

REDIS_T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
EVERY_10S = IntervalTrigger(timedelta(seconds=10), start=None, end=None)


def sampled(sent: float, received: float, redis_at: datetime = REDIS_T0) -> RedisClock:
    """A RedisClock that saw ``redis_at`` during a call from monotonic ``sent`` to ``received``."""
    clock = RedisClock()
    clock.observe(redis_at.timestamp(), sent, received)
    return clock


def test_no_sample_no_time() -> None:
    """Before Redis ever answered there is no Redis time (the beat cannot lead then)."""
    assert RedisClock().now(5.0) is None


@pytest.mark.parametrize(
    ("sent", "received", "monotonic", "expected"),
    [
        (100.0, 100.0, 100.0, REDIS_T0),  # an instant call
        (100.0, 100.2, 100.2, REDIS_T0),  # taken as read when the reply came: never ahead of Redis
        (100.0, 100.2, 100.3, REDIS_T0 + timedelta(milliseconds=100)),
        (100.0, 100.0, 190.0, REDIS_T0 + timedelta(seconds=90)),  # carried on the monotonic clock
    ],
)
def test_estimate_at_midpoint_carried_on_monotonic(
    sent: float, received: float, monotonic: float, expected: datetime
) -> None:
    """Redis's time is taken as read at the reply (lagging by at most the round trip), then moves with the
    monotonic clock only."""
    assert sampled(sent, received).now(monotonic) == expected


def test_a_new_sample_replaces_the_estimate() -> None:
    """Each lease call re-anchors the estimate (Redis's own clock stays the authority)."""
    clock = sampled(0.0, 0.0)
    clock.observe((REDIS_T0 + timedelta(seconds=12)).timestamp(), 10.0, 10.0)
    assert clock.now(10.0) == REDIS_T0 + timedelta(seconds=12)
    assert clock.round_trip == 0.0


def plan_at(now: datetime) -> list[tuple[str, datetime]]:
    """The steps for an every-10s job (catchup none, on time within 11 s) last fired at REDIS_T0, at ``now``."""
    policy = CatchupPolicy("none", timedelta(hours=1), 100)
    plan = plan_job(EVERY_10S, lambda _: timedelta(0), REDIS_T0, now, policy, timedelta(seconds=11))
    return [(step.kind, step.scheduled_at) for step in plan.steps]


@pytest.mark.parametrize("host_step", [-90.0, 0.0, 90.0])
def test_host_clock_step_misses_nothing_and_emits_nothing_early(host_step: float) -> None:
    """With the host clock stepped by ±90 s the plan by Redis's clock is unchanged: nothing missed or early."""
    clock = sampled(0.0, 0.0)
    host_now = REDIS_T0 + timedelta(seconds=21 + host_step)  # the host's wall clock at monotonic 21
    now = clock.now(21.0)  # takes no wall-clock reading at all
    assert now is not None
    due = [("emit", REDIS_T0 + timedelta(seconds=10)), ("emit", REDIS_T0 + timedelta(seconds=20))]
    assert plan_at(now) == due
    if host_step > 0:  # what deciding by the host clock did: instants not yet come recorded missed
        assert ("miss", REDIS_T0 + timedelta(seconds=30)) in plan_at(host_now)
