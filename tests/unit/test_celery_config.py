"""celery jobs in the config: what check accepts, and the located errors naming the Celery equivalent."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from beatd.config import load_config
from beatd.errors import ConfigError
from tests.conftest import REPO, WriteFiles

ENV = {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/1"}
HEAD = "redis: {url: 'redis://127.0.0.1:6379/0'}\ncelery: {broker_url: '${CELERY_BROKER_URL}'}\n"


def _problems(path: Path, environ: dict[str, str] = ENV) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ)
    return [str(problem) for problem in caught.value.problems]


def test_celery_job_with_options_and_defaults(write_files: WriteFiles) -> None:
    """A celery job takes args, kwargs and Celery options; the queue defaults to celery.default_queue, and
    inherited beatd-worker defaults (timeout, retries) do not make it invalid."""
    path = write_files(
        {
            "beatd.yaml": HEAD
            + "defaults: {timeout: 5m, retries: 2}\n"
            + "jobs:\n  r:\n    celery: proj.tasks.send_report\n    every: 1m\n    args: [1]\n    kwargs: {a: b}\n"
            + "    options: {priority: 6, headers: {trace: x}, expires: 30s, time_limit: 1m, soft_time_limit: 50s}\n"
            + "  plain:\n    celery: proj.tasks.other\n    cron: '0 * * * *'\n"
        }
    )
    config = load_config(path, ENV)
    spec = config.jobs["r"]
    assert spec.celery == "proj.tasks.send_report" and spec.target_text == "celery proj.tasks.send_report"
    assert spec.options is not None and spec.options.queue == "celery" and spec.options.priority == 6
    assert spec.options.expires == timedelta(seconds=30) and spec.options.headers == {"trace": "x"}
    assert config.jobs["plain"].options is not None and config.jobs["plain"].options.queue == "celery"
    assert config.settings.celery is not None and config.settings.celery.broker_db == 1


@pytest.mark.parametrize(
    ("key", "value", "names"),
    [
        ("overlap", "skip", "celery worker -Q QUEUE --concurrency 1"),
        ("retries", "3", "autoretry_for=(Exception,), max_retries=N"),
        ("timeout", "10s", "options.time_limit"),
        ("retry_delay", "1s", "retry_backoff"),
        ("queue", "reports", "options.queue"),
        ("output", "{tail: 100}", "the worker's log"),
    ],
)
def test_policies_celery_cannot_honour_are_located_errors(
    write_files: WriteFiles, key: str, value: str, names: str
) -> None:
    """overlap, retries and timeout on a celery job are refused at the key, naming what Celery does instead."""
    path = write_files({"beatd.yaml": HEAD + f"jobs:\n  r:\n    celery: proj.t\n    every: 1m\n    {key}: {value}\n"})
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:7:5: jobs.r.{key}: not for a celery job: ")
    assert names in problem


def test_isolation_on_a_celery_job_names_the_celery_pool(write_files: WriteFiles) -> None:
    """isolation is chosen by the Celery worker's pool: the error says so (not just "unknown key")."""
    path = write_files({"beatd.yaml": HEAD + "jobs:\n  r:\n    celery: proj.t\n    every: 1m\n    isolation: thread\n"})
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:7:5: jobs.r.isolation: not for a celery job: ") and "--pool" in problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "jobs:\n  r:\n    celery: proj.t\n    every: 1m\n    options: {headers: {id: x}}\n",
            ":7:24: jobs.r.options.headers: header 'id' is written by beatd",
        ),
        (
            "jobs:\n  r:\n    call: m:f\n    every: 1m\n    options: {queue: x}\n",
            ":7:5: jobs.r.options: options are Celery's: only for a celery job",
        ),
        (
            "jobs:\n  r:\n    celery: proj.t\n    call: m:f\n    every: 1m\n",
            ":5:5: jobs.r.celery: both call and celery given",
        ),
        (
            "jobs:\n  r:\n    celery: proj.t\n    every: 1m\n    options: {priority: 300}\n",
            ":7:25: jobs.r.options.priority: invalid value 300",
        ),
    ],
)
def test_bad_celery_options_are_located(write_files: WriteFiles, text: str, expected: str) -> None:
    """A reserved header, options on a non-celery job, two targets, an out-of-range priority: located errors."""
    path = write_files({"beatd.yaml": HEAD + text})
    problems = _problems(path)
    assert any(expected in problem for problem in problems), problems


