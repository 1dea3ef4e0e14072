"""The upkeep's pure rules, with instants and monotonic seconds passed in: deadlines, stale heartbeats,
expired waiting fires, backlog warnings."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from beatd.config import JobSpec, load_config
from beatd.expiry import start_deadline
from beatd.messages import Message, format_utc, to_ms
from beatd.store.upkeep import Backlog
from beatd.upkeep import HeartbeatWatch, backlog_warnings, expired_fires

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def message(
    job: str = "report", scheduled: datetime = T0, emitted: datetime = T0, trigger: str = "schedule"
) -> Message:
    """A fire message of ``job``."""
    return Message(
        fire_id=f"{job}@{format_utc(scheduled)}", job=job, scheduled_at=format_utc(scheduled),
        emitted_at=format_utc(emitted), trigger=trigger, config_digest="d",  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture
def jobs(tmp_path: Path) -> dict[str, JobSpec]:
    """A job with `expires: 10m` (report) and one without (plain)."""
    path = tmp_path / "beatd.yaml"
    path.write_text(
        "jobs:\n"
        "  report: {command: [x], every: 1m, expires: 10m, history: {keep: 7}}\n"
        "  plain: {command: [x], every: 1m}\n"
    )
    return dict(load_config(path, {}).jobs)


@pytest.mark.parametrize(
    ("expires", "trigger", "scheduled", "emitted", "deadline"),
    [
        (None, "schedule", T0, T0, None),
        (timedelta(minutes=10), "schedule", T0, T0 + timedelta(minutes=3), T0 + timedelta(minutes=10)),
        (timedelta(minutes=10), "catchup", T0, T0 + timedelta(hours=2), T0 + timedelta(minutes=10)),
        # a backfilled day or a manual fire counts from its request, not from its logical date
        (timedelta(minutes=10), "backfill", T0 - timedelta(days=30), T0, T0 + timedelta(minutes=10)),
        (timedelta(minutes=10), "manual", T0 - timedelta(days=1), T0, T0 + timedelta(minutes=10)),
    ],
)
def test_start_deadline(
    expires: timedelta | None, trigger: str, scheduled: datetime, emitted: datetime, deadline: datetime | None
) -> None:
    """A fire's start deadline is its scheduled instant (its request, when asked for) plus expires."""
    assert start_deadline(expires, message(scheduled=scheduled, emitted=emitted, trigger=trigger)) == deadline


def test_a_heartbeat_is_stale_only_after_staying_unchanged_for_the_bound() -> None:
    """Unchanged values become stale at forget_after seconds of the caller's clock; a rewritten one never does."""
    watch = HeartbeatWatch(forget_after=60)
    steps = [
        (0, {"dead": "a", "live": "t0"}, {}),
        (30, {"dead": "a", "live": "t30"}, {}),
        (59.9, {"dead": "a", "live": "t59"}, {}),
        (60, {"dead": "a", "live": "t60"}, {"dead"}),
        (120, {"live": "t120"}, set()),
    ]
    for monotonic, values, expected in steps:
        assert set(watch.observe(values, monotonic)) == set(expected), monotonic


def test_the_stale_digest_names_the_value_read_and_forgotten_members_start_over() -> None:
    """The digest returned is the SHA-1 of the value (the script compares it); a member deleted starts again."""
    watch = HeartbeatWatch(forget_after=10)
    watch.observe({"w": "v"}, 0)
    assert watch.observe({"w": "v"}, 10) == {"w": hashlib.sha1(b"v").hexdigest()}
    watch.forget(["w"])
    assert watch.observe({"w": "v"}, 11) == {}
    assert watch.observe({"w": "v"}, 21) != {}


def test_members_not_read_for_long_are_dropped_from_memory() -> None:
    """A member not seen for three bounds (its process deleted it) is not remembered for ever."""
    watch = HeartbeatWatch(forget_after=10)
    watch.observe({"gone": "v"}, 0)
    watch.observe({"other": "x"}, 31)
    assert set(watch.seen) == {"other"}


def test_expired_fires_are_those_past_their_jobs_deadline(jobs: dict[str, JobSpec]) -> None:
    """Only readable fires of known jobs with expires, past their deadline, are expired, each with its record;
    the rest stay in the queue (a worker dead-letters unreadable ones; none is dropped unrecorded)."""
    now = T0 + timedelta(minutes=15)
    waiting = [
        ("1-0", message(scheduled=T0).to_json()),  # 15 min late, expires 10m: expired
        ("2-0", message(scheduled=T0 + timedelta(minutes=6)).to_json()),  # 9 min late: stays
        ("3-0", message(job="plain", scheduled=T0).to_json()),  # no expires: stays
        ("4-0", message(job="unknown", scheduled=T0).to_json()),  # not in this config: stays
        ("5-0", "not json"),
    ]
    expired = expired_fires(waiting, jobs, now, "default")
    assert [fire.entry_id for fire in expired] == ["1-0"]
    fire = expired[0]
    record = json.loads(fire.record)
    assert (record["status"], record["attempt"], record["run_id"]) == ("expired", 0, f"report@{format_utc(T0)}#0")
    assert "expires (10m)" in record["reason"] and "queue default" in record["reason"]
    assert (fire.job, fire.score_ms, fire.keep) == ("report", to_ms(now), 7)
    assert fire.oldest_ms == to_ms(now - timedelta(days=30))


def test_backlog_warnings() -> None:
    """Warn for waiting fires with no live consumer, and for an oldest fire older than the bound; else not."""
    now = T0
    old = f"{to_ms(T0 - timedelta(minutes=6))}-0"
    young = f"{to_ms(T0 - timedelta(seconds=3))}-0"
    backlogs = {
        "orphan": Backlog(4, young),
        "slow": Backlog(2, old),
        "fine": Backlog(1, young),
        "empty": Backlog(0),
    }
    consumers = {"slow": 1, "fine": 2}
    warnings = backlog_warnings(backlogs, consumers, now, timedelta(minutes=5))
    assert warnings == [
        "queue orphan: 4 fires waiting and no live worker consumes it (the oldest has waited 3s)",
        "queue slow: 2 fires waiting, the oldest has waited 6m: workers are not keeping up",
    ]
    assert Backlog(0).oldest_age(now) == 0.0 and Backlog(1, old).oldest_age(now) == 360.0
