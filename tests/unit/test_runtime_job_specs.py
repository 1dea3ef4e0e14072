"""Runtime job specs are validated like YAML jobs, located in the document given, and held to runtime_jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from beatd.cli import cli
from beatd.cli.runtime import Runtime
from beatd.config import Config, load_config
from beatd.config.job_documents import job_from_file, job_from_json, job_from_mapping
from beatd.errors import ConfigError
from beatd.keys import Keys
from beatd.runtime_jobs import RuntimeJobs, celery_allowed, check_job, diff, judge
from beatd.store.jobs import JobStore, StoredJob
from beatd.worker.child import call_target
from tests.conftest import WriteFiles

CONFIG = """
    redis: {url: "redis://127.0.0.1:1/0"}
    runtime_jobs:
      allow: ["app.tasks:*", "proj.tasks.*"]
      commands: ["/usr/local/bin/report *"]
      env: [REPORT_DAY]
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
        "os:system": "jobs.j.call: os:system is not allowed for runtime jobs (runtime_jobs.allow: app.tasks:*, proj.",
        "rm": "jobs.j.command: command '/bin/rm -rf /' is not allowed for runtime jobs",
        "shell": "jobs.j.shell: shell: true is never allowed in a runtime job",
    }
    specs = {
        "os:system": {"every": "1m", "call": "os:system"},
        "rm": {"every": "1m", "command": ["/bin/rm", "-rf", "/"]},
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
    assert message.endswith("beatd.yaml:7: a runtime job cannot shadow it")


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


def _entry(spec: dict[str, object]) -> str:
    return json.dumps({"version": 1, "spec": spec})


REFUSED_CALLS = ["app.tasks:os.system", "app.tasks:ok.__globals__", "proj.tasks.x:os.system", "app.tasks_evil:x"]
REFUSED_CALLS += ["app.tasks.sub:x", "app.tasks:_private"]


@pytest.mark.parametrize("target", REFUSED_CALLS)
def test_a_call_pattern_crosses_no_segment(config: Config, target: str) -> None:
    """`app.tasks:*` allows one public function of app.tasks only: no dotted attribute path (resolve_call would
    walk it into os or __globals__), no other module; a Celery pattern (`proj.tasks.*`) allows no call. Refused
    by the API and by a reader judging a forged entry."""
    with pytest.raises(ConfigError, match=r"jobs\.j\.call: .* is not allowed for runtime jobs"):
        check_job(config, "j", job_from_mapping("j", {"every": "1m", "call": target}, "t"))
    spec, why = judge(config, "j", _entry({"every": "1m", "call": target}))
    assert spec is None and "is not allowed for runtime jobs" in why


def test_celery_name_patterns_and_call_patterns_are_kept_apart() -> None:
    """A pattern without `:` matches Celery task names only; one with `:` never matches a Celery name."""
    allow = ("app.tasks:*", "proj.tasks.*")
    assert celery_allowed(allow, "proj.tasks.send")
    assert not celery_allowed(allow, "app.tasks:send")
    assert not celery_allowed(allow, "proj.tasks.x:os.system")
    assert not celery_allowed(("app.tasks*",), "app.tasks:send")


def test_a_worker_runs_only_a_function_defined_in_the_allowed_module() -> None:
    """Defence in depth where the worker resolves: a runtime job's target must be defined in its module, not
    imported into it (os.getcwd is posix.getcwd)."""
    reply = call_target({"target": "os:getcwd", "module": "os"})
    assert reply["status"] == "failed" and "defined in 'posix', not in 'os'" in reply["error"]["message"]
    assert call_target({"target": "tests.worker_jobs:noop", "module": "tests.worker_jobs"})["status"] == "succeeded"


COMMAND_CASES = {
    "relative argv[0]": ({"command": ["report", "x"]}, "command: a runtime job's command must start with an absolute"),
    "PATH": ({"command": ["/usr/local/bin/report", "x"], "env": {"PATH": "/tmp/evil"}}, "env: env PATH not allowed"),
    "LD_PRELOAD": ({"command": ["/usr/local/bin/report", "x"], "env": {"LD_PRELOAD": "/e.so"}}, "env LD_PRELOAD not"),
    "PYTHONPATH": ({"call": "app.tasks:a", "env": {"PYTHONPATH": "/tmp/evil"}}, "env: env PYTHONPATH not allowed"),
    "cwd": ({"command": ["/usr/local/bin/report", "x"], "cwd": "/tmp"}, "cwd: cwd is never allowed"),
    "star spans arguments": ({"command": ["/usr/local/bin/report", "x", "--out=/etc/cron.d/x"]}, "is not allowed"),
}


@pytest.mark.parametrize("case", COMMAND_CASES)
def test_a_runtime_command_runs_what_the_pattern_says_and_nothing_else(config: Config, case: str) -> None:
    """A runtime command: argv[0] absolute, each pattern element matching one argv element (`*` never spans
    arguments), no cwd, and env only for names runtime_jobs.env lists; by the API and a reader alike."""
    spec, expected = COMMAND_CASES[case]
    with pytest.raises(ConfigError) as error:
        check_job(config, "j", job_from_mapping("j", {"every": "1m", **spec}, "t"))
    assert any(expected in message for message in _messages(error)), _messages(error)
    judged, why = judge(config, "j", _entry({"every": "1m", **spec}))
    assert judged is None and expected.split(": ", 1)[-1] in why


def test_a_runtime_command_may_set_an_env_name_runtime_jobs_env_lists(config: Config) -> None:
    """runtime_jobs.env allows a variable by name; PATH, LD_* and PYTHON* may never be listed."""
    spec = {"every": "1m", "command": ["/usr/local/bin/report", "x"], "env": {"REPORT_DAY": "mon"}}
    assert check_job(config, "j", job_from_mapping("j", spec, "t")).env == {"REPORT_DAY": "mon"}


@pytest.mark.parametrize("name", ["PATH", "LD_PRELOAD", "PYTHONPATH"])
def test_runtime_jobs_env_may_never_list_path_ld_or_python(write_files: WriteFiles, name: str) -> None:
    """A config listing a name that chooses the program or the code it loads is an error at load."""
    with pytest.raises(ConfigError, match=f"{name} may never be set by a runtime job"):
        load_config(write_files({"beatd.yaml": f"runtime_jobs: {{env: [{name}]}}\njobs: {{}}\n"}), {})


def test_a_deeply_nested_entry_is_refused_not_raised(config: Config) -> None:
    """An entry nested deeper than the JSON parser recurses (10 KB forged) is an unreadable entry."""
    deep = '{"version":1,"spec":{"every":"1m","call":"app.tasks:ok","kwargs":{"a":' + "[" * 5000 + "]" * 5000 + "}}}"
    with pytest.raises(ValueError, match="nested too deep"):
        StoredJob.parse("deep", deep)
    spec, why = judge(config, "deep", deep)
    assert spec is None and "unreadable entry" in why


def test_a_spec_nested_too_deep_is_a_located_error(write_files: WriteFiles, tmp_path: Path, config: Config) -> None:
    """`job put --json` with kwargs 3000 deep exits 2 with a located message (no RecursionError traceback); a
    mapping that deep is a ConfigError naming its path."""
    path = write_files({"beatd.yaml": CONFIG})
    text = '{"every": "1m", "call": "app.tasks:a", "kwargs": {"a": ' + "[" * 3000 + "]" * 3000 + "}}"
    result = CliRunner().invoke(
        cli, ["job", "put", "x", "-c", str(path), "--json", text], obj=Runtime(environ={}, cwd=tmp_path)
    )
    assert result.exit_code == 2 and "--json:1:1: nested deeper than 100 levels" in result.output, result.output
    assert "Traceback" not in result.output
    deep: list[object] = []
    for _ in range(3000):
        deep = [deep]
    with pytest.raises(ConfigError, match=r"t: jobs\.x\.kwargs\.a\.0\.\.\.\.: nested deeper than 100 levels"):
        job_from_mapping("x", {"every": "1m", "call": "app.tasks:a", "kwargs": {"a": deep}}, "t")
