"""Broken configs: every problem is reported at once, located as FILE:LINE:COL: PATH: message, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from beatd.config import load_config
from beatd.errors import ConfigError
from tests.conftest import REPO, WriteFiles, run_cli

GOOD_JOB = 'jobs:\n  a:\n    call: jobs.stats:daily_signups\n    cron: "5 0 * * *"\n'

# (id, files, expected fragments of stderr; "{dir}" is the temporary directory)
CASES: list[tuple[str, dict[str, str], list[str]]] = [
    (
        "malformed-yaml",
        {"main.yaml": "jobs:\n  a: [1, 2\n  b: 3\n"},
        ["{dir}/main.yaml:3:4: malformed YAML"],
    ),
    (
        "shards-out-of-range",
        {"main.yaml": "shards: 0\n" + GOOD_JOB},
        ["{dir}/main.yaml:1:9: shards: invalid value 0: expected greater than or equal to 1"],
    ),
    (
        "wrong-type",
        {"main.yaml": GOOD_JOB + "    retries: three\n"},
        ["{dir}/main.yaml:5:14: jobs.a.retries: invalid value 'three': expected a valid integer"],
    ),
    (
        "unknown-key-suggests",
        {"main.yaml": "jobs:\n  a:\n    call: m:f\n    cronn: '* * * * *'\n"},
        [
            "{dir}/main.yaml:4:5: jobs.a.cronn: unknown key (did you mean 'cron'?)",
            "{dir}/main.yaml:2:3: jobs.a: no schedule: expected exactly one of cron, every or at",
        ],
    ),
    (
        "bad-cron",
        {"main.yaml": "jobs:\n  a:\n    call: m:f\n    cron: '61 0 * * *'\n"},
        ["{dir}/main.yaml:4:11: jobs.a.cron: "],
    ),
    (
        "bad-cron-field-count",
        {"main.yaml": "jobs:\n  a:\n    call: m:f\n    cron: '0 0 * *'\n"},
        ["{dir}/main.yaml:4:11: jobs.a.cron: ", "5 fields"],
    ),
    (
        "bad-timezone-suggests",
        {"main.yaml": GOOD_JOB + "    timezone: Asia/Shangai\n"},
        ["{dir}/main.yaml:5:15: jobs.a.timezone: unknown time zone 'Asia/Shangai'", "Asia/Shanghai"],
    ),
    (
        "bad-duration",
        {"main.yaml": "jobs:\n  a:\n    call: m:f\n    every: 5mins\n"},
        ["{dir}/main.yaml:4:12: jobs.a.every: invalid duration '5mins': expected a duration such as"],
    ),
    (
        "worker-prefetch-out-of-range",
        {"main.yaml": "worker:\n  prefetch: 0\n" + GOOD_JOB},
        ["{dir}/main.yaml:2:13: worker.prefetch: "],
    ),
    (
        "both-schedules",
        {"main.yaml": GOOD_JOB + "    every: 30s\n"},
        ["{dir}/main.yaml:5:5: jobs.a.every: both cron and every given: expected exactly one schedule key"],
    ),
    (
        "no-target",
        {"main.yaml": "jobs:\n  a:\n    every: 30s\n"},
        ["{dir}/main.yaml:2:3: jobs.a: no target: expected exactly one of call, command or celery"],
    ),
    (
        "both-targets",
        {"main.yaml": GOOD_JOB + "    command: [true]\n"},
        ["{dir}/main.yaml:5:5: jobs.a.command: both call and command given: expected exactly one target key"],
    ),
    (
        "duplicate-job-across-includes",
        {
            "main.yaml": "include: [jobs.d/*.yaml]\n" + GOOD_JOB,
            "jobs.d/more.yaml": "jobs:\n  a:\n    command: [true]\n    every: 1m\n",
        },
        ["{dir}/jobs.d/more.yaml:2:3: jobs.a: duplicate job name (first declared at {dir}/main.yaml:3)"],
    ),
    (
        "missing-include",
        {"main.yaml": "include: [extra.yaml]\n" + GOOD_JOB},
        ["{dir}/main.yaml:1:11: include[0]: no such file: {dir}/extra.yaml"],
    ),
    (
        "unset-variable",
        {"main.yaml": "redis:\n  url: ${BEATD_TEST_UNSET_VARIABLE}\n" + GOOD_JOB},
        ["{dir}/main.yaml:2:8: redis.url: environment variable BEATD_TEST_UNSET_VARIABLE is not set"],
    ),
    (
        "top-level-not-mapping",
        {"main.yaml": "- a\n- b\n"},
        ["{dir}/main.yaml:1:1: expected a mapping at the top level"],
    ),
    (
        "job-not-mapping",
        {"main.yaml": "jobs:\n  a: every minute\n"},
        ["{dir}/main.yaml:2:6: jobs.a: expected a mapping with a schedule"],
    ),
    (
        "bad-literal",
        {"main.yaml": GOOD_JOB + "    catchup: sometimes\n"},
        ["{dir}/main.yaml:5:14: jobs.a.catchup: invalid value 'sometimes': expected 'none', 'latest' or 'all'"],
    ),
    (
        "schedule-in-defaults",
        {"main.yaml": "defaults:\n  cron: '* * * * *'\n" + GOOD_JOB},
        ["{dir}/main.yaml:2:3: defaults.cron: not allowed under defaults"],
    ),
    (
        "bad-default-reported-once",
        {"main.yaml": "defaults:\n  timeout: forever\n" + GOOD_JOB + "  b:\n    command: [x]\n    every: 1m\n"},
        ["{dir}/main.yaml:2:12: defaults.timeout: invalid duration 'forever'"],
    ),
    (
        "duplicate-key",
        {"main.yaml": GOOD_JOB + "    cron: '0 1 * * *'\n"},
        ["{dir}/main.yaml:5:5: jobs.a.cron: duplicate key (first written on line 4)"],
    ),
    (
        "negative-retries",
        {"main.yaml": GOOD_JOB + "    retries: -1\n"},
        ["{dir}/main.yaml:5:14: jobs.a.retries: invalid value -1: expected greater than or equal to 0"],
    ),
    (
        "jitter-not-below-interval",
        {"main.yaml": "jobs:\n  a:\n    call: m:f\n    every: 10s\n    jitter: 10s\n"},
        ["{dir}/main.yaml:5:13: jobs.a.jitter: must be shorter than every (10s)"],
    ),
    (
        "bad-instant",
        {"main.yaml": "jobs:\n  a:\n    call: m:f\n    at: [2026-12-01T00:00:00Z, tomorrow]\n"},
        ["{dir}/main.yaml:4:9: jobs.a.at: invalid instant 'tomorrow'"],
    ),
    (
        "unknown-top-level-key",
        {"main.yaml": "namespce: x\n" + GOOD_JOB},
        ["{dir}/main.yaml:1:1: namespce: unknown key (did you mean 'namespace'?)"],
    ),
    (
        "bad-call-syntax",
        {"main.yaml": "jobs:\n  a:\n    call: jobs.stats.daily_signups\n    every: 1m\n"},
        ["{dir}/main.yaml:3:11: jobs.a.call: invalid value 'jobs.stats.daily_signups': expected module:attribute"],
    ),
    (
        "call-not-importable",
        {"main.yaml": "jobs:\n  a:\n    call: beatd_no_such_module:run\n    every: 1m\n"},
        ["{dir}/main.yaml:3:11: jobs.a.call: cannot import 'beatd_no_such_module:run'"],
    ),
    (
        "call-attribute-missing",
        {"main.yaml": "jobs:\n  a:\n    call: json:no_such_function\n    every: 1m\n"},
        ["{dir}/main.yaml:3:11: jobs.a.call: cannot import 'json:no_such_function': module 'json' has no"],
    ),
    (
        "bad-job-name",
        {"main.yaml": "jobs:\n  'a b':\n    call: m:f\n    every: 1m\n"},
        ["{dir}/main.yaml:2:3: jobs.a b: invalid job name 'a b': expected letters, digits"],
    ),
    (
        "end-before-start",
        {"main.yaml": "jobs:\n  a:\n    call: m:f\n    every: 1m\n    start: 2026-02-01\n    end: 2026-01-01\n"},
        ["{dir}/main.yaml:6:10: jobs.a.end: end", "is before start"],
    ),
    (
        "sub-millisecond-interval",
        {"main.yaml": "jobs:\n  a: {call: m:f, every: 0.0005}\n"},
        ["{dir}/main.yaml:2:25: jobs.a.every: 0.0005s is not a whole number of milliseconds"],
    ),
    (
        "instant-out-of-range",
        {"main.yaml": "jobs:\n  a: {call: m:f, at: '0001-01-01T00:00'}\n"},
        ["{dir}/main.yaml:2:22: jobs.a.at: invalid instant '0001-01-01T00:00': expected a year from 1900 to 9000"],
    ),
    (
        "huge-duration",
        {"main.yaml": "jobs:\n  a: {call: m:f, every: 1.0e+400}\n"},
        ["{dir}/main.yaml:2:25: jobs.a.every: invalid duration"],
    ),
    (
        "nested-default",
        {"main.yaml": "redis:\n  url: ${A:-${B}}\n" + GOOD_JOB},
        ["{dir}/main.yaml:2:8: redis.url: nested reference in the default"],
    ),
    (
        "complex-mapping-key",
        {"main.yaml": "jobs:\n  ? [a, b]\n  : {call: m:f, every: 1m}\n"},
        ["{dir}/main.yaml:2:5: jobs: a mapping key must be a plain string"],
    ),
    (
        "bad-redis-url",
        {"main.yaml": "redis: {url: 'localhost:6379'}\n" + GOOD_JOB},
        ["{dir}/main.yaml:1:14: redis.url: invalid value 'localhost:6379': expected a redis://"],
    ),
    (
        "lease-too-short",
        {"main.yaml": "leader: {lease: 1ms}\n" + GOOD_JOB},
        ["{dir}/main.yaml:1:17: leader.lease: "],
    ),
    (
        "command-unbalanced-quote",
        {"main.yaml": "jobs:\n  a:\n    command: echo 'oops\n    every: 1m\n"},
        ["{dir}/main.yaml:3:14: jobs.a.command: cannot split"],
    ),
]


def _run_check(config: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("check", "-c", str(config))  # in this process: tests/unit/test_cli.py runs the real entry point


@pytest.mark.parametrize(("files", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_broken_config_exits_2_with_located_message(
    write_files: WriteFiles, files: dict[str, str], expected: list[str]
) -> None:
    """Each broken config makes `beatd check` exit 2 with every located message and no traceback."""
    config = write_files(files)
    result = _run_check(config)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    for fragment in expected:
        assert fragment.format(dir=config.parent) in result.stderr, result.stderr
    assert result.stderr.rstrip().endswith("nothing was applied")


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    """A config path that does not exist is reported as a located problem with exit 2."""
    result = _run_check(tmp_path / "nope.yaml")
    assert result.returncode == 2
    assert f"{tmp_path}/nope.yaml: no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_all_problems_reported_at_once(write_files: WriteFiles) -> None:
    """Problems in several jobs and files come back together, sorted by file and line."""
    config = write_files(
        {
            "main.yaml": """
                include: [more.yaml]
                jobs:
                  a: {call: m:f, every: soon}
                  b: {command: [x], cron: "* * * *"}
            """,
            "more.yaml": "jobs:\n  c: {command: [x], every: 1m, timezone: Mars/Base}\n",
        }
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config, {})
    paths = [problem.path for problem in caught.value.problems]
    assert paths == ["jobs.a.every", "jobs.b.cron", "jobs.c.timezone"]
    assert [problem.line for problem in caught.value.problems] == [3, 4, 2]


def test_the_installed_entry_point_exits_2_with_the_located_problem(write_files: WriteFiles) -> None:
    """The cases above run `check` in this process; the real `python -m beatd` gives the same exit code and
    message, and no traceback."""
    config = write_files({"main.yaml": "jobs:\n  a: [1, 2\n  b: 3\n"})
    environment = {key: value for key, value in os.environ.items() if not key.startswith("BEATD_")}
    done = subprocess.run(
        [sys.executable, "-m", "beatd", "check", "-c", str(config)],
        capture_output=True, text=True, cwd=REPO, env=environment, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and f"{config}:3:4: malformed YAML" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
