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


def test_scenario_is_chosen_by_flag_and_the_rest_goes_to_its_script() -> None:
    """``--scenario burst`` and ``runtime`` hand the other arguments to bench/burst.py and bench/runtime_jobs.py;
    no flag is today's aligned run and ``--spread`` alone still means the spread one."""
    assert emission.scenario_of(["--scenario", "burst", "--jobs", "100000"]) == ("burst", ["--jobs", "100000"])
    assert emission.scenario_of(["--jobs", "9", "--scenario", "runtime", "--launch"]) == (
        "runtime",
        ["--jobs", "9", "--launch"],
    )
    assert emission.scenario_of(["--jobs", "1000"]) == ("aligned", ["--jobs", "1000"])
    assert emission.scenario_of(["--spread"])[0] == "spread"
    assert emission.parse_args(["--scenario", "spread"]).spread is True
    assert emission.parse_args([]).spread is False


def test_launch_figures_read_the_jobs_and_new_jobs_of_the_leading_line() -> None:
    """The runtime scenario's launch checks that the beat led every stored job: the counts of its leading line."""
    runtime_jobs = bench_module("runtime_jobs")
    line = "INFO beatd.beat: leading 1000001 jobs (0 new or changed start from 2030-01-01T00:00:07.250Z)"
    assert runtime_jobs.leading_counts(line) == (1_000_001, 0)
    assert runtime_jobs.leading_counts("INFO beatd.beat: became leader") is None
