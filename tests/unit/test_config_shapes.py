"""Validation once per job shape: a job copied from its shape's template is the job validated in full."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from beatd.config import Config, JobSpec, load_config
from beatd.config.shapes import Shapes, shape_key
from beatd.config.yamlsource import parse_yaml
from beatd.errors import ConfigError

ENVIRON = {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/1"}
HEAD = """redis: {url: 'redis://127.0.0.1:6379/0'}
timezone: Europe/Berlin
celery: {broker_url: '${CELERY_BROKER_URL}'}
alerts:
  sinks:
    mail: {type: email, host: smtp.example.com, from: beatd@example.com, to: [ops@example.com]}
  rules:
    - {on: dead, sinks: [mail], jobs: [b-2]}
    - {on: failed, sinks: [mail], tags: [nightly]}
defaults: {queue: work, jitter: 1s, history: {keep: 5}, retries: 2}
"""
NAMES = ("a-1", "b-2", "c_3", "d.4", "Z9")
"""Names of the copies: ``b-2`` is selected by a top-level rule, the others are not."""

# (id, job body as a YAML flow mapping): each is written under every name of NAMES
BODIES: list[tuple[str, str]] = [
    ("every", '{every: 10s, command: ["true"]}'),
    ("every-start-end", "{every: 1m, start: '2026-01-01T00:00:00', end: '2027-01-01T00:00:00Z', call: m:f}"),
    ("cron-plain", "{cron: '0 * * * *', command: [backup, --quiet]}"),
    ("cron-H", "{cron: 'H H * * *', command: report}"),
    ("cron-H-range-step", "{cron: 'H(0-29)/15 H(1-5) * * 1-5', call: jobs.x:y, timezone: America/New_York}"),
    ("cron-H-window", "{cron: 'H * * * *', call: m:f, start: '2026-03-01T00:00:00', end: '2026-04-01T00:00:00'}"),
    ("jitter", "{every: 10s, jitter: 3s, expires: 5s, command: [x]}"),
    ("at", "{at: ['2030-01-01T00:00:00Z', '2030-06-01T12:00:00'], call: m:f, args: [1, 2.0, true, null]}"),
    ("kwargs-order", "{every: 1h, call: m:f, kwargs: {z: 1, a: {y: [1, 1.0]}, m: 'x'}, overrides: true}"),
    ("history-merge", "{every: 1h, call: m:f, history: {max_age: 2d}, output: {tail: 1000}}"),
    ("tags-rule", "{cron: '@daily', call: m:f, tags: [nightly, x], description: one line}"),
    ("own-alerts", "{every: 5m, call: m:f, alerts: [{on: failed, sinks: [mail]}], tags: [nightly]}"),
    ("celery", "{celery: proj.tasks.send, every: 1m, args: [1], kwargs: {a: b}, options: {queue: q, priority: 3}}"),
    ("command-env", "{every: 1m, command: 'sh -c \"echo hi\"', env: {A: '1', B: 2}, cwd: /tmp, timeout: 30s}"),
    ("shell", "{every: 1m, command: 'echo $HOME', shell: true, overlap: allow, catchup: all, enabled: false}"),
]  # fmt: skip


def _write(tmp_path: Path, jobs: list[tuple[str, str]], head: str = HEAD) -> Path:
    path = tmp_path / "beatd.yaml"
    path.write_text(head + "jobs:\n" + "".join(f"  {name}: {body}\n" for name, body in jobs))
    return path


def _facts(spec: JobSpec) -> dict[str, Any]:
    """Everything a reader of a spec can tell about it."""
    return {
        "dump": spec.model_dump(),
        "json": spec.model_dump_json(),
        "fields": set(spec.model_fields_set),
        "trigger": spec.trigger(),
        "digest": spec.digest,
        "schedule_digest": spec.schedule_digest,
        "extra": spec.__pydantic_extra__,
        "private": spec.__pydantic_private__,
        "keys": [key for key in spec.__dict__ if key in JobSpec.model_fields],
    }


def _full(path: Path) -> Config:
    return load_config(path, ENVIRON, by_shape=False)


@pytest.mark.parametrize(("body"), [body for _, body in BODIES], ids=[name for name, _ in BODIES])
def test_a_copy_is_the_job_validated_in_full(tmp_path: Path, body: str) -> None:
    """For each job body (H cron hashed by name, jitter, defaults merged, alert rules selecting by name and
    tag, Celery), the spec copied from the shape's template under another name equals, in every field, field
    set, trigger and digest, the spec that full validation gives that name."""
    full = _full(_write(tmp_path, [(name, body) for name in NAMES]))
    first = full.jobs[NAMES[0]]
    shapes = Shapes(full.settings.alerts)
    source, _ = parse_yaml("f.yaml", f"jobs:\n  j: {body}\n", ENVIRON)
    raw = source.value["jobs"]["j"]  # the raw job as the loader reads it
    key = shape_key(raw)
    assert key is not None
    shapes.remember(key, first, raw)
    for name in NAMES[1:]:
        job = shapes.job(key, name, raw)
        assert job is not None, name
        assert _facts(job.spec()) == _facts(full.jobs[name])
    assert shapes.copied == len(NAMES) - 1
    assert "_compiled_trigger" in first.__dict__  # the template is a copy: the original keeps its cache


def test_loading_by_shape_gives_the_full_configs_jobs(tmp_path: Path) -> None:
    """A config of every body under every name, interleaved and in an included file too, loads by shape to
    the same jobs (every fact of each, and the config digest) as job-by-job full validation."""
    jobs = [(f"{name}-{index}" if index else name, body) for name in NAMES for index, (_, body) in enumerate(BODIES)]
    path = _write(tmp_path, jobs, HEAD + "include: [more.yaml]\n")
    included = "".join(f"  more-{index}: {body}\n" for index, (_, body) in enumerate(BODIES))
    (tmp_path / "more.yaml").write_text("jobs:\n" + included)
    by_shape, full = load_config(path, ENVIRON), _full(path)
    assert list(by_shape.jobs) == list(full.jobs)
    for name, spec in full.jobs.items():
        assert _facts(by_shape.jobs[name]) == _facts(spec), name
    assert by_shape.digest == full.digest
    assert by_shape.jobs["b-2"].alert_rules and not by_shape.jobs["a-1"].alert_rules


SPREAD = [  # (name, body): one body, each job with its own start (and some with an end), two time zones
    *((f"s{i}", f"{{every: 10s, command: [x], start: '2026-01-01T00:00:0{i % 3}.{i}Z'}}") for i in range(6)),
    *((f"e{i}", f"{{every: 1h, call: m:f, start: '2026-01-0{i + 1}T00:00:00', end: '2027-01-01'}}") for i in range(3)),
    *((f"z{i}", f"{{every: 1h, call: m:f, timezone: Asia/Tokyo, start: '2026-01-0{i + 1}'}}") for i in range(3)),
    *((f"c{i}", f"{{cron: 'H/15 * * * *', call: m:f, start: '2026-0{i + 1}-01T00:00:00'}}") for i in range(3)),
    *((f"n{i}", "{every: 10s, command: [x], start: null}") for i in range(2)),
    ("b-2", "{every: 10s, command: [x], start: '2026-01-01T00:00:00.999Z'}"),  # the job alerts.rules names
]  # fmt: skip


def test_own_start_and_end_are_validated_alone(tmp_path: Path) -> None:
    """Jobs whose bodies differ only in start and end (one schedule per customer) are copies with their own
    start, end, trigger and schedule digest, equal to full validation (the same start in another zone too)."""
    path = _write(tmp_path, SPREAD)
    by_shape, full = load_config(path, ENVIRON), _full(path)
    for name, spec in full.jobs.items():
        assert _facts(by_shape.jobs[name]) == _facts(spec), name
    assert by_shape.digest == full.digest
    assert len({spec.trigger() for spec in by_shape.jobs.values()}) == len(SPREAD) - 1  # n0 and n1 are alike


@pytest.mark.parametrize(
    "raw",
    [{"every": 1}, {"every": 1.0}, {"every": True}, {"every": "1"}, {"kwargs": {"1": 1}}, {"kwargs": {1: 1}}],
)
def test_shape_keys_tell_apart_what_equality_does_not(raw: dict[str, Any]) -> None:
    """Values equal under ``==`` but of other types (1, 1.0, True; a string key and an int key) are different
    shapes, or no shape at all: a non-string key, or a value of a type YAML's plain reader does not give."""
    others = [{"every": 1}, {"every": 1.0}, {"every": True}, {"every": "1"}, {"kwargs": {"1": 1}}]
    key = shape_key(raw)
    if any(type(k) is not str for k in raw.get("kwargs", {})):
        assert key is None
        return
    assert [shape_key(other) == key for other in others].count(True) == 1
    assert shape_key({"at": date(2030, 1, 1)}) is None
    assert shape_key({"kwargs": {"a": 1, "b": 2}}) != shape_key({"kwargs": {"b": 2, "a": 1}})


