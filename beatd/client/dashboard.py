"""What the web dashboard and its HTTP API show, as JSON objects, read through :class:`beatd.Client`.

Every page and API endpoint of ``beatd web`` is one of these functions (one code path). Each reads a bounded
amount whatever the size of the deployment: the overview sums run-count buckets (written by ``finish.lua``)
instead of reading history; the jobs page reads the newest records of one page of jobs only.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from beatd import defaults
from beatd.client.status import shard_leaders, unled_warnings
from beatd.client.waiting import heartbeat_age, is_live
from beatd.config import JobSpec
from beatd.messages import format_utc, from_ms, to_ms
from beatd.records import FINAL_STATUSES
from beatd.store.runs import tally_bucket
from beatd.upkeep import backlog_warnings

if TYPE_CHECKING:
    from beatd.client.sync import Client

__all__ = [
    "SCAN_LIMIT",
    "declared",
    "job_detail",
    "job_rows",
    "masked_audit",
    "overview",
    "run_counts",
    "success_rate",
    "trouble",
    "worker_rows",
]

SCAN_LIMIT = 5000
"""Up to this many jobs, the overview also looks at each job's newest record (missed) and progress (overdue);
beyond it only the kept counters (failing, dead letters, paused) are read, so the page stays fast."""

OVERDUE_AFTER = timedelta(minutes=1)
"""A job is overdue when a scheduled instant this much in the past has not been emitted (beat down, or behind)."""

_RATED = FINAL_STATUSES - {"skipped", "sent", "cancelled"}
"""The statuses a success rate counts: a skipped or cancelled fire is neither a success nor a failure."""

_SECRET_URL = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@", re.IGNORECASE)
_SECRET_NAME = re.compile(r"pass|secret|token|key|credential", re.IGNORECASE)


def run_counts(client: Client, now: datetime) -> dict[str, dict[str, int]]:
    """Runs ended in the last hour and the last day (5-minute buckets, so "hour" spans 55 to 60 minutes), by
    status, as ``{"hour": {status: n}, "day": {status: n}}``."""
    size = int(defaults.TALLY_BUCKET.total_seconds() * 1000)
    newest = tally_bucket(to_ms(now))
    per_hour = 3_600_000 // size
    buckets = [newest - index * size for index in range(24 * per_hour)]
    tallies = client.dashboard.tallies(buckets)
    hour: Counter[str] = Counter()
    day: Counter[str] = Counter()
    for index, tally in enumerate(tallies):
        day.update(tally)
        if index < per_hour:
            hour.update(tally)
    return {"hour": dict(sorted(hour.items())), "day": dict(sorted(day.items()))}


def overview(
    client: Client, specs: Sequence[JobSpec], now: datetime, job_queues: Sequence[str] | None = None
) -> dict[str, Any]:
    """The overview page: replicas (leaders first), workers, queue depths and backlog, runs by status in the
    last hour and day, and the jobs in trouble (failing, dead letters, missed, overdue, paused), worst first.
    With ``shards: N`` also ``shards``, who leads each shard (:func:`beatd.client.status.shard_leaders`), a
    warning per unled shard, each replica's led ``shards``, and ``leader`` is the lowest led shard's lease
    (None only when no shard is led). ``job_queues``: the queues of ``specs`` when the caller keeps them (else
    read off every spec)."""
    store = client.store
    redis_now = store.redis_now()
    beats = store.replicas()
    workers = client.runs.workers()
    if job_queues is None:
        job_queues = sorted({spec.queue for spec in specs if spec.celery is None})
    queues = sorted({*job_queues} | {queue for beat in workers.values() for queue in beat.get("queues", ())})
    lengths = client.shards.queue_lengths(queues)
    backlogs = client.shards.backlogs(queues)
    consumers = Counter(q for beat in workers.values() if is_live(beat, redis_now) for q in beat.get("queues", ()))
    shards = None
    if client.shards.count > 1:
        shards = shard_leaders(store.client, client.config, beats, [spec.name for spec in specs])
    leader = _leader(store.leader() if shards is None else None, shards)
    replicas = _replica_rows(beats, now, shards, leader)
    shown: dict[str, Any] = {
        "namespace": client.config.namespace,
        "at": format_utc(now),
        "leader": leader,
        "replicas": replicas,
        "workers": worker_rows(workers, redis_now),
        "queues": [
            {
                "queue": queue,
                "length": lengths.get(queue, 0),
                "waiting": backlogs[queue].waiting,
                "oldest_age_s": round(backlogs[queue].oldest_age(redis_now), 1),
                "consumers": consumers.get(queue, 0),
            }
            for queue in queues
        ],
        "warnings": unled_warnings(shards or [])
        + backlog_warnings(backlogs, consumers, redis_now, defaults.BACKLOG_WARN_AFTER),
        "runs": run_counts(client, redis_now),
        "jobs": len(specs),
        "trouble": trouble(client, specs, redis_now),
    }
    if shards is not None:
        shown["shards"] = shards
    return shown


def _leader(lease: tuple[str, int] | None, shards: Sequence[Mapping[str, Any]] | None) -> dict[str, Any] | None:
    """The overview's ``leader``: one shard's ``lease`` (token, ms left), or with ``shards`` the lowest led
    shard's (with its ``shard``); None when nobody leads (with shards: no shard is led)."""
    if shards is None:
        return {"token": lease[0], "lease_left_s": round(lease[1] / 1000, 1)} if lease else None
    led = next((row for row in shards if row["leader"] is not None), None)
    if led is None:
        return None
    return {"token": led["token"], "lease_left_s": round(led["lease_left_s"], 1), "shard": led["shard"]}


