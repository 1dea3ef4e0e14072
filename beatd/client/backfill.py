"""Backfill: emit the scheduled instants of a past range, once each (``Client.backfill``, ``beatd backfill``).

Both ends of the range are inclusive: an instant equal to the first or the last is emitted. A plain date as
the last means the whole day in the job's time zone. Instants of the range that already succeeded, or are
running or waiting in the queue, are skipped unless ``rerun``, so the same backfill can be run twice; a per-job
lock keeps two backfills from both emitting an instant.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from beatd import defaults
from beatd.audit import audit_record
from beatd.client.celery_fires import send_celery_fires
from beatd.client.emitting import fire_message, signed
from beatd.client.handles import FireHandle
from beatd.client.reads import record_time
from beatd.config import JobSpec
from beatd.errors import ScheduleError, UsageProblem
from beatd.messages import format_utc, parse_utc, to_ms
from beatd.store import RunStore, Store
from beatd.triggers import parse_instant

if TYPE_CHECKING:
    from beatd.client.sync import Client

__all__ = ["BACKFILL_LIMIT", "Backfill", "bound", "emit_backfill", "plan"]

BACKFILL_LIMIT = 10_000
"""Most fires one backfill emits; a larger range is refused (split it)."""

TAKEN = frozenset({"succeeded", "running", "sent"})
"""Statuses of an instant's records that make a backfill skip it (without ``rerun``); ``sent``: a celery
job's fire handed to Celery."""

_PLAIN_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

Progress = Callable[[int], AbstractContextManager[Callable[[int], None]]]
"""Given how many fires will be enqueued, a context whose value is told how many are enqueued so far."""


@dataclass
class Backfill:
    """What a backfill did: ``report`` (what ``beatd backfill --json`` prints: job, queue, range, dry_run,
    instants, skipped, warnings, fire_ids; ``sent`` for a celery job) and a handle per emitted fire."""

    report: dict[str, Any]
    handles: list[FireHandle] = field(default_factory=list)


def emit_backfill(
    client: Client, spec: JobSpec, first: datetime, last: datetime, *, rerun: bool = False, dry_run: bool = False,
    wait: bool = False, progress: Progress | None = None,
) -> Backfill:  # fmt: skip
    """Emit (or with ``dry_run`` only plan) every scheduled instant of ``spec`` in ``[first, last]`` not done yet
    (every one with ``rerun``), under the job's backfill lock, audited; ``wait``: refuse more fires than the
    job's history keeps (a wait could not follow them). UsageProblem for a refused backfill."""
    if last < first:
        raise UsageProblem("--to is before --from")
    instants = plan(spec, first, last)
    runs, store, job = client.runs, client.shards.of(spec.name), spec.name
    kept = runs.history_size(job)
    records = [] if rerun else [json.loads(text) for text in runs.job_records(job)]
    now = store.redis_now()  # emitted_at: the deadline (expires) of each fire counts from Redis's clock
    token = secrets.token_hex(8)
    if not dry_run:
        _lock(store, spec, token, now)
    try:
        taken = set() if rerun else _taken(runs, spec, records)
        chosen = [instant for instant in instants if format_utc(instant) not in taken]
        if not rerun:
            _check_skip_is_complete(spec, records, instants, len(chosen))
        if wait and len(chosen) > spec.history.keep:
            raise UsageProblem(
                f"--wait follows at most jobs.{job}.history.keep ({spec.history.keep}) fires, as their records are "
                f"pruned beyond it, and this backfill emits {len(chosen)}: split the range, raise history.keep, or "
                f"leave out --wait and read `beatd history {job}`"
            )
        report: dict[str, Any] = {
            "job": job, "queue": spec.queue, "range": [format_utc(first), format_utc(last)], "dry_run": dry_run,
            "instants": [format_utc(instant) for instant in chosen],
            "skipped": [format_utc(instant) for instant in instants if format_utc(instant) in taken],
            "warnings": _retention_warnings(spec, kept, len(chosen)),
        }  # fmt: skip
        if dry_run:
            return Backfill(report)
        messages = [fire_message(spec, instant, now, "backfill") for instant in chosen]
        details: dict[str, Any] = {}
        if client.actor is not None:
            details["actor"] = client.actor
        record = audit_record(
            "backfill", now, job=job, count=len(messages), skipped=len(report["skipped"]),
            first=messages[0].fire_id if messages else None, last=messages[-1].fire_id if messages else None,
            range=report["range"], rerun=rerun, **details,
        )  # fmt: skip
        if spec.celery is not None:
            report["sent"] = send_celery_fires(client.config, store, spec, messages, now, record, wait=wait)
            report["fire_ids"] = [message.fire_id for message in messages]
            return Backfill(report)
        with (progress or _no_progress)(len(messages)) as update:
            store.enqueue(spec.queue, signed(client.config, messages), record, update)
    finally:
        if not dry_run:
            store.unlock_backfill(job, token)
    report["fire_ids"] = [message.fire_id for message in messages]
    since = to_ms(now - defaults.WAIT_CLOCK_MARGIN)
    handles = [FireHandle(client, m.fire_id, job, spec.queue, m.scheduled_at, since) for m in messages]
    return Backfill(report, handles)


def _no_progress(count: int) -> AbstractContextManager[Callable[[int], None]]:
    return nullcontext(lambda done: None)


