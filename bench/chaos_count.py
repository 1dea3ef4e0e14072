"""The chaos soak's counts (pure): what Redis applied, against what each job's trigger says was due.

Definitions (per job):

* **instants**: the window's instants, plus those after it that were emitted or recorded missed anyway.
* **window**: the job's scheduled instants after its first progress value in the AOF (the ``base`` step a
  new job starts from: nothing at or before it may be emitted) up to the job's last progress value, and at
  least up to ``slack`` before ``end`` (when the harness stopped the beats): an instant the beat had not
  reached when it was stopped is not lost, but one more than ``slack`` (the on-time tolerance) before the
  stop is. Instants come from the job's trigger (``JobSpec.trigger().next_after``).
* **emitted**: an ``XADD`` to a queue stream in a transaction that also advances ``{ns}:progress`` (the
  fenced ``emit.lua``; the worker's retry ``XADD``, in a transaction with ``ZREM {ns}:retry:*``, is a re-run,
  not an emission). ``emitted once`` / ``emitted twice`` count fire ids with one / more such XADDs.
* **recorded missed**: a ``missed`` run record written by the beat (a range record covers every instant
  from its ``first`` to its scheduled instant).
* **silently lost**: an instant of the window neither emitted nor recorded missed.
* **off schedule**: an emitted or missed instant that is not one of the trigger's instants after the base.
* **reruns**: attempts after the first, by the previous attempt's status: ``lost`` (its worker died or
  stopped) or ``retry`` (it failed or timed out); ``other`` for anything else.
* **skipped**: fires recorded ``skipped`` by a worker (``overlap: skip``; informational).
* **stuck**: run records still ``running``/``queued`` after the settle.
* **unrun**: emitted fires with no run record at all after the settle (nothing ran them, nothing says why).
* **pending**: entries still in the consumer group's pending list after the settle.
* **orphans**: job processes (pids of the ledger) that were descendants of a worker when it was killed and
  still ran after it (counted by the harness, attributed to the job of their last ledger line).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Applied", "Emission", "JobCount", "count_job", "read_applied"]

Command = list[str]


@dataclass(frozen=True, slots=True)
class Emission:
    """One fenced XADD of a fire: its queue entry id (Redis time of the XADD) and message fields."""

    entry_id: str
    fire_id: str
    job: str
    scheduled_ms: int
    trigger: str


@dataclass
class Applied:
    """What the AOF says Redis applied, per namespace."""

    emissions: dict[str, list[Emission]] = field(default_factory=dict)  # job -> emissions, oldest first
    requeues: Counter[str] = field(default_factory=Counter)  # fire id -> retry XADDs
    missed: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # job -> missed records
    base_ms: dict[str, int] = field(default_factory=dict)  # job -> first progress value
    progress_ms: dict[str, int] = field(default_factory=dict)  # job -> last progress value
    entry_fire: dict[str, str] = field(default_factory=dict)  # queue entry id -> fire id (any XADD)
    transactions: int = 0


def _parse_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def read_applied(transactions: Iterable[list[Command]], namespace: str) -> Applied:
    """Classify every write of ``namespace`` the AOF holds (see the module docstring)."""
    applied = Applied()
    queue_prefix, runs_prefix = f"{namespace}:queue:", f"{namespace}:runs:"
    progress, retry_prefix = f"{namespace}:progress", f"{namespace}:retry:"
    for block in transactions:
        applied.transactions += 1
        advances = any(c[0].upper() == "HSET" and c[1] == progress for c in block)
        retried = any(c[0].upper() == "ZREM" and c[1].startswith(retry_prefix) for c in block)
        for command in block:
            name = command[0].upper()
            if name == "HSET" and command[1] == progress:
                for job, value in zip(command[2::2], command[3::2], strict=False):
                    applied.base_ms.setdefault(job, int(value))
                    applied.progress_ms[job] = int(value)
            elif name == "XADD" and command[1].startswith(queue_prefix):
                fields = dict(zip(command[3::2], command[4::2], strict=False))
                body = json.loads(fields["message"])
                applied.entry_fire[command[2]] = body["fire_id"]
                if advances:
                    emission = Emission(
                        command[2], body["fire_id"], body["job"], _parse_ms(body["scheduled_at"]), body["trigger"]
                    )
                    applied.emissions.setdefault(body["job"], []).append(emission)
                elif retried:
                    applied.requeues[body["fire_id"]] += 1
            elif name == "HSET" and command[1].startswith(runs_prefix) and advances:
                for value in command[3::2]:
                    record = json.loads(value)
                    if record.get("status") == "missed":
                        applied.missed.setdefault(record["job"], []).append(record)
    return applied


@dataclass
class JobCount:
    """One row of the soak's table."""

    job: str
    instants: int = 0
    emitted_once: int = 0
    emitted_twice: int = 0
    missed: int = 0
    lost: int = 0
    off_schedule: int = 0
    reruns_lost: int = 0
    reruns_retry: int = 0
    reruns_other: int = 0
    skipped: int = 0
    stuck: int = 0
    unrun: int = 0
    pending: int = 0
    orphans: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    def example(self, kind: str, what: str, keep: int = 5) -> None:
        """Keep the first few fire ids of a kind of problem, for the report."""
        found = self.examples.setdefault(kind, [])
        if len(found) < keep:
            found.append(what)


