"""The validated config: what a job is (JobSpec) and what a config file holds (ConfigFile).

Pydantic does the type checking; the rules that need a whole job (exactly one schedule, exactly one target)
and the positions of errors live in :mod:`beatd.config.load`. Every default comes from :mod:`beatd.defaults`.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from datetime import datetime, timedelta
from functools import cached_property, lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema

from beatd import defaults
from beatd.config.alerts import AlertRule, AlertSettings, JobAlerts
from beatd.config.redis_urls import display_url, node_address, redis_location
from beatd.durations import format_duration, parse_duration
from beatd.triggers import AtTrigger, CronTrigger, IntervalTrigger, Trigger, load_zone, parse_instant

__all__ = [
    "CELERY_RESERVED_HEADERS",
    "SCHEDULE_KEYS",
    "TARGET_KEYS",
    "CeleryOptions",
    "CelerySettings",
    "ConfigFile",
    "HistoryPolicy",
    "JobSpec",
    "LeaderSettings",
    "OutputPolicy",
    "Policies",
    "RedisSettings",
    "RuntimeJobsSettings",
    "SecuritySettings",
    "SentinelSettings",
    "TlsSettings",
    "WorkerSettings",
]

SCHEDULE_KEYS = ("cron", "every", "at")
"""Exactly one of these says when a job is due."""

TARGET_KEYS = ("call", "command", "celery")
"""Exactly one of these says what a job runs."""

CELERY_RESERVED_HEADERS = frozenset(
    {
        "lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries", "timelimit",
        "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin", "ignore_result", "replaced_task_nesting",
        "stamped_headers", "stamps",
    }
)  # fmt: skip
"""Headers of Celery's task protocol 2 that beatd writes itself: ``options.headers`` may not set them."""

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$"
_DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d|w)?)+$"},
        {"type": "number", "minimum": 0},
    ],
    "examples": ["250ms", "30s", "5m", "1h30m", "2d"],
}


_ARGV_ITEM = (str, int, float)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than zero")
    return value


def _whole_milliseconds(value: timedelta) -> timedelta:
    if value.microseconds % 1000:
        raise ValueError(f"{value.total_seconds()!r}s is not a whole number of milliseconds: progress is kept in ms")
    return value


def _known_zone(value: str) -> str:
    load_zone(value)
    return value


Zone = Annotated[str, AfterValidator(_known_zone)]


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(_DURATION_SCHEMA),
]
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsSettings(_Strict):
    """TLS options for ``rediss://`` URLs (and TLS sentinels)."""

    ca_file: str | None = Field(None, description="CA bundle that signed the server's certificate")
    cert_file: str | None = Field(None, description="client certificate, when the server asks for one")
    key_file: str | None = Field(None, description="the client certificate's private key")
    verify: bool = Field(True, description="check the server's certificate and host name")


