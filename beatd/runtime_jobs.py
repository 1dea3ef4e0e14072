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
from collections.abc import Mapping, Sequence
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
from beatd.sharding import shard_of
from beatd.store.jobs import JobChange, JobStore, StoredJob

__all__ = [
    "RUNTIME",
    "YAML",
    "RuntimeJobs",
    "allow_problem",
    "call_allowed",
    "celery_allowed",
    "check_job",
    "command_allowed",
    "diff",
    "judge",
]

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
    if spec.env or spec.cwd:
        if spec.cwd:
            return "cwd", "cwd is never allowed in a runtime job"
        refused = sorted(name for name in spec.env if name not in settings.env or not env_name_allowed(name))
        if refused:
            allowed = ", ".join(settings.env) or "none"
            return "env", f"env {', '.join(refused)} not allowed in a runtime job (runtime_jobs.env: {allowed})"
    if spec.call is not None:
        if not call_allowed(settings.allow, spec.call):
            allowed = ", ".join(settings.allow) or "nothing"
            return "call", f"{spec.call} is not allowed for runtime jobs (runtime_jobs.allow: {allowed})"
        return None
    if spec.celery is not None:
        if not celery_allowed(settings.allow, spec.celery):
            allowed = ", ".join(settings.allow) or "nothing"
            return "celery", f"{spec.celery} is not allowed for runtime jobs (runtime_jobs.allow: {allowed})"
        return None
    if spec.shell:
        return "shell", "shell: true is never allowed in a runtime job"
    argv = tuple(spec.command or ())
    if not argv or not argv[0].startswith("/"):
        return "command", "a runtime job's command must start with an absolute path (argv[0])"
    if not command_allowed(settings.commands, argv):
        allowed = ", ".join(settings.commands) or "none"
        line = shlex.join(argv)
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
    """The runtime jobs of shard 0 (of the only shard, unsharded); a job lives in its own shard's
    (:meth:`store_of`), so a shard's leader follows only its shard's changes."""
    clock: Clock = field(default_factory=SystemClock)
    actor: str | None = None
    _shards: dict[int, JobStore] = field(default_factory=dict, compare=False, repr=False)

    def store_of(self, name: str) -> JobStore:
        """The runtime jobs of the shard job ``name`` belongs to (:meth:`beatd.config.Config.keys_of`)."""
        if self.config.shards == 1:
            return self.store
        return self._store(shard_of(name, self.config.shards))

    def stores(self) -> list[JobStore]:
        """The runtime jobs of every shard, shard 0 first."""
        return [self._store(shard) for shard in range(self.config.shards)] if self.config.shards > 1 else [self.store]

    def _store(self, shard: int) -> JobStore:
        keys = self.config.keys(shard)
        if keys == self.store.keys:
            return self.store
        found = self._shards.get(shard)
        if found is None:
            found = self._shards[shard] = JobStore(self.store.client, keys)
        return found

    def entries(self, names: Sequence[str]) -> dict[str, str | None]:
        """The stored entries of ``names`` (None: none stored), each read from its job's shard."""
        by_store: dict[int, tuple[JobStore, list[str]]] = {}
        for name in names:
            store = self.store_of(name)
            by_store.setdefault(id(store), (store, []))[1].append(name)
        found: dict[str, str | None] = {}
        for store, chunk in by_store.values():
            found.update(store.entries(chunk))
        return found

    def all_entries(self) -> dict[str, str]:
        """Every stored runtime job entry (name -> raw JSON) of every shard."""
        entries: dict[str, str] = {}
        for store in self.stores():
            entries.update(store.all_entries())
        return entries

    def put(self, name: str, spec: Mapping[str, Any] | Located) -> StoredJob:
        """Create or replace runtime job ``name``; return it as stored (with its version). ``spec`` is the job
        mapping (what a YAML job holds under its name), or a document read by :mod:`beatd.config.job_documents`.
        Raises ConfigError (nothing written) when it is not a valid runtime job. Written to the job's shard."""
        document = spec if isinstance(spec, Located) else job_from_mapping(name, spec, f"jobs.put({name!r})")
        check_job(self.config, name, document)
        raw = document.value["jobs"][name]
        previous = self.get(name)
        at = format_utc(self.clock.now())
        changes = diff(previous.spec if previous else None, raw)
        event = "job-put" if previous is None else "job-change"
        record = self._audit(event, job=name, previous_version=previous.version if previous else None, diff=changes)
        (version,) = self.store_of(name).write([JobChange.put(name, raw, record["actor"], at)], record)
        return StoredJob(name, version, raw, record["actor"], at)

    def put_many(self, specs: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
        """Create or replace many runtime jobs: all are validated first (one ConfigError lists every problem;
        nothing is written), then written ``RUNTIME_BATCH`` to a call, each call atomic with one audit record
        naming its jobs. Returns each job's version."""
        from beatd.runtime_judge import Judge  # here: it builds on this module's judge

        shapes = Judge(self.config)  # 100,000 specs of a few shapes: each shape validated in full once
        problems: list[Problem] = []
        for name, spec in specs.items():
            try:
                document = job_from_mapping(name, spec, f"jobs.put_many[{name!r}]")
                if shapes.valid_compact(name, document.value["jobs"][name]) is None:  # no JobSpec made
                    check_job(self.config, name, document)
            except ConfigError as error:
                problems.extend(error.problems)
        if problems:
            raise ConfigError(problems)
        at = format_utc(self.clock.now())
        by_store: dict[int, tuple[JobStore, list[str]]] = {}  # each call touches one shard's keys
        for name in specs:
            store = self.store_of(name)
            by_store.setdefault(id(store), (store, []))[1].append(name)
        versions: dict[str, int] = {}
        for store, names in by_store.values():
            for start in range(0, len(names), defaults.RUNTIME_BATCH):
                chunk = names[start : start + defaults.RUNTIME_BATCH]
                record = self._audit("job-put-many", jobs=chunk)
                changes = [JobChange.put(name, dict(specs[name]), record["actor"], at) for name in chunk]
                versions.update(zip(chunk, store.write(changes, record), strict=True))
        return {name: versions[name] for name in specs}

    def delete(self, name: str) -> bool:
        """Delete runtime job ``name``; False when there was none. Its history stays (like a removed YAML job)."""
        store = self.store_of(name)
        raw = store.entries([name]).get(name)
        if raw is None:
            return False
        previous = self.get(name)  # None: an unreadable entry, deleted all the same
        version, spec = (previous.version, previous.spec) if previous is not None else (None, None)
        record = self._audit("job-delete", job=name, previous_version=version, diff=diff(spec, None))
        return store.write([JobChange.delete(name)], record)[0] > 0

    def get(self, name: str) -> StoredJob | None:
        """Runtime job ``name`` as stored, or None (an unreadable entry reads as None too)."""
        raw = self.store_of(name).entries([name]).get(name)
        if raw is None:
            return None
        try:
            return StoredJob.parse(name, raw)
        except ValueError:
            return None

    def list(self) -> Sequence[StoredJob]:
        """Every runtime job as stored, by name; an unreadable entry (forged or corrupt) as one with
        ``unreadable`` saying why."""
        found = []
        for name, raw in sorted(self.all_entries().items()):
            try:
                found.append(StoredJob.parse(name, raw))
            except ValueError as error:
                found.append(StoredJob(name, 0, None, "", "", unreadable=str(error)))
        return found

    def _audit(self, event: str, **details: Any) -> dict[str, Any]:
        record = audit_record(event, self.clock.now(), **details)
        record["actor"] = self.actor or record["user"]
        return record


PLAIN_ATTRIBUTE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
"""The function part of a runtime job's call target: one public name of the module (no dotted path, which
resolve_call would walk into other objects, ``ok.__globals__``; no leading underscore)."""


def call_allowed(patterns: Sequence[str], target: str) -> bool:
    """Whether call ``target`` (``module:function``) is allowed by a call pattern (one with ``:``) of
    ``patterns``: the module part equals the pattern's exactly (no wildcard), the function is a plain public
    name and matches the pattern's function part (``fnmatch``, case-sensitive). Celery name patterns (no
    ``:``) never allow a call."""
    module, colon, function = target.partition(":")
    if not colon or not module or not PLAIN_ATTRIBUTE.match(function):
        return False
    for pattern in patterns:
        allowed_module, colon, allowed_function = pattern.partition(":")
        if colon and allowed_module == module and fnmatch.fnmatchcase(function, allowed_function):
            return True
    return False


def celery_allowed(patterns: Sequence[str], name: str) -> bool:
    """Whether Celery task ``name`` is allowed by a Celery name pattern (one without ``:``) of ``patterns``
    (``fnmatch``, case-sensitive); call patterns (with ``:``) never allow a Celery task."""
    return ":" not in name and any(":" not in pattern and fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def command_allowed(patterns: Sequence[str], argv: Sequence[str]) -> bool:
    """Whether ``argv`` is allowed by a command pattern: the pattern split as a shell would (``shlex``) has as
    many elements as ``argv``, and each matches its argv element (``fnmatch``: ``*`` never spans arguments)."""
    return any(_argv_matches(_pattern_argv(pattern), argv) for pattern in patterns)


def env_name_allowed(name: str) -> bool:
    """Whether ``runtime_jobs.env`` may name ``name`` at all: never PATH, LD_* nor PYTHON* (what chooses the
    program or the code it loads)."""
    return name != "PATH" and not name.startswith(("LD_", "PYTHON"))


@functools.lru_cache(maxsize=256)
def _pattern_argv(pattern: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(pattern))
    except ValueError:
        return ()


def _argv_matches(pattern: Sequence[str], argv: Sequence[str]) -> bool:
    return bool(pattern) and len(pattern) == len(argv) and all(map(fnmatch.fnmatchcase, argv, pattern))


def _positioned(document: Located, problem: Problem) -> Problem:
    """A problem of a document with no positions (a Python mapping) names the document and the path only."""
    if document.value_nodes:
        return problem
    return Problem(problem.file, 0, 0, problem.path, problem.message)
