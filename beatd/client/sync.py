"""``beatd.Client``: what application code (and the CLI) reads and does against a running deployment."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from beatd import defaults
from beatd.audit import audit_record
from beatd.client.backfill import Backfill, bound, emit_backfill
from beatd.client.celery_fires import send_celery_fires
from beatd.client.dead import dead_letters, settle_dead
from beatd.client.emitting import fire_message, signed
from beatd.client.handles import FireHandle, as_record
from beatd.client.reads import find_runs, history_records, merged_records, record_time, with_celery_outcomes
from beatd.client.shards import ShardStores
from beatd.client.waiting import heartbeat_age, is_live, live_workers
from beatd.config import Config, ConfigFile, JobSpec, RedisSettings, load_config
from beatd.config.yamlsource import Located
from beatd.errors import ScheduleError, UnknownJob, UsageProblem
from beatd.layout import LayoutGate
from beatd.messages import parse_utc, to_ms
from beatd.overrides import effective_arguments
from beatd.records import RunRecord
from beatd.runtime_jobs import RUNTIME, YAML, RuntimeJobs
from beatd.runtime_judge import Judge
from beatd.store import RunStore, Store, connect
from beatd.store.dashboard import DashboardStore
from beatd.store.jobs import JobStore, StoredJob
from beatd.triggers import parse_instant

__all__ = ["Client", "Jobs", "find_job", "instant_of", "next_instants"]


class Client:
    """A connection to one beatd deployment (a Redis server and namespace), synchronous.

    Build it from the deployment's config file (:meth:`from_config`: the jobs, the signing key, the Redis
    settings with TLS and Sentinel) or from a Redis URL and namespace (``Client("redis://host:6379/0",
    namespace="beatd")``). Without a config the client reads and acts on what Redis holds (history, show,
    pause, resume, status) but cannot trigger: what a fire runs comes from the job's declaration, so
    :meth:`trigger`, :meth:`jobs` and :meth:`next` need the config (``config=``); a deployment of several
    shards needs its ``shards`` (the config's, or ``shards=``): a job's keys are in its shard, and the reads of
    many jobs (audit, dead letters, history of every job, the dashboard's counts) go over every shard. Before
    its first write (trigger, backfill, pause, resume, dead letter retry or drop, runtime job put or delete), and
    again every few seconds, the client checks the deployment's layout (``{ns:0}:layout``): ConfigError at
    ``shards``, nothing written, when Redis holds another shard count than the config's (a ``beatd reshard``
    since) or a reshard is under way (reads are not checked). Every call may raise
    ``beatd.store.StoreUnavailable`` when Redis cannot be reached. Not thread-safe beyond what redis-py is
    (one client per thread is simplest)."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        namespace: str = defaults.NAMESPACE,
        config: Config | None = None,
        actor: str | None = None,
        shards: int = 1,
    ) -> None:
        if config is None:
            if redis_url is None:
                raise UsageProblem("Client: give a redis_url (and namespace) or a config (Client.from_config)")
            settings = ConfigFile(namespace=namespace, redis=RedisSettings(url=redis_url), shards=shards)
            config = Config(path=Path("--redis-url"), settings=settings, jobs={})
        self.config = config
        self.actor = actor
        """Who acts, written into every audit record this client appends (besides the OS user, host and pid)."""
        self.keys = config.keys()
        self.store = Store(connect(config.settings.redis), self.keys)
        self.shards = ShardStores(self.store, config)
        """The Store of each shard (a job's own in ``shards.of(job)``) and the reads merged over them."""
        self.layout = LayoutGate(self.store.client, config)
        """The check of the deployment's layout before a write (``client.layout.check()``: beatd.layout)."""
        self.runs = RunStore(self.store.client, self.keys, config.shard_keys())
        self.dashboard = DashboardStore(self.store.client, self.keys, config.shard_keys())
        """Run counts per time bucket, failing jobs, newest records of many jobs (beatd.client.dashboard)."""
        self.jobs = Jobs(self, RuntimeJobs(config, JobStore(self.store.client, self.keys), actor=actor))
        """Every job (``client.jobs()``), and the jobs created at runtime (``client.jobs.put``, ``put_many``,
        ``delete``, ``get``, ``list``; see beatd.runtime_jobs)."""

    @classmethod
    def from_config(
        cls, path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None, actor: str | None = None
    ) -> Client:
        """A client for the deployment of the config file at ``path`` (``${VAR}`` from ``environ``, default
        the process environment); raises ConfigError with every problem located."""
        config = load_config(Path(path), dict(os.environ) if environ is None else environ)
        return cls(config=config, actor=actor)

    def acting_as(self, actor: str) -> Client:
        """This client (its config and connection pool shared) writing ``actor`` into the audit records of what
        it does; the original is unchanged, so a server can act for each caller from threads at once."""
        clone = copy.copy(self)
        clone.actor = actor
        clone.jobs = Jobs(clone, dataclasses.replace(self.jobs.runtime, actor=actor))
        return clone

    def close(self) -> None:
        """Close the connection pool."""
        self.store.client.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- acting ------------------------------------------------------------------------------------------
    def job(self, name: str) -> JobSpec:
        """The declared job ``name``; UnknownJob (naming the closest name) when the config has none."""
        return find_job(self.config, name)

    def trigger(
        self,
        job: str,
        *,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        at: datetime | str | None = None,
    ) -> FireHandle:
        """Emit one fire of ``job`` now (trigger ``manual``), with the job's own arguments or, for a job whose
        config says ``overrides``, ``args`` (replacing its own) and ``kwargs`` (merged over its own). ``at``:
        the fire's logical scheduled instant (aware datetime, or ISO-8601 text, naive = the job's zone; default
        now). The overrides are checked before anything is enqueued (OverridesRefused: not allowed, not JSON,
        larger than ``OVERRIDES_MAX_BYTES``, not matching the job's schema); the message is signed when the
        config has a signing key; the audit record names the actor and the overrides. Returns the handle to
        wait on. A ``celery`` job's fire goes to Celery's broker (its handle has ``celery_task_id``; Celery
        runs it, so it cannot be waited on)."""
        spec = self.job(job)
        arguments = effective_arguments(spec, args, kwargs)
        self.layout.check()
        store = self.shards.of(job)
        now = store.redis_now()  # emitted_at: the deadline (expires) counts from Redis's clock
        scheduled = instant_of(at, spec, "at") if at is not None else now
        message = fire_message(spec, scheduled, now, "manual", arguments)
        details: dict[str, Any] = {"job": job, "fire_id": message.fire_id, "scheduled_at": message.scheduled_at}
        if args is not None:
            details["args"] = message.args
        if kwargs is not None:
            details["kwargs"] = dict(kwargs)
        if self.actor is not None:
            details["actor"] = self.actor
        record = audit_record("trigger", now, **details)
        since = to_ms(now - defaults.WAIT_CLOCK_MARGIN)
        if spec.celery is not None:
            (sent,) = send_celery_fires(self.config, store, spec, [message], now, record, wait=False)
            return FireHandle(self, message.fire_id, job, sent["celery_queue"], message.scheduled_at, since,
                              celery_task_id=sent["task_id"])  # fmt: skip
        store.enqueue(spec.queue, signed(self.config, [message]), record)
        return FireHandle(self, message.fire_id, job, spec.queue, message.scheduled_at, since)

    def backfill(
        self, job: str, start: datetime | str, end: datetime | str, *, rerun: bool = False, dry_run: bool = False
    ) -> Backfill:
        """Emit every scheduled instant of ``job`` from ``start`` to ``end`` (both inclusive; a plain date as
        ``end`` includes that day), in order, with trigger ``backfill``, skipping instants already done unless
        ``rerun``; audited. Returns the report and a handle per fire (``dry_run``: the plan only). UsageProblem
        when refused: more than 10,000 fires, another backfill of the job running, a skip check the job's
        ``history.keep`` cannot make complete (``rerun`` then)."""
        spec = self.job(job)
        first = start if isinstance(start, datetime) else bound(start, spec, "start", end_of_day=False)
        last = end if isinstance(end, datetime) else bound(end, spec, "end", end_of_day=True)
        self.layout.check()  # a dry run too: its plan reads the job's progress and history in its shard
        return emit_backfill(self, spec, first, last, rerun=rerun, dry_run=dry_run)

    def dead_letters(self, limit: int = 50, *, show_all: bool = False) -> list[dict[str, Any]]:
        """Dead letters, newest first (each with ``id``, ``died_at``, ``job``, ``fire_id``, ``attempts``,
        ``reason``, ``queue``), at most ``limit``; those of fires that succeeded later only with ``show_all``."""
        return dead_letters(self.runs, limit, show_all)

    def retry_dead(self, entry_id: str) -> dict[str, Any]:
        """Put dead letter ``entry_id`` back into its queue (its fire runs as its next attempt); audited.
        UsageProblem when there is no such dead letter (or another caller settled it meanwhile)."""
        self.layout.check()
        return settle_dead(self.runs, entry_id, "retry", self.store.redis_now(), self.actor)

    def drop_dead(self, entry_id: str) -> dict[str, Any]:
        """Delete dead letter ``entry_id`` (the audit record keeps what it was); UsageProblem as :meth:`retry_dead`."""
        self.layout.check()
        return settle_dead(self.runs, entry_id, "drop", self.store.redis_now(), self.actor)

    def pause(self, job: str, reason: str = "") -> bool:
        """Stop scheduling ``job`` until resumed (survives restarts); False when it was already paused. Audited."""
        self._known(job)
        self.layout.check()
        return self.shards.of(job).pause(job, self._audit("pause", job=job, reason=reason))

    def resume(self, job: str, reason: str = "") -> bool:
        """Resume ``job`` from now on (the paused period is not caught up); False when it was not paused.
        Audited, with ``reason`` when given."""
        self._known(job)
        details = {"reason": reason} if reason else {}
        self.layout.check()
        return self.shards.of(job).resume(job, self._audit("resume", job=job, **details))

    # -- reading -----------------------------------------------------------------------------------------
    def next(self, job: str, n: int = 5, after: datetime | str | None = None) -> list[datetime]:
        """The next ``n`` scheduled instants of ``job`` after ``after`` (default now), in the job's zone; fewer
        when the job fires no more."""
        spec = self.job(job)
        instant = instant_of(after, spec, "after") if after is not None else datetime.now(UTC)
        return [upcoming.astimezone(spec.zone) for upcoming in next_instants(spec, n, instant)]

    def history(
        self, job: str | None = None, *, status: str | None = None, since: datetime | None = None, limit: int = 50
    ) -> list[RunRecord]:
        """Run records, newest first, of ``job`` (default every job with history), at most ``limit``; only those
        with ``status``, and only those started (or recorded) at or after ``since``."""
        return [as_record(record) for record in self.history_records(job, status=status, since=since, limit=limit)]

    def history_records(
        self, job: str | None = None, *, status: str | None = None, since: datetime | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """:meth:`history` as the stored JSON objects (what ``beatd history --json`` prints)."""
        since_ms = to_ms(since) if since is not None else None
        records = history_records(self.runs, self.config, [job] if job else None, status, since_ms, limit)
        sources = self.sources(sorted({record["job"] for record in records}))
        for record in records:
            record["source"] = sources[record["job"]]
        return records

    def sources(self, jobs: Sequence[str]) -> dict[str, str]:
        """Where each of ``jobs`` comes from: ``yaml`` (this config's), ``runtime`` (stored by ``jobs.put``), or
        ``-`` (neither any more: a removed job whose history is kept)."""
        stored = self.jobs.runtime.entries([job for job in jobs if job not in self.config.jobs])
        return {
            job: YAML if job in self.config.jobs else RUNTIME if stored.get(job) is not None else "-" for job in jobs
        }

    def export_records(self, since: datetime | None = None, until: datetime | None = None) -> list[dict[str, Any]]:
        """Every run record started (or recorded) at or after ``since`` and before ``until``, oldest first, as
        the stored JSON objects (what ``beatd export`` writes as JSON Lines)."""
        low, high = (to_ms(since) if since else None), (to_ms(until) if until else None)
        records = merged_records(self.runs, self.runs.jobs_with_history(), 10_000_000, low)
        return [
            record for record in reversed(records) if high is None or to_ms(parse_utc(record_time(record)[0])) < high
        ]

    def workers(self) -> list[dict[str, Any]]:
        """Workers with a live heartbeat (by Redis's clock), by id, each with ``heartbeat_age_s``."""
        now = self.store.redis_now()
        return [
            {**beat, "heartbeat_age_s": round(heartbeat_age(beat, now).total_seconds(), 3)}
            for _, beat in sorted(self.runs.workers().items())  # stale ones are deleted by the leader's upkeep only
            if is_live(beat, now)
        ]

    def worker_gone(self, worker: str | None) -> bool:
        """Whether worker ``worker`` (as a run record names it: ``host:pid``) has no live heartbeat."""
        if worker is None:
            return False
        now = self.store.redis_now()
        return not any(
            f"{beat.get('host')}:{beat.get('pid')}" == worker and is_live(beat, now)
            for beat in self.runs.workers().values()
        )

    def output(self, run_id: str, after: str = "0", block_ms: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        """The live output chunks of run ``run_id`` after stream entry ``after`` (``{stream, text}``, the last
        ``{end, status}``), waiting up to ``block_ms`` for one when given; each with its entry id."""
        return [(entry_id, json.loads(text)) for entry_id, text in self.runs.read_output(run_id, after, block_ms)]

    def show(self, identifier: str) -> list[RunRecord]:
        """The record of run ``identifier`` (a run id), or every attempt of fire ``identifier`` (by attempt, its
        ``dead`` record last); UnknownJob when there is none."""
        return [as_record(record) for record in self.show_records(identifier)]

    def show_records(self, identifier: str) -> list[dict[str, Any]]:
        """:meth:`show` as the stored JSON objects (with Celery outcomes)."""
        return with_celery_outcomes(self.config, find_runs(self.runs, identifier))

    def run_record(self, job: str, run_id: str) -> dict[str, Any] | None:
        """The stored record of run ``run_id`` of ``job`` as a JSON object, or None when there is none."""
        text = self.runs.run_record(job, run_id)
        return json.loads(text) if text else None

    def runs_of_fire(self, job: str, fire_id: str) -> list[dict[str, Any]]:
        """Every kept record of fire ``fire_id`` of ``job`` as stored JSON objects, by attempt (``dead`` last)."""
        return [json.loads(text) for text in self.runs.fire_records(job, fire_id)]

    def audit(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest ``limit`` audit records, newest first, each with its stream ``id`` (merged over the shards
        by entry id; with several shards each also has its ``shard``)."""
        return self.shards.read_audit(limit)

    def live_workers(self, queue: str) -> list[str]:
        """Workers whose heartbeat is fresh (by Redis's clock) and which consume ``queue``."""
        return live_workers(self.runs, queue, self.store.redis_now())

    def status(self) -> dict[str, Any]:
        """The deployment at a glance, as ``beatd status --json`` prints it (leader, replicas, jobs, queues,
        backlog, warnings)."""
        from beatd.client.status import status_report

        return status_report(self, self.config, [], datetime.now(UTC))

    # -- dashboard reads (beatd web) ---------------------------------------------------------------------
    def run_counts(self) -> dict[str, dict[str, int]]:
        """Runs ended in the last hour and day by status: ``{"hour": {status: n}, "day": {status: n}}``."""
        from beatd.client.dashboard import run_counts

        return run_counts(self, self.store.redis_now())

    def failing_jobs(self) -> dict[str, str]:
        """Job -> fire id, for each job whose last ended fire ended ``dead``."""
        return self.dashboard.failing()

    def newest_runs(self, jobs: Sequence[str], count: int = 20) -> dict[str, list[dict[str, Any]]]:
        """Job -> its newest ``count`` run records (JSON objects, newest first), for many jobs at once."""
        found = self.dashboard.newest_records(list(jobs), count)
        return {job: [json.loads(text) for text in texts] for job, texts in found.items()}

    # -- internals ---------------------------------------------------------------------------------------
    def _known(self, job: str) -> None:
        if self.config.jobs and job not in self.config.jobs:
            self.job(job)  # raises UnknownJob with a hint

    def _audit(self, event: str, **details: Any) -> dict[str, Any]:
        if self.actor is not None:
            details["actor"] = self.actor
        return audit_record(event, self.store.redis_now(), **details)


def find_job(config: Config, name: str) -> JobSpec:
    """The job named ``name``, declared in the YAML or (when the config enables runtime jobs) created at runtime
    and valid under ``config``; else UnknownJob suggesting the closest name."""
    if name in config.jobs:
        return config.jobs[name]
    if config.settings.runtime_jobs is not None:
        from beatd.runtime_jobs import judge
        from beatd.store.jobs import JobStore

        raw = JobStore(connect(config.settings.redis), config.keys_of(name)).entries([name]).get(name)
        created = judge(config, name, raw)[0] if raw is not None else None
        if created is not None:
            return created
    close = difflib.get_close_matches(name, list(config.jobs), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UnknownJob(f"no job named {name!r} in {config.path}{hint}")


def next_instants(spec: JobSpec, n: int, after: datetime) -> list[datetime]:
    """The next ``n`` scheduled instants of ``spec`` after ``after`` (pure; fewer when it fires no more)."""
    trigger, instants = spec.trigger(), list[datetime]()
    while len(instants) < n and (upcoming := trigger.next_after(after)) is not None:
        instants.append(upcoming)
        after = upcoming
    return instants


def instant_of(value: datetime | str, spec: JobSpec, option: str) -> datetime:
    """An instant given as an aware datetime or ISO-8601 text (naive: in the job's zone); UsageProblem else."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise UsageProblem(f"{option}: expected an aware datetime (with a tzinfo)")
        return value
    try:
        return parse_instant(value, spec.zone)
    except ScheduleError as error:
        raise UsageProblem(f"{option}: {error}") from error


class Jobs:
    """``client.jobs``: called, every job; its methods create, change, delete and read runtime jobs."""

    def __init__(self, client: Client, runtime: RuntimeJobs) -> None:
        self._client = client
        self.runtime = runtime

    def __call__(self) -> list[JobSpec]:
        """The declared jobs, in config order, then the runtime jobs valid under the config (by name)."""
        return [spec for spec, _ in self.sourced()]

    def sourced(self) -> list[tuple[JobSpec, str]]:
        """:meth:`__call__` with where each job comes from: ``yaml`` or ``runtime``."""
        config = self._client.config
        created: list[tuple[JobSpec, str]] = []
        if config.settings.runtime_jobs is not None:
            verdict = Judge(config)  # 100,000 jobs of a few shapes: each shape validated once
            for name, raw in sorted(self.runtime.all_entries().items()):
                spec = verdict(name, raw)[0]
                if spec is not None:
                    created.append((spec, RUNTIME))
        return [*((spec, YAML) for spec in config.jobs.values()), *created]

    def put(self, name: str, spec: Mapping[str, Any] | Located) -> StoredJob:
        """Create or replace runtime job ``name`` (see :meth:`beatd.runtime_jobs.RuntimeJobs.put`)."""
        self._client.layout.check()
        return self.runtime.put(name, spec)

    def put_many(self, specs: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
        """Create or replace many runtime jobs at once, all validated before any is written."""
        self._client.layout.check()
        return self.runtime.put_many(specs)

    def delete(self, name: str) -> bool:
        """Delete runtime job ``name``; False when there was none."""
        self._client.layout.check()
        return self.runtime.delete(name)

    def get(self, name: str) -> StoredJob | None:
        """Runtime job ``name`` as stored, or None."""
        return self.runtime.get(name)

    def list(self) -> Sequence[StoredJob]:
        """Every stored runtime job."""
        return self.runtime.list()
