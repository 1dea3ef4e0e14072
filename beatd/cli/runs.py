"""Reading the audit trail: history, show, export, workers, dead letters."""

from __future__ import annotations

import heapq
import json
from typing import Any, get_args

import click

from beatd import defaults
from beatd.cli.options import config_option, json_option
from beatd.cli.render import echo_json, echo_table
from beatd.cli.runtime import Runtime, UsageProblem
from beatd.config import Config
from beatd.keys import Keys
from beatd.messages import parse_utc, to_ms
from beatd.records import RunStatus, job_of
from beatd.store import RunStore, connect

__all__ = ["dead", "export", "history", "show", "workers"]

STATUSES: tuple[str, ...] = get_args(RunStatus)


def _store(config: Config) -> RunStore:
    return RunStore(connect(config.settings.redis), Keys(config.namespace))


def _since(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    try:
        return to_ms(parse_utc(text if ("+" in text[10:] or text.endswith("Z")) else text + "Z"))
    except ValueError as error:
        raise UsageProblem(
            f"{option}: invalid instant {text!r}: expected ISO-8601 such as 2026-11-21T00:00:00Z"
        ) from error


def _records(store: RunStore, jobs: list[str], limit: int, since_ms: int | None) -> list[dict[str, Any]]:
    """Newest first across ``jobs`` (each job's records are already newest first)."""
    streams = [[json.loads(text) for text in store.run_records(job, limit, since_ms)] for job in jobs]
    merged = heapq.merge(*streams, key=_record_time, reverse=True)
    return list(merged)


@click.command()
@config_option
@click.argument("job", required=False)
@click.option("--status", type=click.Choice(STATUSES), help="Only runs that ended so (or are so).")
@click.option(
    "--since", metavar="ISO8601", help="Only runs started (or recorded) at or after this instant (UTC if no offset)."
)
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True, help="Most records.")
@json_option
@click.pass_obj
def history(
    runtime: Runtime, config_path: str | None, job: str | None, status: str | None, since: str | None, limit: int,
    as_json: bool,
) -> None:  # fmt: skip
    """Run records, newest first: every attempt, plus missed and skipped fires."""
    config = runtime.load(config_path)
    store = _store(config)
    jobs = [job] if job else sorted(set(config.jobs) | set(store.jobs_with_history()))
    fetch = limit if status is None else max(limit * 20, 1000)
    records = _records(store, jobs, fetch, _since(since, "--since"))
    if status is not None:
        records = [record for record in records if record["status"] == status]
    records = records[:limit]
    if as_json:
        echo_json(records)
        return
    rows = [
        [record["run_id"], record["status"], record.get("trigger", ""), _seconds(record.get("duration_s")),
         _seconds(record.get("lag_s")), record.get("worker") or "-", _summary(record)]
        for record in records
    ]  # fmt: skip
    echo_table(("RUN", "STATUS", "TRIGGER", "DURATION", "LAG", "WORKER", "DETAIL"), rows)


@click.command()
@config_option
@click.argument("identifier", metavar="RUN_ID_OR_FIRE_ID")
@json_option
@click.pass_obj
def show(runtime: Runtime, config_path: str | None, identifier: str, as_json: bool) -> None:
    """One run (by run id) or every attempt of one fire (by fire id)."""
    config = runtime.load(config_path)
    store = _store(config)
    job = job_of(identifier)
    if "#" in identifier:
        text = store.run_record(job, identifier)
        records = [json.loads(text)] if text else []
    else:
        records = [json.loads(text) for text in store.fire_records(job, identifier)]
    if not records:
        raise UsageProblem(f"no run or fire {identifier!r} in the history of {job!r}")
    if as_json:
        echo_json(records[0] if "#" in identifier else records)
        return
    for record in records:
        for key, value in record.items():
            shown = json.dumps(value) if isinstance(value, dict | list) else value
            click.echo(f"{key:>16}: {shown}")
        click.echo("")


