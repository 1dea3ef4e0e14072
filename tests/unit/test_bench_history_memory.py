"""bench/history_memory.py's budget: records kept per job under retention, and the fleet's bytes."""

from __future__ import annotations

from tests.conftest import bench_module

history_memory = bench_module("history_memory")

DAY = 86_400


def test_count_bound_holds_a_frequent_job_and_age_bound_a_rare_one() -> None:
    """Every 10 s a job passes keep=1000 within three hours, so the count binds; a daily job keeps 30 days."""
    assert history_memory.kept_per_job(1000, 30 * DAY, 10) == 1000
    assert history_memory.kept_per_job(1000, 30 * DAY, DAY) == 30


def test_fleet_budget_is_jobs_times_kept_records_plus_per_job_bytes() -> None:
    """100,000 jobs every 10 s keeping 1000 records of 600 B, plus 10 KB a job: 61 GB, 100 million records."""
    found = history_memory.budget(100_000, 10, 1000, 30 * DAY, 600.0, 10_000.0)
    assert found["fires_per_job_per_day"] == 8640
    assert found["records"] == 100_000_000
    assert found["bytes"] == 100_000 * (1000 * 600 + 10_000)
    assert found["gib"] == round(61_000_000_000 / 2**30, 2)
