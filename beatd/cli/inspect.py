"""Commands that read the config and say what will fire when: check, jobs, next, schema."""

from __future__ import annotations

from typing import Any

import click

from beatd.cli.options import config_option, json_option
from beatd.cli.render import echo_json, echo_table, fit_columns
from beatd.cli.runtime import Runtime, UsageProblem
from beatd.client.sync import Client, find_job, next_instants
from beatd.config import Config, JobSpec
from beatd.config.schema import config_schema
from beatd.errors import ConfigError, ScheduleError
from beatd.runtime_jobs import YAML
from beatd.store import StoreError
from beatd.targets import check_targets
from beatd.triggers import parse_instant

__all__ = ["check", "find_job", "jobs", "next_fires", "schema", "sourced_jobs"]


@click.command()
@config_option
@click.option("--no-import", is_flag=True, help="Do not import call targets (a beat host without job code).")
@click.option("--strict", is_flag=True, help="Treat warnings (an include that matches no file, no jobs) as problems.")
@click.pass_obj
def check(runtime: Runtime, config_path: str | None, no_import: bool, strict: bool) -> None:
    """Validate the config and import every call target; exit 2 listing every problem. Warnings go to stderr
    (exit 0), or count as problems with --strict."""
    config = runtime.load(config_path)
    problems = list(config.warnings) if strict else []
    if not strict:
        for warning in config.warnings:
            click.echo(warning.as_warning(), err=True)
    if not no_import:
        problems += check_targets(config).values()
    if problems:
        raise ConfigError(problems)
    count, warned = len(config.jobs), len(config.warnings)
    noted = f", {warned} warning{'s' if warned != 1 else ''}" if warned else ""
    click.echo(f"{config.path}: ok, {count} job{'s' if count != 1 else ''}{noted} (digest {config.digest})")


@click.command()
@config_option
@json_option
@click.option("--wide", is_flag=True, help="Print every column in full (default: fit the terminal's width).")
@click.pass_obj
def jobs(runtime: Runtime, config_path: str | None, as_json: bool, wide: bool) -> None:
    """List the jobs: schedule in words and as written, time zone, next fire (in the job's zone), target, enabled,
    and where each comes from (SOURCE: yaml, or runtime for ``beatd job put``, read from Redis).

    The table fits the terminal (long texts end in an ellipsis, AS WRITTEN is left out when there is no room);
    --wide prints every column whole."""
    config = runtime.load(config_path)
    now = runtime.clock.now()
    rows: list[dict[str, Any]] = []
    for spec, source in sourced_jobs(config):
        upcoming = spec.trigger().next_after(now) if spec.enabled else None
        rows.append(
            {
                "name": spec.name,
                "schedule": spec.trigger().describe(),
                "as_written": spec.schedule_text,
                "timezone": spec.timezone,
                "next_fire": upcoming.astimezone(spec.zone).isoformat() if upcoming else None,
                "target": spec.target_text,
                "enabled": spec.enabled,
                "queue": _queue(spec),
                "tags": list(spec.tags),
                "source": source,
            }
        )
    if as_json:
        echo_json(rows)
        return
    headers = ("NAME", "SCHEDULE", "AS WRITTEN", "TIMEZONE", "NEXT FIRE", "TARGET", "ENABLED", "SOURCE")
    table = [
        [
            str(row["name"]),
            str(row["schedule"]),
            str(row["as_written"]),
            str(row["timezone"]),
            str(row["next_fire"] or "-"),
            str(row["target"]),
            "yes" if row["enabled"] else "no",
            str(row["source"]),
        ]
        for row in rows
    ]
    if wide:
        echo_table(headers, table)
        return
    # Never cut: the name, the next fire, enabled. AS WRITTEN goes first (SCHEDULE says it in words).
    echo_table(*fit_columns(headers, table, ("SCHEDULE", "AS WRITTEN", "TIMEZONE", "TARGET"), ("AS WRITTEN",)))


@click.command("next")
@config_option
@click.argument("job")
@click.option("-n", "count", type=click.IntRange(1, 10_000), default=5, show_default=True, help="How many.")
@click.option("--after", metavar="ISO8601", help="Start after this instant (default now); naive = job's zone.")
@json_option
@click.pass_obj
def next_fires(
    runtime: Runtime, config_path: str | None, job: str, count: int, after: str | None, as_json: bool
) -> None:
    """Print the next N scheduled instants of JOB in its time zone."""
    config = runtime.load(config_path)
    spec = find_job(config, job)
    instant = runtime.clock.now()
    if after is not None:
        try:
            instant = parse_instant(after, spec.zone)
        except ScheduleError as error:
            raise UsageProblem(f"--after: {error}") from error
    instants = next_instants(spec, count, instant)
    texts = [upcoming.astimezone(spec.zone).isoformat() for upcoming in instants]
    if as_json:
        echo_json(texts)
        return
    for text in texts:
        click.echo(text)
    if len(texts) < count:
        click.echo(f"({job} fires no more after this)" if texts else f"({job} will not fire again)")


@click.command()
def schema() -> None:
    """Print the JSON Schema of the config file (for yaml-language-server and other editors)."""
    echo_json(config_schema())


def sourced_jobs(config: Config) -> list[tuple[JobSpec, str]]:
    """Every job with its source (``Client.jobs.sourced``): the YAML's, then the runtime jobs valid under
    ``config``. Redis being unreachable is a warning: the YAML jobs are still listed."""
    try:
        return Client(config=config).jobs.sourced()
    except StoreError as error:
        click.echo(f"beatd: warning: runtime jobs not read: {error}", err=True)
        return [(spec, YAML) for spec in config.jobs.values()]


def _queue(spec: JobSpec) -> str:
    """Where the job's fires go: its beatd queue, or for a celery job its Celery queue (``options.queue``)."""
    if spec.celery is not None and spec.options is not None and spec.options.queue is not None:
        return spec.options.queue
    return spec.queue
