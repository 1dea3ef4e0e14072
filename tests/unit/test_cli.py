"""The inspection CLI (check, jobs, next, schema) on the example config with a fixed clock."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from beatd.cli import cli
from beatd.cli.runtime import Runtime
from beatd.clock import FixedClock
from tests.conftest import REPO

EXAMPLE = str(REPO / "config" / "beatd.yaml")
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def invoke(*args: str) -> tuple[int, str, str]:
    """Run the CLI in-process with a fixed clock; return (exit code, stdout, stderr)."""
    runtime = Runtime(environ={}, cwd=REPO, clock=FixedClock(NOW))
    result = CliRunner().invoke(cli, list(args), obj=runtime, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_check_example_imports_targets() -> None:
    """`beatd check` on the example config imports its call targets and reports ok."""
    code, out, _ = invoke("check", "-c", EXAMPLE)
    assert code == 0
    assert "ok, 6 jobs" in out


def test_check_default_lookup_finds_repo_config() -> None:
    """Without -c, the CLI finds ./config/beatd.yaml from the working directory."""
    code, out, _ = invoke("check", "--no-import")
    assert code == 0 and "config/beatd.yaml: ok" in out


def test_jobs_json_lists_next_fire_in_job_zone() -> None:
    """`beatd jobs --json` gives each job's schedule, zone, next fire (in its zone), target and enabled."""
    code, out, _ = invoke("jobs", "-c", EXAMPLE, "--json")
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)}
    signups = rows["daily_signups"]
    assert signups["next_fire"] == "2026-11-22T00:05:00+08:00"
    assert signups["as_written"] == "cron 5 0 * * *"
    assert signups["target"] == "call jobs.stats:daily_signups"
    assert rows["backup_check"]["next_fire"] == "2026-11-21T12:00:30+00:00"
    assert rows["year_end_close"]["next_fire"] is None and rows["year_end_close"]["enabled"] is False
    assert rows["vacuum_history"]["next_fire"] == "2026-11-21T08:00:00-05:00"


def test_jobs_table_has_headers_and_rows() -> None:
    """`beatd jobs --wide` prints a header row and one row per job, every column whole."""
    code, out, _ = invoke("jobs", "-c", EXAMPLE, "--wide")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split()[:3] == ["NAME", "SCHEDULE", "AS"]
    assert len(lines) == 7


def test_next_json_after() -> None:
    """`beatd next JOB -n N --after ISO --json` prints the next N instants with their offsets."""
    code, out, _ = invoke(
        "next", "-c", EXAMPLE, "daily_signups", "-n", "3", "--after", "2026-03-01T00:00:00Z", "--json"
    )
    assert code == 0
    assert json.loads(out) == [
        "2026-03-02T00:05:00+08:00",
        "2026-03-03T00:05:00+08:00",
        "2026-03-04T00:05:00+08:00",
    ]


def test_next_hourly_across_fall_back() -> None:
    """An hourly job in New York fires every real hour through the repeated hour at fall-back."""
    code, out, _ = invoke(
        "next", "-c", EXAMPLE, "vacuum_history", "-n", "4", "--after", "2026-11-01T00:30:00-04:00", "--json"
    )
    assert code == 0
    assert json.loads(out) == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T02:00:00-05:00",
        "2026-11-01T03:00:00-05:00",
    ]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("next", "-c", EXAMPLE, "daily_signup"), "no job named 'daily_signup'"),
        (("next", "-c", EXAMPLE, "daily_signups", "--after", "yesterday"), "--after: invalid instant"),
        (("next", "-c", EXAMPLE, "daily_signups", "-n", "0"), "Invalid value"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], fragment: str) -> None:
    """Unknown jobs and bad options exit 2 with a message, never a traceback."""
    code, _, err = invoke(*args)
    assert code == 2
    assert fragment in err


def test_schema_is_json_schema_with_jobs() -> None:
    """`beatd schema` prints a JSON Schema describing jobs and their keys."""
    code, out, _ = invoke("schema")
    schema = json.loads(out)
    assert code == 0
    assert schema["$schema"].startswith("https://json-schema.org/")
    job = schema["$defs"]["JobSpec"]
    assert {"cron", "every", "at", "call", "command", "overlap", "history"} <= set(job["properties"])
    assert "name" not in job["properties"]


def test_schema_accepts_each_target_and_schedule_and_refuses_two() -> None:
    """The schema's job takes exactly one target (call, command or celery: it had left celery out, so an editor
    flagged every Celery job) and exactly one schedule, as the config's own validation does."""
    import jsonschema

    _, out, _ = invoke("schema")
    validator = jsonschema.Draft202012Validator(json.loads(out))
    job = {"call": "m:f", "command": ["true"], "celery": "proj.tasks.add"}
    for target, value in job.items():
        for schedule, when in (("cron", "0 * * * *"), ("every", "30s"), ("at", ["2027-01-01T00:00:00Z"])):
            assert validator.is_valid({"jobs": {"j": {target: value, schedule: when}}}), (target, schedule)
    assert not validator.is_valid({"jobs": {"j": {"call": "m:f", "celery": "proj.tasks.add", "every": "30s"}}})
    assert not validator.is_valid({"jobs": {"j": {"celery": "proj.tasks.add", "every": "30s", "cron": "* * * * *"}}})


def test_schema_file_in_docs_is_current() -> None:
    """docs/beatd.schema.json (used by the example's yaml-language-server line) matches `beatd schema`."""
    _, out, _ = invoke("schema")
    assert json.loads((REPO / "docs" / "beatd.schema.json").read_text()) == json.loads(out)


def test_console_entry_points() -> None:
    """`python -m beatd --version` works as the console script does."""
    result = subprocess.run(
        [sys.executable, "-m", "beatd", "--version"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(REPO),
    )
    assert "0.1.0" in result.stdout


def test_web_fd_that_is_no_listening_tcp_socket_is_refused(tmp_path: Path) -> None:
    """`beatd web --fd N` serves on an inherited socket; a file, or a TCP socket that is not listening, exits 2
    naming the option, without a traceback, and leaves the descriptor open for its owner."""
    import socket

    with (tmp_path / "file").open("w") as file, socket.socket() as idle:
        for fd, expected in ((file.fileno(), "not an open socket"), (idle.fileno(), "not a listening TCP socket")):
            code, _, err = invoke("web", "-c", EXAMPLE, "--fd", str(fd))
            assert code == 2 and f"--fd {fd}: {expected}" in err
        assert idle.getsockname() is not None  # still open: detached, not closed
