"""``beatd backfill``: emit the scheduled instants of a past range, once each, and optionally wait for them.

Both ends of the range are inclusive: an instant equal to ``--from`` or ``--to`` is emitted. A plain date means
the whole day in the job's time zone: ``--from 2026-11-01`` starts at its midnight, ``--to 2026-11-07`` runs to
the end of that day (its fires included). Instants of the range that already succeeded, or are running or
waiting in the queue, are skipped unless ``--rerun``, so the same backfill can be run twice.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from beatd.cli.options import config_option, json_option, timeout_option
from beatd.cli.progress import Progress
from beatd.cli.render import echo_json
from beatd.cli.runtime import Runtime
from beatd.client import Client
from beatd.client.backfill import BACKFILL_LIMIT, bound, emit_backfill, plan
from beatd.client.waiting import FireWatch, wait_for_fires

__all__ = ["BACKFILL_LIMIT", "backfill", "plan"]


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
    client = Client(config=runtime.load(config_path))
    spec = client.job(job)
    first, last = bound(start, spec, "--from", end_of_day=False), bound(end, spec, "--to", end_of_day=True)
    done = emit_backfill(client, spec, first, last, rerun=rerun, dry_run=dry_run, wait=wait,
                         progress=lambda count: _updating(Progress(f"enqueue {job}", count)))  # fmt: skip
    report = done.report
    for warning in report["warnings"]:
        click.echo(f"beatd: warning: {warning}", err=True)
    if dry_run:
        _print_plan(report, as_json)
        return
    if spec.celery is not None:
        if as_json:
            echo_json(report)
        else:
            queue = spec.options.queue if spec.options else ""
            click.echo(f"sent {len(report['fire_ids'])} backfill fire(s) of {job} to Celery queue {queue}")
        return
    messages = done.handles
    if not as_json:
        skipped = len(report["skipped"])
        note = f", skipped {skipped} already done (--rerun runs them again)" if skipped else ""
        click.echo(f"emitted {len(messages)} backfill fire(s) of {job} to queue {spec.queue}{note}")
    if messages and not client.live_workers(spec.queue):
        click.echo(f"beatd: warning: no live worker consumes queue {spec.queue!r}; the fires wait there", err=True)
    if wait and messages:
        watch = FireWatch(client.runs, job, spec.queue, report["fire_ids"], messages[0].since_ms)
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


@contextmanager
def _updating(progress: Progress) -> Iterator[Callable[[int], None]]:
    """A progress bar as the client's backfill progress: told how many fires are enqueued so far."""
    with progress as bar:
        yield bar.update


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