def test_celery_job_without_celery_section(write_files: WriteFiles) -> None:
    """A celery job needs the top-level celery section, and the error shows how to write it."""
    path = write_files({"beatd.yaml": "jobs:\n  r:\n    celery: proj.t\n    every: 1m\n"})
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:3:13: jobs.r.celery: a celery job needs the top-level celery section")


@pytest.mark.parametrize(
    ("broker", "fragment"),
    [
        ("kafka://127.0.0.1:9092", "scheme 'kafka' is not a Redis URL (expected redis://"),
        ("redis://:secret@127.0.0.1:6379/x", "database 'x' is not a number"),
    ],
)
def test_broker_must_be_redis_or_amqp(write_files: WriteFiles, broker: str, fragment: str) -> None:
    """A broker URL neither Redis nor AMQP, or unreadable, is refused at celery.broker_url; a password is not
    shown."""
    path = write_files({"beatd.yaml": HEAD + "jobs:\n  r:\n    celery: proj.t\n    every: 1m\n"})
    (problem,) = _problems(path, {"CELERY_BROKER_URL": broker})
    assert problem.startswith(f"{path}:2:22: celery.broker_url: ") and fragment in problem
    assert "secret" not in problem and "amqp://" in problem


@pytest.mark.parametrize(
    "broker", ["sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380", "sentinel://:secret@10.0.0.1:26379/1"]
)
def test_a_sentinel_broker_is_refused_with_what_to_use_instead(write_files: WriteFiles, broker: str) -> None:
    """A Celery broker behind Redis Sentinel (kombu's sentinel:// URLs) is refused at celery.broker_url, saying
    why and which broker kinds work; a password is not shown."""
    path = write_files({"beatd.yaml": HEAD + "jobs:\n  r:\n    celery: proj.t\n    every: 1m\n"})
    (problem,) = _problems(path, {"CELERY_BROKER_URL": broker})
    assert problem.startswith(f"{path}:2:22: celery.broker_url: sentinel://")
    assert "behind Redis Sentinel is not supported" in problem and "RabbitMQ (amqp://)" in problem
    assert "secret" not in problem


def test_beatd_behind_sentinel_with_a_celery_section_is_refused(write_files: WriteFiles) -> None:
    """beatd's own Redis behind Sentinel (redis.sentinel) cannot drive Celery: refused at celery.broker_url."""
    head = HEAD.replace("}\n", ", sentinel: {master: mymaster, hosts: ['127.0.0.1:26379']}}\n", 1)
    path = write_files({"beatd.yaml": head + "jobs:\n  r:\n    celery: proj.t\n    every: 1m\n"})
    (problem,) = _problems(path)
    assert "celery.broker_url: a Celery broker with redis.sentinel is not supported" in problem, problem


@pytest.mark.parametrize("broker", ["redis://[::1]:6380/0", "redis://other.host:6379/1", "amqp://guest@localhost//"])
def test_another_broker_is_accepted_for_the_relay(write_files: WriteFiles, broker: str) -> None:
    """A broker on another Redis server or on RabbitMQ is accepted: the leader's outbox relay publishes to it."""
    path = write_files({"beatd.yaml": HEAD + "jobs:\n  r:\n    celery: proj.t\n    every: 1m\n"})
    config = load_config(path, {"CELERY_BROKER_URL": broker})
    assert config.settings.celery is not None
    assert config.settings.celery.amqp == broker.startswith("amqp")


def test_localhost_and_another_database_are_the_same_server(write_files: WriteFiles) -> None:
    """localhost and 127.0.0.1, default port and 6379, and any database number name beatd's own server."""
    path = write_files({"beatd.yaml": HEAD + "jobs:\n  r:\n    celery: proj.t\n    every: 1m\n"})
    config = load_config(path, {"CELERY_BROKER_URL": "redis://localhost/5"})
    assert config.settings.celery is not None and config.settings.celery.broker_db == 5