# (id, jobs of the config): each config is broken; its problems must be the full path's, in order
BROKEN: list[tuple[str, list[tuple[str, str]]]] = [
    ("bad-name-of-a-shared-body", [(name, '{every: 10s, command: ["true"]}') for name in ("ok", "bad name!", "ok2")]),
    ("same-typo-everywhere", [(f"j{i}", '{every: 10s, comand: ["true"]}') for i in range(3)]),
    ("jitter-not-shorter", [(f"j{i}", "{every: 2s, jitter: 3s, command: [x]}") for i in range(3)]),
    ("cron-H-in-day-field", [(f"j{i}", "{cron: '0 0 H * *', command: [x]}") for i in range(3)]),
    ("end-before-start", [(f"j{i}", "{cron: 'H * * * *', command: [x], start: '2027-01-01T00:00:00', "
                                    "end: '2026-01-01T00:00:00'}") for i in range(3)]),
    ("own-end-before-start", [("a", "{every: 1m, command: [x], start: '2026-01-01T00:00:00'}"),
                              ("b", "{every: 1m, command: [x], start: '2026-01-01T00:00:00', end: '2025-01-01'}"),
                              ("c", "{every: 1m, command: [x], start: '2026-01-01T00:00:00', end: '2027-01-01'}"),
                              ("d", "{every: 1m, command: [x], start: '2026-01-01T00:00:00', end: '2024-01-01'}")]),
    ("own-bad-start", [("a", "{every: 1m, command: [x], start: '2026-01-01T00:00:00'}"),
                       ("b", "{every: 1m, command: [x], start: 'soon'}"), ("c", "{every: 1m, command: [x], start: 5}"),
                       ("d", "{every: 1m, command: [x], start: '2026-02-30T00:00:00'}")]),
    ("valid-then-unknown-sink", [("v", '{every: 10s, command: ["true"]}'),
                                 ("w", '{every: 10s, command: ["true"], alerts: [{on: failed, sinks: [pagr]}]}'),
                                 ("x", '{every: 10s, command: ["true"], alerts: [{on: failed, sinks: [pagr]}]}')]),
]  # fmt: skip