def _replica_rows(
    beats: Mapping[str, dict[str, Any]],
    now: datetime,
    shards: Sequence[Mapping[str, Any]] | None,
    leader: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    """Each replica's heartbeat, age by ``now`` and whether it leads (with ``shards``: the shards it leads),
    leaders first."""
    rows = []
    for replica, beat in sorted(beats.items()):
        age = heartbeat_age(beat, now)
        if shards is None:
            leads = leader is not None and str(leader["token"]).endswith(":" + replica)
        else:
            led = [row["shard"] for row in shards if row["leader"] == replica]
            leads = bool(led)
        row = {
            "replica": replica, "host": beat.get("host"), "pid": beat.get("pid"), "role": beat.get("role"),
            "leader": leads, "heartbeat_age_s": round(age.total_seconds(), 1),
            "alive": age <= defaults.REPLICA_STALE_AFTER,
        }  # fmt: skip
        if shards is not None:
            row["shards"] = led
        rows.append(row)
    rows.sort(key=lambda row: (not row["leader"], row["replica"]))
    return rows


def trouble(client: Client, specs: Sequence[JobSpec], now: datetime) -> list[dict[str, Any]]:
    """Jobs in trouble, worst first: failing (last fire ended dead), with dead letters, whose newest record is
    ``missed``, overdue, paused. Each ``{job, problem, detail}``; missed and overdue only up to SCAN_LIMIT jobs."""
    rows: list[dict[str, Any]] = []
    for job, fire in sorted(client.dashboard.failing().items()):
        rows.append({"job": job, "problem": "failing", "detail": f"fire {fire} ended dead"})
    letters: Counter[str] = Counter(entry["job"] or "?" for entry in client.dead_letters(200))
    for job, count in sorted(letters.items()):
        rows.append({"job": job, "problem": "dead letters", "detail": f"{count} dead letter{'s' * (count != 1)}"})
    paused = client.shards.paused()
    if len(specs) <= SCAN_LIMIT:
        names = [spec.name for spec in specs]
        newest = client.dashboard.newest_records(names, 1)
        progress = client.shards.progress(names)  # an unreadable value is left out
        for spec in specs:
            records = newest.get(spec.name) or []
            if records and json.loads(records[0])["status"] == "missed":
                rows.append({"job": spec.name, "problem": "missed", "detail": "its newest fire was missed"})
            due = _overdue_instant(spec, progress.get(spec.name), now)
            if due is not None and spec.name not in paused:
                rows.append(
                    {"job": spec.name, "problem": "overdue", "detail": f"due at {format_utc(due)}, not emitted"}
                )
    for job, pause in sorted(paused.items()):
        reason = pause.get("reason") or "no reason given"
        rows.append({"job": job, "problem": "paused", "detail": f"{reason} ({pause.get('user', '?')})"})
    return rows


def _overdue_instant(spec: JobSpec, progress_ms: int | None, now: datetime) -> datetime | None:
    """The instant ``spec`` should have been emitted at and was not, by ``OVERDUE_AFTER`` (None: not overdue)."""
    if progress_ms is None or not spec.enabled:
        return None
    due = spec.trigger().next_after(from_ms(progress_ms))
    slack = OVERDUE_AFTER + spec.jitter
    return due if due is not None and due < now - slack else None


def worker_rows(workers: Mapping[str, dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The workers page: each worker's heartbeat with its age by ``now`` (Redis's clock) and liveness."""
    rows = []
    for worker, beat in sorted(workers.items()):
        rows.append({
            "worker": worker, "host": beat.get("host"), "pid": beat.get("pid"), "queues": beat.get("queues", []),
            "runs": beat.get("runs", []),
            "heartbeat_age_s": round(heartbeat_age(beat, now).total_seconds(), 1), "alive": is_live(beat, now),
        })  # fmt: skip
    return rows


def job_rows(
    client: Client, specs: Sequence[JobSpec], sources: Mapping[str, str], failing: Mapping[str, str], now: datetime
) -> list[dict[str, Any]]:
    """One row per job of ``specs`` (one page): schedule in words and as written, zone, next fire, last run
    (status, duration, when), success rate over its newest 20 records, paused, failing, source, tags, queue."""
    newest = client.dashboard.newest_records([spec.name for spec in specs], 20)
    paused = client.shards.paused()
    rows = []
    for spec in specs:
        records = [json.loads(text) for text in newest.get(spec.name, [])]
        upcoming = spec.trigger().next_after(now) if spec.enabled else None
        last = next((record for record in records if record["status"] in FINAL_STATUSES), None)
        rows.append({
            "name": spec.name, "description": spec.description, "schedule": spec.trigger().describe(),
            "as_written": spec.schedule_text, "timezone": spec.timezone,
            "next_fire": format_utc(upcoming) if upcoming else None,
            "last_run": _last_run(last), "success_rate": success_rate(records),
            "paused": spec.name in paused, "failing": spec.name in failing, "enabled": spec.enabled,
            "source": sources.get(spec.name, "yaml"), "tags": list(spec.tags), "queue": spec.queue,
        })  # fmt: skip
    return rows


def _last_run(record: dict[str, Any] | None) -> dict[str, Any] | None:
    if record is None:
        return None
    when = record.get("finished_at") or record.get("started_at") or record["scheduled_at"]
    return {"run_id": record["run_id"], "status": record["status"], "duration_s": record.get("duration_s"),
            "at": when}  # fmt: skip


def success_rate(records: Sequence[Mapping[str, Any]]) -> float | None:
    """Succeeded runs over the runs that succeeded or failed in any way (None when there are none)."""
    rated = [record for record in records if record["status"] in _RATED]
    if not rated:
        return None
    succeeded = sum(record["status"] == "succeeded" for record in rated)
    return round(float(succeeded) / len(rated), 3)


def job_detail(client: Client, spec: JobSpec, source: str, now: datetime, window: timedelta) -> dict[str, Any]:
    """The job page: next 10 fires, the records of the last ``window`` (for the timeline), the newest 50
    records grouped by fire (attempts), its audit entries, pause state and the spec as declared."""
    name = spec.name
    recent = client.history_records(name, since=now - window, limit=5000)
    history = client.history_records(name, limit=50)
    fires: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in history:
        fires[record["fire_id"]].append(record)
    audit = masked_audit([entry for entry in client.audit(1000) if entry.get("job") == name][:20])
    return {
        "name": name,
        "description": spec.description,
        "source": source,
        "schedule": spec.trigger().describe(),
        "as_written": spec.schedule_text,
        "timezone": spec.timezone,
        "target": _masked("target", spec.target_text),
        "queue": spec.queue,
        "tags": list(spec.tags),
        "enabled": spec.enabled,
        "overrides": spec.overrides is not None,
        "paused": client.shards.paused().get(name),
        "next_fires": [instant.isoformat() for instant in client.next(name, 10, now)] if spec.enabled else [],
        "recent": recent,
        "fires": [
            {"fire_id": fire, "attempts": sorted(records, key=lambda r: r["attempt"])}
            for fire, records in fires.items()
        ],
        "success_rate": success_rate(recent),
        "audit": audit,
        "spec": declared(spec),
    }


def declared(spec: JobSpec) -> dict[str, Any]:
    """The spec as declared (its non-default fields, JSON values), with secrets masked: every value of ``env``
    (a command's environment is where secrets are handed over, whatever their names), the password of any
    URL, and the values of keyword arguments whose names look secret."""
    body = spec.model_dump(mode="json", exclude_defaults=True, exclude={"name"})
    masked = {key: _masked(key, value) for key, value in body.items()}
    if isinstance(masked.get("env"), dict):
        masked["env"] = dict.fromkeys(masked["env"], "***")
    return masked


def masked_audit(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Audit records with secrets masked as :func:`declared` masks them (a trigger's kwargs, a URL's password
    in an error)."""
    return [{key: _masked(key, value) for key, value in entry.items()} for entry in entries]


def _masked(name: str, value: Any) -> Any:
    if isinstance(value, str):
        return "***" if _SECRET_NAME.search(name) and name not in {"keep"} else _SECRET_URL.sub(r"\g<head>***@", value)
    if isinstance(value, dict):
        return {key: _masked(str(key), item) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked("", item) for item in value]
    return value
