"""``beatd dead``: dead letters (messages not run, fires out of attempts), retried or dropped with an audit record.

A dead letter's id is its stream entry id, ``MS-SEQ`` (``MS``: when it died, epoch ms); with several shards the
list shows ``SHARD:MS-SEQ`` (``retry`` and ``drop`` take either, ``MS-SEQ`` when only one shard has it). The
list leaves out the dead letters of fires that succeeded later (``--all`` shows them too).
"""

from __future__ import annotations

from typing import Any

import click

from beatd.cli.options import connection_options, json_option
from beatd.cli.render import echo_json, echo_table, shorten
from beatd.cli.runtime import Runtime
from beatd.client.dead import dead_letters, settle_dead
from beatd.layout import verify_layout
from beatd.store import RunStore, connect

__all__ = ["dead"]


def _store(runtime: Runtime, options: dict[str, Any], *, writes: bool = False) -> RunStore:
    """The dead letters' store; for ``writes`` (retry, drop) once the deployment's layout is found to be the
    config's (beatd.layout.verify_layout: ConfigError, exit 2, else)."""
    config, _ = runtime.connection(options["config_path"], options["redis_url"], options["namespace"])
    store = RunStore(connect(config.settings.redis), config.keys(), config.shard_keys())
    if writes:
        verify_layout(store.client, config)
    return store


def _id(entry: dict[str, Any]) -> str:
    """A dead letter's id as ``retry`` and ``drop`` take it: ``SHARD:MS-SEQ`` with several shards (an entry id
    is unique within one shard's stream only)."""
    return str(entry.get("ref", entry["id"]))


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
    entries = dead_letters(store, limit, show_all)
    if as_json:
        echo_json(entries)
        return
    rows = [
        [_id(entry), entry["died_at"], _after(entry), entry["job"] or "?", shorten(entry.get("reason", ""), 70)]
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
    store = _store(ctx.obj, _options(ctx, config_path=config_path, redis_url=redis_url, namespace=namespace),
                   writes=True)  # fmt: skip
    entry = settle_dead(store, entry_id, "retry", ctx.obj.clock.now())
    keys = store.shards[int(entry.get("shard", 0))]
    click.echo(f"requeued {entry_id} to queue {keys.queue_name(entry['queue'])}")


@dead.command("drop")
@click.argument("entry_id", metavar="ID")
@connection_options
@click.pass_context
def dead_drop(
    ctx: click.Context, entry_id: str, config_path: str | None, redis_url: str | None, namespace: str | None
) -> None:
    """Delete dead letter ID (the audit log keeps what it was)."""
    store = _store(ctx.obj, _options(ctx, config_path=config_path, redis_url=redis_url, namespace=namespace),
                   writes=True)  # fmt: skip
    settle_dead(store, entry_id, "drop", ctx.obj.clock.now())
    click.echo(f"dropped {entry_id}")


def _after(entry: dict[str, Any]) -> str:
    attempts = int(entry["attempts"])
    return f"{attempts} attempt{'s' if attempts != 1 else ''}" if attempts else "not run"
