"""A real Celery app for the tests that drive Celery workers: ``celery -A tests.celery_app worker``.

Its broker and result backend come from the environment (``CELERY_BROKER_URL``, ``CELERY_RESULT_BACKEND``), and
its one task appends what it received to the ledger file ``CELERY_LEDGER`` (one JSON line per execution,
fsync'd before the task returns), so a test can count executions across kills.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from celery import Celery

app = Celery(
    "tests.celery_app", broker=os.environ.get("CELERY_BROKER_URL"), backend=os.environ.get("CELERY_RESULT_BACKEND")
)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    timezone="Europe/Paris",
    beat_schedule={  # what `beatd import celery tests.celery_app:app` converts in the migration test
        "record every second": {
            "task": "tests.record",
            "schedule": 1.0,
            "args": (1, "two"),
            "kwargs": {"region": "eu"},
            "options": {"headers": {"trace": "migrated"}},
        },
    },
)


@app.task(bind=True, name="tests.record")
def record(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Append this execution (task id, fire id, args, kwargs, the custom header ``trace``) to the ledger."""
    request = self.request
    line = {
        "task_id": request.id,
        "fire_id": getattr(request, "beatd_fire_id", None),
        "scheduled_at": getattr(request, "beatd_scheduled_at", None),
        "trace": getattr(request, "trace", None),
        "args": list(args),
        "kwargs": kwargs,
        "queue": (request.delivery_info or {}).get("routing_key"),
        "timelimit": list(request.timelimit or ()),
    }
    with Path(os.environ["CELERY_LEDGER"]).open("a") as ledger:
        ledger.write(json.dumps(line) + "\n")
        ledger.flush()
        os.fsync(ledger.fileno())
    return {"args": list(args), "kwargs": kwargs}
