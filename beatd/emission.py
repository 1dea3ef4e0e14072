"""What the leader writes for a job's plan, and what it counts once Redis has accepted the writes.

A plan's steps become :class:`~beatd.store.LeaderWrite` items (a signed message for each emitted fire, a
``missed`` run record for each fire not emitted); each travels with what the metrics need to know about it.
Nothing is counted when it is planned: :func:`account` counts only the writes ``emit.lua`` reports applied,
so a duplicate, a refused write or a write after the lease was lost never shows in the metrics.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from prometheus_client import Histogram

from beatd.alert_rules import wants_event
from beatd.celery_messages import build_task_message
from beatd.config.compact import JobView
from beatd.config.model import CelerySettings
from beatd.expiry import start_deadline
from beatd.keys import Keys
from beatd.messages import Message, MessageTemplate, format_utc, scheduled_fire_id, to_ms
from beatd.metrics import Metrics
from beatd.planner import Plan
from beatd.records import RunRecord, run_id
from beatd.signing import Signer
from beatd.store import ApplyResult, LeaderWrite
from beatd.store.beat import _EMIT_UNUSED, _new_write, last_text
from beatd.triggers import jitter_offset

__all__ = [
    "CelerySend",
    "Counters",
    "InstantTexts",
    "Pending",
    "TickWriter",
    "account",
    "celery_write",
    "message_template",
    "observe_many",
    "plan_writes",
]

log = logging.getLogger("beatd.beat")


@dataclass
class Counters:
    """What this replica has had accepted by Redis since it started."""

    emitted: int = 0
    missed: int = 0
    duplicates: int = 0
    by_trigger: dict[str, int] = field(default_factory=dict)


class Pending(NamedTuple):
    """A write on its way, with what is counted if Redis applies it (a named tuple: a burst makes one per fire)."""

    write: LeaderWrite
    trigger: str = ""
    """emit: ``schedule`` or ``catchup``."""
    lag: float = 0.0
    """emit: seconds between the fire's due instant (scheduled + jitter) and its emission."""
    fires: int = 0
    """miss: fires the record covers (a range record covers many)."""


class InstantTexts:
    """Instants as :func:`format_utc` text and epoch ms, remembered for the few most recent ones: the fires of
    a burst share their instant."""

    LIMIT = 256

    def __init__(self) -> None:
        self._known: dict[datetime, tuple[str, int]] = {}

    def __call__(self, instant: datetime) -> tuple[str, int]:
        """``(format_utc(instant), to_ms(instant))``."""
        found = self._known.get(instant)
        if found is None:
            if len(self._known) >= self.LIMIT:
                self._known.clear()
            found = self._known[instant] = (format_utc(instant), to_ms(instant))
        return found


def message_template(spec: JobView) -> MessageTemplate:
    """The template of ``spec``'s scheduled fire messages."""
    return MessageTemplate(spec.name, spec.digest, list(spec.args), dict(spec.kwargs))


def plan_writes(
    spec: JobView, plan: Plan, now: datetime, keys: Keys, signer: Signer | None, celery: CelerySettings | None = None,
    *, outbox: bool = False, template: MessageTemplate | None = None, instants: InstantTexts | None = None,
) -> list[Pending]:  # fmt: skip
    """The writes for ``plan`` of ``spec`` at ``now`` (the instant of emission), in the plan's order; a celery
    job's fires become Celery task messages for the broker of ``celery`` (through the outbox with ``outbox``).
    ``template`` (:func:`message_template` of ``spec``) and ``instants`` only save time."""
    pending: list[Pending] = []
    texts = instants or InstantTexts()
    emitted_at = texts(now)[0]
    missed: list[str] = []
    for step in plan.steps:
        scheduled, scheduled_ms = texts(step.scheduled_at)
        if step.kind == "emit":
            due = step.scheduled_at
            if spec.jitter:
                due += jitter_offset(spec.name, step.scheduled_at, spec.jitter)
            lag = (now - due).total_seconds()
            if spec.celery is None or celery is None:  # the common case, and a burst's: build it from the template
                message = (template or message_template(spec)).fill(scheduled, emitted_at, step.trigger)
                signature = signer.sign(message) if signer else ""
                last = last_text(scheduled_ms, step.trigger, spec.digest)
                write = LeaderWrite.emit(spec.name, scheduled_ms, keys.queue(spec.queue), message, signature, last)
                pending.append(Pending(write, step.trigger, lag if lag > 0.0 else 0.0))
                continue
            identifier = scheduled_fire_id(spec.name, scheduled)
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
            sent = celery_write(
                spec, identifier, step.scheduled_at, step.trigger, message, now, keys, celery, outbox=outbox
            )
            pending.append(Pending(sent.write, step.trigger, max(0.0, lag)))
            continue
        identifier = scheduled_fire_id(spec.name, scheduled)
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


