"""What the leader writes for a job's plan, and what it counts once Redis has accepted the writes.

A plan's steps become :class:`~beatd.store.LeaderWrite` items (a signed message for each emitted fire, a
``missed`` run record for each fire not emitted); each travels with what the metrics need to know about it.
Nothing is counted when it is planned: :func:`account` counts only the writes ``emit.lua`` reports applied,
so a duplicate, a refused write or a write after the lease was lost never shows in the metrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from beatd.alert_rules import wants_event
from beatd.celery_messages import build_task_message
from beatd.config import JobSpec
from beatd.config.model import CelerySettings
from beatd.expiry import start_deadline
from beatd.keys import Keys
from beatd.messages import Message, format_utc, scheduled_fire_id, to_ms
from beatd.metrics import Metrics
from beatd.planner import Plan
from beatd.records import RunRecord, run_id
from beatd.signing import Signer
from beatd.store import ApplyResult, LeaderWrite
from beatd.triggers import jitter_offset

__all__ = ["CelerySend", "Counters", "Pending", "account", "celery_write", "plan_writes"]

log = logging.getLogger("beatd.beat")


@dataclass
class Counters:
    """What this replica has had accepted by Redis since it started."""

    emitted: int = 0
    missed: int = 0
    duplicates: int = 0
    by_trigger: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Pending:
    """A write on its way, with what is counted if Redis applies it."""

    write: LeaderWrite
    trigger: str = ""
    """emit: ``schedule`` or ``catchup``."""
    lag: float = 0.0
    """emit: seconds between the fire's due instant (scheduled + jitter) and its emission."""
    fires: int = 0
    """miss: fires the record covers (a range record covers many)."""


def plan_writes(
    spec: JobSpec, plan: Plan, now: datetime, keys: Keys, signer: Signer | None, celery: CelerySettings | None = None,
    *, outbox: bool = False,
) -> list[Pending]:  # fmt: skip
    """The writes for ``plan`` of ``spec`` at ``now`` (the instant of emission), in the plan's order; a celery
    job's fires become Celery task messages for the broker of ``celery`` (through the outbox with ``outbox``)."""
    pending: list[Pending] = []
    emitted_at = format_utc(now)
    missed: list[str] = []
    for step in plan.steps:
        scheduled = format_utc(step.scheduled_at)
        identifier = scheduled_fire_id(spec.name, scheduled)
        if step.kind == "emit":
            message = Message(
                fire_id=identifier,
                job=spec.name,
                scheduled_at=scheduled,
                emitted_at=emitted_at,
                trigger=step.trigger,
                config_digest=spec.digest,
                args=list(spec.args),
                kwargs=dict(spec.kwargs),
            ).to_json()
            due = step.scheduled_at
            if spec.jitter:
                due += jitter_offset(spec.name, step.scheduled_at, spec.jitter)
            if spec.celery is not None and celery is not None:
                sent = celery_write(
                    spec, identifier, step.scheduled_at, step.trigger, message, now, keys, celery, outbox=outbox
                )
                write = sent.write
            else:
                signature = signer.sign(message) if signer else ""
                write = LeaderWrite.emit(
                    spec.name, to_ms(step.scheduled_at), keys.queue(spec.queue), message, signature
                )
            pending.append(Pending(write, trigger=step.trigger, lag=max(0.0, (now - due).total_seconds())))
            continue
        record = RunRecord(
            run_id=run_id(identifier, 0),
            fire_id=identifier,
            job=spec.name,
            scheduled_at=scheduled,
            trigger="schedule",
            attempt=0,
            status="missed",
            finished_at=emitted_at,
            config_digest=spec.digest,
            reason=step.reason,
        )
        if step.first is not None:
            record.extra = {"first": format_utc(step.first), "count": step.count, "count_exact": step.count_exact}
        missed.append(f"{identifier} ({step.reason}{', ' + str(step.count) + ' fires' if step.first else ''})")
        write = LeaderWrite.miss(
            spec.name, to_ms(step.scheduled_at), keys.runs(spec.name), keys.runs_by_time(spec.name), record.run_id,
            record.to_json(), to_ms(now), spec.history.keep,
            keys.alert_events if wants_event(spec.alert_rules, "missed") else "",
        )  # fmt: skip
        pending.append(Pending(write, fires=step.count))
    if missed:  # one line per job and tick, however long the gap
        more = f" and {len(missed) - 1} more" if len(missed) > 1 else ""
        log.info("missed %s: %s%s", spec.name, missed[-1], more)
    return pending


@dataclass(frozen=True)
class CelerySend:
    """The push of one celery fire, with the task id and Celery queue it goes to (for the caller's report)."""

    write: LeaderWrite
    task_id: str
    queue: str


def celery_write(
    spec: JobSpec, identifier: str, scheduled_at: datetime, trigger: str, message: str, now: datetime, keys: Keys,
    celery: CelerySettings, *, outbox: bool = False,
) -> CelerySend:  # fmt: skip
    """The push of a celery job's fire emitted at ``now``, with its ``sent`` record (the task id in ``extra``):
    fenced in emit.lua for the beat's fires, or through send.lua for an operator's; with ``outbox`` (a broker on
    another server) into the outbox, for the relay (:mod:`beatd.celery_relay`)."""
    scheduled = format_utc(scheduled_at)
    deadline = start_deadline(spec.expires, Message.from_json(message)) if spec.expires is not None else None
    task = build_task_message(
        spec, namespace=keys.namespace, fire_id=identifier, scheduled_at=scheduled, trigger=trigger, emitted_at=now,
        deadline=deadline,
    )  # fmt: skip
    emitted_at = format_utc(now)
    record = RunRecord(
        run_id=run_id(identifier, 0),
        fire_id=identifier,
        job=spec.name,
        scheduled_at=scheduled,
        trigger=trigger,
        attempt=0,
        status="sent",
        emitted_at=emitted_at,
        finished_at=emitted_at,
        config_digest=spec.digest,
        extra={"task_id": task.task_id, "task": spec.celery, "celery_queue": task.queue},
    )
    write = LeaderWrite.celery(
        spec.name, to_ms(scheduled_at), celery_queue_key=task.queue_key, celery_message=task.envelope,
        celery_db=celery.broker_db, message=message, runs_key=keys.runs(spec.name),
        runs_index_key=keys.runs_by_time(spec.name), run_id=record.run_id, record=record.to_json(),
        written_ms=to_ms(now), keep=spec.history.keep, outbox_key=keys.celery_outbox if outbox else "",
        outbox_limit=celery.outbox_limit if outbox else 0,
    )  # fmt: skip
    return CelerySend(write, task.task_id, task.queue)


def account(pending: list[Pending], result: ApplyResult, metrics: Metrics, counters: Counters) -> None:
    """Count the writes of ``pending`` that ``result`` reports applied (and the duplicates)."""
    for item, status in zip(pending, result.statuses, strict=True):
        if status == "duplicate":
            counters.duplicates += 1
        if status != "applied":
            continue
        job = metrics.job(item.write.job)
        if item.write.kind in ("emit", "celery"):
            counters.emitted += 1
            counters.by_trigger[item.trigger] = counters.by_trigger.get(item.trigger, 0) + 1
            metrics.fires_emitted.labels(job, item.trigger).inc()
            metrics.emission_lag.observe(item.lag)
        elif item.write.kind == "miss":
            counters.missed += 1
            metrics.fires_missed.labels(job).inc(item.fires)
