"""Turn config files into a validated :class:`Config`, or a :class:`ConfigError` listing every problem.

This module and :mod:`beatd.config.yamlsource` are the only readers of config files and the environment.
Nothing is half-applied: either every file and job is valid and a Config is returned, or nothing is.
"""

from __future__ import annotations

import difflib
import glob
import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from beatd import defaults
from beatd.collector import collector_paused
from beatd.config.alerts import AlertSettings, alert_problems, effective_rules, job_alert_problems
from beatd.config.celery_rules import broker_problems, celery_job_problems, prepare_celery_job
from beatd.config.compact import CompactJob, JobSpecs, TriggerTable, compact_jobs
from beatd.config.model import (
    NAME_PATTERN,
    SCHEDULE_KEYS,
    TARGET_KEYS,
    CelerySettings,
    ConfigFile,
    HistoryPolicy,
    JobSpec,
    OutputPolicy,
    Policies,
)
from beatd.config.shapes import Shapes, shape_key
from beatd.config.yamlsource import KeyPath, Located, read_yaml
from beatd.durations import format_duration
from beatd.errors import ConfigError, Problem, ScheduleError
from beatd.keys import Keys
from beatd.sharding import shard_of, tagged_layout
from beatd.triggers import Trigger

__all__ = [
    "Config",
    "find_config",
    "load_config",
    "load_connection",
    "load_namespace",
    "load_shards",
    "validate_job",
]

M = TypeVar("M", bound=BaseModel)
_EXTENSION_PREFIX = "x-"  # top-level keys for YAML anchors, ignored as in docker compose


@dataclass(frozen=True)
class Config:
    """A whole validated deployment config: connection, namespace and jobs in file order, and the warnings
    found (located like problems, but the config is usable: an include that matches no file, no jobs)."""

    path: Path
    settings: ConfigFile
    jobs: Mapping[str, JobSpec]
    sources: Mapping[str, Located] = field(repr=False, default_factory=dict)
    warnings: tuple[Problem, ...] = ()

    @property
    def namespace(self) -> str:
        """Prefix of every Redis key of this deployment."""
        return self.settings.namespace

    @property
    def shards(self) -> int:
        """How many shards the jobs are spread over (each with its own lease and progress)."""
        return self.settings.shards

    @property
    def tagged(self) -> bool:
        """Whether the keys carry hash tags (:func:`beatd.sharding.tagged_layout`): several shards, or any
        Redis Cluster (whose scripts must name keys of one slot)."""
        return tagged_layout(self.shards, cluster=self.settings.redis.cluster)

    def keys(self, shard: int = 0) -> Keys:
        """The Redis keys of shard ``shard`` of this deployment."""
        return Keys(self.namespace, shard, self.tagged)

    def shard_keys(self) -> list[Keys]:
        """The keys of every shard, shard 0 first."""
        return [self.keys(shard) for shard in range(self.shards)]

    def keys_of(self, job: str) -> Keys:
        """The keys of the shard job ``job`` belongs to."""
        return self.keys(shard_of(job, self.shards))

    @cached_property
    def pythonpath(self) -> tuple[Path, ...]:
        """Directories searched for ``call`` targets, resolved against the config file's directory."""
        return tuple((self.path.parent / entry).resolve() for entry in self.settings.pythonpath)

    @cached_property
    def compact(self) -> Mapping[str, CompactJob]:
        """The jobs as the beat keeps them (:mod:`beatd.config.compact`), in file order."""
        return compact_jobs(self.jobs)

    @cached_property
    def digest(self) -> str:
        """Short hash of every job's spec: replicas with equal digests schedule the same jobs (computed once)."""
        # The bytes of ``TypeAdapter(dict[str, JobSpec]).dump_json`` of the jobs by sorted name (the digest of
        # earlier versions, which replicas compare), hashed job by job: the whole text of 100,000 jobs would
        # take ~100 MB at once. Each job's JSON is its shape's with its own values put in (CompactJob.json).
        # Names need no JSON escaping (NAME_PATTERN).
        digest = hashlib.sha256(b"{")
        jobs = self.compact
        for index, name in enumerate(sorted(jobs)):
            digest.update(b'%s"%s":' % (b"," if index else b"", name.encode()))
            digest.update(jobs[name].json())
        digest.update(b"}")
        return digest.hexdigest()[:16]

    def problem(self, job: str, key: str, message: str) -> Problem:
        """A Problem located at ``jobs.JOB.KEY`` in the file that declared the job."""
        return self.sources[job].problem(("jobs", job, key), message)


