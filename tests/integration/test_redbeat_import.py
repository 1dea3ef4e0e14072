"""`beatd import redbeat`: entries written by RedBeat's own code into a real redis-server become beatd YAML
whose `beatd next` instants are RedBeat's (Celery's and dateutil's) own next run times; differences are said
per entry, and bad input gets a message and an exit code, never a traceback."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from click.testing import CliRunner, Result

from beatd.cli import cli
from beatd.config import load_config
from tests.redis_server import RedisServer

pytest.importorskip("celery", reason="Celery is in the dev extras (beatd[celery])")
schedulers = pytest.importorskip("redbeat.schedulers", reason="celery-redbeat is in the dev extras")

ENV = {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/1"}
PARIS = ZoneInfo("Europe/Paris")
AFTER = datetime(2026, 6, 26, 23, 50, tzinfo=PARIS)  # a Friday night: the weekend, then weekdays


@pytest.fixture
def redbeat(shared_redis: RedisServer, namespace: str) -> Iterator[Any]:
    """A Celery app whose RedBeat keeps its entries in the test's redis-server, under the test's own prefix."""
    from celery import Celery

    app = Celery("redbeat-import-test", set_as_current=False)
    app.conf.timezone = "Europe/Paris"
    app.conf.redbeat_redis_url = f"redis://127.0.0.1:{shared_redis.port}/0"
    app.conf.redbeat_key_prefix = f"{namespace}:"
    yield app
    client = shared_redis.client()
    for key in client.scan_iter(match=f"{namespace}:*"):
        client.delete(key)


def _save(app: Any, name: str, schedule: Any, **fields: Any) -> Any:
    """Store one entry with RedBeat's own RedBeatSchedulerEntry.save()."""
    last_run_at = fields.pop("last_run_at", None)
    entry = schedulers.RedBeatSchedulerEntry(name, fields.pop("task", "proj.tasks.work"), schedule, app=app, **fields)
    entry.save()
    if last_run_at is not None:
        entry.reschedule(last_run_at=last_run_at)
    return entry


def _import(app: Any, *extra: str) -> Result:
    prefix = app.conf.redbeat_key_prefix
    url = app.conf.redbeat_redis_url
    args = ["import", "redbeat", "--redis-url", url, "--key-prefix", prefix, *extra]
    return CliRunner().invoke(cli, args, env=ENV)


def _next(path: Path, job: str, count: int = 6, after: datetime = AFTER) -> list[datetime]:
    """`beatd next JOB --json` on the converted config, as UTC instants."""
    result = CliRunner().invoke(cli, ["next", job, "-c", str(path), "-n", str(count), "--after", after.isoformat(),
                                      "--json"], env=ENV)  # fmt: skip
    assert result.exit_code == 0, result.output
    return [datetime.fromisoformat(text).astimezone(UTC) for text in json.loads(result.stdout)]


def _celery_next(schedule: Any, app: Any, after: datetime, count: int = 6) -> list[datetime]:
    """Celery's own next run times of a crontab, each from the previous one (as in test_celery_import)."""
    schedule.app = app
    instants, at = [], after
    for _ in range(count):
        schedule.nowfun = lambda at=at: at
        at = at + schedule.remaining_estimate(at)
        instants.append(at.astimezone(UTC).replace(second=0, microsecond=0))
    return instants


