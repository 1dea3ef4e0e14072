"""Building what a worker writes about a fire: its run records and the end handed to the finisher."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from datetime import datetime

from beatd.alert_rules import wants_event
from beatd.config import JobSpec
from beatd.messages import Message, parse_utc, to_ms
from beatd.records import RunRecord, RunStatus, dead_run_id, run_id
from beatd.store import Delivery, Finish
from beatd.worker.outcome import after_attempt

__all__ = ["conclude", "end_of", "record_of", "record_time"]


def record_of(spec: JobSpec, message: Message, attempt: int, status: RunStatus) -> RunRecord:
    """A fresh record of attempt ``attempt`` of ``message``'s fire."""
    return RunRecord(
        run_id=run_id(message.fire_id, attempt),
        fire_id=message.fire_id,
        job=spec.name,
        scheduled_at=message.scheduled_at,
        trigger=message.trigger,
        attempt=attempt,
        status=status,
        emitted_at=message.emitted_at,
        config_digest=message.config_digest,
    )


def record_time(record: RunRecord, now: datetime) -> int:
    """A record's place in history (ms): when its run started, else when it was written."""
    return to_ms(parse_utc(record.started_at)) if record.started_at else to_ms(now)


def end_of(
    spec: JobSpec,
    delivery: Delivery,
    message: Message,
    record: RunRecord,
    now: datetime,
    *,
    fire_done: bool = True,
    hold: bool = False,
) -> Finish:
    """The end that writes ``record`` (none with ``hold``) and acknowledges ``delivery``."""
    return Finish(
        job=spec.name, queue=delivery.queue, run_id=record.run_id, entry_id=delivery.entry_id,
        record="" if hold else record.to_json(), score_ms=record_time(record, now),
        keep=spec.history.keep, oldest_ms=to_ms(now - spec.history.max_age), message=delivery.message,
        signature=delivery.signature, fire_id=message.fire_id, fire_done=fire_done, status=record.status,
        alerts=not hold and wants_event(spec.alert_rules, record.status),
    )  # fmt: skip


def conclude(
    spec: JobSpec,
    delivery: Delivery,
    message: Message,
    record: RunRecord,
    now: datetime,
    draw: Callable[[float, float], float] = random.uniform,
) -> Finish:
    """The end of an attempt by the outcome policy: done, a retry (full-jitter backoff) or dead."""
    after = after_attempt(
        record.status,
        record.attempt,
        spec.retries,
        spec.retry_delay.total_seconds(),
        spec.retry_delay_max.total_seconds(),
        draw,
    )
    if after.then == "done":
        return end_of(spec, delivery, message, record, now)
    record.reason = f"{record.reason}; {after.reason}" if record.reason else after.reason
    if after.then == "retry":
        end = end_of(spec, delivery, message, record, now, fire_done=False)
        return dataclasses.replace(end, then="retry", retry_at_ms=to_ms(now) + int(after.delay_s * 1000))
    # The fire-level record is written with the last attempt's, under a run id of its own
    # ({fire_id}#dead-{attempt}), so if the fire dies again after `beatd dead retry` its record does not
    # overwrite the first one. The attempt count is forgotten (a dead fire is done; counts of dead fires
    # would pile up forever): the dead letter carries the last run id, from which `beatd dead retry` restores
    # it, so the fire runs as the next attempt.
    dead = record_of(spec, message, record.attempt, "dead")
    dead.run_id = dead_run_id(message.fire_id, record.attempt)
    dead.finished_at, dead.reason = record.finished_at, record.reason
    end = end_of(spec, delivery, message, record, now)
    return dataclasses.replace(
        end, then="dead", reason=after.reason, dead_record=dead.to_json(), dead_run_id=dead.run_id,
        alerts=end.alerts or wants_event(spec.alert_rules, "dead"),
    )  # fmt: skip