class TickWriter:
    """:func:`plan_writes` for the plans of one tick, at ``now``: what is the same for every job with the same
    plan object (the beat shares one among jobs of the same schedule) is worked out once, so a fire of a burst
    costs a template fill and two tuples."""

    def __init__(
        self, now: datetime, keys: Keys, signer: Signer | None, celery: CelerySettings | None, *, outbox: bool,
        instants: InstantTexts,
    ) -> None:  # fmt: skip
        self.now, self.keys, self.signer, self.celery, self.outbox, self.instants = (
            now,
            keys,
            signer,
            celery,
            outbox,
            instants,
        )
        self._emitted_at = instants(now)[0]
        self._rendered: dict[int, tuple[Plan, tuple[tuple[str, int, str, float], ...] | None]] = {}
        self._queues: dict[str, str] = {}

    def add(self, pending: list[Pending], spec: JobView, plan: Plan, template: MessageTemplate | None) -> None:
        """Append the writes of ``plan`` of ``spec`` to ``pending`` (``template``: its message template, or None)."""
        rendered = None
        if template is not None and not spec.jitter and (spec.celery is None or self.celery is None):
            found = self._rendered.get(id(plan))
            if found is None or found[0] is not plan:
                found = self._rendered[id(plan)] = (plan, self._render(plan))
            rendered = found[1]
        if rendered is None or template is None:
            writes = plan_writes(
                spec, plan, self.now, self.keys, self.signer, self.celery, outbox=self.outbox, template=template,
                instants=self.instants,
            )  # fmt: skip
            pending.extend(writes)
            return
        queue_key = self._queues.get(spec.queue)
        if queue_key is None:
            queue_key = self._queues[spec.queue] = self.keys.queue(spec.queue)
        name, digest, signer, emitted_at = spec.name, spec.digest, self.signer, self._emitted_at
        for scheduled, scheduled_ms, trigger, lag in rendered:
            message = template.fill(scheduled, emitted_at, trigger)
            # LeaderWrite.emit and last_text, inline: this runs for every fire of a burst
            signature = signer.sign(message) if signer else ""
            fields = ("emit", name, scheduled_ms, queue_key, message, signature, f"{scheduled_ms} {trigger} {digest}")
            write = _new_write(LeaderWrite, (*fields, *_EMIT_UNUSED))
            pending.append(_new_pending(Pending, (write, trigger, lag, 0)))

    def _render(self, plan: Plan) -> tuple[tuple[str, int, str, float], ...] | None:
        """Per step of a plan of emits only: its instant as text and ms, trigger and lag (None: another kind)."""
        rendered = []
        for step in plan.steps:
            if step.kind != "emit":
                return None
            scheduled, scheduled_ms = self.instants(step.scheduled_at)
            lag = (self.now - step.scheduled_at).total_seconds()
            rendered.append((scheduled, scheduled_ms, step.trigger, lag if lag > 0.0 else 0.0))
        return tuple(rendered)


_new_pending = tuple.__new__


@dataclass(frozen=True)
class CelerySend:
    """The push of one celery fire, with the task id and Celery queue it goes to (for the caller's report)."""

    write: LeaderWrite
    task_id: str
    queue: str


def celery_write(
    spec: JobView, identifier: str, scheduled_at: datetime, trigger: str, message: str, now: datetime, keys: Keys,
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
    scheduled_ms = to_ms(scheduled_at)
    write = LeaderWrite.celery(
        spec.name, scheduled_ms, celery_queue_key=task.queue_key, celery_message=task.envelope,
        celery_db=celery.broker_db, last=last_text(scheduled_ms, trigger, spec.digest), runs_key=keys.runs(spec.name),
        runs_index_key=keys.runs_by_time(spec.name), run_id=record.run_id, record=record.to_json(),
        written_ms=to_ms(now), keep=spec.history.keep, outbox_key=keys.celery_outbox if outbox else "",
        outbox_limit=celery.outbox_limit if outbox else 0,
    )  # fmt: skip
    return CelerySend(write, task.task_id, task.queue)


def account(pending: list[Pending], result: ApplyResult, metrics: Metrics, counters: Counters) -> None:
    """Count the writes of ``pending`` that ``result`` reports applied (and the duplicates); the emitted ones
    are added up per metric series and per lag first (a burst emits thousands at once, its fires of one plan
    with one lag), then counted and observed once each."""
    emitted: dict[tuple[str, str], int] = {}
    lags: dict[float, int] = {}
    label = metrics.job
    everyone = None if metrics.per_job else label("")  # past PER_JOB_LIMIT jobs one label for all
    for item, status in zip(pending, result.statuses, strict=True):
        if status != "applied":
            if status == "duplicate":
                counters.duplicates += 1
            continue
        write = item.write
        kind = write.kind
        if kind == "emit" or kind == "celery":
            series = (everyone or label(write.job), item.trigger)
            emitted[series] = emitted.get(series, 0) + 1
            lag = item.lag
            lags[lag] = lags.get(lag, 0) + 1
        elif kind == "miss":
            counters.missed += 1
            metrics.fires_missed.labels(label(write.job)).inc(item.fires)
    for (job, trigger), count in emitted.items():
        counters.emitted += count
        counters.by_trigger[trigger] = counters.by_trigger.get(trigger, 0) + count
        metrics.fires_emitted.labels(job, trigger).inc(count)
    for lag, count in lags.items():
        observe_many(metrics.emission_lag, lag, count)


def observe_many(histogram: Histogram, value: float, count: int) -> None:
    """``histogram.observe(value)`` ``count`` times, in one step (one bucket and the sum moved once) where the
    histogram is prometheus_client's as this beatd knows it (its ``_upper_bounds``, ``_buckets`` and ``_sum``),
    else by observing ``count`` times."""
    bounds, buckets, total = (getattr(histogram, name, None) for name in ("_upper_bounds", "_buckets", "_sum"))
    if not (isinstance(bounds, list) and isinstance(buckets, list) and len(bounds) == len(buckets) and total):
        for _ in range(count):
            histogram.observe(value)
        return
    total.inc(value * count)
    buckets[bisect.bisect_left(bounds, value)].inc(count)  # the first bound at or above value; the last is +Inf