@pytest.mark.parametrize("jobs", [jobs for _, jobs in BROKEN], ids=[name for name, _ in BROKEN])
def test_problems_are_the_full_paths(tmp_path: Path, jobs: list[tuple[str, str]]) -> None:
    """A broken config reports, by shape, exactly the problems (messages, file:line:col) of full validation."""
    path = _write(tmp_path, jobs)
    with pytest.raises(ConfigError) as by_shape:
        load_config(path, ENVIRON)
    with pytest.raises(ConfigError) as full:
        _full(path)
    assert by_shape.value.problems == full.value.problems
    assert by_shape.value.problems


def test_schedule_digest_is_the_hash_of_its_parts(tmp_path: Path) -> None:
    """The schedule digest (copied or computed) is the hash replicas of earlier versions compute: SHA-256 of
    the JSON list of name, cron, every seconds, at, start, end, time zone and enabled."""
    body = "{cron: 'H * * * *', call: m:f, start: '2026-03-01T00:00:00', end: '2026-04-01T00:00:00'}"
    config = load_config(_write(tmp_path, [(name, body) for name in NAMES]), ENVIRON)
    for spec in config.jobs.values():
        parts = [spec.name, spec.cron, None, [], spec.start.isoformat(), spec.end.isoformat(), spec.timezone, True]
        assert spec.schedule_digest == hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]
