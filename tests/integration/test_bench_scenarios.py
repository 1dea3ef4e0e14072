"""Smoke runs of issue 15's bench scenarios: a few jobs, the same code paths as the measured runs."""

from __future__ import annotations

import json

import pytest

from beatd import defaults
from tests.conftest import bench_module


def test_runtime_scenario_launches_beats_onto_stored_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    """``emission.py --scenario runtime --launch`` stores the jobs, then a cold and a restarted beat each lead
    every one of them (the one YAML job too): the first as new, the second from their stored progress."""
    emission = bench_module("emission")
    assert emission.main(["--scenario", "runtime", "--launch", "--jobs", "200", "--timeout", "60"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cold, restart = figures["launches"]
    assert (cold["leading_jobs"], cold["leading_new"]) == (201, 201)
    assert (restart["leading_jobs"], restart["leading_new"]) == (201, 0)
    assert restart["peak_rss_mb"] > 0 and restart["scheduled_s"] is not None


def test_history_memory_holds_each_job_at_keep_records(capsys: pytest.CaptureFixture[str]) -> None:
    """``history_memory.py`` runs a real worker past ``history.keep`` and measures the records it pruned back."""
    history_memory = bench_module("history_memory")
    assert history_memory.main(["--jobs", "1", "--extra", "10", "--fleet", "1000"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    steady = figures["phases"]["steady"]
    assert steady["records"] == steady["indexed"] == defaults.HISTORY_KEEP
    assert steady["statuses_of_first_job"] == {"succeeded": defaults.HISTORY_KEEP} and steady["dead_letters"] == 0
    assert figures["record_bytes"] > 300
