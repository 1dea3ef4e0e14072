"""Operator commands against a running deployment: status, trigger, pause, resume, audit (backfill: its own module)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import click

from beatd import defaults
from beatd.audit import audit_record
from beatd.cli.celery_fires import send_celery_fires
from beatd.cli.emitting import fire_message, signed
from beatd.cli.inspect import find_job
from beatd.cli.options import config_option, connection_options, json_option, timeout_option
from beatd.cli.render import echo_json, echo_table
from beatd.cli.runs import print_records
from beatd.cli.runtime import Runtime, UsageProblem
from beatd.cli.waiting import FireWatch, is_live, live_workers, wait_for_fires
from beatd.config import Config, JobSpec
from beatd.errors import ScheduleError
from beatd.keys import Keys
from beatd.messages import format_utc, from_ms, parse_utc, to_ms
from beatd.store import RunStore, Store, connect
from beatd.triggers import parse_instant
from beatd.upkeep import backlog_warnings

__all__ = ["audit", "pause", "resume", "status", "trigger"]


def _store(config: Config) -> Store:
    return Store(connect(config.settings.redis), Keys(config.namespace))


def _instant(text: str, spec: JobSpec, option: str) -> datetime:
    try:
        return parse_instant(text, spec.zone)
    except ScheduleError as error:
        raise UsageProblem(f"{option}: {error}") from error


@click.command()
@connection_options
@json_option
@click.pass_obj
def status(
    runtime: Runtime, config_path: str | None, redis_url: str | None, namespace: str | None, as_json: bool
) -> None:
    """Show the leader, replicas, jobs, queues, next fires, last emissions and config errors (times in UTC).

    With a broken config file the jobs are the ones the beat keeps progress of (no next fire is computed)."""
    config, local_problems = runtime.connection(config_path, redis_url, namespace)
    complete = not local_problems
    store = _store(config)
    now = runtime.clock.now()
    leader = store.leader()
    replicas = store.replicas()  # stale ones are deleted by the leader's upkeep, never by a read command
    paused = store.paused()
    progress = store.progress()
    last = store.last_emitted()
    workers = RunStore(store.client, store.keys).workers()
    queues = sorted(
        {spec.queue for spec in config.jobs.values() if spec.celery is None}  # a celery job's queue is Celery's
        | {queue for beat in workers.values() for queue in beat["queues"]}
    )
    report: dict[str, Any] = {
        "namespace": config.namespace,
        "config_digest": config.digest if complete else None,
        "leader": None,
        "replicas": [],
        "jobs": [],
        "paused": paused,
        "queues": store.queue_lengths(queues),
        "backlog": {},
        "warnings": [],
        "local_config_problems": [str(problem) for problem in local_problems],
    }
    if leader is not None:
        token, ttl_ms = leader
        holder = next((beat for beat in replicas.values() if token.endswith(":" + beat["replica"])), {})
        report["leader"] = {
            "token": token,
            "host": holder.get("host"),
            "pid": holder.get("pid"),
            "lease_left_s": round(ttl_ms / 1000, 3),
        }
    _backlog(report, store, workers, queues, store.redis_now())  # liveness and waits by Redis's clock
    for _, beat in sorted(replicas.items()):
        age = (now - parse_utc(beat["heartbeat_at"])).total_seconds()
        report["replicas"].append(
            {
                **beat,
                "heartbeat_age_s": round(age, 3),
                "alive": age <= defaults.REPLICA_STALE_AFTER.total_seconds(),
                "config_differs": complete and beat.get("config_digest") != config.digest,
            }
        )
    for name, spec in config.jobs.items():
        since = from_ms(progress[name]) if name in progress else now
        upcoming = spec.trigger().next_after(max(since, now - timedelta(days=366))) if spec.enabled else None
        report["jobs"].append(
            {
                "name": name,
                "enabled": spec.enabled,
                "paused": name in paused,
                "next_fire": format_utc(upcoming) if upcoming else None,
                "last_emission": last.get(name),
                "config_digest": spec.digest,
            }
        )
    if not complete:  # the jobs the deployment knows of: those the beat keeps progress of, emitted or paused
        for name in sorted(set(progress) | set(last) | set(paused)):
            emitted = last.get(name)
            report["jobs"].append(
                {
                    "name": name,
                    "enabled": None,
                    "paused": name in paused,
                    "next_fire": None,
                    "last_emission": emitted,
                    "config_digest": (emitted or {}).get("config_digest"),
                }
            )
    if as_json:
        echo_json(report)
    else:
        _print_status(report)


def _backlog(
    report: dict[str, Any], store: Store, workers: dict[str, dict[str, Any]], queues: list[str], now: datetime
) -> None:
    """Fires waiting in each queue, and warnings for queues nobody consumes or that fall behind."""
    consumers = Counter(
        queue for worker in workers.values() if is_live(worker, now) for queue in worker.get("queues", ())
    )
    backlogs = store.upkeep.backlogs(queues)
    report["backlog"] = {
        queue: {"waiting": backlog.waiting, "oldest_age_s": round(backlog.oldest_age(now), 3)}
        for queue, backlog in backlogs.items()
    }
    report["warnings"] = backlog_warnings(backlogs, consumers, now, defaults.BACKLOG_WARN_AFTER)


def _print_status(report: dict[str, Any]) -> None:
    leader = report["leader"]
    if leader:
        click.echo(
            f"leader: {leader['host']} pid {leader['pid']} (token {leader['token']}), "
            f"lease left {leader['lease_left_s']:.1f}s"
        )
    else:
        click.echo("leader: none")
    click.echo(f"config digest: {report['config_digest'] or 'unknown (the local config file is broken)'}")
    rows = [
        [
            r["replica"],
            r["role"],
            f"{r['heartbeat_age_s']:.1f}s" + ("" if r["alive"] else " (gone)"),
            r["config_digest"] + (" (differs)" if r["config_differs"] else ""),
            r.get("config_error") or "-",
        ]
        for r in report["replicas"]
    ]
    click.echo("")
    echo_table(("REPLICA", "ROLE", "HEARTBEAT AGE", "CONFIG DIGEST", "CONFIG ERROR"), rows)
    click.echo("")
    click.echo("queues: " + (", ".join(f"{name}={length}" for name, length in report["queues"].items()) or "-"))
    for warning in report["warnings"]:
        click.echo(f"warning: {warning}")
    click.echo(f"jobs: {len(report['jobs'])}, paused: {', '.join(report['paused']) or 'none'}")
    click.echo("")
    job_rows = [
        [
            job["name"],
            job["next_fire"] or "-",
            (job["last_emission"] or {}).get("scheduled_at", "-"),
            (job["last_emission"] or {}).get("trigger", "-"),
            "paused" if job["paused"] else {True: "yes", False: "disabled", None: "?"}[job["enabled"]],
            job["config_digest"] or "-",
        ]
        for job in report["jobs"]
    ]
    echo_table(("JOB", "NEXT FIRE", "LAST EMITTED FIRE", "TRIGGER", "ENABLED", "JOB DIGEST"), job_rows)


@click.command()
@config_option
@click.argument("job")
@click.option("--at", "at", metavar="ISO8601", help="Logical scheduled instant of the fire (default now).")
@click.option("--wait", is_flag=True, help="Wait for the fire to end and print its result; exit 1 unless it succeeded.")
@timeout_option
@json_option
@click.pass_obj
def trigger(
    runtime: Runtime, config_path: str | None, job: str, at: str | None, wait: bool, timeout: float | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Emit one fire of JOB now, with trigger: manual; warn when no live worker consumes its queue.

    With --wait, print every attempt of the fire once it has ended; exit 1 unless it succeeded (or when
    --timeout passes first)."""
    config = runtime.load(config_path)
    spec = find_job(config, job)
    now = _store(config).redis_now()  # emitted_at: the deadline (expires) of the fire counts from Redis's clock
    scheduled = _instant(at, spec, "--at") if at else now
    message = fire_message(spec, scheduled, now, "manual")
    record = audit_record("trigger", now, job=job, fire_id=message.fire_id, scheduled_at=message.scheduled_at)
    store = _store(config)
    if spec.celery is not None:
        (sent,) = send_celery_fires(config, store, spec, [message], now, record, wait=wait)
        if as_json:
            echo_json({"job": job, "scheduled_at": message.scheduled_at, **sent})
        else:
            click.echo(f"sent {message.fire_id} to Celery queue {sent['celery_queue']} as task {sent['task_id']}")
        return
    store.enqueue(spec.queue, signed(config, [message]), record)
    report: dict[str, Any] = {"fire_id": message.fire_id, "job": job, "queue": spec.queue,
                              "scheduled_at": message.scheduled_at}  # fmt: skip
    runs = RunStore(store.client, store.keys)
    if not live_workers(runs, spec.queue, now):
        click.echo(f"beatd: warning: no live worker consumes queue {spec.queue!r}; the fire waits there", err=True)
    if not as_json:
        click.echo(f"emitted {message.fire_id} to queue {spec.queue}")
    if wait:
        watch = FireWatch(runs, job, spec.queue, [message.fire_id], to_ms(now - defaults.WAIT_CLOCK_MARGIN))
        if not wait_for_fires(watch, lambda done, counts: None, timeout):
            click.echo(f"beatd: timed out after {timeout:g}s waiting for {message.fire_id}; the fire carries on "
                       f"(`beatd show {message.fire_id}` later)", err=True)  # fmt: skip
            sys.exit(1)
        report["result"] = watch.ended[message.fire_id]
        report["runs"] = [json.loads(text) for text in runs.fire_records(job, message.fire_id)] or [report["result"]]
        if not as_json:
            print_records(report["runs"])
    if as_json:
        echo_json(report)
    if wait and report["result"]["status"] != "succeeded":
        sys.exit(1)


