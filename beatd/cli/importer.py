"""``beatd import celery APP`` and ``beatd import redbeat``: another scheduler's entries as beatd YAML on stdout,
differences in meaning as comments."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from beatd.cli.runtime import UsageProblem
from beatd.errors import BeatdError

if TYPE_CHECKING:
    from beatd.celery_import import Conversion

__all__ = ["import_group"]


@click.group("import")
def import_group() -> None:
    """Convert another scheduler's schedule into beatd YAML (printed on stdout; nothing is written)."""


@import_group.command("celery")
@click.argument("app_path", metavar="MODULE:APP")
@click.option(
    "--pythonpath", "paths", multiple=True, type=click.Path(file_okay=False), help="Also search here (default: .)."
)
def import_celery(app_path: str, paths: tuple[str, ...]) -> None:
    """Convert the beat_schedule of the Celery app MODULE:APP (such as proj.celery:app).

    Every difference in meaning is written as a comment above its job, and entries that cannot keep their
    meaning (solar schedules, crontabs restricting both day fields) are refused with the reason."""
    try:
        from beatd.celery_import import convert, render_yaml
    except ImportError as error:
        raise UsageProblem(f"beatd import celery needs Celery: pip install 'beatd[celery]' ({error})") from error
    conversion = convert(_load_app(app_path, paths))
    click.echo(render_yaml(conversion), nl=False)
    _summary(conversion)


def _load_app(app_path: str, paths: tuple[str, ...]) -> Any:
    """The Celery app MODULE:APP, imported with ``paths`` and . on sys.path; UsageProblem says what is wrong."""
    module_name, _, attribute = app_path.partition(":")
    if not module_name or not attribute:
        raise UsageProblem(f"expected MODULE:APP such as proj.celery:app, got {app_path!r}")
    for entry in (*paths, "."):
        resolved = str(Path(entry).resolve())
        if resolved not in sys.path:
            sys.path.insert(0, resolved)
    try:
        app = getattr(importlib.import_module(module_name), attribute)
    except ImportError as error:
        raise UsageProblem(f"cannot import {module_name!r}: {error}") from error
    except AttributeError as error:
        raise UsageProblem(f"module {module_name!r} has no attribute {attribute!r}") from error
    if not hasattr(app, "conf") or not hasattr(app.conf, "beat_schedule"):
        raise UsageProblem(f"{app_path} is a {type(app).__name__}, expected a Celery app")
    return app


@import_group.command("redbeat")
@click.option("--redis-url", required=True, metavar="URL", help="RedBeat's Redis (its redbeat_redis_url).")
@click.option("--key-prefix", default="redbeat:", show_default=True, help="RedBeat's redbeat_key_prefix.")
@click.option(
    "--app",
    "app_path",
    metavar="MODULE:APP",
    help="The project's Celery app (only read): its task_routes, tasks' queues, task_default_queue and timezone.",
)
@click.option(
    "--pythonpath", "paths", multiple=True, type=click.Path(file_okay=False), help="Also search here (default: .)."
)
@click.option(
    "--timezone",
    "zone",
    default=None,
    help="The Celery app's timezone (crontabs run in it)  [default: the --app's timezone, else UTC]",
)
def import_redbeat(
    redis_url: str, key_prefix: str, app_path: str | None, paths: tuple[str, ...], zone: str | None
) -> None:
    """Convert the entries RedBeat keeps in Redis (only read) into beatd YAML.

    Every difference in meaning is written as a comment above its job, as by `beatd import celery`; entries
    whose definition cannot be read are refused with the reason, and the command then exits 1. Without --app,
    entries are not routed by the project's task_routes: those without options.queue go to `celery`."""
    try:
        from beatd.redbeat_import import convert_entries
    except ImportError as error:
        raise UsageProblem(f"beatd import redbeat needs Celery: pip install 'beatd[celery]' ({error})") from error
    from beatd.celery_import import known_zone, render_yaml
    from beatd.config.redis_urls import display_url
    from beatd.store import connect
    from beatd.store.redbeat_entries import read_entries

    app = _load_app(app_path, paths) if app_path is not None else None
    if zone is None:
        zone = str(app.conf.timezone) if app is not None and app.conf.timezone else "UTC"
    if not known_zone(zone):
        raise UsageProblem(f"--timezone {zone!r} is not an IANA time zone")
    try:
        client = connect(redis_url)
    except ValueError as error:
        raise UsageProblem(f"--redis-url {display_url(redis_url)!r}: {error}") from error
    entries = read_entries(client, key_prefix)
    if not entries:
        raise BeatdError(
            f"no RedBeat entries in {key_prefix}:schedule at {display_url(redis_url)}: is it RedBeat's database "
            "(redbeat_redis_url) and its redbeat_key_prefix (--key-prefix)?"
        )
    imported = convert_entries(entries, key_prefix, zone, app)
    source = f"RedBeat's entries in {display_url(redis_url)} by `beatd import redbeat`"
    click.echo(render_yaml(imported.conversion, source=source), nl=False)
    _summary(imported.conversion)
    if imported.malformed:
        click.echo(f"beatd: {imported.malformed} entries could not be read (see NOT CONVERTED)", err=True)
        raise click.exceptions.Exit(1)


def _summary(conversion: Conversion) -> None:
    refused = [entry for entry in conversion.entries if entry.job is None]
    noted = sum(len(entry.notes) for entry in conversion.entries)
    click.echo(
        f"beatd: {len(conversion.entries) - len(refused)} of {len(conversion.entries)} entries converted, "
        f"{len(refused)} refused, {noted} difference(s) noted (as comments)",
        err=True,
    )
