"""Reading the audit trail: history, show, export, workers (dead letters: ``beatd.cli.dead``).

Every instant shown is UTC with a ``Z``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, get_args

import click

from beatd.cli.options import connection_options, json_option
from beatd.cli.render import echo_json, echo_table, shorten
from beatd.cli.runtime import Runtime, UsageProblem
from beatd.client.reads import find_runs
from beatd.client.sync import Client
from beatd.messages import parse_utc
from beatd.records import RunStatus

__all__ = ["client_of", "export", "find_runs", "history", "latest_attempt", "print_records", "show", "workers"]

SUMMARY_WIDTH = 80
"""Most characters of the DETAIL column of ``history`` (a longer text ends in an ellipsis)."""

STATUSES: tuple[str, ...] = get_args(RunStatus)


def client_of(runtime: Runtime, config_path: str | None, redis_url: str | None, namespace: str | None) -> Client:
    """The client of the deployment (its config's jobs and celery section only when the file is valid)."""
    config, _ = runtime.connection(config_path, redis_url, namespace)
    return Client(config=config)


def _instant(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_utc(text if ("+" in text[10:] or text.endswith("Z")) else text + "Z")
    except ValueError as error:
        raise UsageProblem(
            f"{option}: invalid instant {text!r}: expected ISO-8601 such as 2026-11-21T00:00:00Z"
        ) from error


@click.command()
@connection_options
@click.argument("job", required=False)
@click.option("--status", type=click.Choice(STATUSES), help="Only runs that ended so (or are so).")
@click.option(
    "--since", metavar="ISO8601", help="Only runs started (or recorded) at or after this instant (UTC if no offset)."
)
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True, help="Most records.")
@json_option
@click.pass_obj
def history(
    runtime: Runtime, config_path: str | None, redis_url: str | None, namespace: str | None, job: str | None,
    status: str | None, since: str | None, limit: int, as_json: bool,
) -> None:  # fmt: skip
    """Run records, newest first: every attempt, plus missed and skipped fires. A ``dead`` record of a fire
    that succeeded later (retried from dead letters) says so, and ``--status dead`` leaves it out."""
    client = client_of(runtime, config_path, redis_url, namespace)
    records = client.history_records(job, status=status, since=_instant(since, "--since"), limit=limit)
    if as_json:
        echo_json(records)
        return
    rows = [
        [record["run_id"], record["status"], record.get("trigger", ""), record["source"],
         record.get("started_at") or "-", _seconds(record.get("duration_s")), _seconds(record.get("lag_s")),
         record.get("worker") or "-", _summary(record)]
        for record in records
    ]  # fmt: skip
    echo_table(("RUN", "STATUS", "TRIGGER", "SOURCE", "STARTED", "DURATION", "LAG", "WORKER", "DETAIL"), rows)


@click.command()
@connection_options
@click.argument("identifier", metavar="RUN_ID_OR_FIRE_ID")
@json_option
@click.pass_obj
def show(
    runtime: Runtime, config_path: str | None, redis_url: str | None, namespace: str | None, identifier: str,
    as_json: bool,
) -> None:  # fmt: skip
    """One run (by run id) or every attempt of one fire (by fire id); a traceback is printed as text."""
    records = client_of(runtime, config_path, redis_url, namespace).show_records(identifier)
    if as_json:
        echo_json(records[0] if "#" in identifier else records)
        return
    print_records(records)


def latest_attempt(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Of a fire's records (see :func:`find_runs`), its latest attempt (not its ``dead`` record)."""
    return ([record for record in records if record["status"] != "dead"] or records)[-1]


def print_records(records: list[dict[str, Any]]) -> None:
    """Print each record as ``key: value`` lines, a multi-line text (a traceback) as indented lines."""
    for record in records:
        for key, value in record.items():
            if key == "output":
                continue
            if key == "error" and isinstance(value, dict):
                click.echo(f"{key:>16}: {value.get('type')}: {value.get('message')}")
                _echo_block("traceback", value.get("traceback"))
                continue
            if isinstance(value, str) and "\n" in value.strip():
                _echo_block(key, value)
                continue
            shown = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value
            click.echo(f"{key:>16}: {shown}")
        _echo_block("output", record.get("output"))
        click.echo("")


def _echo_block(key: str, text: str | None) -> None:
    """A multi-line text (a traceback, a run's output tail) as indented lines under a ``key:`` heading."""
    if not text:
        return
    click.echo(f"{key:>16}:")
    for line in text.rstrip("\n").splitlines():
        click.echo(f"{'':>18}{line}")


@click.command()
@connection_options
@click.option("--since", metavar="ISO8601", help="Only runs started (or recorded) at or after this instant.")
@click.option("--until", metavar="ISO8601", help="Only runs started (or recorded) before this instant.")
@click.pass_obj
def export(
    runtime: Runtime, config_path: str | None, redis_url: str | None, namespace: str | None, since: str | None,
    until: str | None,
) -> None:  # fmt: skip
    """Every run record as JSON Lines (oldest first), for archiving outside Redis."""
    client = client_of(runtime, config_path, redis_url, namespace)
    for record in client.export_records(_instant(since, "--since"), _instant(until, "--until")):
        click.echo(json.dumps(record, separators=(",", ":")))


@click.command()
@connection_options
@json_option
@click.pass_obj
def workers(
    runtime: Runtime, config_path: str | None, redis_url: str | None, namespace: str | None, as_json: bool
) -> None:
    """Workers with a recent heartbeat: age, queues, runs in progress."""
    alive = client_of(runtime, config_path, redis_url, namespace).workers()  # liveness by Redis's clock
    if as_json:
        echo_json(alive)
        return
    rows = [[w["worker"], f"{w['heartbeat_age_s']:.1f}s", ",".join(w["queues"]), f"{len(w['runs'])}/{w['concurrency']}",
             str(w["processed"]), " ".join(w["runs"]) or "-"] for w in alive]  # fmt: skip
    echo_table(("WORKER", "HEARTBEAT AGE", "QUEUES", "BUSY", "DONE", "RUNS"), rows)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def _summary(record: dict[str, Any]) -> str:
    if "task_id" in record.get("extra", {}):
        outcome = record.get("celery", {})
        detail = outcome.get("error") or outcome.get("result")
        shown = f" {outcome['state']}" + (f": {json.dumps(detail)}" if detail is not None else "") if outcome else ""
        return f"celery task {record['extra']['task_id']}{shown}"[:120]
    if record.get("succeeded_later"):
        return f"succeeded later: {record['succeeded_later']}"
    if record.get("error"):
        return shorten(f"{record['error'].get('type')}: {record['error'].get('message')}", SUMMARY_WIDTH)
    if record.get("reason"):
        return shorten(str(record["reason"]), SUMMARY_WIDTH)
    if record.get("result") is not None:
        return shorten(json.dumps(record["result"], ensure_ascii=False), SUMMARY_WIDTH)
    return ""