@pytest.mark.parametrize(
    ("own", "broker", "db"),
    [
        ("unix:///run/redis.sock", "redis://127.0.0.1:6379/3", 3),
        ("redis://127.0.0.1:6379/0", "redis+socket:///run/redis.sock?db=4", 4),
        ("redis://redis.internal:6379/0", "redis://10.0.0.9:6379/2", 2),
        ("redis://127.0.0.1:6379/0", "redis://[::1]:6379/5", 5),
    ],
)
def test_urls_that_may_reach_one_server_are_left_to_the_beat(
    write_files: WriteFiles, own: str, broker: str, db: int
) -> None:
    """A socket and a TCP port, a host name and an address, 127.0.0.1 and [::1] may be one server: check
    accepts them (the beat compares run ids at start) and reads the database number, kombu's
    redis+socket:// included."""
    head = f"redis: {{url: '{own}'}}\ncelery: {{broker_url: '${{CELERY_BROKER_URL}}'}}\n"
    path = write_files({"beatd.yaml": head + "jobs:\n  r:\n    celery: proj.t\n    every: 1m\n"})
    config = load_config(path, {"CELERY_BROKER_URL": broker})
    assert config.settings.celery is not None and config.settings.celery.broker_db == db


@pytest.mark.parametrize("url", ["redis://127.0.0.1:99999/0", "redis://127.0.0.1:6379/zero"])
def test_a_bad_redis_url_is_located_not_a_traceback(write_files: WriteFiles, url: str) -> None:
    """redis.url with a port out of range or a database that is not a number: a located error, exit 2."""
    head = f"redis: {{url: '{url}'}}\ncelery: {{broker_url: 'redis://127.0.0.1:6379/1'}}\n"
    path = write_files({"beatd.yaml": head + "jobs:\n  r:\n    celery: proj.t\n    every: 1m\n"})
    done = subprocess.run(
        [sys.executable, "-m", "beatd", "check", "-c", str(path)], cwd=REPO, env={"PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"{path}:1:14: redis.url: " in done.stderr, done.stderr


def test_check_exits_2_with_located_celery_error(write_files: WriteFiles) -> None:
    """`beatd check` prints the located error and exits 2, no traceback."""
    path = write_files({"beatd.yaml": HEAD + "jobs:\n  r:\n    celery: proj.t\n    every: 1m\n    overlap: skip\n"})
    done = subprocess.run(
        [sys.executable, "-m", "beatd", "check", "-c", str(path)],
        cwd=REPO, env={"CELERY_BROKER_URL": "redis://127.0.0.1:6379/1", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"{path}:7:5: jobs.r.overlap: not for a celery job" in done.stderr
    assert "Traceback" not in done.stderr


def test_beatd_workers_do_not_serve_celery_jobs_queues(write_files: WriteFiles) -> None:
    """A worker's queues come from its non-celery jobs only: celery jobs are run by Celery's workers."""
    from beatd.worker.registry import Setup

    path = write_files(
        {
            "beatd.yaml": HEAD + "jobs:\n  r:\n    celery: proj.t\n    every: 1m\n"
            "  c:\n    command: ['true']\n    every: 1m\n    queue: mine\n"
        }
    )
    assert Setup.of(load_config(path, ENV), None).queues == ["mine"]


def test_expires_and_options_expires_are_one_or_the_other(write_files: WriteFiles) -> None:
    """A job's own expires with options.expires is a located error; an inherited expires gives way to
    options.expires; alone, either is kept."""
    job = "jobs:\n  r:\n    celery: proj.t\n    every: 1m\n    expires: 5m\n    options: {expires: 30s}\n"
    (problem,) = _problems(write_files({"beatd.yaml": HEAD + job}))
    assert ":7:5: jobs.r.expires: expires and options.expires both set" in problem
    inherited = HEAD + "defaults: {expires: 5m}\njobs:\n  r:\n    celery: proj.t\n    every: 1m\n"
    inherited += "    options: {expires: 30s}\n  s:\n    celery: proj.t\n    every: 1m\n"
    jobs = load_config(write_files({"beatd.yaml": inherited}), ENV).jobs
    assert jobs["r"].expires is None and jobs["r"].options is not None
    assert jobs["r"].options.expires == timedelta(seconds=30)
    assert jobs["s"].expires == timedelta(minutes=5)
