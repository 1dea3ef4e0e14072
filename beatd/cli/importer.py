"""``beatd import celery APP``: a Celery app's beat_schedule as beatd YAML on stdout, differences as comments."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from beatd.cli.runtime import UsageProblem

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
    conversion = convert(app)
    click.echo(render_yaml(conversion), nl=False)
    refused = [entry for entry in conversion.entries if entry.job is None]
    noted = sum(len(entry.notes) for entry in conversion.entries)
    click.echo(
        f"beatd: {len(conversion.entries) - len(refused)} of {len(conversion.entries)} entries converted, "
        f"{len(refused)} refused, {noted} difference(s) noted (as comments)",
        err=True,
    )
