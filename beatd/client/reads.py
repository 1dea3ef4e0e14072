"""What the client reads from history (``history``, ``show``), as the stored JSON objects; the CLI renders
them and :class:`beatd.Client` wraps them as RunRecords."""

from __future__ import annotations

import heapq
import json
from collections.abc import Sequence
from typing import Any

from beatd.config import Config
from beatd.errors import UnknownJob
from beatd.messages import parse_utc
from beatd.records import job_of
from beatd.store import RunStore
from beatd.store.celery_results import celery_outcomes

__all__ = ["find_runs", "history_records", "merged_records", "record_time", "with_celery_outcomes"]


def history_records(
    store: RunStore, config: Config, jobs: Sequence[str] | None, status: str | None, since_ms: int | None, limit: int
) -> list[dict[str, Any]]:
    """Run records newest first across ``jobs`` (None: every job with history), at most ``limit``, only those
    with ``status`` (a ``dead`` record of a fire that succeeded later is marked ``succeeded_later`` and not
    counted as dead), with Celery outcomes of ``sent`` ones."""
    names = list(jobs) if jobs is not None else store.jobs_with_history()
    records = merged_records(store, names, limit if status is None else max(limit * 20, 1000), since_ms)
    _mark_revived(store, records)
    if status is not None:
        records = [r for r in records if r["status"] == status and not (status == "dead" and r.get("succeeded_later"))]
    return with_celery_outcomes(config, records[:limit])


def merged_records(store: RunStore, jobs: Sequence[str], limit: int, since_ms: int | None) -> list[dict[str, Any]]:
    """At most ``limit`` records of each of ``jobs``, newest first across them (each job's are already)."""
    streams = [[json.loads(text) for text in store.run_records(job, limit, since_ms)] for job in jobs]
    return list(heapq.merge(*streams, key=record_time, reverse=True))


def find_runs(store: RunStore, identifier: str) -> list[dict[str, Any]]:
    """The record of run ``identifier`` (a run id), or every attempt of fire ``identifier`` (by attempt, its
    ``dead`` record last); UnknownJob (exit 2) naming it when there is none."""
    job = job_of(identifier)
    if "#" in identifier:
        text = store.run_record(job, identifier)
        records = [json.loads(text)] if text else []
    else:
        records = [json.loads(text) for text in store.fire_records(job, identifier)]
    if not records:
        raise UnknownJob(f"no run or fire {identifier!r} in the history of {job!r}")
    return records


def record_time(record: dict[str, Any]) -> tuple[str, str]:
    """Where a record sits in history: when its run started, else when it was written."""
    return (record.get("started_at") or record.get("finished_at") or record["scheduled_at"], record["run_id"])


def _mark_revived(store: RunStore, records: list[dict[str, Any]]) -> None:
    """Give each ``dead`` record whose fire has a succeeded run ``succeeded_later``: that run's id."""
    dead: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if record["status"] == "dead":
            dead.setdefault(record["job"], []).append(record)
    for job, found in dead.items():
        succeeded = store.succeeded_runs(job, [record["fire_id"] for record in found])
        for record in found:
            if record["fire_id"] in succeeded:
                record["succeeded_later"] = succeeded[record["fire_id"]]


def with_celery_outcomes(config: Config, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` with, for each ``sent`` one, its Celery outcome as ``celery`` (when a result backend is
    configured), read by task id."""
    backend = config.settings.celery.result_backend if config.settings.celery else None
    task_ids = [record["extra"]["task_id"] for record in records if record.get("extra", {}).get("task_id")]
    if backend is None or not task_ids:
        return records
    outcomes = celery_outcomes(backend, task_ids)
    for record in records:
        task_id = record.get("extra", {}).get("task_id")
        if task_id in outcomes:
            record["celery"] = outcome = dict(outcomes[task_id])
            try:  # Celery keeps no runtime: from emission to done (queue wait included)
                done = parse_utc(outcome["date_done"]) - parse_utc(record["emitted_at"])
                outcome["done_after_s"] = round(done.total_seconds(), 3)
            except (KeyError, TypeError, ValueError):
                pass
    return records
