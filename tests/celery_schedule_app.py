"""A Celery app whose beat_schedule holds every kind of schedule Celery has, for ``beatd import celery``."""

from __future__ import annotations

from datetime import timedelta

from celery import Celery
from celery.schedules import crontab, schedule, solar

# solar() needs the ephem library (celery[solar]); the importer only reads its event and place, so the test
# builds one without computing anything.
SUNSET = solar.__new__(solar)
SUNSET.event, SUNSET.lat, SUNSET.lon = "sunset", 48.85, 2.35

app = Celery("tests.celery_schedule_app", set_as_current=False)
app.conf.timezone = "Europe/Paris"
app.conf.result_backend = "redis://127.0.0.1:6379/2"
app.conf.beat_schedule = {
    "weekday report": {
        "task": "proj.tasks.send_report",
        "schedule": crontab(minute=30, hour="7", day_of_week="mon-fri"),
        "args": (42,),
        "kwargs": {"format": "pdf"},
        "options": {"queue": "reports", "expires": 600, "priority": 5, "countdown": 3},
    },
    "quarter-hourly": {"task": "proj.tasks.poll", "schedule": crontab(minute="*/15")},
    "first monday": {"task": "proj.tasks.x", "schedule": crontab(minute=0, hour=9, day_of_month="1-7", day_of_week=1)},
    "hourly-list": {"task": "proj.tasks.y", "schedule": crontab(minute=[0, 30], hour="8-18")},
    "every-30s": {"task": "proj.tasks.ping", "schedule": 30.0},
    "every-2h": {"task": "proj.tasks.sync", "schedule": timedelta(hours=2), "options": {"time_limit": 60}},
    "schedule-object": {"task": "proj.tasks.z", "schedule": schedule(timedelta(minutes=5))},
    "sunset": {"task": "proj.tasks.lights", "schedule": SUNSET},
}