@click.command()
@config_option
@click.argument("job")
@click.option("--reason", default="", help="Why, for the audit log and status.")
@click.pass_obj
def pause(runtime: Runtime, config_path: str | None, job: str, reason: str) -> None:
    """Stop scheduling JOB until resumed (survives restarts; no catch-up of the paused period)."""
    config = runtime.load(config_path)
    find_job(config, job)
    record = audit_record("pause", runtime.clock.now(), job=job, reason=reason)
    if _store(config).pause(job, record):
        click.echo(f"paused {job}")
    else:
        click.echo(f"{job} was already paused")


@click.command()
@config_option
@click.argument("job")
@click.pass_obj
def resume(runtime: Runtime, config_path: str | None, job: str) -> None:
    """Resume JOB from now on; fires of the paused period are not caught up."""
    config = runtime.load(config_path)
    find_job(config, job)
    now = runtime.clock.now()
    record = audit_record("resume", now, job=job)
    if _store(config).resume(job, record):
        click.echo(f"resumed {job}")
    else:
        click.echo(f"{job} was not paused")


@click.command()
@connection_options
@json_option
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True, help="Most records.")
@click.pass_obj
def audit(
    runtime: Runtime, config_path: str | None, redis_url: str | None, namespace: str | None, as_json: bool, limit: int
) -> None:
    """Show the audit log, newest first: leader changes, reloads, pause/resume/trigger/backfill, dead letters."""
    config, _ = runtime.connection(config_path, redis_url, namespace)
    records = _store(config).read_audit(limit)
    if as_json:
        echo_json(records)
        return
    rows = []
    for record in records:
        details = {k: v for k, v in record.items() if k not in ("id", "event", "at", "user", "host", "pid")}
        text = " ".join(f"{k}={v}" for k, v in details.items())
        rows.append([record.get("at", ""), record["event"], f"{record.get('user')}@{record.get('host')}", text])
    echo_table(("AT", "EVENT", "BY", "DETAILS"), rows)