def find_config(explicit: str | None, environ: Mapping[str, str], cwd: Path) -> Path:
    """The config file to use: ``-c``, else ``$BEATD_CONFIG``, else the first of the search path that exists."""
    if explicit:
        return Path(explicit)
    if environ.get("BEATD_CONFIG"):
        return Path(environ["BEATD_CONFIG"])
    candidates = [cwd / entry for entry in defaults.CONFIG_SEARCH_PATH]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    looked = ", ".join(["$BEATD_CONFIG", *map(str, candidates)])
    raise ConfigError([Problem("beatd", 0, 0, "", f"no config file found (looked in {looked}); pass -c FILE")])


def load_config(path: Path, environ: Mapping[str, str], *, by_shape: bool = True) -> Config:
    """Read, substitute, merge and validate ``path`` and its includes; raise ConfigError on any problem.

    ``by_shape``: jobs written alike are validated in full once (:mod:`beatd.config.shapes`); False validates
    every job in full (the same result: for tests that compare the two)."""
    with collector_paused():
        return _load(path, environ, by_shape)


def _load(path: Path, environ: Mapping[str, str], by_shape: bool) -> Config:
    main, problems = read_yaml(path, environ)
    if main.value is None and problems:
        raise ConfigError(problems)
    top = main.value if main.value is not None else {}
    if not isinstance(top, dict):
        raise ConfigError([main.problem((), "expected a mapping at the top level (redis, namespace, jobs, ...)")])
    top = {key: value for key, value in top.items() if not str(key).startswith(_EXTENSION_PREFIX)}
    settings = _validate(ConfigFile, top, main, (), problems, allowed=ConfigFile.model_fields)
    if settings is None:  # carry on with what is usable, so every job's problems are reported too
        settings = ConfigFile.model_validate(
            {key: top[key] for key in ("defaults", "jobs") if isinstance(top.get(key), dict)}
        )
    else:
        problems.extend(broker_problems(settings, main))

    declared: dict[str, Located] = {}
    """The file that declared each job; ``raws`` holds its raw value until it is validated (two dicts, no tuple
    per job: see :func:`_fresh_name`)."""
    raws: dict[str, Any] = {}
    warnings: list[Problem] = []
    _collect_jobs(top.get("jobs"), main, raws, declared, problems)
    for include_path, pattern_problem in _include_paths(settings, path, main, warnings):
        if pattern_problem:
            problems.append(pattern_problem)
            continue
        _collect_include(include_path, environ, raws, declared, problems)

    job_defaults = _valid_defaults(settings.defaults, main, problems)
    if settings.alerts is not None:
        problems.extend(alert_problems(settings.alerts, declared, main))
    # From here on only positions are asked of the sources; each job's raw values are let go once it is
    # validated, so the raw jobs and their specs are not all alive at once (the specs hold the values).
    where: KeyPath = ("jobs",) if "jobs" in top else ()
    settings = settings.model_copy(update={"jobs": {}})
    top = {}
    for source in {id(source): source for source in declared.values()}.values():
        source.value = None
    main.value = None
    jobs: dict[str, CompactJob] = {}
    shared = _Interner()
    shapes = Shapes(settings.alerts, shared.trigger)
    for name, source in declared.items():
        raw, raws[name] = raws[name], None
        key = shape_key(raw) if by_shape else None
        job = shapes.job(key, name, raw)
        if job is None:
            spec = _validate_job(
                name, raw, source, settings.timezone, job_defaults, settings.celery, problems, settings.alerts
            )
            if spec is not None:
                spec = shared.spec(spec)
                shapes.remember(key, spec, raw)
                job = CompactJob.of_spec(spec)
        del raw
        if job is not None:
            jobs[name] = job
    if problems:
        raise ConfigError(problems)
    if not jobs:
        warnings.append(main.problem(where, "the config declares no jobs: nothing will be scheduled"))
    sources = JobSources(main, {name: declared[name] for name in jobs if declared[name] is not main}, jobs)
    specs = JobSpecs(jobs)
    return Config(path=path, settings=settings, jobs=specs, sources=sources, warnings=tuple(sorted(set(warnings))))


