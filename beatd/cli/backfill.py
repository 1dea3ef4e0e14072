"""``beatd backfill``: emit the scheduled instants of a past range, once each, and optionally wait for them.

Both ends of the range are inclusive: an instant equal to ``--from`` or ``--to`` is emitted. A plain date means
the whole day in the job's time zone: ``--from 2026-11-01`` starts at its midnight, ``--to 2026-11-07`` runs to
the end of that day (its fires included). Instants of the range that already succeeded, or are running or
waiting in the queue, are skipped unless ``--rerun``, so the same backfill can be run twice.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import click

from beatd import defaults
from beatd.audit import audit_record
from beatd.cli.options import config_option, json_option, timeout_option
from beatd.cli.progress import Progress
from beatd.cli.render import echo_json
from beatd.cli.runtime import Runtime, UsageProblem
from beatd.client.celery_fires import send_celery_fires
from beatd.client.emitting import fire_message, signed
from beatd.client.sync import find_job
from beatd.client.waiting import FireWatch, live_workers, wait_for_fires
from beatd.config import JobSpec
from beatd.errors import ScheduleError
from beatd.keys import Keys
from beatd.messages import format_utc, parse_utc, to_ms
from beatd.store import RunStore, Store, connect
from beatd.triggers import parse_instant

__all__ = ["BACKFILL_LIMIT", "backfill", "plan"]

BACKFILL_LIMIT = 10_000
"""Most fires one backfill emits; a larger range is refused (split it)."""

TAKEN = frozenset({"succeeded", "running", "sent"})
"""Statuses of an instant's records that make a backfill skip it (without ``--rerun``); ``sent``: a celery
job's fire handed to Celery."""

_PLAIN_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@click.command()
@config_option
@click.argument("job")
@click.option("--from", "start", required=True, metavar="ISO8601", help="First instant of the range (inclusive).")
@click.option("--to", "end", required=True, metavar="ISO8601",
              help="Last instant of the range (inclusive; a plain date includes that whole day).")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Print the instants it would emit; emit nothing.")
