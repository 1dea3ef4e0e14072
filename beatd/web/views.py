"""Every endpoint of ``beatd web`` as one function over :class:`beatd.Client`: what a page shows is what its
API endpoint returns (``app.py`` renders it as a template or as JSON), and a page's form posts to the API."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from beatd.client import Client
from beatd.client.dashboard import job_detail, job_rows, masked_audit, overview, worker_rows
from beatd.config import JobSpec
from beatd.errors import UnknownJob, UsageProblem
from beatd.web.catalogue import PAGE_SIZE, STATUS_FILTERS, Catalogue
from beatd.web.security import ADMIN, READ
from beatd.web.timeline import timeline

__all__ = ["ENDPOINTS", "Endpoint", "Param", "Web"]

WINDOWS = {"day": timedelta(days=1), "week": timedelta(days=7)}
"""The job page's timeline windows."""


@dataclass
class Web:
    """What every view reads through: the client and the job catalogue; ``now`` is injected (tests, bench)."""

    client: Client
    catalogue: Catalogue
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def spec(self, name: str) -> JobSpec:
        """The job ``name`` (catalogue first, then the client: a runtime job created a moment ago)."""
        self.catalogue.refresh()
        found = self.catalogue.get(name)
        return found if found is not None else self.client.job(name)


@dataclass(frozen=True)
class Param:
    """A parameter of an endpoint, for the OpenAPI document: ``where`` is ``path``, ``query`` or ``body``."""

    name: str
    where: str
    description: str
    kind: str = "string"


@dataclass(frozen=True)
class Endpoint:
    """One API endpoint (``/api/v1`` + ``path``) and, for a GET with a ``template``, its page (``page``)."""

    method: str
    path: str
    summary: str
    role: str
    run: Callable[[Web, Mapping[str, str], Mapping[str, Any]], Any]
    """``run(web, path_params, params)``: query parameters for a GET, the form or JSON body for a POST."""
    page: str | None = None
    template: str | None = None
    params: tuple[Param, ...] = ()