class SentinelSettings(_Strict):
    """Redis Sentinel: ask these sentinels where the master named ``master`` is (fails over with it)."""

    hosts: tuple[str, ...] = Field(min_length=1, description="sentinel addresses, host:port")
    master: str = Field(min_length=1, description="the monitored master's name")
    username: str | None = Field(None, description="ACL user for the sentinels, if they need one")
    password: str | None = Field(None, description="password for the sentinels (from the environment)")
    tls: bool = Field(False, description="talk TLS to the sentinels (options from redis.tls)")

    @field_validator("hosts")
    @classmethod
    def _host_ports(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for host in value:
            name, _, port = host.rpartition(":")
            if not name or not port.isdigit():
                raise ValueError(f"invalid sentinel address {host!r}: expected host:port")
        return value


class RedisSettings(_Strict):
    """How to reach Redis. Put secrets in the environment: ``url: ${BEATD_REDIS_URL}``.

    ``url`` takes ``redis://[user:password@]host:port/db``, ``rediss://`` (TLS, see ``tls``) and
    ``unix:///path/to/socket?db=0``. With ``sentinel``, the host in ``url`` is ignored: the master comes
    from the sentinels, and the URL still gives the user, password and database. With ``cluster``, ``url``
    (``redis://`` or ``rediss://``, database 0) is one node of a Redis Cluster; the client finds the rest and
    follows fail-overs; every key carries its shard's hash tag (``docs/sharding.md``).
    """

    url: str = Field(
        defaults.REDIS_URL,
        pattern=r"^(redis|rediss|unix)://",
        description="redis://, rediss:// (TLS) or unix:// URL of the Redis that holds queues and state",
    )
    tls: TlsSettings = Field(default_factory=TlsSettings, description="certificates for rediss://")
    sentinel: SentinelSettings | None = Field(None, description="find the master through Redis Sentinel")
    cluster: bool = Field(
        False,
        description="url is a seed node of a Redis Cluster (redis-py's RedisCluster; database 0, no sentinel, "
        "Celery brokers elsewhere through the outbox)",
    )
    cluster_nodes: tuple[str, ...] = Field(
        (), description="further seed nodes of the cluster, host:port (the url's is tried first)"
    )

    @field_validator("cluster")
    @classmethod
    def _cluster_connection(cls, value: bool, info: ValidationInfo) -> bool:
        url, sentinel = info.data.get("url"), info.data.get("sentinel")
        if not value or url is None:  # no url: its own error is reported
            return value
        if sentinel is not None:
            raise ValueError("cluster and sentinel exclude each other: a Redis Cluster fails over by itself")
        if url.startswith("unix://"):
            raise ValueError(f"a Redis Cluster is reached over TCP: redis.url {display_url(url)} is a Unix socket")
        location = redis_location(url)
        if location.db != 0:
            raise ValueError(f"a Redis Cluster has database 0 only: redis.url names database {location.db}")
        return value

    @field_validator("cluster_nodes")
    @classmethod
    def _node_addresses(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if value and not info.data.get("cluster"):  # else ignored: the plain layout on a cluster is MOVED errors
            raise ValueError("cluster_nodes names seed nodes of a Redis Cluster: set redis.cluster: true too")
        for node in value:
            node_address(node)  # raises ValueError, located at the entry
        return value


class LeaderSettings(_Strict):
    """Leader election."""

    lease: Duration = Field(
        defaults.LEASE, ge=timedelta(seconds=1), description="leader lease TTL; failover takes about this long"
    )


class SecuritySettings(_Strict):
    """Message signing. Give the key from the environment: ``signing_key: ${BEATD_SIGNING_KEY}``."""

    signing_key: str | None = Field(None, min_length=16, description="HMAC key the beat signs and workers verify with")


Isolation = Literal["process", "thread"]
"""How a worker runs callables (``worker.isolation``): in a child process, or in the worker itself."""


class WorkerSettings(_Strict):
    """How ``beatd worker`` runs jobs; the command line's options override."""

    concurrency: int = Field(defaults.WORKER_CONCURRENCY, ge=1, le=256, description="runs at once per worker")
    prefetch: int = Field(
        defaults.WORKER_PREFETCH, ge=1, le=100, description="fires claimed per runner (running or waiting)"
    )
    grace: Duration = Field(defaults.WORKER_GRACE, description="on SIGTERM, how long running jobs may finish")
    isolation: Isolation = Field(
        defaults.WORKER_ISOLATION, description="process: hard timeouts, crash-proof; thread: faster, soft timeouts"
    )
    kill_grace: PositiveDuration = Field(
        defaults.KILL_GRACE, description="after a timeout or cancellation, time between SIGTERM and SIGKILL"
    )
    target_check_timeout: PositiveDuration = Field(
        defaults.TARGET_CHECK_TIMEOUT,
        description="at start and on reload, how long importing all call targets may take",
    )
    output_tail: int = Field(
        defaults.OUTPUT_TAIL,
        ge=0,
        le=defaults.OUTPUT_TAIL_MAX,
        description="bytes of a run's output kept (its end) in the run record, unless the job says output.tail",
    )


class HistoryPolicy(_Strict):
    """How many run records of a job are kept."""

    keep: int = Field(defaults.HISTORY_KEEP, ge=1, description="run records kept per job")
    max_age: PositiveDuration = Field(defaults.HISTORY_MAX_AGE, description="records older than this are pruned")


class OutputPolicy(_Strict):
    """How much of a job's output its run records keep."""

    tail: int | None = Field(
        None,
        ge=0,
        le=defaults.OUTPUT_TAIL_MAX,
        description="bytes of the run's output kept (its end) in the run record; default: worker.output_tail",
    )


class RuntimeJobsSettings(_Strict):
    """Which jobs may be created at runtime (``beatd job put``, ``client.jobs.put``), checked by whoever
    writes, schedules or runs one: a runtime job names only what these patterns (``fnmatch``) allow."""

    allow: tuple[str, ...] = Field(
        (),
        description="call patterns module:function (module exact, function fnmatch: app.tasks:*) and Celery "
        "task name patterns (no colon: proj.tasks.*) allowed",
    )

    @field_validator("env")
    @classmethod
    def _env_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        bad = [name for name in names if name == "PATH" or name.startswith(("LD_", "PYTHON"))]
        if bad:
            raise ValueError(f"{', '.join(bad)} may never be set by a runtime job (PATH, LD_*, PYTHON*)")
        return names

    commands: tuple[str, ...] = Field(
        (),
        description="patterns of commands allowed, split like a shell: each element matches one argv element "
        "(none unless listed; argv[0] absolute; shell: true never)",
    )
    env: tuple[str, ...] = Field(
        (), description="environment variable names a runtime command may set (never PATH, LD_*, PYTHON*)"
    )
    queues: tuple[Annotated[str, Field(pattern=NAME_PATTERN)], ...] = Field(
        (defaults.QUEUE,), description="queues runtime jobs may use; workers read them besides their YAML jobs'"
    )


AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
"""Broker URL schemes of RabbitMQ (kombu's py-amqp transport)."""


class CelerySettings(_Strict):
    """The Celery app whose workers run the ``celery`` jobs. Give the broker from the environment:
    ``broker_url: ${CELERY_BROKER_URL}``. On beatd's own Redis server (any database on it) the task message is
    pushed in the same fenced script that advances the job's progress; on another Redis server or RabbitMQ
    (``amqp://``) that script writes it to the outbox, and the leader's relay publishes it."""

    broker_url: str = Field(
        min_length=1, description="the Celery app's broker_url: redis://, rediss://, unix:// or amqp://"
    )
    outbox_limit: int = Field(
        defaults.CELERY_OUTBOX_LIMIT, ge=1, description="most task messages waiting for the relay (another broker)"
    )
    default_queue: str = Field(
        defaults.CELERY_QUEUE, pattern=NAME_PATTERN, description="Celery queue of jobs whose options name none"
    )
    result_backend: str | None = Field(None, description="the Celery app's result_backend, to show outcomes")

    @property
    def amqp(self) -> bool:
        """Whether the broker is AMQP (RabbitMQ): always reached through the outbox relay."""
        return self.broker_url.split(":", 1)[0] in AMQP_SCHEMES

    @cached_property
    def broker_db(self) -> int:
        """The broker's database number on beatd's Redis server (0 when the URL cannot say; check rejects it)."""
        try:
            return redis_location(self.broker_url).db
        except ValueError:
            return 0


class CeleryOptions(_Strict):
    """What ``apply_async`` would be given (a Celery ``beat_schedule`` entry's ``options``)."""

    queue: str | None = Field(None, pattern=NAME_PATTERN, description="Celery queue (default: celery.default_queue)")
    routing_key: str | None = Field(
        None, description="delivery_info routing key: the queue's name (the default), the only one honoured"
    )
    exchange: str = Field("", description="only the default exchange '': beatd pushes straight onto the queue")
    priority: int | None = Field(None, ge=0, le=255, description="message priority (Redis: 0 is served first)")
    headers: dict[str, JsonValue] = Field(default_factory=dict, description="extra message headers")
    expires: PositiveDuration | None = Field(None, description="Celery revokes the task if not started in this")
    time_limit: PositiveDuration | None = Field(None, description="hard time limit, enforced by the Celery worker")
    soft_time_limit: PositiveDuration | None = Field(None, description="soft time limit (SoftTimeLimitExceeded)")

    @field_validator("routing_key")
    @classmethod
    def _routing_key_is_the_queue(cls, value: str | None, info: ValidationInfo) -> str | None:
        # kombu restores an unacked message to the list its delivery_info names; with the default exchange that
        # is the list named by the routing key, so any other key than the queue's would strand it there.
        queue = info.data.get("queue")
        if value is not None and queue is not None and value != queue:
            raise ValueError(
                f"with the default exchange a routing key is a queue name: {value!r} is not options.queue "
                f"({queue!r}), and kombu would restore an unacked message onto the unread list {value!r}; drop "
                "routing_key (beatd writes the queue's name), or set options.queue"
            )
        return value

    @field_validator("exchange")
    @classmethod
    def _default_exchange_only(cls, value: str) -> str:
        if value:
            raise ValueError(
                "beatd pushes straight onto options.queue's Redis list; an exchange would route through kombu's "
                "_kombu.binding.* sets, which beatd does not read: drop exchange (and routing_key) and set "
                "options.queue to the queue the binding leads to"
            )
        return value

    @field_validator("headers")
    @classmethod
    def _own_headers(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        reserved = sorted(name for name in value if name in CELERY_RESERVED_HEADERS or name.startswith("beatd_"))
        if reserved:
            raise ValueError(f"header {reserved[0]!r} is written by beatd (task protocol 2 or beatd_*)")
        try:
            json.dumps(value, allow_nan=False)
        except ValueError as error:
            raise ValueError("expected JSON values (no NaN or infinity)") from error
        return value


_OVERRIDES_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "boolean"},
        {
            "type": "object",
            "properties": {"schema": {"type": "object", "description": "JSON Schema of the job's kwargs"}},
            "required": ["schema"],
            "additionalProperties": False,
        },
    ]
}


