"""bench/emission.py's expected fires: counted from the instant the jobs start from, not from the lease."""

from __future__ import annotations

from tests.conftest import bench_module

emission = bench_module("emission")


def test_expected_fires_start_where_the_jobs_start_not_at_the_leader_record() -> None:
    """With 100,000 jobs the start is written seconds after the lease was taken: the instants between the two
    were never due, so they are neither expected nor counted lost; the leader record stands in only without the
    start instant in the log."""
    leader = [{"at": "2030-01-01T00:00:00.500Z"}]
    line = "INFO beatd.beat: leading 100000 jobs (100000 new or changed start from 2030-01-01T00:00:07.250Z)"
    base = emission.start_ms(line, leader, 0.0)
    assert base == 1_893_456_007_250
    assert list(emission.expected_instants(0, 10_000, base, base + 10_000)) == [1_893_456_010_000]
    assert emission.start_ms("INFO beatd.beat: leading 3 jobs (0 new or changed)", leader, 0.0) == 1_893_456_000_500
    assert emission.start_ms(None, [], 12.5) == 12_500