def _instants(next_after: Callable[[datetime], datetime | None], after: datetime, until: datetime) -> list[datetime]:
    found, instant = [], next_after(after)
    while instant is not None and instant <= until:
        found.append(instant)
        instant = next_after(instant)
    return found


def count_job(
    job: str,
    next_after: Callable[[datetime], datetime | None],
    applied: Applied,
    end: datetime,
    records: Mapping[str, Mapping[str, Any]],
    pending_fires: Iterable[str] = (),
    orphans: int = 0,
    slack: float = 5.0,
) -> JobCount:
    """Count one job. ``records``: run id -> RunRecord JSON (as read after the settle); ``pending_fires``:
    fire ids of entries still pending; ``end``: when the beats were stopped (aware); ``slack``: seconds."""
    row = JobCount(job, orphans=orphans)
    if job not in applied.base_ms:
        return row
    base = datetime.fromtimestamp(applied.base_ms[job] / 1000, end.tzinfo)
    emitted = Counter(emission.scheduled_ms for emission in applied.emissions.get(job, ()))
    by_ms = {emission.scheduled_ms: emission.fire_id for emission in applied.emissions.get(job, ())}
    end_ms = int(end.timestamp() * 1000)
    end_ms = min(end_ms, max(applied.progress_ms[job], end_ms - int(slack * 1000)))
    written = [_parse_ms(record["scheduled_at"]) for record in applied.missed.get(job, ())]
    horizon = datetime.fromtimestamp(max([end_ms, *emitted, *written]) / 1000, end.tzinfo)
    scheduled = {int(instant.timestamp() * 1000) for instant in _instants(next_after, base, horizon)}
    window = {ms for ms in scheduled if ms <= end_ms}
    missed: set[int] = set()
    for record in applied.missed.get(job, ()):
        last = _parse_ms(record["scheduled_at"])
        first = _parse_ms(record.get("first") or record.get("extra", {}).get("first") or record["scheduled_at"])
        missed |= {ms for ms in scheduled if first <= ms <= last} | {last}
    for ms, count in emitted.items():
        if count == 1:
            row.emitted_once += 1
        else:
            row.emitted_twice += 1
            row.example("emitted_twice", by_ms[ms])
    seen = set(emitted) | missed
    row.instants = len(window | (seen & scheduled))
    row.missed = len(missed - set(emitted))
    for ms in sorted(window - seen):
        row.lost += 1
        row.example("lost", datetime.fromtimestamp(ms / 1000, end.tzinfo).isoformat())
    for ms in sorted(seen - scheduled):
        row.off_schedule += 1
        row.example("off_schedule", datetime.fromtimestamp(ms / 1000, end.tzinfo).isoformat())
    attempts: dict[str, dict[int, str]] = {}
    for record in records.values():
        if record.get("status") == "skipped":
            row.skipped += 1
        if record.get("status") in ("running", "queued"):
            row.stuck += 1
            row.example("stuck", record["run_id"])
        suffix = str(record["run_id"]).rpartition("#")[2]
        if suffix.isdigit() and int(suffix) >= 1:  # not the beat's ``#0`` (missed) nor ``#dead``
            attempts.setdefault(record["fire_id"], {})[int(suffix)] = record["status"]
    for fire in by_ms.values():
        if fire not in attempts and not any(run.startswith(fire + "#") for run in records):
            row.unrun += 1
            row.example("unrun", fire)
    for statuses in attempts.values():
        for attempt in statuses:
            if attempt < 2:
                continue
            previous = statuses.get(attempt - 1)
            if previous == "lost":
                row.reruns_lost += 1
            elif previous in ("failed", "timeout"):
                row.reruns_retry += 1
            else:
                row.reruns_other += 1
    row.pending = sum(1 for fire in pending_fires if fire.split("@", 1)[0] == job)
    return row
