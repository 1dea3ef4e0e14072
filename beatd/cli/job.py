"""``beatd job put|rm|list``: jobs created at runtime (:mod:`beatd.runtime_jobs`), over the same API as
``client.jobs``. A spec is validated like a YAML job against the config (exit 2 with located problems)."""

from __future__ import annotations

from pathlib import Path

import click

from beatd.cli.options import config_option
from beatd.cli.render import echo_json, echo_table
from beatd.cli.runtime import Runtime, UsageProblem
from beatd.config.job_documents import job_from_file, job_from_json
from beatd.keys import Keys
from beatd.runtime_jobs import RuntimeJobs
from beatd.store import connect
from beatd.store.jobs import JobStore

__all__ = ["job"]


def _jobs(runtime: Runtime, config_path: str | None) -> RuntimeJobs:
    config = runtime.load(config_path)
    return RuntimeJobs(config, JobStore(connect(config.settings.redis), Keys(config.namespace)), runtime.clock)


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
    stored = _jobs(runtime, config_path).put(name, document)
    click.echo(f"put {name}: version {stored.version}")


@job.command("rm")
@config_option
@click.argument("name")
@click.pass_obj
def remove(runtime: Runtime, config_path: str | None, name: str) -> None:
    """Delete runtime job NAME (its history stays)."""
    if not _jobs(runtime, config_path).delete(name):
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
        echo_json([{"name": s.name, "version": s.version, "by": s.by, "at": s.at, "spec": s.spec} for s in stored])
        return
    echo_table(["NAME", "VERSION", "BY", "AT"], [[s.name, str(s.version), s.by, s.at] for s in stored])
