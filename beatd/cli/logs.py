"""``beatd logs``: what a run wrote (stdout, stderr, log records), and with ``--follow`` as it writes it."""

from __future__ import annotations

import json
from typing import Any

import click

from beatd.cli.options import connection_options
from beatd.cli.runtime import Runtime, UsageProblem
from beatd.keys import Keys
from beatd.records import FINAL_STATUSES, job_of
from beatd.store import RunStore, connect

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
    what it has written so far while it runs. Its status, once it has ended, goes to stderr."""
    config, _ = runtime.connection(config_path, redis_url, namespace)
    store = RunStore(connect(config.settings.redis), Keys(config.namespace))
    record = _run_of(store, identifier)
    if record is None:
        raise UsageProblem(f"no run or fire {identifier!r} in the history of {job_of(identifier)!r}")
    if record["status"] in FINAL_STATUSES:
        click.echo(record.get("output") or "", nl=False)
        click.echo(f"beatd: run {record['run_id']} {record['status']}", err=True)
        return
    run, after = record["run_id"], "0"
    while True:
        chunks = store.read_output(run, after, FOLLOW_BLOCK_MS if follow else None)
        for entry_id, text in chunks:
            after = entry_id
            chunk = json.loads(text)
            if chunk.get("end"):
                click.echo(f"beatd: run {run} {chunk.get('status')}", err=True)
                return
            click.echo(chunk.get("text", ""), nl=False)
        if not follow:
            return
        if not chunks:
            current = store.run_record(record["job"], run)
            status = json.loads(current)["status"] if current else "gone"
            if status in FINAL_STATUSES or status == "gone":
                # Ended without an end marker (its worker died, or the stream expired): nothing more will come.
                click.echo(f"beatd: run {run} {status}", err=True)
                return


def _run_of(store: RunStore, identifier: str) -> dict[str, Any] | None:
    """The record of run ``identifier``, or of the latest attempt of fire ``identifier``."""
    job = job_of(identifier)
    if "#" in identifier:
        text = store.run_record(job, identifier)
        return json.loads(text) if text else None
    attempts = [json.loads(text) for text in store.fire_records(job, identifier)]
    attempts = [record for record in attempts if record["status"] != "dead"] or attempts
    return attempts[-1] if attempts else None
