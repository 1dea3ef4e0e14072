"""A Celery app whose beat entries are routed by task_routes, a task's own queue and kombu objects, for
``beatd import celery``: the queue each message lands on must be the job's options.queue."""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

app = Celery("tests.celery_routing_app", set_as_current=False)
app.conf.task_default_queue = "main"
app.conf.broker_transport_options = {"priority_steps": list(range(10)), "visibility_timeout": 3600}
app.conf.task_routes = {
    "proj.tasks.routed": {"queue": "fast"},
    "proj.tasks.fanout": {"exchange": "media", "routing_key": "media.video"},
}


# Not shared: a shared task joins every later app of the test process (the RedBeat importer's own among them).
@app.task(name="proj.tasks.own_queue", queue="own-q", priority=3, shared=False)
def own_queue() -> None:
    """A task that names its queue and priority itself."""


app.conf.beat_schedule = {
    "routed": {"task": "proj.tasks.routed", "schedule": 60.0},
    "routed-but-overridden": {"task": "proj.tasks.routed", "schedule": 60.0, "options": {"queue": "slow"}},
    "own": {"task": "proj.tasks.own_queue", "schedule": 60.0},
    "plain": {"task": "proj.tasks.plain", "schedule": 60.0},
    "kombu-objects": {
        "task": "proj.tasks.plain",
        "schedule": 60.0,
        "options": {"queue": Queue("bulk", Exchange("bulk-x"), routing_key="bulk.k"), "headers": {"at": {1, 2}}},
    },
    "fanout": {"task": "proj.tasks.fanout", "schedule": 60.0},
    "too-urgent": {"task": "proj.tasks.plain", "schedule": 60.0, "options": {"priority": 300}},
}
