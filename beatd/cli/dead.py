"""``beatd dead``: dead letters (messages not run, fires out of attempts), retried or dropped with an audit record.

A dead letter's id is its stream entry id, ``MS-SEQ`` (``MS``: when it died, epoch ms). The list leaves out
the dead letters of fires that succeeded later (``--all`` shows them too).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any

import click

from beatd.audit import audit_record
from beatd.cli.options import connection_options, json_option
from beatd.cli.render import echo_json, echo_table, shorten
from beatd.cli.runtime import Runtime, UsageProblem
from beatd.keys import Keys
from beatd.messages import format_utc, from_ms
from beatd.store import RunStore, connect

__all__ = ["dead"]

_ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
"""A stream entry id, ``MS-SEQ``; each part must also be below 2**64 (Redis refuses more)."""

_PAGE = 200
"""Dead letters read at once while listing."""


def _store(runtime: Runtime, options: dict[str, Any]) -> RunStore:
    config, _ = runtime.connection(options["config_path"], options["redis_url"], options["namespace"])
    return RunStore(connect(config.settings.redis), Keys(config.namespace))


def _options(ctx: click.Context, **given: Any) -> dict[str, Any]:
    """Options given to the subcommand win over the group's (``dead -c F retry ID`` and ``dead retry ID -c F``)."""
    return {name: value if value is not None else ctx.meta.get(name) for name, value in given.items()}


@click.group(invoke_without_command=True)
@connection_options
@json_option
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True, help="Most entries.")
@click.option("--all", "show_all", is_flag=True, help="Also the dead letters of fires that succeeded later.")
@click.pass_context
def dead(
    ctx: click.Context, config_path: str | None, redis_url: str | None, namespace: str | None, as_json: bool,
    limit: int, show_all: bool,
) -> None:  # fmt: skip
    """Dead letters, newest first: messages not run (unknown job, bad JSON, forged) and fires out of attempts."""
    ctx.ensure_object(Runtime)
    ctx.meta.update(config_path=config_path, redis_url=redis_url, namespace=namespace)
    if ctx.invoked_subcommand is not None:
        return
    store = _store(ctx.obj, ctx.meta)
    entries = _listed(store, limit, show_all)
    if as_json:
        echo_json(entries)
        return
    rows = [
        [entry["id"], entry["died_at"], _after(entry), entry["job"] or "?", shorten(entry.get("reason", ""), 70)]
        for entry in entries
    ]
    echo_table(("ID", "DIED", "AFTER", "JOB", "REASON"), rows)


@dead.command("retry")
@click.argument("entry_id", metavar="ID")
@connection_options
@click.pass_context
def dead_retry(
    ctx: click.Context, entry_id: str, config_path: str | None, redis_url: str | None, namespace: str | None
) -> None:
    """Put dead letter ID back into its queue (a worker checks it again and runs it as the next attempt)."""
    store, entry, record = _settling(ctx, entry_id, "retry", config_path, redis_url, namespace)
    _settled(store.retry_dead(entry_id, entry["queue"], record), entry_id, "retry")
    click.echo(f"requeued {entry_id} to queue {store.keys.queue_name(entry['queue'])}")


@dead.command("drop")
@click.argument("entry_id", metavar="ID")
@connection_options
@click.pass_context
def dead_drop(
    ctx: click.Context, entry_id: str, config_path: str | None, redis_url: str | None, namespace: str | None
) -> None:
    """Delete dead letter ID (the audit log keeps what it was)."""
    store, _, record = _settling(ctx, entry_id, "drop", config_path, redis_url, namespace)
    _settled(store.drop_dead(entry_id, record), entry_id, "drop")
    click.echo(f"dropped {entry_id}")


def _settling(
    ctx: click.Context, entry_id: str, action: str, config_path: str | None, redis_url: str | None,
    namespace: str | None,
) -> tuple[RunStore, dict[str, Any], dict[str, Any]]:  # fmt: skip
    """The store, the dead letter ``entry_id`` and the audit record of ``dead {action}`` on it."""
    store = _store(ctx.obj, _options(ctx, config_path=config_path, redis_url=redis_url, namespace=namespace))
    entry = _existing(store, entry_id, action)
    return store, entry, audit_record(f"dead-{action}", ctx.obj.clock.now(), **_audited(entry))


def _settled(done: bool, entry_id: str, action: str) -> None:
    if not done:
        raise UsageProblem(f"dead {action}: no dead letter {entry_id!r} (another operator took it meanwhile)")


def _listed(store: RunStore, limit: int, show_all: bool) -> list[dict[str, Any]]:
    """The newest ``limit`` dead letters shown: read back page by page, those of fires that succeeded later
    left out first (unless ``show_all``), so the limit counts only what is shown."""
    shown: list[dict[str, Any]] = []
    before = "+"
    while len(shown) < limit:
        page = [_described(entry) for entry in store.dead(max(limit - len(shown), _PAGE), before)]
        if not page:
            break
        before = page[-1]["id"]
        shown.extend(page if show_all else _without_later_successes(store, page))
    return shown[:limit]


def _existing(store: RunStore, entry_id: str, action: str) -> dict[str, Any]:
    """The dead letter ``entry_id``, or a UsageProblem saying what an id looks like and where to find one."""
    if not _ENTRY_ID.match(entry_id) or any(int(part) >= 2**64 for part in entry_id.split("-")):
        raise UsageProblem(
            f"dead {action}: {entry_id!r} is not a dead-letter id (expected MS-SEQ such as 1764680000000-0; "
            "`beatd dead` lists them)"
        )
    entry = store.dead_letter_entry(entry_id)
    if entry is None:
        raise UsageProblem(f"dead {action}: no dead letter {entry_id!r} (`beatd dead` lists them)")
    return _described(entry)


def _described(entry: dict[str, str]) -> dict[str, Any]:
    """A dead letter with what the list shows: when it died (UTC), its job and fire, attempts made."""
    described: dict[str, Any] = dict(entry)
    described["died_at"] = format_utc(from_ms(int(entry["id"].split("-", 1)[0])))
    try:
        message = json.loads(entry.get("message", ""))
    except ValueError:
        message = None
    message = message if isinstance(message, dict) else {}
    described["job"] = message.get("job") if isinstance(message.get("job"), str) else None
    described["fire_id"] = message.get("fire_id") if isinstance(message.get("fire_id"), str) else None
    tail = entry.get("run_id", "").rsplit("#", 1)[-1]
    described["attempts"] = int(tail) if tail.isdigit() else 0
    return described


def _after(entry: dict[str, Any]) -> str:
    attempts = int(entry["attempts"])
    return f"{attempts} attempt{'s' if attempts != 1 else ''}" if attempts else "not run"


def _audited(entry: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "job", "fire_id", "run_id", "queue", "reason", "died_at")
    return {("entry_id" if key == "id" else key): entry[key] for key in keys if entry.get(key) is not None}


def _without_later_successes(store: RunStore, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``entries`` less those whose fire has a succeeded run (retried by hand, or redelivered and run)."""
    by_job: dict[str, list[str]] = defaultdict(list)
    for entry in entries:
        if entry["job"] and entry["fire_id"]:
            by_job[entry["job"]].append(entry["fire_id"])
    succeeded = {(job, fire) for job, fires in by_job.items() for fire in store.succeeded_runs(job, fires)}
    return [entry for entry in entries if (entry["job"], entry["fire_id"]) not in succeeded]
