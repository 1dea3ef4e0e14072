"""Jobs created at runtime: validated like a YAML job, allowed only within ``runtime_jobs``, stored in Redis.

:class:`RuntimeJobs` is the writer's side (``beatd job``, ``client.jobs``): it validates a spec with the model
and messages of a YAML job (located in the document given), refuses a name the YAML declares and a target the
config's ``runtime_jobs`` does not allow, and writes it with a version and an audit record of who, when and
the diff. :func:`judge` is the reader's side (the beat, workers): the same checks against the reader's own
config, for an entry that may have been forged straight into Redis.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from beatd import defaults
from beatd.audit import audit_record
from beatd.clock import Clock, SystemClock
from beatd.config import Config, JobSpec, RuntimeJobsSettings, validate_job
from beatd.config.job_documents import job_from_mapping
from beatd.config.yamlsource import Located
from beatd.errors import ConfigError, Problem
from beatd.messages import format_utc
from beatd.store.jobs import JobChange, JobStore, StoredJob

__all__ = ["RUNTIME", "YAML", "RuntimeJobs", "allow_problem", "check_job", "diff", "judge"]

YAML = "yaml"
"""The source of a job declared in the config files."""

RUNTIME = "runtime"
"""The source of a job created at runtime."""


def allow_problem(settings: RuntimeJobsSettings | None, spec: JobSpec) -> tuple[str, str] | None:
    """Why ``spec`` may not be a runtime job under ``settings`` (the key to blame and the message), or None."""
    if settings is None:
        return "", "runtime jobs are not enabled: the config has no runtime_jobs section"
    if spec.celery is None and spec.queue not in settings.queues:
        allowed = ", ".join(settings.queues) or "none"
        return "queue", f"queue {spec.queue!r} is not one runtime jobs may use (runtime_jobs.queues: {allowed})"
    if spec.call is not None or spec.celery is not None:
        key, target = ("call", spec.call) if spec.call is not None else ("celery", spec.celery)
        if not _matcher(settings.allow)(target or ""):
            allowed = ", ".join(settings.allow) or "nothing"
            return key, f"{target} is not allowed for runtime jobs (runtime_jobs.allow: {allowed})"
        return None
    if spec.shell:
        return "shell", "shell: true is never allowed in a runtime job"
    line = shlex.join(spec.command or ())
    if not _matcher(settings.commands)(line):
        allowed = ", ".join(settings.commands) or "none"
        return "command", f"command {line!r} is not allowed for runtime jobs (runtime_jobs.commands: {allowed})"
    return None


def check_job(config: Config, name: str, document: Located) -> JobSpec:
    """The job ``name`` of ``document`` validated as a runtime job of ``config``; ConfigError with every problem
    (worded and located as for a YAML job) otherwise."""
    if name in config.jobs:
        source = config.sources.get(name)
        where = f" at {source.file}:{(source.position(('jobs', name), at_key=True) or (0, 0))[0]}" if source else ""
        message = f"a job of this name is declared in the YAML{where}: a runtime job cannot shadow it"
        raise ConfigError([_positioned(document, document.problem(("jobs", name), message, at_key=True))])
    spec, problems = validate_job(config, name, document)
    if spec is not None:
        refused = allow_problem(config.settings.runtime_jobs, spec)
        if refused is not None:
            key, message = refused
            problems.append(document.problem(("jobs", name, key) if key else ("jobs", name), message))
    if problems or spec is None:
        raise ConfigError([_positioned(document, problem) for problem in problems])
    return spec


def judge(config: Config, name: str, raw: str) -> tuple[JobSpec | None, str]:
    """A reader's verdict on the stored entry ``raw`` of runtime job ``name``: its spec, or None and why it
    is refused (a forged entry, a target this config does not allow, a name its YAML declares)."""
    if len(raw) > defaults.RUNTIME_SPEC_MAX_BYTES + 1024:
        return None, f"entry larger than {defaults.RUNTIME_SPEC_MAX_BYTES // 1024} KiB"
    try:
        stored = StoredJob.parse(name, raw)  # JSON already: validated as it is, without another round trip
        return check_job(config, name, Located(f"runtime job {name}", {"jobs": {name: stored.spec}})), ""
    except ValueError as error:
        return None, f"unreadable entry: {error}"
    except ConfigError as error:
        return None, "; ".join(f"{problem.path}: {problem.message}" for problem in error.problems)


def diff(before: Any, after: Any) -> dict[str, list[Any]]:
    """The top-level keys whose value differs between two specs: ``{key: [before, after]}`` (None: absent)."""
    old = before if isinstance(before, dict) else {}
    new = after if isinstance(after, dict) else {}
    return {key: [old.get(key), new.get(key)] for key in sorted({*old, *new}) if old.get(key) != new.get(key)}


@dataclass(frozen=True)
class RuntimeJobs:
    """Create, change, delete and read runtime jobs (``client.jobs``): every write is validated against
    ``config`` first and audited; ``actor`` names who acts in the audit (default: the OS user)."""

    config: Config
    store: JobStore
    clock: Clock = field(default_factory=SystemClock)
    actor: str | None = None

    def put(self, name: str, spec: Mapping[str, Any] | Located) -> StoredJob:
        """Create or replace runtime job ``name``; return it as stored (with its version). ``spec`` is the job
        mapping (what a YAML job holds under its name), or a document read by :mod:`beatd.config.job_documents`.
        Raises ConfigError (nothing written) when it is not a valid runtime job."""
        document = spec if isinstance(spec, Located) else job_from_mapping(name, spec, f"jobs.put({name!r})")
        check_job(self.config, name, document)
        raw = document.value["jobs"][name]
        previous = self.get(name)
        at = format_utc(self.clock.now())
        changes = diff(previous.spec if previous else None, raw)
        event = "job-put" if previous is None else "job-change"
        record = self._audit(event, job=name, previous_version=previous.version if previous else None, diff=changes)
        (version,) = self.store.write([JobChange.put(name, raw, record["actor"], at)], record)
        return StoredJob(name, version, raw, record["actor"], at)

    def put_many(self, specs: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
        """Create or replace many runtime jobs: all are validated first (one ConfigError lists every problem;
        nothing is written), then written ``RUNTIME_BATCH`` to a call, each call atomic with one audit record
        naming its jobs. Returns each job's version."""
        problems: list[Problem] = []
        for name, spec in specs.items():
            try:
                check_job(self.config, name, job_from_mapping(name, spec, f"jobs.put_many[{name!r}]"))
            except ConfigError as error:
                problems.extend(error.problems)
        if problems:
            raise ConfigError(problems)
        at = format_utc(self.clock.now())
        names = list(specs)
        versions: dict[str, int] = {}
        for start in range(0, len(names), defaults.RUNTIME_BATCH):
            chunk = names[start : start + defaults.RUNTIME_BATCH]
            record = self._audit("job-put-many", jobs=chunk)
            changes = [JobChange.put(name, dict(specs[name]), record["actor"], at) for name in chunk]
            versions.update(zip(chunk, self.store.write(changes, record), strict=True))
        return versions

    def delete(self, name: str) -> bool:
        """Delete runtime job ``name``; False when there was none. Its history stays (like a removed YAML job)."""
        previous = self.get(name)
        if previous is None:
            return False
        record = self._audit("job-delete", job=name, previous_version=previous.version, diff=diff(previous.spec, None))
        return self.store.write([JobChange.delete(name)], record)[0] > 0

    def get(self, name: str) -> StoredJob | None:
        """Runtime job ``name`` as stored, or None (an unreadable entry reads as None too)."""
        raw = self.store.entries([name]).get(name)
        if raw is None:
            return None
        try:
            return StoredJob.parse(name, raw)
        except ValueError:
            return None

    def list(self) -> Sequence[StoredJob]:
        """Every readable runtime job as stored, by name."""
        found = []
        for name, raw in sorted(self.store.all_entries().items()):
            try:
                found.append(StoredJob.parse(name, raw))
            except ValueError:
                continue
        return found

    def _audit(self, event: str, **details: Any) -> dict[str, Any]:
        record = audit_record(event, self.clock.now(), **details)
        record["actor"] = self.actor or record["user"]
        return record


@functools.lru_cache(maxsize=64)
def _matcher(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """Whether a text matches any of ``patterns`` (``fnmatch``, case-sensitive), as one compiled expression."""
    if not patterns:
        return lambda _: False
    compiled = re.compile("|".join(f"(?:{fnmatch.translate(pattern)})" for pattern in patterns))
    return lambda text: compiled.match(text) is not None


def _positioned(document: Located, problem: Problem) -> Problem:
    """A problem of a document with no positions (a Python mapping) names the document and the path only."""
    if document.value_nodes:
        return problem
    return Problem(problem.file, 0, 0, problem.path, problem.message)