def plan(spec: JobSpec, first: datetime, last: datetime) -> list[datetime]:
    """Every scheduled instant of ``spec`` with ``first <= instant <= last``, in order (at most BACKFILL_LIMIT)."""
    trigger = spec.trigger()
    instants: list[datetime] = []
    try:
        upcoming = trigger.next_after(first - timedelta(microseconds=1))
        while upcoming is not None and upcoming <= last:
            if len(instants) >= BACKFILL_LIMIT:
                raise UsageProblem(f"more than {BACKFILL_LIMIT} fires in that range; split it")
            instants.append(upcoming)
            upcoming = trigger.next_after(upcoming)
    except OverflowError:  # the trigger stepped past year 9999
        pass
    return instants


def bound(text: str, spec: JobSpec, option: str, *, end_of_day: bool) -> datetime:
    """An end of the range; a plain date as ``--to`` means the last millisecond of that day in the job's zone."""
    try:
        if end_of_day and _PLAIN_DATE.match(text.strip()):
            day = datetime.fromisoformat(text.strip()).date() + timedelta(days=1)
            return parse_instant(day.isoformat(), spec.zone) - timedelta(milliseconds=1)
        return parse_instant(text, spec.zone)
    except OverflowError:
        raise UsageProblem(f"{option}: {text!r} is too close to the end (or start) of the calendar") from None
    except (ScheduleError, ValueError) as error:
        raise UsageProblem(f"{option}: {error}") from error


def _taken(runs: RunStore, spec: JobSpec, records: list[dict[str, Any]]) -> set[str]:
    """Scheduled instants (UTC text) of ``spec`` that succeeded or are running (by its kept ``records``), or wait
    to run: in its queue, between attempts or deferred (the retry set), or held back by ``overlap: buffer_one``."""
    taken = set()
    for record in records:
        if record.get("status") in TAKEN:
            taken.add(format_utc(parse_utc(record["scheduled_at"])))
    for text in runs.waiting_messages(spec.queue, spec.name):
        try:
            message = json.loads(text)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("job") == spec.name and "scheduled_at" in message:
            taken.add(format_utc(parse_utc(message["scheduled_at"])))
    return taken


def _check_skip_is_complete(spec: JobSpec, records: list[dict[str, Any]], instants: list[datetime], count: int) -> None:
    """Refuse a backfill whose skip check may miss done instants. It goes by the kept run ``records``, so it
    cannot tell an instant that never ran from one whose records were pruned: once the job's history is full
    (``history.keep``), an instant of the range older than every kept record may have run; and the ``count``
    records this backfill adds push the oldest kept ones out, which must not be records of done instants of the
    range (a second run of the same backfill would run them again). A range within what the history still
    covers (the last hours of a frequent job) passes however long the job has run."""
    keep = spec.history.keep
    excess = len(records) + count - keep
    if excess <= 0 or not instants:
        return
    first, last = format_utc(instants[0]), format_utc(instants[-1])
    order = sorted(records, key=record_time)
    if len(records) >= keep:  # history was (or may have been) pruned: what came before the kept is unknown
        covered = min((format_utc(parse_utc(record["scheduled_at"])) for record in records), default=last)
        if first < covered:
            raise UsageProblem(
                f"{spec.name} keeps {keep} run records (history.keep), and the oldest kept is of {covered}: this "
                f"range starts at {first}, before it, so instants already done there may have been pruned and the "
                f"skip check would be incomplete: raise jobs.{spec.name}.history.keep, start the range later, or "
                "pass --rerun to emit every instant regardless"
            )
    pushed_out = [
        record for record in order[:excess]
        if record.get("status") in TAKEN and first <= format_utc(parse_utc(record["scheduled_at"])) <= last
    ]  # fmt: skip
    if pushed_out:
        raise UsageProblem(
            f"{spec.name} keeps {keep} run records (history.keep) and has {len(records)}; the {count} fire(s) of this "
            f"range would push out records of {len(pushed_out)} instant(s) of it already done, so the skip check "
            f"would be incomplete: raise jobs.{spec.name}.history.keep, split the range, or pass --rerun to emit "
            "every instant regardless"
        )


def _lock(store: Store, spec: JobSpec, token: str, now: datetime) -> None:
    """Take the job's backfill lock, so two backfills at once cannot both emit an instant; refuse when taken."""
    holder = store.lock_backfill(
        spec.name,
        token,
        audit_record("backfill", now, job=spec.name),
        int(defaults.BACKFILL_LOCK_TTL.total_seconds() * 1000),
    )
    if holder is not None:
        who = f" (by {holder.get('user', '?')}@{holder.get('host', '?')} at {holder.get('at', '?')})" if holder else ""
        raise UsageProblem(
            f"another backfill of {spec.name} is emitting now{who}; run this one once it is done (it then skips "
            "what that one emitted)"
        )


def _retention_warnings(spec: JobSpec, kept: int, count: int) -> list[str]:
    """What retention would drop of this backfill's records: ``history.keep`` per job (one record per attempt)."""
    keep = spec.history.keep
    if kept + count <= keep:
        return []
    lost = kept + count - keep
    return [
        f"{spec.name} keeps {keep} run records (history.keep) and has {kept}: {count} more would drop the oldest "
        f"{lost}{' of this backfill' if count > keep else ''}; raise jobs.{spec.name}.history.keep or "
        "`beatd export` first"
    ]
