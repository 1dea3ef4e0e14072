"""`beatd import celery`: a beat_schedule with every Celery schedule kind becomes beatd YAML that keeps its
meaning (checked against Celery's own next run times), and every difference is said per entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from click.testing import CliRunner

from beatd.cli import cli
from beatd.config import load_config

pytest.importorskip("celery", reason="Celery is in the dev extras (beatd[celery])")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def imported() -> tuple[str, str]:
    """stdout and stderr of `beatd import celery tests.celery_schedule_app:app`."""
    result = CliRunner().invoke(cli, ["import", "celery", "tests.celery_schedule_app:app", "--pythonpath", str(REPO)])
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


def test_output_is_a_valid_config(imported: tuple[str, str], tmp_path: Path) -> None:
    """The YAML on stdout passes beatd's own validation, with the app's time zone and result backend."""
    path = tmp_path / "beatd.yaml"
    path.write_text(imported[0])
    config = load_config(path, {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/1", "CELERY_RESULT_BACKEND": "x"})
    assert config.settings.timezone == "Europe/Paris"
    assert sorted(config.jobs) == ["every-2h", "every-30s", "hourly-list", "quarter-hourly", "schedule-object",
                                   "weekday_report"]  # fmt: skip
    report = config.jobs["weekday_report"]
    assert (report.cron, report.args, report.kwargs) == ("30 7 * * mon-fri", (42,), {"format": "pdf"})
    assert report.options is not None and report.options.queue == "reports" and report.options.priority == 5
    assert report.options.expires == timedelta(minutes=10)
    assert config.jobs["every-30s"].every == timedelta(seconds=30)
    assert config.jobs["schedule-object"].every == timedelta(minutes=5)
    assert config.jobs["every-2h"].options is not None and config.jobs["every-2h"].options.time_limit == timedelta(
        seconds=60
    )


def test_refusals_and_differences_are_said_per_entry(imported: tuple[str, str]) -> None:
    """solar and a crontab restricting both day fields are refused with a reason; intervals say they are now
    aligned; dropped options and renamed entries are named."""
    out, err = imported
    assert "# sunset: NOT CONVERTED: solar schedule" in out
    assert "# first_monday: NOT CONVERTED: crontab with both day_of_month='1-7' and day_of_week='1'" in out
    assert "days matching both" in out and "either" in out
    assert "# every-30s: every 30s: Celery measures each interval from the last run" in out
    assert "# weekday_report: option countdown=3 dropped" in out
    assert "# weekday_report: renamed from 'weekday report'" in out
    assert "6 of 8 entries converted, 2 refused" in err
    assert yaml.safe_load(out)["celery"] == {
        "broker_url": "${CELERY_BROKER_URL}",
        "result_backend": "${CELERY_RESULT_BACKEND}",
    }


@pytest.mark.parametrize("job", ["weekday_report", "quarter-hourly", "hourly-list"])
def test_crontab_fires_agree_with_celery(imported: tuple[str, str], tmp_path: Path, job: str) -> None:
    """The converted cron's next fires are Celery's own next run times for the entry, in the app's zone."""
    from tests.celery_schedule_app import app

    path = tmp_path / "beatd.yaml"
    path.write_text(imported[0])
    spec = load_config(path, {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/1", "CELERY_RESULT_BACKEND": "x"}).jobs[job]
    entry = {"weekday_report": "weekday report"}.get(job, job)
    schedule = app.conf.beat_schedule[entry]["schedule"]
    schedule.app = app
    zone = ZoneInfo("Europe/Paris")
    instant = datetime(2026, 6, 26, 23, 50, tzinfo=zone)  # a Friday night: weekend, then weekdays
    ours, theirs = [], []
    celery_at = beatd_at = instant
    for _ in range(6):
        upcoming = spec.trigger().next_after(beatd_at)
        assert upcoming is not None
        ours.append(upcoming.astimezone(UTC))
        beatd_at = upcoming
        schedule.nowfun = lambda at=celery_at: at
        celery_at = celery_at + schedule.remaining_estimate(celery_at)
        theirs.append(celery_at.astimezone(UTC).replace(second=0, microsecond=0))
    assert ours == theirs


def test_queues_are_resolved_as_celery_routes_them(tmp_path: Path) -> None:
    """task_routes, a task's own queue and a kombu Queue object become options.queue (the entry's own option
    first); an exchange-only route is refused; a non-JSON header value or an option beatd refuses is dropped
    with a note; broker_transport_options beatd does not read are said; the YAML is a valid config."""
    result = CliRunner().invoke(cli, ["import", "celery", "tests.celery_routing_app:app", "--pythonpath", str(REPO)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    path = tmp_path / "beatd.yaml"
    path.write_text(out)
    jobs = load_config(path, {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/1"}).jobs
    queues = {name: spec.options.queue if spec.options else None for name, spec in jobs.items()}
    assert queues == {
        "routed": "fast", "routed-but-overridden": "slow", "own": "own-q", "plain": "main", "kombu-objects": "bulk",
        "too-urgent": "main",
    }  # fmt: skip
    assert jobs["own"].options is not None and jobs["own"].options.priority == 3
    assert "# fanout: NOT CONVERTED: routed by exchange 'media' with routing key 'media.video'" in out
    assert "# kombu-objects: exchange='bulk-x' routing_key='bulk.k' dropped: beatd pushes straight onto" in out
    assert "# kombu-objects: option headers={'at': {1, 2}} dropped: not a JSON value" in out
    assert "# too-urgent: option priority=300 dropped: Input should be less than or equal to 255" in out
    assert "# NOTE: broker_transport_options priority_steps=" in out
    assert "visibility_timeout" not in out


def test_headers_that_are_not_a_mapping_of_names_are_dropped_with_a_note() -> None:
    """options.headers as a list or with a non-string key is dropped with a note, never an AttributeError."""
    from celery import Celery

    from beatd.celery_import import convert

    app = Celery("odd-headers", set_as_current=False)
    app.conf.beat_schedule = {
        "listed": {"task": "t", "schedule": 60, "options": {"headers": ["a", "b"]}},
        "numbered": {"task": "t", "schedule": 60, "options": {"headers": {1: "x"}}},
    }
    for entry in convert(app).entries:
        assert entry.job == {"celery": "t", "every": "1m"}, entry.entry
        assert any("option headers=" in note and "expected a mapping of names" in note for note in entry.notes)


def test_an_rrule_in_a_zone_under_redbeat_says_redbeat_runs_the_fixed_offset() -> None:
    """A live rrule with a Europe/Paris dtstart: DAILY with and without byhour both become cron in Paris
    (dateutil's 09:00 local all year); under RedBeat's scheduler a note says RedBeat itself keeps the offset."""
    from celery import Celery

    schedules = pytest.importorskip("redbeat.schedules", reason="celery-redbeat is in the dev extras")
    from beatd.celery_import import convert

    start = datetime(2026, 1, 5, 9, 0, tzinfo=ZoneInfo("Europe/Paris"))
    app = Celery("rrule-zone", set_as_current=False)
    app.conf.beat_scheduler = "redbeat.RedBeatScheduler"
    app.conf.beat_schedule = {
        "plain": {"task": "t", "schedule": schedules.rrule("DAILY", dtstart=start)},
        "nine": {"task": "t", "schedule": schedules.rrule("DAILY", dtstart=start, byhour=[9], byminute=[0])},
    }
    for entry in convert(app).entries:
        assert entry.job is not None and entry.job["cron"] == "0 9 * * *", entry.entry
        assert entry.job["timezone"] == "Europe/Paris"
        assert any("RedBeat runs the rule at that fixed offset year round" in note for note in entry.notes)
    app.conf.beat_scheduler = "celery.beat:PersistentScheduler"
    assert not any("RedBeat" in note for entry in convert(app).entries for note in entry.notes)


def test_a_fixed_offset_rrule_every_says_it_ignores_daylight_saving() -> None:
    """DAILY from a fixed +02:00 dtstart (as RedBeat's Redis keeps it) is every 1d, with a note on DST."""
    from celery import Celery

    schedules = pytest.importorskip("redbeat.schedules", reason="celery-redbeat is in the dev extras")
    from beatd.celery_import import convert

    start = datetime(2026, 7, 1, 9, 0, tzinfo=timezone(timedelta(hours=2)))
    app = Celery("rrule-offset", set_as_current=False)
    app.conf.beat_schedule = {"daily": {"task": "t", "schedule": schedules.rrule("DAILY", dtstart=start)}}
    (entry,) = convert(app).entries
    assert entry.job is not None and entry.job["every"] == "1d"
    assert any("never shifts for daylight saving time" in note for note in entry.notes)
