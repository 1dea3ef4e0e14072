"""The ``beatd`` command: parse arguments and wire objects together, nothing more.

Exit codes: 0 success; 2 bad input (config problems, unknown job, bad option); 1 anything else that failed.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from beatd.cli.runtime import Runtime, UsageProblem
from beatd.errors import BeatdError, ConfigError

__all__ = ["Runtime", "cli", "main"]


COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("inspect", "check"),
    "jobs": ("inspect", "jobs"),
    "next": ("inspect", "next_fires"),
    "schema": ("inspect", "schema"),
    "beat": ("beat", "beat"),
    "status": ("ops", "status"),
    "trigger": ("ops", "trigger"),
    "pause": ("ops", "pause"),
    "resume": ("ops", "resume"),
    "backfill": ("backfill", "backfill"),
    "audit": ("ops", "audit"),
    "worker": ("worker", "worker"),
    "history": ("runs", "history"),
    "show": ("runs", "show"),
    "logs": ("logs", "logs"),
    "export": ("runs", "export"),
    "workers": ("runs", "workers"),
    "dead": ("dead", "dead"),
    "dev": ("dev", "dev"),
    "web": ("web", "web"),
    "install-systemd": ("install", "install_systemd"),
    "import": ("importer", "import_group"),
    "job": ("job", "job"),
    "alerts": ("alerts", "alerts"),
    "reshard": ("reshard", "reshard"),
}
"""Each command by name, and where it is (module of ``beatd.cli``, attribute): imported only when run (or
listed by ``--help``), so a command pays for its own imports only (a CLI call imported every command's:
the web server's, the async client's, the alert sinks')."""


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        module, attribute = where
        command: click.Command = getattr(importlib.import_module(f"beatd.cli.{module}"), attribute)
        return command

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


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(prog_name="beatd"))