class JobSources(Mapping[str, Located]):
    """Which file declared each job: ``main`` for all but the jobs of included files (``others``), so a
    100,000-job file keeps no entry per job."""

    def __init__(self, main: Located, others: dict[str, Located], jobs: Mapping[str, Any]) -> None:
        self.main, self.others, self.jobs = main, others, jobs

    def __getitem__(self, name: str) -> Located:
        found = self.others.get(name)
        if found is not None:
            return found
        if name in self.jobs:
            return self.main
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)


class _Interner:
    """Makes equal parts of the specs one object: most jobs share their policies, durations, argv and schedule,
    and a 100,000-job config would otherwise hold 100,000 copies of each. Only values whose equality means
    the same thing are shared (exact type; strings, durations, string tuples, the settings models, and
    interval triggers with the same anchor and zone). Jobs written one after another are usually alike, so
    each field is first compared with the previous job's (identity, then equality) before the table."""

    def __init__(self) -> None:
        self.table: dict[Any, Any] = {}
        self.previous: dict[str, Any] = {}
        self.fields: set[str] = set()
        self.triggers = TriggerTable()

    def spec(self, spec: JobSpec) -> JobSpec:
        """``spec``, its values replaced by the equal ones seen before (in place: equal values, same spec)."""
        values, previous, given = spec.__dict__, self.previous, spec.__pydantic_fields_set__
        for key, default in _DEFAULT_MODELS.items():
            if key not in given:  # built by its default factory: one shared default
                values[key] = default
        for key in _SHARED_FIELDS:
            value = values[key]
            before = previous.get(key)
            if value is before or value is None:
                continue
            kind = type(value)
            if kind is type(before) and value == before:
                values[key] = before
            elif kind in _SHAREABLE or (kind is tuple and all(type(item) is str for item in value)):
                values[key] = previous[key] = self.table.setdefault((kind, value), value)
        if "_compiled_trigger" in values:
            values["_compiled_trigger"] = self.trigger(values["_compiled_trigger"])
        if given != self.fields:  # usually equal to the previous job's: no table look-up
            fields = frozenset(given)
            self.fields = self.table.setdefault((set, fields), set(fields))
        object.__setattr__(spec, "__pydantic_fields_set__", self.fields)
        return spec

    def trigger(self, trigger: Trigger) -> Trigger:
        """``trigger``, or the equal interval trigger seen before (same anchor and end, in the same zones)."""
        return self.triggers(trigger)


_SHAREABLE = frozenset({str, timedelta, HistoryPolicy, OutputPolicy})
_DEFAULT_MODELS = {"history": HistoryPolicy(), "output": OutputPolicy()}
_SHARED_FIELDS = (
    *("timezone", "queue", "timeout", "retry_delay", "retry_delay_max", "misfire_grace", "tags", "history"),
    *("output", "jitter", "expires", "description", "cron", "every", "celery", "call", "command", "cwd"),
)
"""The fields whose values repeat across jobs and are not singletons (None, booleans, small ints)."""