class OverridePolicy(_Strict):
    """``overrides: {schema: {...}}``: a trigger may pass arguments, and the kwargs the job then runs with (its
    own merged with the trigger's) must match this JSON Schema (draft 2020-12)."""

    kwargs_schema: dict[str, JsonValue] = Field(alias="schema", description="JSON Schema of the job's kwargs")

    @field_validator("kwargs_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        import jsonschema  # here: only configs with a schema pay for the import

        try:
            jsonschema.Draft202012Validator.check_schema(value)
        except jsonschema.SchemaError as error:
            raise ValueError(f"not a valid JSON Schema: {error.message}") from None
        return value


class Policies(_Strict):
    """The per-job keys that may also appear under ``defaults``: how a job is run, not what or when."""

    timezone: Zone = Field(defaults.TIMEZONE, description="IANA time zone of the job's cron fields and instants")
    queue: str = Field(defaults.QUEUE, pattern=NAME_PATTERN, description="queue (Redis stream) fires go to")
    timeout: PositiveDuration = Field(defaults.TIMEOUT, description="hard limit of one run")
    retries: int = Field(defaults.RETRIES, ge=0, description="further attempts after a failed run")
    retry_delay: Duration = Field(defaults.RETRY_DELAY, description="base of the exponential backoff")
    retry_delay_max: Duration = Field(defaults.RETRY_DELAY_MAX, description="cap of the backoff")
    catchup: Literal["none", "latest", "all"] = Field(
        defaults.CATCHUP, description="which missed fires to emit after a gap with no leader"
    )
    misfire_grace: Duration = Field(defaults.MISFIRE_GRACE, description="how late a missed fire may be emitted")
    catchup_limit: int = Field(defaults.CATCHUP_LIMIT, ge=1, description="most fires catchup: all emits")
    overlap: Literal["skip", "allow", "buffer_one", "replace"] = Field(
        defaults.OVERLAP, description="what a fire does while the job's previous run is still running"
    )
    enabled: bool = Field(defaults.ENABLED, description="false: the job is declared but never scheduled")
    tags: tuple[str, ...] = Field((), description="free labels, shown by the CLI")
    history: HistoryPolicy = Field(default_factory=HistoryPolicy, description="run records kept")
    output: OutputPolicy = Field(default_factory=OutputPolicy, description="run output kept")
    jitter: Duration = Field(defaults.JITTER, description="delay emission by a stable offset in [0, jitter)")
    expires: PositiveDuration | None = Field(
        defaults.EXPIRES, description="a fire not started this long after its instant is recorded expired, not run"
    )


class JobSpec(Policies):
    """One declared job: what runs, when, with which policies. ``name`` comes from its key under ``jobs``."""

    name: str = Field(pattern=NAME_PATTERN, description="the job's key under jobs")
    description: str = Field("", description="one line for humans")
    # Schedule: exactly one of cron, every, at. start/end come after timezone so they can use it.
    cron: str | None = Field(None, description="5-field cron expression or @daily-style alias, in timezone")
    every: Annotated[PositiveDuration, AfterValidator(_whole_milliseconds)] | None = Field(
        None, description="elapsed-time interval aligned to the epoch or start"
    )
    at: tuple[datetime, ...] | None = Field(None, description="one ISO-8601 instant or a list of them")
    start: datetime | None = Field(None, description="no fire before this instant; anchors every")
    end: datetime | None = Field(None, description="no fire after this instant (inclusive)")
    # Target: exactly one of call, command, celery.
    celery: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]*$",
        description="registered Celery task name, run by the Celery app's workers",
    )
    options: CeleryOptions | None = Field(None, description="Celery options of celery (apply_async's)")
    call: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$",
        description="Python callable as module:attr",
    )
    args: tuple[JsonValue, ...] = Field((), description="positional arguments of call or celery (JSON values)")
    kwargs: dict[str, JsonValue] = Field(default_factory=dict, description="keyword arguments of call or celery")
    shell: bool = Field(False, description="run command through /bin/sh -c (command must be a string)")
    command: tuple[str, ...] | None = Field(
        None, description="argv list, or a string split like a shell does (no shell unless shell: true)"
    )
    env: dict[str, str] = Field(default_factory=dict, description="extra environment of command")
    cwd: str | None = Field(None, description="working directory of command")
    overrides: Annotated[OverridePolicy | None, WithJsonSchema(_OVERRIDES_SCHEMA)] = Field(
        None, description="true or {schema: ...}: trigger may pass args/kwargs (call and celery jobs only)"
    )
    alerts: JobAlerts = None
    alert_rules: SkipJsonSchema[tuple[AlertRule, ...]] = ()
    """The rules that apply (set by the loader from ``alerts`` and the top-level rules; not written in YAML)."""

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            CronTrigger.parse(value, ZoneInfo("UTC"), hash_key=str(info.data.get("name", "")))
        return value

    @field_validator("at", "start", "end", mode="before")
    @classmethod
    def _instants(cls, value: Any, info: ValidationInfo) -> Any:
        zone = load_zone(info.data.get("timezone", defaults.TIMEZONE)) if "timezone" in info.data else None
        if zone is None:  # the zone itself was invalid and is reported on its own
            return None
        if value is None:
            return None
        if info.field_name == "at":
            items = value if isinstance(value, list) else [value]
            if not items:
                raise ValueError("expected at least one instant")
            return tuple(_whole_ms_instant(parse_instant(_text(item), zone)) for item in items)
        return _whole_ms_instant(parse_instant(_text(value), zone))

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        if info.data.get("shell"):
            if not isinstance(value, str):
                raise ValueError("with shell: true, expected command as one string")
            return (value,)
        if isinstance(value, str):
            try:
                argv = shlex.split(value)
            except ValueError as error:
                raise ValueError(f"cannot split {value!r} like a shell: {error}") from error
            value = argv
        if not isinstance(value, list) or not all(isinstance(item, _ARGV_ITEM) for item in value):
            raise ValueError("expected an argv list of strings or one string")
        if not value:
            raise ValueError("expected a non-empty argv")
        return tuple(str(item) for item in value)

    @field_validator("overrides", mode="before")
    @classmethod
    def _overrides_flag(cls, value: Any) -> Any:
        if isinstance(value, bool):  # true: any JSON arguments (the empty schema); false: none
            return {"schema": {}} if value else None
        return value

    @field_validator("overrides")
    @classmethod
    def _overridable(cls, value: OverridePolicy | None, info: ValidationInfo) -> OverridePolicy | None:
        if value is None:
            return value
        if info.data.get("command") is not None:
            # A command's argv is fixed by the config: appending caller text to it is how shell injection starts.
            raise ValueError("a command job takes no arguments from trigger (overrides: call and celery jobs only)")
        if "kwargs" in info.data and info.data.get("enabled", True):  # its scheduled fires run with its own kwargs
            import jsonschema

            errors = list(jsonschema.Draft202012Validator(value.kwargs_schema).iter_errors(info.data["kwargs"]))
            if errors:
                raise ValueError(f"the job's own kwargs do not match overrides.schema: {errors[0].message}")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: _scalar_text(item) for key, item in value.items()}
        return value

    @field_validator("args", "kwargs")
    @classmethod
    def _json_safe(cls, value: Any) -> Any:
        try:
            json.dumps(value, allow_nan=False)
        except ValueError as error:
            raise ValueError("expected JSON values (no NaN or infinity)") from error
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The job's time zone."""
        return load_zone(self.timezone)

    @property
    def schedule_text(self) -> str:
        """The schedule as written: ``cron 5 0 * * *``, ``every 30s``, ``at 2026-12-01T00:00:00+00:00``."""
        if self.cron is not None:
            return f"cron {self.cron}"
        if self.every is not None:
            return f"every {format_duration(self.every)}"
        return "at " + ", ".join(instant.isoformat() for instant in self.at or ())

    @property
    def target_text(self) -> str:
        """What runs, as one short line: ``call jobs.stats:daily_signups`` or ``command check-backup --quiet``."""
        if self.call is not None:
            return f"call {self.call}"
        if self.celery is not None:
            return f"celery {self.celery}"
        if self.shell:
            return "shell " + (self.command or ("",))[0]
        return "command " + " ".join(_quote(part) for part in self.command or ())

    def trigger(self) -> Trigger:
        """This job's trigger (pure; built once per spec)."""
        return self._compiled_trigger

    @cached_property
    def _compiled_trigger(self) -> Trigger:
        return trigger_of(self.name, self.cron, self.every, self.at, self.timezone, self.start, self.end)

    @cached_property
    def schedule_digest(self) -> str:
        """Short hash of what decides the fire instants (and whether there are any): when it changes, the job
        continues from now rather than catching up under its new schedule."""
        return schedule_digest_of(self.name, self.schedule_parts())

    def schedule_parts(self) -> str:
        """The JSON text of what, besides the name, decides the fire instants (jobs written alike share it)."""
        return schedule_parts_of(self.cron, self.every, self.at, self.start, self.end, self.timezone, self.enabled)

    @cached_property
    def digest(self) -> str:
        """Short hash of the whole spec: equal digests mean the same job on every replica."""
        # Field order is fixed by the model, so the serialised form is canonical for a given spec.
        return hashlib.sha256(self.__pydantic_serializer__.to_json(self)).hexdigest()[:16]