def test_entries_keep_redbeats_run_times(redbeat: Any, tmp_path: Path) -> None:
    """crontab, interval and convertible rrule entries become jobs whose `beatd next` equals RedBeat's own
    next runs (crontab by Celery in the app's zone, interval from RedBeat's last_run_at, rrule by dateutil)."""
    from celery.schedules import crontab
    from celery.schedules import schedule as every
    from celery.utils.time import remaining
    from redbeat.schedules import rrule

    weekday = _save(redbeat, "weekday report", crontab(minute=30, hour=7, day_of_week="mon-fri"), args=[42],
                    kwargs={"format": "pdf"}, options={"queue": "reports", "priority": 5})  # fmt: skip
    quarter = _save(redbeat, "quarter", crontab(minute="*/15"))
    last_run = datetime.now(UTC) - timedelta(seconds=10)  # RedBeat gives "due now" for an overdue entry
    interval = _save(redbeat, "every-30s", every(timedelta(seconds=30)), last_run_at=last_run)
    start = datetime(2026, 6, 1, 6, 0, tzinfo=PARIS)
    twice = _save(redbeat, "twice-daily", rrule("DAILY", dtstart=start, byhour=[6, 18], byminute=[0], bysecond=[0]))
    hourly = _save(redbeat, "two-hourly", rrule("HOURLY", dtstart=start + timedelta(minutes=7), interval=2))
    monthly = _save(redbeat, "monthly", rrule("MONTHLY", dtstart=start, count=40))
    mondays = _save(redbeat, "mondays", rrule("WEEKLY", dtstart=start, byweekday=[0, 2], byhour=[9], byminute=[15]))
    result = _import(redbeat, "--timezone", "Europe/Paris")
    assert result.exit_code == 0, result.output
    path = tmp_path / "beatd.yaml"
    path.write_text(result.stdout)
    jobs = load_config(path, ENV).jobs
    assert sorted(jobs) == ["every-30s", "mondays", "monthly", "quarter", "twice-daily", "two-hourly",
                            "weekday_report"]  # fmt: skip
    report = jobs["weekday_report"]
    assert (report.celery, report.args, report.kwargs) == ("proj.tasks.work", (42,), {"format": "pdf"})
    assert report.options is not None and (report.options.queue, report.options.priority) == ("reports", 5)
    for job, entry in (("weekday_report", weekday), ("quarter", quarter)):
        assert _next(path, job) == _celery_next(entry.schedule, redbeat, AFTER), job
    # RedBeat's interval is due when Celery's is_due says (at last_run_at + 30 s, then every 30 s; its zset score,
    # last_run_at + the time left, is only a wake-up hint): beatd's grid starts at the stored last_run_at.
    stored = schedulers.RedBeatSchedulerEntry.from_key(interval.key, app=redbeat)
    now = stored.last_run_at + timedelta(seconds=1)
    due = now + remaining(stored.last_run_at, stored.schedule.run_every, now, stored.schedule.relative)
    firsts = _next(path, "every-30s", 3, after=last_run)
    assert firsts[0] == due.replace(microsecond=due.microsecond // 1000 * 1000)
    assert [later - earlier for earlier, later in itertools.pairwise(firsts)] == [timedelta(seconds=30)] * 2
    for job, entry in (("twice-daily", twice), ("two-hourly", hourly), ("monthly", monthly), ("mondays", mondays)):
        stored = schedulers.RedBeatSchedulerEntry.from_key(entry.key, app=redbeat).schedule.rrule
        theirs, at = [], AFTER
        for _ in range(6):
            at = stored.after(at)
            if at is None:
                break
            theirs.append(at.astimezone(UTC))
        assert _next(path, job) == theirs, job
    assert _next(path, "monthly", 3, after=start + timedelta(days=40 * 31))[:1] == []  # count ends it


def test_refusals_and_differences_are_said_per_entry(redbeat: Any) -> None:
    """A crontab restricting both day fields and an rrule cron cannot express are refused with a reason; a
    disabled entry stays disabled; the interval says it is aligned; stdout is YAML, the summary on stderr."""
    from celery.schedules import crontab
    from celery.schedules import schedule as every
    from redbeat.schedules import rrule

    _save(redbeat, "first_monday", crontab(minute=0, hour=9, day_of_month="1-7", day_of_week="1"))
    _save(redbeat, "last-friday", rrule("MONTHLY", byweekday=[4], bysetpos=-1))
    _save(redbeat, "odd-seconds", rrule("MINUTELY", bysecond=[15, 45]))
    _save(redbeat, "paused", every(timedelta(minutes=5)), enabled=False)
    result = _import(redbeat)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "# first_monday: NOT CONVERTED: crontab with both day_of_month='1-7' and day_of_week='1'" in out
    assert "# last-friday: NOT CONVERTED: rrule with bysetpos has no beatd equivalent" in out
    assert "# odd-seconds: NOT CONVERTED: rrule fires at seconds other than :00" in out
    assert "# paused: disabled in RedBeat: enabled: false" in out
    assert "# paused: every 5m: Celery measures each interval from the last run" in out
    assert "# NOTE: RedBeat keeps no time zone: crontab entries run in the Celery app's timezone, converted as UTC" in (
        out
    )
    paused = yaml.safe_load(out)["jobs"]["paused"]  # a never-run entry's last_run_at is its save: start is that
    assert {key: paused[key] for key in ("celery", "every", "enabled")} == {
        "celery": "proj.tasks.work", "every": "5m", "enabled": False,
    }  # fmt: skip
    assert "1 of 4 entries converted, 3 refused" in result.stderr


def test_malformed_definitions_are_refused_and_exit_1(redbeat: Any, shared_redis: RedisServer) -> None:
    """A definition that is not JSON, one of an unknown type, a member with no hash and a key that is not a hash
    are each refused with its key and reason; the good entries are still printed; the exit code is 1."""
    from celery.schedules import crontab

    prefix = redbeat.conf.redbeat_key_prefix
    _save(redbeat, "good", crontab(minute=5))
    client = shared_redis.client()
    client.hset(f"{prefix}not-json", "definition", "{oops")
    client.hset(f"{prefix}alien", "definition", json.dumps({"task": "t", "schedule": {"__type__": "solar2"}}))
    client.set(f"{prefix}string", "x")
    for name in ("not-json", "alien", "gone", "string"):
        client.zadd(f"{prefix}:schedule", {f"{prefix}{name}": 0})
    result = _import(redbeat)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    out = result.stdout
    assert f"# not-json: NOT CONVERTED: {prefix}not-json: definition is not JSON" in out
    assert "definition not understood: ValueError: unknown __type__ 'solar2'" in out
    assert f"# gone: NOT CONVERTED: {prefix}gone: in the schedule but has no definition" in out
    assert f"# string: NOT CONVERTED: {prefix}string: not a RedBeat entry hash: WRONGTYPE" in out
    assert yaml.safe_load(out)["jobs"] == {"good": {"celery": "proj.tasks.work", "cron": "5 * * * *"}}
    assert "4 entries could not be read" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--redis-url", "redis://127.0.0.1:1/0"], 1, "Redis unavailable"),
        (["--redis-url", "http://nowhere"], 2, "--redis-url 'http://nowhere'"),
        (["--timezone", "Mars/Olympus"], 2, "--timezone 'Mars/Olympus' is not an IANA time zone"),
        ([], 1, "no RedBeat entries in"),
        (["--redis-url", "rediss://:pw@[bad/0"], 2, "--redis-url '<unparsable URL>': Invalid IPv6 URL"),
        (["--app", "no_such_module_here:app"], 2, "cannot import 'no_such_module_here'"),
    ],
)
def test_bad_input_gets_a_message_not_a_traceback(redbeat: Any, args: list[str], code: int, message: str) -> None:
    """An unreachable Redis, a URL that is not Redis's, an unknown zone and no entries under the prefix each
    give one line on stderr and exit 1 or 2."""
    result = _import(redbeat, *args)  # the later --redis-url wins over _import's own
    assert result.exit_code == code, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert ":pw@" not in result.output