def _int(params: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        number = int(str(value))
    except ValueError as error:
        raise UsageProblem(f"{name}: expected an integer, got {value!r}") from error
    return max(low, min(high, number))


def _overview(web: Web, path: Mapping[str, str], params: Mapping[str, Any]) -> dict[str, Any]:
    web.catalogue.refresh()
    return overview(web.client, web.catalogue.specs, web.now(), web.catalogue.queues)


def _jobs(web: Web, path: Mapping[str, str], params: Mapping[str, Any]) -> dict[str, Any]:
    web.catalogue.refresh()
    status = str(params.get("status") or "")
    if status and status not in STATUS_FILTERS:
        raise UsageProblem(f"status: expected one of {', '.join(STATUS_FILTERS)}, got {status!r}")
    failing = web.client.failing_jobs()
    paused = web.client.shards.paused()
    filters = {key: str(params.get(key) or "") for key in ("q", "tag", "queue")}
    selection = web.catalogue.select(
        query=filters["q"], tag=filters["tag"], queue=filters["queue"], status=status, failing=failing,
        paused=paused, offset=_int(params, "offset", 0, 0, 10**9), limit=_int(params, "limit", PAGE_SIZE, 1, 500),
    )  # fmt: skip
    rows = job_rows(web.client, selection.specs, web.catalogue.sources, failing, web.now())
    return {
        "jobs": rows, "total": selection.total, "offset": selection.offset, "limit": selection.limit,
        "filters": {**filters, "status": status}, "statuses": list(STATUS_FILTERS),
    }  # fmt: skip


def _job(web: Web, path: Mapping[str, str], params: Mapping[str, Any]) -> dict[str, Any]:
    spec = web.spec(path["name"])
    window = str(params.get("window") or "day")
    if window not in WINDOWS:
        raise UsageProblem(f"window: expected day or week, got {window!r}")
    now = web.now()
    source = web.catalogue.sources.get(spec.name, "runtime")
    detail = job_detail(web.client, spec, source, now, WINDOWS[window])
    detail["window"] = window
    detail["timeline"] = dataclasses.asdict(timeline(detail["recent"], now - WINDOWS[window], now))
    return detail


def _run(web: Web, path: Mapping[str, str], params: Mapping[str, Any]) -> dict[str, Any]:
    attempts = web.client.show_records(path["identifier"])
    return {"identifier": path["identifier"], "job": attempts[0]["job"], "attempts": attempts}


def _workers(web: Web, path: Mapping[str, str], params: Mapping[str, Any]) -> dict[str, Any]:
    return {"workers": worker_rows(web.client.runs.workers(), web.client.store.redis_now())}


def _dead(web: Web, path: Mapping[str, str], params: Mapping[str, Any]) -> dict[str, Any]:
    show_all = str(params.get("all") or "") in {"1", "true", "yes"}
    limit = _int(params, "limit", 100, 1, 1000)
    return {"dead": web.client.dead_letters(limit, show_all=show_all), "all": show_all}


def _audit(web: Web, path: Mapping[str, str], params: Mapping[str, Any]) -> dict[str, Any]:
    job = str(params.get("job") or "")
    entries = web.client.audit(_int(params, "limit", 200, 1, 5000))
    return {"audit": masked_audit([entry for entry in entries if not job or entry.get("job") == job]), "job": job}


def _json_param(params: Mapping[str, Any], name: str) -> Any:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return value  # a JSON body's value
    try:
        return json.loads(value)
    except ValueError as error:
        raise UsageProblem(f"{name}: expected JSON ({error})") from error


def _trigger(web: Web, path: Mapping[str, str], params: Mapping[str, Any]) -> dict[str, Any]:
    name = web.spec(path["name"]).name
    handle = web.client.trigger(name, args=_json_param(params, "args"), kwargs=_json_param(params, "kwargs"))
    return {"job": name, "fire_id": handle.fire_id, "queue": handle.queue, "scheduled_at": handle.scheduled_at,
            "message": f"triggered {name}: fire {handle.fire_id}"}  # fmt: skip


def _pause(web: Web, path: Mapping[str, str], params: Mapping[str, Any]) -> dict[str, Any]:
    name = web.spec(path["name"]).name
    changed = web.client.pause(name, str(params.get("reason") or ""))
    return {"job": name, "paused": True, "changed": changed,
            "message": f"paused {name}" if changed else f"{name} was already paused"}  # fmt: skip


def _resume(web: Web, path: Mapping[str, str], params: Mapping[str, Any]) -> dict[str, Any]:
    name = web.spec(path["name"]).name
    changed = web.client.resume(name, str(params.get("reason") or ""))
    return {"job": name, "paused": False, "changed": changed,
            "message": f"resumed {name}" if changed else f"{name} was not paused"}  # fmt: skip


def _backfill(web: Web, path: Mapping[str, str], params: Mapping[str, Any]) -> dict[str, Any]:
    name = web.spec(path["name"]).name
    start, end = str(params.get("start") or ""), str(params.get("end") or "")
    if not start or not end:
        raise UsageProblem("backfill: give start and end (ISO-8601 instants or dates)")
    flags = {key: str(params.get(key, "")).lower() in {"1", "true", "yes", "on"} for key in ("rerun", "dry_run")}
    if "dry_run" not in params:
        flags["dry_run"] = True  # a preview unless asked for the real thing
    report = web.client.backfill(name, start, end, rerun=flags["rerun"], dry_run=flags["dry_run"]).report
    done = "would emit" if flags["dry_run"] else "emitted"
    return {**report, "start": start, "end": end, "rerun": flags["rerun"],
            "message": f"backfill of {name}: {done} {len(report.get('instants', []))} fires"}  # fmt: skip


def _retry(web: Web, path: Mapping[str, str], params: Mapping[str, Any]) -> dict[str, Any]:
    entry = web.client.retry_dead(path["entry_id"])
    return {"dead_letter": entry, "message": f"dead letter {path['entry_id']} put back into {entry['queue']}"}


def _drop(web: Web, path: Mapping[str, str], params: Mapping[str, Any]) -> dict[str, Any]:
    entry = web.client.drop_dead(path["entry_id"])
    return {"dead_letter": entry, "message": f"dead letter {path['entry_id']} dropped"}


_NAME = Param("name", "path", "the job's name")
_ENTRY = Param("entry_id", "path", "the dead letter's id (MS-SEQ; with several shards SHARD:MS-SEQ, its ref)")

ENDPOINTS = (
    Endpoint("GET", "/overview", "Replicas, workers, queues, runs by status, jobs in trouble", READ, _overview,
             "/", "overview.html"),
    Endpoint("GET", "/jobs", "Jobs: search, filter, page", READ, _jobs, "/jobs", "jobs.html", (
        Param("q", "query", "text in the name or description"), Param("tag", "query", "only jobs with this tag"),
        Param("queue", "query", "only jobs of this queue"),
        Param("status", "query", "failing | paused | disabled | ok"),
        Param("offset", "query", "first job shown (0-based)", "integer"),
        Param("limit", "query", "jobs per page (1-500, default 50)", "integer"),
    )),
    Endpoint("GET", "/jobs/{name}", "One job: next fires, timeline, history with attempts, audit, spec", READ,
             _job, "/jobs/{name}", "job.html", (_NAME, Param("window", "query", "timeline window: day | week"))),
    Endpoint("GET", "/runs/{identifier:path}", "A run (run id) or every attempt of a fire (fire id)", READ, _run,
             "/runs/{identifier:path}", "run.html", (Param("identifier", "path", "a run id or a fire id"),)),
    Endpoint("GET", "/workers", "Workers and their heartbeats", READ, _workers, "/workers", "workers.html"),
    Endpoint("GET", "/dead", "Dead letters, newest first", READ, _dead, "/dead", "dead.html", (
        Param("all", "query", "1: also those of fires that succeeded later"),
        Param("limit", "query", "at most this many (default 100)", "integer"),
    )),
    Endpoint("GET", "/audit", "The audit log, newest first", READ, _audit, "/audit", "audit.html", (
        Param("job", "query", "only entries about this job"),
        Param("limit", "query", "entries read (default 200)", "integer"),
    )),
    Endpoint("POST", "/jobs/{name}/trigger", "Emit a fire now (args/kwargs where the job allows overrides)", ADMIN,
             _trigger, params=(_NAME, Param("args", "body", "JSON list replacing the job's args"),
                               Param("kwargs", "body", "JSON object merged over the job's kwargs"))),
    Endpoint("POST", "/jobs/{name}/pause", "Pause a job, with a reason", ADMIN, _pause,
             params=(_NAME, Param("reason", "body", "why (shown and audited)"))),
    Endpoint("POST", "/jobs/{name}/resume", "Resume a paused job, with a reason", ADMIN, _resume,
             params=(_NAME, Param("reason", "body", "why (audited)"))),
    Endpoint("POST", "/jobs/{name}/backfill", "Backfill a range: a dry-run preview unless dry_run=0", ADMIN,
             _backfill, template="backfill.html", params=(
                 _NAME, Param("start", "body", "first instant or date"), Param("end", "body", "last instant or date"),
                 Param("rerun", "body", "1: also instants already done"), Param("dry_run", "body", "0: emit"))),
    Endpoint("POST", "/dead/{entry_id}/retry", "Put a dead letter back into its queue", ADMIN, _retry,
             params=(_ENTRY,)),
    Endpoint("POST", "/dead/{entry_id}/drop", "Delete a dead letter (the audit keeps it)", ADMIN, _drop,
             params=(_ENTRY,)),
)  # fmt: skip
"""Every endpoint, in the order the OpenAPI document lists them."""

NOT_FOUND = (UnknownJob,)