def load_connection(path: Path, environ: Mapping[str, str]) -> Config:
    """Only what is needed to reach the deployment (``redis``, ``namespace``, ``shards``, ``leader``), with no
    jobs.

    For operator commands that must work while the jobs in the file are broken (``beatd status``).
    Raises ConfigError when even those keys are unusable.
    """
    main, problems = read_yaml(path, environ)
    top = main.value if isinstance(main.value, dict) else None
    if top is None:
        raise ConfigError(problems or [main.problem((), "expected a mapping at the top level")])
    wanted = {key: top[key] for key in ("redis", "namespace", "shards", "leader", "timezone") if key in top}
    mine = [problem for problem in problems if problem.path.split(".")[0] in wanted]
    settings = _validate(ConfigFile, wanted, main, (), mine, allowed=ConfigFile.model_fields)
    if settings is None or mine:
        raise ConfigError(mine)
    return Config(path=path, settings=settings, jobs={})


def load_namespace(path: Path, environ: Mapping[str, str]) -> str | None:
    """The file's ``namespace`` alone, when the file reads far enough to give a valid one (its ``redis`` may be
    broken: ``--redis-url`` stands in for it); else None."""
    settings = _load_setting(path, environ, "namespace")
    return settings.namespace if settings is not None else None


def load_shards(path: Path, environ: Mapping[str, str]) -> int | None:
    """The file's ``shards`` alone, as :func:`load_namespace` (a reader of a sharded deployment needs it to find
    any key); None when the file gives no valid one."""
    settings = _load_setting(path, environ, "shards")
    return settings.shards if settings is not None else None


def _load_setting(path: Path, environ: Mapping[str, str], name: str) -> ConfigFile | None:
    """Settings holding only the file's setting ``name`` (the rest default); None when it is absent or invalid."""
    main, _ = read_yaml(path, environ)
    raw = main.value.get(name) if isinstance(main.value, dict) else None
    if raw is None:
        return None
    try:
        return ConfigFile.model_validate({name: raw})
    except ValidationError:
        return None


def validate_job(config: Config, name: str, source: Located) -> tuple[JobSpec | None, list[Problem]]:
    """Validate the job ``name`` written at ``jobs.NAME`` of ``source`` as if ``config``'s file declared it: the
    same defaults, time zone, Celery settings and messages (a runtime job, :mod:`beatd.runtime_jobs`)."""
    settings = config.settings
    job_defaults = {key: value for key, value in settings.defaults.items() if key in Policies.model_fields}
    problems: list[Problem] = []
    raw = source.value.get("jobs", {}).get(name) if isinstance(source.value, dict) else None
    spec = _validate_job(name, raw, source, settings.timezone, job_defaults, settings.celery, problems, settings.alerts)
    return spec, problems


def _collect_jobs(
    raw: Any, source: Located, raws: dict[str, Any], declared: dict[str, Located], problems: list[Problem]
) -> None:
    if raw is None:
        return
    if not isinstance(raw, dict):
        problems.append(source.problem(("jobs",), "expected a mapping of job name to job"))
        return
    for name, job in raw.items():
        if name in declared:
            first = declared[name]
            line = (first.position(("jobs", name), at_key=True) or (0, 0))[0]
            problems.append(
                source.problem(
                    ("jobs", name), f"duplicate job name (first declared at {first.file}:{line})", at_key=True
                )
            )
            continue
        name = _fresh_name(name)
        raws[name], declared[name] = job, source


def _include_paths(
    settings: ConfigFile, path: Path, main: Located, warnings: list[Problem]
) -> list[tuple[Path, Problem | None]]:
    """Each file the include patterns match, or the problem of a plain path that names no file; a glob that
    matches nothing is a warning (an empty drop-in directory is legitimate, a typo in the pattern is not)."""
    found: list[tuple[Path, Problem | None]] = []
    for index, pattern in enumerate(settings.include):
        full = str(path.parent / pattern)
        matches = sorted(glob.glob(full))  # noqa: PTH207 (absolute patterns such as /etc/beatd/jobs.d/*.yaml)
        if not matches and not glob.has_magic(pattern):
            found.append((Path(full), main.problem(("include", index), f"no such file: {full}")))
        elif not matches:
            warnings.append(main.problem(("include", index), f"the pattern matches no file: {full}"))
        found.extend((Path(match), None) for match in matches)
    return found


