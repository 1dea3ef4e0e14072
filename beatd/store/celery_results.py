"""The Celery outcome of ``celery`` fires, read by task id from the Celery app's result backend.

A Redis result backend is read directly (``GET celery-task-meta-{task_id}``, one MGET for many); any other
backend goes through Celery's own API when Celery is installed (``beatd[celery]``). Read-only: beatd never
writes a Celery result.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from beatd.keys import celery_result
from beatd.store.base import connect, reachable

__all__ = ["celery_outcomes"]


def celery_outcomes(result_backend: str, task_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each task's outcome: ``state`` (Celery's: PENDING when no result is stored yet, or any more), and when
    done ``result`` or ``traceback`` and ``date_done``; ``{"state": "unknown", "why": ...}`` when the
    backend cannot be read this way."""
    if not task_ids:
        return {}
    if result_backend.startswith(("redis://", "rediss://", "unix://")):
        return _from_redis(result_backend, task_ids)
    return _from_celery(result_backend, task_ids)


def _from_redis(url: str, task_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    with reachable():
        values = connect(url).mget([celery_result(task_id) for task_id in task_ids])
    outcomes: dict[str, dict[str, Any]] = {}
    for task_id, raw in zip(task_ids, values, strict=True):
        if raw is None:
            outcomes[task_id] = {"state": "PENDING"}
            continue
        try:
            meta = json.loads(raw)
        except ValueError:
            outcomes[task_id] = {"state": "unknown", "why": f"{celery_result(task_id)} is not JSON"}
            continue
        outcomes[task_id] = _outcome(meta.get("status"), meta.get("result"), meta.get("traceback"), meta)
    return outcomes


def _from_celery(url: str, task_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    try:
        from celery import Celery
    except ImportError:
        why = "this result backend is read through Celery: install beatd[celery]"
        return {task_id: {"state": "unknown", "why": why} for task_id in task_ids}
    app = Celery("beatd", backend=url, set_as_current=False)
    outcomes = {}
    for task_id in task_ids:
        result = app.AsyncResult(task_id)
        meta = result.backend.get_task_meta(task_id)
        outcomes[task_id] = _outcome(meta.get("status"), meta.get("result"), meta.get("traceback"), meta)
    return outcomes


def _outcome(state: Any, result: Any, traceback: Any, meta: dict[str, Any]) -> dict[str, Any]:
    outcome: dict[str, Any] = {"state": str(state)}
    if state in ("FAILURE", "RETRY", "REVOKED"):
        outcome["error"] = result if isinstance(result, dict) else str(result)
        if traceback:
            outcome["traceback"] = str(traceback)
    elif result is not None:
        outcome["result"] = result
    for key in ("date_done", "worker", "retries"):
        if meta.get(key) is not None:
            outcome[key] = meta[key]
    return outcome
