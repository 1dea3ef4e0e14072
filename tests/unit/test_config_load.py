"""Valid configs: defaults, includes, substitution, durations and the example file load as documented."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from beatd import defaults
from beatd.config import load_config
from beatd.config.envsubst import MissingVariable, substitute
from beatd.durations import format_duration, parse_duration
from beatd.errors import ScheduleError
from tests.conftest import REPO, WriteFiles


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1w", 604800),
        (30, 30),
        (1.5, 1.5),
        ("90", 90),
        ("1h 30m", 5400),
    ],
)
def test_duration_forms(text: object, seconds: float) -> None:
    """Every documented duration form parses to the right number of seconds."""
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["5mins", "", "-3", True, None, "inf", "1x", "m5", [1]])
def test_duration_rejects(text: object) -> None:
    """Malformed durations raise ScheduleError naming the expected forms."""
    with pytest.raises(ScheduleError, match="expected a duration such as"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["250ms", "30s", "1h30m", "2d", "1d2h3m4s5ms", "0s"])
def test_duration_round_trip(text: str) -> None:
    """format_duration renders a duration that parses back to the same value."""
    assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("pre-${A}-post", {"A": "x"}, "pre-x-post"),
        ("${A:-fallback}", {}, "fallback"),
        ("${A:-fallback}", {"A": ""}, "fallback"),
        ("${A:-}", {}, ""),
        ("${A}", {"A": ""}, ""),
        ("$${A}", {}, "${A}"),
        ("cost $5", {}, "cost $5"),
        ("${A}${B:-b}", {"A": "a"}, "ab"),
        ("redis://:${PASS}@h:6379/0", {"PASS": "s3cret"}, "redis://:s3cret@h:6379/0"),
    ],
)
def test_substitution(text: str, environ: dict[str, str], expected: str) -> None:
    """${VAR} and ${VAR:-default} follow shell/compose rules; $${ is a literal."""
    assert substitute(text, environ) == expected


@pytest.mark.parametrize(("text", "fragment"), [("${MISSING}", "MISSING is not set"), ("${1bad}", "malformed")])
def test_substitution_errors(text: str, fragment: str) -> None:
    """An unset variable without default, or a malformed reference, is an error naming it."""
    with pytest.raises(MissingVariable, match=fragment):
        substitute(text, {})


def test_example_config_loads() -> None:
    """The shipped example config is valid and shows every kind of schedule and target."""
    config = load_config(REPO / "config" / "beatd.yaml", {})
    assert set(config.jobs) == {
        "daily_signups",
        "backup_check",
        "weekly_report",
        "year_end_close",
        "vacuum_history",
        "signups_demo",
    }
    signups = config.jobs["daily_signups"]
    assert (signups.cron, signups.timezone, signups.call) == (
        "5 0 * * *",
        "Asia/Shanghai",
        "jobs.stats:daily_signups",
    )
    assert signups.retries == 3 and signups.catchup == "all"  # from the x-nightly anchor
    assert signups.timeout == timedelta(minutes=10)  # from defaults
    assert signups.history.keep == 500
    assert config.jobs["backup_check"].every == timedelta(seconds=30)
    assert config.jobs["backup_check"].jitter == timedelta(seconds=5)
    assert config.jobs["weekly_report"].command == ('echo "weekly report for $USER"',)
    assert config.jobs["year_end_close"].enabled is False
    assert config.jobs["vacuum_history"].start == datetime(2026, 1, 1, 5, tzinfo=UTC)  # local midnight, New York


def test_precedence_job_over_defaults_over_top_level(write_files: WriteFiles) -> None:
    """A job's own key beats defaults, which beat the top-level timezone and the built-in defaults."""
    config = load_config(
        write_files(
            {
                "main.yaml": """
                    timezone: Europe/London
                    defaults: {queue: batch, timeout: 5m, history: {keep: 10}}
                    jobs:
                      a: {call: m:f, every: 1m}
                      b: {call: m:f, every: 1m, queue: fast, timezone: UTC, history: {max_age: 1d}}
                """
            }
        ),
        {},
    )
    a, b = config.jobs["a"], config.jobs["b"]
    assert (a.queue, a.timezone, a.timeout, a.retries) == ("batch", "Europe/London", timedelta(minutes=5), 0)
    assert (b.queue, b.timezone) == ("fast", "UTC")
    assert (b.history.keep, b.history.max_age) == (10, timedelta(days=1))
    assert a.overlap == defaults.OVERLAP and a.catchup == defaults.CATCHUP


def test_includes_merge_in_order(write_files: WriteFiles) -> None:
    """Drop-in files matched by include globs add their jobs after the main file's, sorted by path."""
    config = load_config(
        write_files(
            {
                "main.yaml": "include: [d/*.yaml]\njobs:\n  a: {call: m:f, every: 1m}\n",
                "d/20-c.yaml": "jobs:\n  c: {call: m:f, every: 1m}\n",
                "d/10-b.yaml": "jobs:\n  b: {call: m:f, every: 1m}\n",
            }
        ),
        {},
    )
    assert list(config.jobs) == ["a", "b", "c"]


def test_substituted_scalar_is_typed(write_files: WriteFiles) -> None:
    """A plain scalar is typed after substitution, so retries: ${N:-3} is the integer 3."""
    config = load_config(
        write_files({"main.yaml": "jobs:\n  a:\n    call: m:f\n    every: ${EVERY}\n    retries: ${N:-3}\n"}),
        {"EVERY": "2m"},
    )
    assert config.jobs["a"].retries == 3
    assert config.jobs["a"].every == timedelta(minutes=2)


def test_command_string_split_like_a_shell(write_files: WriteFiles) -> None:
    """A command string is split like a shell would, without running one."""
    config = load_config(
        write_files({"main.yaml": "jobs:\n  a: {command: \"backup --dir '/var/my data'\", every: 1m, env: {N: 5}}\n"}),
        {},
    )
    assert config.jobs["a"].command == ("backup", "--dir", "/var/my data")
    assert config.jobs["a"].env == {"N": "5"}


def test_digest_changes_with_spec(write_files: WriteFiles) -> None:
    """The job digest is stable for the same spec and changes when the spec changes."""
    first = load_config(write_files({"a.yaml": "jobs:\n  a: {call: m:f, every: 1m}\n"}), {})
    same = load_config(write_files({"b.yaml": "jobs:\n  a: {call: m:f, every: 60}\n"}), {})
    other = load_config(write_files({"c.yaml": "jobs:\n  a: {call: m:f, every: 2m}\n"}), {})
    assert first.jobs["a"].digest == same.jobs["a"].digest != other.jobs["a"].digest
    assert first.digest == same.digest != other.digest