def _collect_include(
    path: Path,
    environ: Mapping[str, str],
    raws: dict[str, Any],
    declared: dict[str, Located],
    problems: list[Problem],
) -> None:
    source, read_problems = read_yaml(path, environ)
    problems.extend(read_problems)
    if source.value is None:
        return
    if not isinstance(source.value, dict):
        problems.append(source.problem((), "expected a mapping with a jobs key"))
        return
    for key in source.value:
        if key != "jobs" and not str(key).startswith(_EXTENSION_PREFIX):
            problems.append(source.problem((key,), "only jobs may appear in an included file", at_key=True))
    _collect_jobs(source.value.get("jobs"), source, raws, declared, problems)


def _fresh_name(name: Any) -> Any:
    """A new string object equal to the job name ``name`` (another value as it is). The names read from YAML
    sit among the raw job values in the allocator's pools, one block in three; once the raw values are let go,
    those pools stay two-thirds empty for the process's life (25 MB for 100,000 jobs). Copied here, before
    anything is let go, the names kept fill pools of their own and the raw values' pools empty whole."""
    return name.encode().decode() if type(name) is str else name


def _valid_defaults(raw: dict[str, Any], main: Located, problems: list[Problem]) -> dict[str, Any]:
    """Validate ``defaults``; return the keys that passed, so one bad default is reported once, not per job."""
    reported: list[Problem] = []
    _validate(Policies, raw, main, ("defaults",), reported, allowed=Policies.model_fields, in_defaults=True)
    problems.extend(reported)
    bad = {problem.path.split(".")[1] for problem in reported if problem.path.count(".") >= 1}
    return {key: value for key, value in raw.items() if key not in bad and key in Policies.model_fields}


def _validate_job(
    name: str,
    raw: Any,
    source: Located,
    timezone: str,
    job_defaults: dict[str, Any],
    celery: CelerySettings | None,
    problems: list[Problem],
    alerts: AlertSettings | None = None,
) -> JobSpec | None:
    base: KeyPath = ("jobs", name)
    if not isinstance(raw, dict):
        problems.append(source.problem(base, "expected a mapping with a schedule (cron, every or at) and a target"))
        return None
    count = len(problems)
    if not re.fullmatch(NAME_PATTERN, name):
        problems.append(source.problem(base, f"invalid job name {name!r}: {_PATTERN_HINTS['name']}", at_key=True))
        return None
    if "name" in raw:
        problems.append(
            source.problem((*base, "name"), "unknown key: the job's name is its key under jobs", at_key=True)
        )
    if "alert_rules" in raw:
        problems.append(source.problem((*base, "alert_rules"), "unknown key (did you mean 'alerts'?)", at_key=True))
    _exactly_one(raw, SCHEDULE_KEYS, "schedule", source, base, problems)
    _exactly_one(raw, TARGET_KEYS, "target", source, base, problems)
    problems.extend(celery_job_problems(raw, source, base, celery))
    merged: dict[str, Any] = {"timezone": timezone, **job_defaults}
    for key, value in raw.items():
        if key == "history" and isinstance(value, dict) and isinstance(merged.get("history"), dict):
            merged["history"] = {**merged["history"], **value}
        elif key not in ("name", "alert_rules"):
            merged[key] = value
    merged["name"] = name
    if raw.get("celery") is not None:
        prepare_celery_job(merged, celery)
    spec = _validate(JobSpec, merged, source, base, problems, allowed=JobSpec.model_fields, own_keys=set(raw))
    if spec is not None and spec.every is not None and spec.jitter >= spec.every:
        every = format_duration(spec.every)
        problems.append(
            source.problem((*base, "jitter"), f"must be shorter than every ({every}) to keep fires in order")
        )
    if spec is not None and spec.expires is not None and spec.expires <= spec.jitter:
        jitter = format_duration(spec.jitter)
        problems.append(
            source.problem((*base, "expires"), f"must be longer than jitter ({jitter}): every fire would expire")
        )
    if spec is not None:
        problems.extend(job_alert_problems(alerts, name, spec.alerts, source))
        rules = effective_rules(alerts, name, spec.tags, spec.alerts)
        if rules:
            spec = spec.model_copy(update={"alert_rules": rules})
    if spec is not None:
        try:
            spec.trigger()
        except ScheduleError as error:  # rules across keys, such as end before start
            key = "end" if "end" in raw else next((name for name in SCHEDULE_KEYS if name in raw), "")
            problems.append(source.problem((*base, key) if key else base, str(error)))
    return spec if len(problems) == count else None


