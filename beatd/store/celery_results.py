"""The Celery outcome of ``celery`` fires, read by task id from the Celery app's result backend.

A Redis result backend is read directly (``GET celery-task-meta-{task_id}``, one MGET for many); any other
backend goes through Celery's own API when Celery is installed (``beatd[celery]``). Read-only: beatd never
writes a Celery result. A backend that cannot be read (down, refusing, misconfigured) makes each outcome
``{"state": "unknown", "why": ...}``: the command still shows beatd's own records. Each backend is given
RESULT_TIMEOUT to answer, and the first failure ends the asking (a down database is waited for once).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis

from beatd.keys import celery_result
from beatd.store.base import connect

__all__ = ["RESULT_TIMEOUT", "celery_outcomes"]

RESULT_TIMEOUT = 2.0
"""Seconds a result backend has to connect and answer: a command that shows records must not hang on it."""


def celery_outcomes(result_backend: str, task_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each task's outcome: ``state`` (Celery's: PENDING when no result is stored yet, or any more), and when
    done ``result`` or ``traceback`` and ``date_done``; ``{"state": "unknown", "why": ...}`` when the
    backend cannot be read this way."""
    if not task_ids:
        return {}
    if result_backend.startswith(("redis://", "rediss://", "unix://")):
        return _from_redis(result_backend, task_ids)
    return _from_celery(result_backend, task_ids)


def _unknown(task_ids: Sequence[str], why: str) -> dict[str, dict[str, Any]]:
    return {task_id: {"state": "unknown", "why": why} for task_id in task_ids}


def _from_redis(url: str, task_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    try:
        values = connect(url, RESULT_TIMEOUT).mget([celery_result(task_id) for task_id in task_ids])
    except redis.RedisError as error:
        return _unknown(task_ids, f"the result backend cannot be read: {type(error).__name__}: {error}")
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
        return _unknown(task_ids, "this result backend is read through Celery: install beatd[celery]")
    app = Celery("beatd", backend=url, set_as_current=False)
    app.conf.update(
        database_engine_options={"connect_args": {"connect_timeout": int(RESULT_TIMEOUT)}} if _sql(url) else {},
        redis_socket_timeout=RESULT_TIMEOUT,
        redis_socket_connect_timeout=RESULT_TIMEOUT,
        mongodb_backend_settings={"serverSelectionTimeoutMS": int(RESULT_TIMEOUT * 1000)},
        result_backend_always_retry=False,
    )
    outcomes: dict[str, dict[str, Any]] = {}
    for task_id in task_ids:
        try:
            meta = app.backend.get_task_meta(task_id)
        except Exception as error:  # any backend driver's error (psycopg, pymongo, ...) means: cannot be read
            why = f"the result backend cannot be read: {type(error).__name__}: {str(error).strip()[:200]}"
            return outcomes | _unknown([t for t in task_ids if t not in outcomes], why)
        outcomes[task_id] = _outcome(meta.get("status"), meta.get("result"), meta.get("traceback"), meta)
    return outcomes


def _sql(url: str) -> bool:
    """A SQLAlchemy backend whose driver (libpq, MySQL) takes ``connect_timeout``."""
    return url.startswith(("db+postgresql", "db+mysql"))


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