@click.command()
@config_option
@click.option("--since", metavar="ISO8601", help="Only runs started (or recorded) at or after this instant.")
@click.option("--until", metavar="ISO8601", help="Only runs started (or recorded) before this instant.")
@click.pass_obj
def export(runtime: Runtime, config_path: str | None, since: str | None, until: str | None) -> None:
    """Every run record as JSON Lines (oldest first), for archiving outside Redis."""
    config = runtime.load(config_path)
    store = _store(config)
    low, high = _since(since, "--since"), _since(until, "--until")
    jobs = sorted(set(config.jobs) | set(store.jobs_with_history()))
    records = _records(store, jobs, 10_000_000, low)
    for record in reversed(records):
        if high is None or to_ms(parse_utc(_record_time(record)[0])) < high:
            click.echo(json.dumps(record, separators=(",", ":")))


@click.command()
@config_option
@json_option
@click.pass_obj
def workers(runtime: Runtime, config_path: str | None, as_json: bool) -> None:
    """Workers with a recent heartbeat: age, queues, runs in progress."""
    config = runtime.load(config_path)
    store = _store(config)
    now = runtime.clock.now()
    alive: list[dict[str, Any]] = []
    gone: list[dict[str, Any]] = []
    for name, beat in sorted(store.workers().items()):
        age = (now - parse_utc(beat["heartbeat_at"])).total_seconds()
        (alive if age <= defaults.WORKER_STALE_AFTER.total_seconds() else gone).append(
            {**beat, "heartbeat_age_s": round(age, 3)}
        )
        if age > 6 * defaults.WORKER_STALE_AFTER.total_seconds():
            store.forget_workers([name])
    if as_json:
        echo_json(alive)
        return
    rows = [[w["worker"], f"{w['heartbeat_age_s']:.1f}s", ",".join(w["queues"]), f"{len(w['runs'])}/{w['concurrency']}",
             str(w["processed"]), " ".join(w["runs"]) or "-"] for w in alive]  # fmt: skip
    echo_table(("WORKER", "HEARTBEAT AGE", "QUEUES", "BUSY", "DONE", "RUNS"), rows)


@click.group(invoke_without_command=True)
@config_option
@json_option
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.pass_context
def dead(ctx: click.Context, config_path: str | None, as_json: bool, limit: int) -> None:
    """Dead letters: messages not run (unknown job, bad JSON, forged) and fires out of retries."""
    ctx.ensure_object(Runtime)
    ctx.meta["config_path"] = config_path
    if ctx.invoked_subcommand is not None:
        return
    entries = _store(ctx.obj.load(config_path)).dead(limit)
    if as_json:
        echo_json(entries)
        return
    rows = [[entry["id"], entry.get("reason", ""), _job_in(entry.get("message", ""))] for entry in entries]
    echo_table(("ID", "REASON", "JOB"), rows)


@dead.command("retry")
@click.argument("entry_id", metavar="ID")
@config_option
@click.pass_context
def dead_retry(ctx: click.Context, entry_id: str, config_path: str | None) -> None:
    """Put dead letter ID back into its queue (a worker checks it again)."""
    if not _store(ctx.obj.load(config_path or ctx.meta.get("config_path"))).retry_dead(entry_id):
        raise UsageProblem(f"no dead letter {entry_id!r}")
    click.echo(f"requeued {entry_id}")


@dead.command("drop")
@click.argument("entry_id", metavar="ID")
@config_option
@click.pass_context
def dead_drop(ctx: click.Context, entry_id: str, config_path: str | None) -> None:
    """Delete dead letter ID."""
    if not _store(ctx.obj.load(config_path or ctx.meta.get("config_path"))).drop_dead(entry_id):
        raise UsageProblem(f"no dead letter {entry_id!r}")
    click.echo(f"dropped {entry_id}")


def _record_time(record: dict[str, Any]) -> tuple[str, str]:
    """Where a record sits in history: when its run started, else when it was written."""
    return (record.get("started_at") or record.get("finished_at") or record["scheduled_at"], record["run_id"])


def _job_in(message: str) -> str:
    try:
        return str(json.loads(message).get("job", "?"))
    except (ValueError, AttributeError):
        return "?"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def _summary(record: dict[str, Any]) -> str:
    if record.get("error"):
        return f"{record['error'].get('type')}: {record['error'].get('message')}"[:80]
    if record.get("reason"):
        return str(record["reason"])[:80]
    if record.get("result") is not None:
        return json.dumps(record["result"])[:80]
    return ""