def _exactly_one(
    raw: dict[str, Any],
    keys: tuple[str, ...],
    what: str,
    source: Located,
    base: KeyPath,
    problems: list[Problem],
) -> None:
    present = [key for key in keys if raw.get(key) is not None]
    choices = ", ".join(keys[:-1]) + f" or {keys[-1]}"
    if not present:
        problems.append(source.problem(base, f"no {what}: expected exactly one of {choices}", at_key=True))
    for extra in present[1:]:
        problems.append(
            source.problem(
                (*base, extra),
                f"both {present[0]} and {extra} given: expected exactly one {what} key",
                at_key=True,
            )
        )


def _validate(
    model: type[M],
    raw: dict[str, Any],
    source: Located,
    base: KeyPath,
    problems: list[Problem],
    *,
    allowed: Mapping[str, Any],
    own_keys: set[str] | None = None,
    in_defaults: bool = False,
) -> M | None:
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        for detail in error.errors():
            loc = tuple(detail["loc"])
            path = (*base, *loc)
            if own_keys is not None and loc and loc[0] not in own_keys:
                # the value came from defaults or the top level: point at the job, name the key
                problems.append(
                    source.problem(
                        base,
                        f"{loc[0]} (inherited): {_message(detail, allowed, in_defaults)}",
                        at_key=True,
                        shown=path,
                    )
                )
                continue
            at_key = detail["type"] == "extra_forbidden"
            problems.append(source.problem(path, _message(detail, allowed, in_defaults), at_key=at_key))
        return None


_PATTERN_HINTS = {
    "call": "expected module:attribute such as jobs.stats:daily_signups",
    "celery": "expected a registered Celery task name such as proj.tasks.send_report",
    "queue": "expected letters, digits, '_', '.' and '-' (at most 200 characters)",
    "namespace": "expected letters, digits, '_', '.' and '-' (at most 200 characters)",
    "url": "expected a redis://, rediss:// (TLS) or unix:// URL",
    "name": "expected letters, digits, '_', '.' and '-' (at most 200 characters)",
}


def _message(detail: Any, allowed: Mapping[str, Any], in_defaults: bool) -> str:
    kind, loc, given = detail["type"], detail["loc"], detail.get("input")
    key = str(loc[-1]) if loc else ""
    if kind == "extra_forbidden":
        if in_defaults and key in (
            *SCHEDULE_KEYS,
            *TARGET_KEYS,
            "start",
            "end",
            "args",
            "kwargs",
            "env",
            "cwd",
            "shell",
            "options",
        ):
            return "not allowed under defaults: schedule and target keys belong to each job"
        close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (
            f"unknown key{hint}; expected one of: {', '.join(sorted(allowed))}" if not close else f"unknown key{hint}"
        )
    if kind == "string_pattern_mismatch":
        return f"invalid value {_short(given)}: {_PATTERN_HINTS.get(key, detail['msg'])}"
    message = str(detail["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if message.startswith("Input should be "):
        message = "expected " + message.removeprefix("Input should be ")
        return f"invalid value {_short(given)}: {message}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal"):
        return f"invalid value {_short(given)}: {message[0].lower()}{message[1:]}"
    return message


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
