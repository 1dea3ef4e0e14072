"""``beatd job put|rm|list``: jobs created at runtime (:mod:`beatd.runtime_jobs`), over the same API as
``client.jobs``. A spec is validated like a YAML job against the config (exit 2 with located problems)."""

from __future__ import annotations

from pathlib import Path

import click

from beatd.cli.options import config_option
from beatd.cli.render import echo_json, echo_table
from beatd.cli.runtime import Runtime, UsageProblem
from beatd.config import Config
from beatd.config.job_documents import job_from_file, job_from_json
from beatd.layout import verify_layout
from beatd.runtime_jobs import RuntimeJobs, check_job
from beatd.store import connect
from beatd.store.jobs import JobStore

__all__ = ["job"]


def _jobs(
    runtime: Runtime, config_path: str | None, *, writes: bool = False, config: Config | None = None
) -> RuntimeJobs:
    """The runtime jobs (of ``config``, else of the config loaded); for ``writes`` (put, rm) once the
    deployment's layout is found to be the config's (beatd.layout.verify_layout: ConfigError, exit 2, else)."""
    config = config or runtime.load(config_path)
    store = JobStore(connect(config.settings.redis), config.keys())
    if writes:
        verify_layout(store.client, config)
    return RuntimeJobs(config, store, runtime.clock)


@click.group()
def job() -> None:
    """Create, change, delete and list runtime jobs (allowed by the config's runtime_jobs)."""


@job.command("put")
@config_option
@click.argument("name")
@click.option(
    "-f", "--file", "spec_file", metavar="FILE", help="The job's spec as YAML (what a job holds under its name)."
)
@click.option("--json", "spec_json", metavar="JSON", help="The job's spec as one JSON object.")
@click.pass_obj
def put(runtime: Runtime, config_path: str | None, name: str, spec_file: str | None, spec_json: str | None) -> None:
    """Create or replace runtime job NAME; the leader schedules it within a second."""
    if (spec_file is None) == (spec_json is None):
        raise UsageProblem("expected exactly one of -f FILE and --json JSON")
    document = job_from_file(name, Path(spec_file)) if spec_file is not None else job_from_json(name, spec_json or "")
    config = runtime.load(config_path)
    check_job(config, name, document)  # a bad spec exits 2 before Redis is asked anything
    stored = _jobs(runtime, config_path, writes=True, config=config).put(name, document)
    click.echo(f"put {name}: version {stored.version}")


@job.command("rm")
@config_option
@click.argument("name")
@click.pass_obj
def remove(runtime: Runtime, config_path: str | None, name: str) -> None:
    """Delete runtime job NAME (its history stays)."""
    if not _jobs(runtime, config_path, writes=True).delete(name):
        raise UsageProblem(f"no runtime job {name!r}")
    click.echo(f"deleted {name}")


@job.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def list_jobs(runtime: Runtime, config_path: str | None, as_json: bool) -> None:
    """List the runtime jobs as stored: name, version, who wrote it and when."""
    stored = _jobs(runtime, config_path).list()
    if as_json:
        echo_json(
            [
                {"name": s.name, "version": s.version, "by": s.by, "at": s.at, "spec": s.spec}
                | ({"unreadable": s.unreadable} if s.unreadable is not None else {})
                for s in stored
            ]
        )
        return
    rows = [
        [s.name, str(s.version), s.by, s.at] if s.unreadable is None else [s.name, "unreadable", "", s.unreadable]
        for s in stored
    ]
    echo_table(["NAME", "VERSION", "BY", "AT"], rows)
