"""Operator commands against a running deployment: status, trigger, pause, resume, audit (backfill: its own module)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from beatd.cli.options import config_option, connection_options, json_option, timeout_option
from beatd.cli.render import echo_json, echo_table
from beatd.cli.runs import print_records
from beatd.cli.runtime import Runtime, UsageProblem
from beatd.client import Client
from beatd.client.status import status_report
from beatd.client.sync import instant_of
from beatd.client.waiting import wait_for_fires

__all__ = ["audit", "pause", "resume", "status", "trigger"]


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
    report = status_report(Client(config=config), config, local_problems, runtime.clock.now())
    if as_json:
        echo_json(report)
    else:
        _print_status(report)


def _print_status(report: dict[str, Any]) -> None:
    leader = report["leader"]
    shards = report.get("shards")
    if shards:
        rows = [
            [
                str(row["shard"]),
                f"{row['host']} pid {row['pid']}" if row["host"] else (row["leader"] or "none"),
                f"{row['lease_left_s']:.1f}s" if row["lease_left_s"] is not None else "-",
                str(row["jobs"]),
            ]
            for row in shards
        ]
        echo_table(("SHARD", "LEADER", "LEASE LEFT", "JOBS"), rows)
        click.echo("")
    elif leader:
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
    celery = report["celery"]
    if celery is not None:
        outbox, dead = celery["outbox"], celery["dead"]
        oldest = f", oldest {outbox['oldest_age_s']:.1f}s" if outbox["oldest_age_s"] is not None else ""
        bound = f" of at most {outbox['limit']}" if outbox["limit"] is not None else ""
        click.echo(f"celery outbox: {outbox['depth']}{bound} waiting for the relay{oldest}; dead: {dead['count']}")
        for entry in dead["newest"]:
            click.echo(
                f"  dead {entry['entry_id']} {entry['moved_at']} queue {entry['queue']} task {entry['task_id'] or '?'} "
                f"fire {entry['fire_id'] or '?'}: {entry['reason']}"
            )
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
            job["source"] or "?",
            job["config_digest"] or "-",
        ]
        for job in report["jobs"]
    ]
    echo_table(("JOB", "NEXT FIRE", "LAST EMITTED FIRE", "TRIGGER", "ENABLED", "SOURCE", "JOB DIGEST"), job_rows)


@click.command()
@config_option
@click.argument("job")
@click.option("--at", "at", metavar="ISO8601", help="Logical scheduled instant of the fire (default now).")
@click.option(
    "--args", "args_json", metavar="JSON", help="Positional arguments (a JSON list), if the job allows overrides."
)
@click.option(
    "--kwargs", "kwargs_json", metavar="JSON", help="Keyword arguments (a JSON object) merged over the job's."
)
@click.option("--wait", is_flag=True, help="Wait for the fire to end and print its result; exit 1 unless it succeeded.")
@timeout_option
@json_option
@click.pass_obj
def trigger(
    runtime: Runtime, config_path: str | None, job: str, at: str | None, args_json: str | None,
    kwargs_json: str | None, wait: bool, timeout: float | None, as_json: bool,
) -> None:  # fmt: skip
    """Emit one fire of JOB now, with trigger: manual; warn when no live worker consumes its queue.

    --args and --kwargs pass arguments to a job whose config says `overrides` (checked before anything is
    enqueued; refused: exit 2). With --wait, print every attempt of the fire once it has ended; exit 1 unless
    it succeeded (or when --timeout passes first)."""
    client = Client(config=runtime.load(config_path))
    spec = client.job(job)
    if wait and spec.celery is not None:
        raise UsageProblem(
            f"--wait: {spec.name} is a celery job, run by Celery's workers; `beatd show FIRE_ID` reads its outcome"
        )
    args, kwargs = _json_option(args_json, "--args"), _json_option(kwargs_json, "--kwargs")
    scheduled = instant_of(at, spec, "--at") if at else None
    handle = client.trigger(job, args=args, kwargs=kwargs, at=scheduled)
    if handle.celery_task_id is not None:
        sent = {"fire_id": handle.fire_id, "task_id": handle.celery_task_id, "celery_queue": handle.queue}
        if as_json:
            echo_json({"job": job, "scheduled_at": handle.scheduled_at, **sent})
        else:
            click.echo(f"sent {handle.fire_id} to Celery queue {handle.queue} as task {handle.celery_task_id}")
        return
    report: dict[str, Any] = {"fire_id": handle.fire_id, "job": job, "queue": spec.queue,
                              "scheduled_at": handle.scheduled_at}  # fmt: skip
    if not client.live_workers(spec.queue):
        click.echo(f"beatd: warning: no live worker consumes queue {spec.queue!r}; the fire waits there", err=True)
    if not as_json:
        click.echo(f"emitted {handle.fire_id} to queue {spec.queue}")
    if wait:
        watch = handle.watch()
        if not wait_for_fires(watch, lambda done, counts: None, timeout):
            click.echo(f"beatd: timed out after {timeout:g}s waiting for {handle.fire_id}; the fire carries on "
                       f"(`beatd show {handle.fire_id}` later)", err=True)  # fmt: skip
            sys.exit(1)
        report["result"] = watch.ended[handle.fire_id]
        report["runs"] = client.runs_of_fire(job, handle.fire_id) or [report["result"]]
        if not as_json:
            print_records(report["runs"])
    if as_json:
        echo_json(report)
    if wait and report["result"]["status"] != "succeeded":
        sys.exit(1)


def _json_option(text: str | None, option: str) -> Any:
    """The JSON value of ``option`` (None when not given); UsageProblem (exit 2) when it is not JSON."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as error:
        raise UsageProblem(f"{option}: not JSON: {error}") from None


@click.command()
@config_option
@click.argument("job")
@click.option("--reason", default="", help="Why, for the audit log and status.")
@click.pass_obj
def pause(runtime: Runtime, config_path: str | None, job: str, reason: str) -> None:
    """Stop scheduling JOB until resumed (survives restarts; no catch-up of the paused period)."""
    client = Client(config=runtime.load(config_path))
    if client.pause(job, reason):
        click.echo(f"paused {job}")
    else:
        click.echo(f"{job} was already paused")


@click.command()
@config_option
@click.argument("job")
@click.pass_obj
def resume(runtime: Runtime, config_path: str | None, job: str) -> None:
    """Resume JOB from now on; fires of the paused period are not caught up."""
    client = Client(config=runtime.load(config_path))
    if client.resume(job):
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
    records = Client(config=config).audit(limit)
    if as_json:
        echo_json(records)
        return
    rows = []
    for record in records:
        details = {k: v for k, v in record.items() if k not in ("id", "event", "at", "user", "host", "pid")}
        text = " ".join(f"{k}={v}" for k, v in details.items())
        rows.append([record.get("at", ""), record["event"], f"{record.get('user')}@{record.get('host')}", text])
    echo_table(("AT", "EVENT", "BY", "DETAILS"), rows)
