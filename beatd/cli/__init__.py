"""The ``beatd`` command: parse arguments and wire objects together, nothing more.

Exit codes: 0 success; 2 bad input (config problems, unknown job, bad option); 1 anything else that failed.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from beatd.cli import alerts, backfill, beat, dead, dev, importer, inspect, install, job, logs, ops, runs, web, worker
from beatd.cli.runtime import Runtime, UsageProblem
from beatd.errors import BeatdError, ConfigError

__all__ = ["Runtime", "cli", "main"]


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as error:
            for problem in error.problems:
                click.echo(str(problem), err=True)
            count = len(error.problems)
            click.echo(f"beatd: {count} problem{'s' if count != 1 else ''} found; nothing was applied", err=True)
            raise click.exceptions.Exit(2) from None
        except UsageProblem as error:
            click.echo(f"beatd: {error}", err=True)
            raise click.exceptions.Exit(2) from None
        except BeatdError as error:
            click.echo(f"beatd: {error}", err=True)
            raise click.exceptions.Exit(1) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="beatd")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """beatd: periodic jobs declared in YAML, fired exactly once by an elected beat, run and audited."""
    if ctx.obj is None:
        ctx.obj = Runtime()


for _command in (
    inspect.check,
    inspect.jobs,
    inspect.next_fires,
    inspect.schema,
    beat.beat,
    ops.status,
    ops.trigger,
    ops.pause,
    ops.resume,
    backfill.backfill,
    ops.audit,
    worker.worker,
    runs.history,
    runs.show,
    logs.logs,
    runs.export,
    runs.workers,
    dead.dead,
    dev.dev,
    web.web,
    install.install_systemd,
    importer.import_group,
    job.job,
    alerts.alerts,
):
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(prog_name="beatd"))
