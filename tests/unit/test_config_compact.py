"""Compact jobs: what the beat keeps per job reads as the job validated in full, and hashes to the same digests."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from beatd.config import Config, JobSpec, load_config
from beatd.config.compact import CompactJob, JobSpecs
from beatd.runtime_jobs import judge
from beatd.runtime_judge import Judge
from tests.unit.test_config_shapes import BODIES, ENVIRON, NAMES, SPREAD, _write
from tests.unit.test_runtime_judge import CONFIG as RUNTIME_CONFIG
from tests.unit.test_runtime_judge import SPECS as RUNTIME_SPECS

SERIALISE = JobSpec.__pydantic_serializer__.to_json

READ = (
    "name", "queue", "expires", "history", "celery", "options", "jitter", "args", "kwargs", "alert_rules",
    "enabled", "retries", "catchup", "misfire_grace", "catchup_limit", "timezone", "cron", "start", "end",
    "schedule_text", "schedule_digest", "digest",
)  # fmt: skip
"""The attributes the beat, its upkeep and alerting read of a job."""


def _same_job(job: CompactJob, full: JobSpec) -> None:
    assert job.json() == SERIALISE(full), full.name
    for attribute in READ:
        assert getattr(job, attribute) == getattr(full, attribute), (full.name, attribute)
    assert job.trigger() == full.trigger(), full.name
    after = datetime(2026, 7, 1, tzinfo=UTC)
    assert job.trigger().next_after(after) == full.trigger().next_after(after), full.name
    assert job.spec().model_dump() == full.model_dump(), full.name


def _every_body(tmp_path: Path) -> Path:
    jobs = [(f"{name}-{index}", body) for index, (_, body) in enumerate(BODIES) for name in NAMES]
    return _write(tmp_path, jobs + SPREAD)


def test_a_compact_job_reads_and_hashes_as_the_full_spec(tmp_path: Path) -> None:
    """For every body (H cron, jitter, start/end of its own, at, kwargs order, defaults merged, alert rules by
    name and tag, Celery, shell), each job made from its shape has the full validation's JSON (the bytes its
    digest hashes), digests, trigger and every attribute the beat reads."""
    path = _every_body(tmp_path)
    by_shape, full = load_config(path, ENVIRON), load_config(path, ENVIRON, by_shape=False)
    copied = [job for job in by_shape.compact.values() if not job.shape.own]
    assert len(copied) >= len(BODIES) * (len(NAMES) - 1)  # the test is about copies, not jobs kept whole
    for name, spec in full.jobs.items():
        _same_job(by_shape.compact[name], spec)
    assert by_shape.digest == full.digest


def test_the_config_digest_is_the_one_of_earlier_versions(tmp_path: Path) -> None:
    """The config digest and job digests of a config of copies are the bytes earlier versions hashed (pinned:
    replicas of mixed versions compare them)."""
    config = load_config(_every_body(tmp_path), ENVIRON)
    assert config.digest == "08f756ce93277a65"
    pinned = {"a-1-0": "2c3a1c96f2f1544e", "b-2-11": "143e759d87c637df", "c0": "67c264009df24171"}
    assert {name: config.compact[name].digest for name in pinned} == pinned
    assert config.compact["s3"].digest == "27a8df0aefba9736"


@pytest.mark.parametrize(
    "body",
    [
        '{every: 10s, command: [x], description: "beatd\\0name"}',
        "{every: 10s, command: [x], description: '0001-01-01T00:00:00.000001Z'}",
        "{every: 10s, command: [x], start: '2026-01-01T00:00:00Z', tags: ['0001-01-01T00:00:00.000002Z']}",
    ],
)
def test_a_body_holding_a_mark_is_serialised_whole(tmp_path: Path, body: str) -> None:
    """A job whose own values hold the text that marks where the name or an instant goes still gets the full
    validation's JSON and digest (its shape is then serialised job by job)."""
    path = _write(tmp_path, [(name, body) for name in NAMES])
    by_shape, full = load_config(path, ENVIRON), load_config(path, ENVIRON, by_shape=False)
    for name, spec in full.jobs.items():
        _same_job(by_shape.compact[name], spec)
    assert by_shape.digest == full.digest


def test_config_jobs_are_full_jobspecs(tmp_path: Path) -> None:
    """``Config.jobs`` of a config loaded by shape is a mapping of full JobSpecs in file order, equal to full
    validation's, while the config keeps compact jobs (no JobSpec per job)."""
    path = _every_body(tmp_path)
    by_shape, full = load_config(path, ENVIRON), load_config(path, ENVIRON, by_shape=False)
    assert isinstance(by_shape.jobs, JobSpecs)
    assert list(by_shape.jobs) == list(full.jobs) and len(by_shape.jobs) == len(full.jobs)
    assert "a-1-0" in by_shape.jobs and "nope" not in by_shape.jobs and by_shape.jobs.get("nope") is None
    for name, spec in by_shape.jobs.items():
        assert isinstance(spec, JobSpec) and spec == full.jobs[name]
        assert spec.digest == full.jobs[name].digest and spec.trigger() == full.jobs[name].trigger()
    assert Config(path=path, settings=full.settings, jobs=dict(full.jobs)).digest == full.digest


def _entry(spec: Any) -> str:
    return json.dumps({"version": 1, "spec": spec, "by": "me", "at": "now"})


def test_a_compact_runtime_job_reads_and_hashes_as_the_full_spec(tmp_path: Path) -> None:
    """A runtime job judged by its shape is a compact job that reads and hashes as the fully judged spec."""
    (tmp_path / "beatd.yaml").write_text(RUNTIME_CONFIG)
    config = load_config(tmp_path / "beatd.yaml", {})
    shaped = Judge(config)
    for index, spec in enumerate(RUNTIME_SPECS * 2):
        job, why = shaped.compact(f"customer-{index}", _entry(spec))
        full, full_why = judge(config, f"customer-{index}", _entry(spec))
        assert why == full_why
        assert (job is None) == (full is None)
        if job is not None and full is not None:
            _same_job(job, full)
    assert shaped.fast >= len(RUNTIME_SPECS)