APP_MODULE = """
from celery import Celery

app = Celery("redbeat_project_app", set_as_current=False)
app.conf.timezone = "Europe/Paris"
app.conf.task_default_queue = "main"
app.conf.task_routes = {"proj.tasks.routed": {"queue": "fast"}}


@app.task(name="proj.tasks.own_queue", queue="own-q", shared=False)
def own_queue():
    pass
"""


def test_the_projects_app_routes_the_entries_and_gives_the_timezone(redbeat: Any, tmp_path: Path) -> None:
    """With --app, an entry without options.queue lands where the app routes it (task_routes, the task's own
    queue, task_default_queue) and crontabs run in the app's timezone; without it, a NOTE says routes were not
    seen and every such entry goes to `celery`."""
    from celery.schedules import crontab

    for name, task in (("routed", "proj.tasks.routed"), ("own", "proj.tasks.own_queue"), ("plain", "proj.tasks.x")):
        _save(redbeat, name, crontab(minute=0, hour=7), task=task)
    _save(redbeat, "explicit", crontab(minute=0), task="proj.tasks.routed", options={"queue": "slow"})
    (tmp_path / "redbeat_project_app.py").write_text(APP_MODULE)
    result = _import(redbeat, "--app", "redbeat_project_app:app", "--pythonpath", str(tmp_path))
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(result.stdout)
    assert config["timezone"] == "Europe/Paris" and config["celery"]["default_queue"] == "main"
    queues = {name: (job.get("options") or {}).get("queue") for name, job in config["jobs"].items()}
    assert queues == {"explicit": "slow", "own": "own-q", "plain": None, "routed": "fast"}
    assert "no --app given" not in result.stdout
    bare = _import(redbeat)
    assert bare.exit_code == 0, bare.output
    assert "# NOTE: no --app given: the project's task_routes, tasks' own queues and task_default_queue were " in (
        bare.stdout
    )
    assert "entries without options.queue go to the queue 'celery'" in bare.stdout
    config = yaml.safe_load(bare.stdout)
    assert config["timezone"] == "UTC" and "default_queue" not in config["celery"]
    assert {name: (job.get("options") or {}).get("queue") for name, job in config["jobs"].items()} == {
        "explicit": "slow", "own": None, "plain": None, "routed": None,
    }  # fmt: skip