class ConfigFile(_Strict):
    """The top level of a config file; ``defaults`` and ``jobs`` are validated job by job afterwards."""

    redis: RedisSettings = Field(default_factory=RedisSettings)
    leader: LeaderSettings = Field(default_factory=LeaderSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    celery: CelerySettings | None = Field(None, description="the Celery app that runs celery jobs")
    alerts: AlertSettings | None = Field(None, description="tell someone: sinks and rules (absent: no alerts)")
    runtime_jobs: RuntimeJobsSettings | None = Field(
        None, description="allow jobs created at runtime, and which targets they may name (absent: none)"
    )
    namespace: str = Field(defaults.NAMESPACE, pattern=NAME_PATTERN, description="prefix of every Redis key")
    shards: int = Field(
        1, ge=1, le=defaults.SHARDS_MAX, description="shards the jobs are spread over, each with its own lease"
    )
    timezone: Zone = Field(defaults.TIMEZONE, description="default time zone of every job")
    include: tuple[str, ...] = Field((), description="glob patterns of drop-in files holding more jobs")
    pythonpath: tuple[str, ...] = Field((), description="directories searched for call targets")
    defaults: dict[str, Any] = Field(default_factory=dict, description="per-job keys applied to every job")
    jobs: dict[str, Any] = Field(default_factory=dict, description="the jobs, by name")


def trigger_of(
    name: str, cron: str | None, every: timedelta | None, at: tuple[datetime, ...] | None, timezone: str,
    start: datetime | None, end: datetime | None,
) -> Trigger:  # fmt: skip
    """The trigger of job ``name`` with these schedule fields (:meth:`JobSpec.trigger`): ``H`` fields of a cron
    job are hashed by the name."""
    if cron is not None:
        return CronTrigger.parse(cron, load_zone(timezone), hash_key=name, start=start, end=end)
    if every is not None:
        return IntervalTrigger(every, start=start, end=end)
    return AtTrigger(at or (), start=start, end=end)


def schedule_parts_of(
    cron: str | None, every: timedelta | None, at: tuple[datetime, ...] | None, start: datetime | None,
    end: datetime | None, timezone: str, enabled: bool,
) -> str:  # fmt: skip
    """:meth:`JobSpec.schedule_parts` of a job with these fields."""
    parts = [
        cron,
        every.total_seconds() if every is not None else None,
        [instant.isoformat() for instant in at or ()],
        start.isoformat() if start else None,
        end.isoformat() if end else None,
        timezone,
        enabled,
    ]
    return json.dumps(parts)


def schedule_digest_of(name: str, parts: str) -> str:
    """:attr:`JobSpec.schedule_digest` of job ``name`` whose :meth:`JobSpec.schedule_parts` are ``parts``: the
    hash of the JSON list of the name (H values derive from it) and the parts."""
    return hashlib.sha256(f"[{json.dumps(name)}, {parts[1:]}".encode()).hexdigest()[:16]


@lru_cache(maxsize=4096)
def _quote(part: str) -> str:
    """Quote an argv element for display, preferring double quotes, which read better than shlex's."""
    if part and not any(char in part for char in " \t'\"$`\\"):
        return part
    return '"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"' if "$" not in part else shlex.quote(part)


def _whole_ms_instant(instant: datetime) -> datetime:
    if instant.microsecond % 1000:
        raise ValueError(f"{instant.isoformat()} is not a whole number of milliseconds: progress is kept in ms")
    return instant


def _text(value: Any) -> str:
    if not isinstance(value, str | int | float):
        raise ValueError(f"expected an ISO-8601 instant, got {type(value).__name__}")
    return str(value)


def _scalar_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value
