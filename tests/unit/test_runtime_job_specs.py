"""Runtime job specs are validated like YAML jobs, located in the document given, and held to runtime_jobs."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from beatd.cli import cli
from beatd.cli.runtime import Runtime
from beatd.config import Config, load_config
from beatd.config.job_documents import job_from_file, job_from_json
from beatd.errors import ConfigError
from beatd.keys import Keys
from beatd.runtime_jobs import RuntimeJobs, check_job, diff, judge
from beatd.store.jobs import JobStore
from tests.conftest import WriteFiles

CONFIG = """
    redis: {url: "redis://127.0.0.1:1/0"}
    runtime_jobs:
      allow: ["app.tasks:*"]
      commands: ["/usr/local/bin/report *"]
    jobs:
      nightly: {cron: "0 3 * * *", call: app.tasks:nightly}
"""


@pytest.fixture
def config(write_files: WriteFiles) -> Config:
    """A config allowing call targets under app.tasks and one command."""
    return load_config(write_files({"beatd.yaml": CONFIG}), {})


def _messages(error: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [str(problem) for problem in error.value.problems]


def test_a_bad_spec_file_is_located_at_file_line_column(config: Config, tmp_path: Path) -> None:
    """A YAML spec with a bad cron gets the YAML job's message at FILE:LINE:COL, under jobs.NAME."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("call: app.tasks:send\ncron: '61 * * * *'\n")
    with pytest.raises(ConfigError) as error:
        check_job(config, "per_customer", job_from_file("per_customer", spec))
    (message,) = _messages(error)
    assert message.startswith(f"{spec}:2:7: jobs.per_customer.cron: ")
    assert "61" in message


def test_a_bad_json_spec_names_the_key_path(config: Config) -> None:
    """A JSON spec's unknown key is reported with its path (and its column in the text), as for YAML."""
    with pytest.raises(ConfigError) as error:
        check_job(config, "x", job_from_json("x", '{"every": "1m", "call": "app.tasks:a", "retrys": 2}'))
    (message,) = _messages(error)
    assert message.startswith("--json:1:40: jobs.x.retrys: unknown key (did you mean 'retries'?)")


def test_malformed_json_is_located() -> None:
    """Text that is not JSON is refused with its line and column."""
    with pytest.raises(ConfigError) as error:
        job_from_json("x", '{"every": }')
    assert _messages(error) == ["--json:1:11: malformed JSON: Expecting value"]


def test_disallowed_targets_are_refused(config: Config) -> None:
    """A call target, a command or a shell the runtime_jobs section does not allow is refused at its key."""
    cases = {
        "os:system": "jobs.j.call: os:system is not allowed for runtime jobs (runtime_jobs.allow: app.tasks:*)",
        "rm": "jobs.j.command: command 'rm -rf /' is not allowed for runtime jobs",
        "shell": "jobs.j.shell: shell: true is never allowed in a runtime job",
    }
    specs = {
        "os:system": {"every": "1m", "call": "os:system"},
        "rm": {"every": "1m", "command": ["rm", "-rf", "/"]},
        "shell": {"every": "1m", "command": "/usr/local/bin/report x", "shell": True},
    }
    for case, spec in specs.items():
        with pytest.raises(ConfigError) as error:
            RuntimeJobs(config, JobStore(redis.Redis(port=1), Keys("t"))).put("j", spec)
        assert any(cases[case] in message for message in _messages(error)), _messages(error)


def test_an_allowed_command_and_call_pass(config: Config) -> None:
    """Targets within the allow-lists validate, with the config's defaults applied."""
    assert check_job(config, "a", job_from_json("a", '{"every": "1m", "call": "app.tasks:a"}')).queue == "default"
    command = check_job(config, "b", job_from_json("b", '{"every": "1m", "command": "/usr/local/bin/report daily"}'))
    assert command.command == ("/usr/local/bin/report", "daily")


def test_a_runtime_job_cannot_shadow_a_yaml_job(config: Config) -> None:
    """A runtime job named like a YAML job is an error naming where the YAML declares it."""
    with pytest.raises(ConfigError) as error:
        check_job(config, "nightly", job_from_json("nightly", '{"every": "1m", "call": "app.tasks:a"}'))
    (message,) = _messages(error)
    assert "jobs.nightly: a job of this name is declared in the YAML at " in message
    assert message.endswith("beatd.yaml:6: a runtime job cannot shadow it")


def test_a_queue_outside_runtime_jobs_queues_is_refused(config: Config) -> None:
    """A runtime job may use only the queues runtime_jobs.queues lists (workers read those)."""
    with pytest.raises(ConfigError, match=r"jobs\.q\.queue: queue 'other' is not one runtime jobs may use"):
        check_job(config, "q", job_from_json("q", '{"every": "1m", "call": "app.tasks:a", "queue": "other"}'))


def test_without_runtime_jobs_nothing_is_allowed(write_files: WriteFiles) -> None:
    """A config without runtime_jobs refuses every runtime job."""
    bare = load_config(write_files({"beatd.yaml": "jobs: {a: {every: 1m, command: 'true'}}\n"}), {})
    with pytest.raises(ConfigError, match="runtime jobs are not enabled"):
        check_job(bare, "b", job_from_json("b", '{"every": "1m", "call": "app.tasks:a"}'))


def test_a_mapping_spec_names_the_call_and_the_path(config: Config) -> None:
    """Problems of a Python mapping name the API call and the key path, with no position."""
    with pytest.raises(ConfigError) as error:
        RuntimeJobs(config, JobStore(redis.Redis(port=1), Keys("t"))).put("m", {"call": "app.tasks:a"})
    assert "jobs.put('m'): jobs.m: no schedule: expected exactly one of cron, every or at" in _messages(error)


def test_judge_refuses_forged_and_unreadable_entries(config: Config) -> None:
    """A reader refuses an entry that is not JSON, and one naming a target its config does not allow."""
    assert judge(config, "f", "not json")[0] is None
    spec, why = judge(config, "f", '{"version": 3, "spec": {"every": "1s", "call": "os:system"}}')
    assert spec is None and "os:system is not allowed" in why
    assert judge(config, "g", '{"version": 3, "spec": {"every": "1s", "call": "app.tasks:g"}}')[0] is not None


def test_diff_names_the_changed_keys() -> None:
    """The audit diff holds each top-level key that changed, before and after."""
    assert diff({"every": "1m", "call": "a:b"}, {"every": "2m", "call": "a:b", "retries": 1}) == {
        "every": ["1m", "2m"],
        "retries": [None, 1],
    }


def test_cli_put_of_a_bad_spec_exits_2(write_files: WriteFiles, tmp_path: Path) -> None:
    """`beatd job put` prints the located problems and exits 2, writing nothing."""
    path = write_files({"beatd.yaml": CONFIG})
    result = CliRunner().invoke(
        cli,
        ["job", "put", "x", "-c", str(path), "--json", '{"every": "1m", "call": "os:system"}'],
        obj=Runtime(environ={}, cwd=tmp_path),
    )
    assert result.exit_code == 2
    assert "--json:1:25: jobs.x.call: os:system is not allowed for runtime jobs" in result.stderr
