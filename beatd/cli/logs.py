"""``beatd logs``: what a run wrote (stdout, stderr, log records), and with ``--follow`` as it writes it."""

from __future__ import annotations

import sys

import click

from beatd.cli.options import connection_options
from beatd.cli.runs import client_of, latest_attempt
from beatd.cli.runtime import Runtime
from beatd.records import FINAL_STATUSES

__all__ = ["logs"]

FOLLOW_BLOCK_MS = 1000
"""How long (ms) one read of a followed run's stream waits; between reads the run record is checked (its
worker may have died, leaving no end marker). Below the client's socket timeout."""


@click.command()
@connection_options
@click.argument("identifier", metavar="RUN_ID_OR_FIRE_ID")
@click.option("-f", "--follow", is_flag=True, help="Keep printing what a running run writes until it ends.")
@click.pass_obj
def logs(
    runtime: Runtime, config_path: str | None, redis_url: str | None, namespace: str | None, identifier: str,
    follow: bool,
) -> None:  # fmt: skip
    """The output of one run (a fire id: its latest attempt): the tail its record keeps once it has ended, or
    what it has written so far while it runs. Its status, once it has ended, goes to stderr. With --follow,
    exit 1 when the run's worker is gone (no heartbeat) before the run ends."""
    client = client_of(runtime, config_path, redis_url, namespace)
    record = latest_attempt(client.show_records(identifier))
    if record["status"] in FINAL_STATUSES:
        click.echo(record.get("output") or "", nl=False)
        click.echo(f"beatd: run {record['run_id']} {record['status']}", err=True)
        return
    run, after = record["run_id"], "0"
    while True:
        chunks = client.output(run, after, FOLLOW_BLOCK_MS if follow else None)
        for entry_id, chunk in chunks:
            after = entry_id
            if chunk.get("end"):
                click.echo(f"beatd: run {run} {chunk.get('status')}", err=True)
                return
            click.echo(chunk.get("text", ""), nl=False)
        if not follow:
            return
        if not chunks:
            current = client.run_record(record["job"], run) or {"status": "gone"}
            if current["status"] in FINAL_STATUSES or current["status"] == "gone":
                # Ended without an end marker (its worker died, or the stream expired): nothing more will come.
                click.echo(f"beatd: run {run} {current['status']}", err=True)
                return
            if current["status"] == "running" and client.worker_gone(current.get("worker")):
                # Killed (no end marker, the record stays running until another worker reclaims the run).
                click.echo(
                    f"beatd: run {run}: its worker {current.get('worker')} is gone (the run will be recorded lost)",
                    err=True,
                )
                sys.exit(1)