@click.option("--rerun", is_flag=True, help="Emit instants that already succeeded (or are queued or running) too.")
@click.option("--wait", is_flag=True, help="Wait until every emitted fire has ended; exit 1 unless all succeeded.")
@timeout_option
@json_option
@click.pass_obj
def backfill(
    runtime: Runtime, config_path: str | None, job: str, start: str, end: str, dry_run: bool, rerun: bool,
    wait: bool, timeout: float | None, as_json: bool,
) -> None:  # fmt: skip
    """Emit every scheduled instant of JOB from --from to --to (both inclusive), in order, with trigger:
    backfill; instants that already succeeded are skipped unless --rerun."""
    config = runtime.load(config_path)
    spec = find_job(config, job)
    first, last = _bound(start, spec, "--from", end_of_day=False), _bound(end, spec, "--to", end_of_day=True)
    if last < first:
        raise UsageProblem("--to is before --from")
    instants = plan(spec, first, last)
    runs = RunStore(connect(config.settings.redis), Keys(config.namespace))
    store = Store(runs.client, runs.keys)
    kept = runs.history_size(job)
    if not rerun:
        _check_skip_is_complete(spec, kept, len(instants))
    now = store.redis_now()  # emitted_at: the deadline (expires) of each fire counts from Redis's clock
    token = secrets.token_hex(8)
    if not dry_run:
        _lock(store, spec, token, now)
    try:
        taken = set() if rerun else _taken(runs, spec)
        chosen = [instant for instant in instants if format_utc(instant) not in taken]
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
        for warning in report["warnings"]:
            click.echo(f"beatd: warning: {warning}", err=True)
        if dry_run:
            _print_plan(report, as_json)
            return
        messages = [fire_message(spec, instant, now, "backfill") for instant in chosen]
        record = audit_record(
            "backfill", now, job=job, count=len(messages), skipped=len(report["skipped"]),
            first=messages[0].fire_id if messages else None, last=messages[-1].fire_id if messages else None,
            range=report["range"], rerun=rerun,
        )  # fmt: skip
        if spec.celery is not None:
            report["sent"] = send_celery_fires(config, store, spec, messages, now, record, wait=wait)
            report["fire_ids"] = [message.fire_id for message in messages]
            if as_json:
                echo_json(report)
            else:
                queue = spec.options.queue if spec.options else ""
                click.echo(f"sent {len(messages)} backfill fire(s) of {job} to Celery queue {queue}")
            return
        with Progress(f"enqueue {job}", len(messages)) as progress:
            store.enqueue(spec.queue, signed(config, messages), record, progress.update)
    finally:
        if not dry_run:
            store.unlock_backfill(job, token)
    report["fire_ids"] = [message.fire_id for message in messages]
    if not as_json:
        skipped = len(report["skipped"])
        note = f", skipped {skipped} already done (--rerun runs them again)" if skipped else ""
        click.echo(f"emitted {len(messages)} backfill fire(s) of {job} to queue {spec.queue}{note}")
    if messages and not live_workers(runs, spec.queue, now):
        click.echo(f"beatd: warning: no live worker consumes queue {spec.queue!r}; the fires wait there", err=True)
    if wait and messages:
        watch = FireWatch(runs, job, spec.queue, report["fire_ids"], to_ms(now - defaults.WAIT_CLOCK_MARGIN))
        with Progress(f"run {job}", len(messages)) as progress:
            finished = wait_for_fires(watch, lambda done, counts: progress.update(done, _counts(counts)), timeout)
        report["results"] = dict(watch.counts())
        if not finished:
            report["pending"] = watch.pending
            click.echo(f"beatd: timed out after {timeout:g}s: {len(watch.ended)} of {len(messages)} fire(s) ended "
                       f"({_counts(watch.counts())}); the rest carry on (`beatd history {job}`)", err=True)  # fmt: skip
        elif not as_json:
            click.echo(f"ended: {_counts(watch.counts())}")
        if as_json:
            echo_json(report)
        sys.exit(0 if finished and set(report["results"]) <= {"succeeded"} else 1)
    if as_json:
        echo_json(report)


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


def _bound(text: str, spec: JobSpec, option: str, *, end_of_day: bool) -> datetime:
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


def _taken(runs: RunStore, spec: JobSpec) -> set[str]:
    """Scheduled instants (UTC text) of ``spec`` that succeeded or are running (by the kept records), or wait to
    run: in its queue, between attempts or deferred (the retry set), or held back by ``overlap: buffer_one``."""
    taken = set()
    for text in runs.job_records(spec.name):
        record = json.loads(text)
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


def _check_skip_is_complete(spec: JobSpec, kept: int, count: int) -> None:
    """Refuse a backfill whose skip check may miss done instants: it goes by the kept run records, and once
    the kept ones and the range's together pass ``history.keep``, the records of done instants may be pruned
    (now, or before a second run of the same backfill), which would run them again."""
    keep = spec.history.keep
    if kept + count > keep:
        raise UsageProblem(
            f"{spec.name} keeps {keep} run records (history.keep) and has {kept}; with the {count} fire(s) of this "
            "range that passes it, so records of instants already done may be pruned and the skip check would be "
            f"incomplete: raise jobs.{spec.name}.history.keep, split the range, or pass --rerun to emit every "
            "instant regardless"
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


def _counts(counts: Counter[str]) -> str:
    return ", ".join(f"{status} {count}" for status, count in sorted(counts.items())) or "none yet"


def _print_plan(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        echo_json(report)
        return
    for instant in report["instants"]:
        click.echo(instant)
    skipped = f", {len(report['skipped'])} skipped (already done; --rerun includes them)" if report["skipped"] else ""
    click.echo(f"dry run: would emit {len(report['instants'])} fire(s) of {report['job']}{skipped}", err=True)