def test_entries_are_named_by_key_so_a_shared_definition_name_loses_none(
    redbeat: Any, shared_redis: RedisServer
) -> None:
    """Two keys whose definitions both say name "b" become two jobs (named by key), with a note on the one
    whose definition name differs."""
    from celery.schedules import crontab

    prefix = redbeat.conf.redbeat_key_prefix
    _save(redbeat, "b", crontab(minute=5))
    client = shared_redis.client()
    definition = json.loads(client.hget(f"{prefix}b", "definition"))
    definition["schedule"]["minute"] = "10"
    client.hset(f"{prefix}a", "definition", json.dumps(definition))
    client.zadd(f"{prefix}:schedule", {f"{prefix}a": 0})
    result = _import(redbeat)
    assert result.exit_code == 0, result.output
    jobs = yaml.safe_load(result.stdout)["jobs"]
    assert {name: job["cron"] for name, job in jobs.items()} == {"a": "10 * * * *", "b": "5 * * * *"}
    assert "# a: RedBeat's definition names it 'b': the job is named after its key" in result.stdout
    assert "# b: RedBeat's definition names it" not in result.stdout
    assert "2 of 2 entries converted" in result.stderr


def test_numbers_out_of_range_are_refused_with_their_key(redbeat: Any, shared_redis: RedisServer) -> None:
    """An interval of 1e300 seconds and an rrule dtstart at 1e20 are refused with their key (exit 1); a meta
    that overflows only loses the phase hint. Never a traceback."""
    from celery.schedules import schedule as every

    prefix = redbeat.conf.redbeat_key_prefix
    client = shared_redis.client()
    huge = {"task": "t", "schedule": {"__type__": "interval", "every": 1e300}}
    far = {"task": "t", "schedule": {"__type__": "rrule", "freq": 3, "dtstart": 1e20, "dtstart_tz": 0}}
    for name, definition in (("huge", huge), ("far", far)):
        client.hset(f"{prefix}{name}", "definition", json.dumps(definition))
        client.zadd(f"{prefix}:schedule", {f"{prefix}{name}": 0})
    _save(redbeat, "odd-meta", every(timedelta(minutes=1)))
    client.hset(f"{prefix}odd-meta", "meta", json.dumps({"last_run_at": {"__type__": "interval", "every": 1e300}}))
    result = _import(redbeat)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert f"# huge: NOT CONVERTED: {prefix}huge: definition not understood: OverflowError" in result.stdout
    assert f"# far: NOT CONVERTED: {prefix}far: definition not understood: " in result.stdout
    assert yaml.safe_load(result.stdout)["jobs"] == {"odd-meta": {"celery": "proj.tasks.work", "every": "1m"}}


def test_a_relative_interval_keeps_the_epoch_grid_and_a_phased_one_says_its_start(redbeat: Any) -> None:
    """relative=True (Celery rounds each run to the interval's resolution) gets no start and the epoch-grid
    note; a plain interval's note says its grid starts at start (RedBeat's last_run_at), not the epoch."""
    from celery.schedules import schedule as every

    last_run = datetime.now(UTC) - timedelta(seconds=10)
    _save(redbeat, "relative", every(timedelta(minutes=5), relative=True), last_run_at=last_run)
    _save(redbeat, "phased", every(timedelta(minutes=5)), last_run_at=last_run)
    result = _import(redbeat)
    assert result.exit_code == 0, result.output
    jobs = yaml.safe_load(result.stdout)["jobs"]
    assert "start" not in jobs["relative"] and "start" in jobs["phased"]
    assert "# relative: relative: True is dropped: beatd's every is aligned to the epoch grid" in result.stdout
    assert "# phased: every 5m: Celery measures each interval from the last run" in result.stdout
    assert "fixed grid from start, so" in result.stdout
    assert (
        "# phased: every 5m: Celery measures each interval from the last run (a beat restart or a slow beat "
        "shifts every later run); beatd's fires sit on a fixed grid from the epoch" not in result.stdout
    )


def test_a_monthly_rule_with_weekdays_says_redbeat_dropped_the_nth(redbeat: Any) -> None:
    """RedBeat saves MO(+1) as MO: the stored MONTHLY rule runs every Monday (in RedBeat too), and says so."""
    from dateutil.rrule import MO
    from redbeat.schedules import rrule

    start = datetime(2026, 6, 1, 6, 0, tzinfo=PARIS)
    _save(redbeat, "first-monday", rrule("MONTHLY", dtstart=start, byweekday=MO(+1), byhour=[6], byminute=[0]))
    result = _import(redbeat)
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["jobs"]["first-monday"]["cron"] == "0 6 * * 1"
    assert "# first-monday: RedBeat stores a weekday without its n (MO(+1) is saved as MO)" in result.stdout
