"""Celery task messages, as ``app.send_task`` writes them into a Redis broker: task protocol 2, JSON serializer.

The envelope is kombu's Redis transport's: a JSON object with the base64-encoded ``body`` (``[args, kwargs,
embed]``), the protocol 2 ``headers`` (``task``, ``id``, ``root_id``, ``argsrepr``, ``timelimit``, ...) and
the ``properties`` (``delivery_tag``, ``delivery_info``, ``priority``), pushed with LPUSH onto the queue's
list (:func:`beatd.keys.celery_queue`), from which a Celery worker BRPOPs it. beatd builds it without
importing Celery; ``tests/integration/test_celery.py`` compares it with what Celery itself writes.

A fire's task id derives from the deployment's namespace and the fire id (uuid5), so the same fire always has
the same task id: its Celery result can be found from the fire, and a duplicate would be recognisable. The
delivery tag is random (uuid4), as kombu's: kombu keys its unacked hash and QoS by it, so two messages (a
fire sent again by trigger, say) must never share one. ``delivery_info`` names the default exchange and the
queue as routing key, which is where kombu's Redis transport restores an unacked message.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from beatd.config.compact import JobView
from beatd.keys import celery_queue

__all__ = ["CELERY_TASK_NAMESPACE", "REPR_LIMIT", "CeleryMessage", "build_task_message", "celery_task_id"]

CELERY_TASK_NAMESPACE = uuid.UUID("0f1c6a52-3d1e-5b0a-9a57-6c2b8e1d4f30")
"""The uuid5 namespace of beatd's Celery task ids (fixed forever: changing it would change every task id)."""

REPR_LIMIT = 1024
"""Most characters of ``argsrepr`` and ``kwargsrepr`` (Celery's own ``resultrepr_maxsize`` default)."""

_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def celery_task_id(namespace: str, fire_id: str) -> str:
    """The Celery task id of fire ``fire_id`` of the deployment ``namespace``: ``uuid5(NAMESPACE, "ns/fire")``.

    The namespace is part of the name so two deployments that share a result backend never share a task id."""
    return str(uuid.uuid5(CELERY_TASK_NAMESPACE, f"{namespace}/{fire_id}"))


@dataclass(frozen=True)
class CeleryMessage:
    """A task message ready to push: the Redis list it goes to, the envelope JSON, and its task id."""

    queue_key: str
    envelope: str
    task_id: str
    queue: str


def build_task_message(
    spec: JobView, *, namespace: str, fire_id: str, scheduled_at: str, trigger: str, emitted_at: datetime,
    deadline: datetime | None = None,
) -> CeleryMessage:  # fmt: skip
    """The task message of fire ``fire_id`` of the celery job ``spec``, emitted at ``emitted_at`` (aware).

    ``options.expires`` counts from the emission, as Celery beat's from its send: a caught-up fire still runs.
    Without it, ``deadline`` (the fire's start deadline from the job's own ``expires``: its scheduled instant
    plus ``expires``) is Celery's ``expires``: a Celery worker revokes the task if it gets it later.
    The fire is named in headers too (``beatd_fire_id``, ``beatd_scheduled_at``, ``beatd_trigger``: a task sees
    them as ``self.request.beatd_fire_id``)."""
    if spec.celery is None or spec.options is None or spec.options.queue is None:
        raise ValueError(f"job {spec.name!r} is not a celery job with a resolved queue")
    options, queue = spec.options, spec.options.queue
    task_id = celery_task_id(namespace, fire_id)
    args, kwargs = list(spec.args), dict(spec.kwargs)
    expires = emitted_at.astimezone(UTC) + options.expires if options.expires is not None else deadline
    headers: dict[str, Any] = {
        "lang": "py",
        "task": spec.celery,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": expires.astimezone(UTC).isoformat() if expires is not None else None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [_seconds(options.time_limit), _seconds(options.soft_time_limit)],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": _repr(args),
        "kwargsrepr": _repr(kwargs),
        "origin": f"beatd/{namespace}",
        "ignore_result": None,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
        **options.headers,
        "beatd_fire_id": fire_id,
        "beatd_scheduled_at": scheduled_at,
        "beatd_trigger": trigger,
    }
    properties: dict[str, Any] = {
        "correlation_id": task_id,
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue},  # where kombu restores it if unacked
        "priority": options.priority or 0,
        "body_encoding": "base64",
        "delivery_tag": str(uuid.uuid4()),  # kombu keys its unacked hash and QoS by it: one per message
    }
    if expires is not None:
        left = max(expires - emitted_at, timedelta(0))
        properties["expiration"] = str(int(left / timedelta(milliseconds=1)))
    body = json.dumps([args, kwargs, _EMBED], separators=(",", ":"))
    envelope = {
        "body": base64.b64encode(body.encode()).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": properties,
    }
    return CeleryMessage(
        queue_key=celery_queue(queue, options.priority),
        envelope=json.dumps(envelope, separators=(",", ":")),
        task_id=task_id,
        queue=queue,
    )


def _seconds(value: timedelta | None) -> float | int | None:
    if value is None:
        return None
    seconds = value.total_seconds()
    return int(seconds) if seconds.is_integer() else seconds


def _repr(value: object) -> str:
    """Celery's ``saferepr`` of args and kwargs, for the JSON values a config can hold: Python's repr, cut."""
    text = repr(value)
    return text if len(text) <= REPR_LIMIT else text[: REPR_LIMIT - 3] + "..."
