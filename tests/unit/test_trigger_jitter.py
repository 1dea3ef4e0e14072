"""jitter_offset: a deterministic delay in [0, jitter) per job and scheduled instant."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from beatd.errors import ScheduleError
from beatd.triggers import jitter_offset

SCHEDULED = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_offset_is_sha256_of_job_and_utc_instant() -> None:
    """The offset is sha256('job|<UTC ISO instant>') modulo the jitter in microseconds."""
    digest = hashlib.sha256(b"report|2026-03-01T09:00:00+00:00").digest()
    expected = int.from_bytes(digest, "big") % 30_000_000
    assert jitter_offset("report", SCHEDULED, timedelta(seconds=30)) == timedelta(microseconds=expected)


def test_offset_is_deterministic_and_independent_of_the_instants_zone() -> None:
    """The same job and instant give the same offset, whatever zone the instant is written in."""
    in_tokyo = SCHEDULED.astimezone(ZoneInfo("Asia/Tokyo"))
    assert jitter_offset("report", in_tokyo, timedelta(minutes=5)) == jitter_offset(
        "report", SCHEDULED, timedelta(minutes=5)
    )


@pytest.mark.parametrize(
    "jitter", [timedelta(microseconds=1), timedelta(microseconds=7), timedelta(seconds=1), timedelta(hours=1)]
)
def test_offset_is_within_zero_and_jitter(jitter: timedelta) -> None:
    """Every offset lies in [0, jitter)."""
    for minute in range(200):
        offset = jitter_offset("job", SCHEDULED + timedelta(minutes=minute), jitter)
        assert timedelta(0) <= offset < jitter


def test_offset_differs_across_instants_and_jobs() -> None:
    """Successive fires of a job, and different jobs at one instant, get spread-out offsets."""
    jitter = timedelta(minutes=10)
    by_instant = {jitter_offset("job", SCHEDULED + timedelta(hours=hour), jitter) for hour in range(50)}
    by_job = {jitter_offset(f"job-{index}", SCHEDULED, jitter) for index in range(50)}
    assert len(by_instant) > 45
    assert len(by_job) > 45


def test_zero_jitter_gives_zero_and_negative_is_rejected() -> None:
    """A zero jitter gives timedelta(0); a negative one raises ScheduleError."""
    assert jitter_offset("job", SCHEDULED, timedelta(0)) == timedelta(0)
    with pytest.raises(ScheduleError, match="must not be negative"):
        jitter_offset("job", SCHEDULED, timedelta(seconds=-1))
