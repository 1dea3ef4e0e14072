"""The beat: as leader, emit every due fire exactly once; as standby, wait for the lease.

``Beat.tick(now, monotonic)`` is one step of the loop and returns how long the loop may sleep; ``run`` lives
in :mod:`beatd.daemon`. This module knows neither YAML nor Redis commands: it decides with the pure
planner and writes through the :class:`~beatd.store.Store`, whose every write is fenced by the lease.

What is due is decided by Redis's clock (:mod:`beatd.redis_clock`, sampled at every lease call and carried
on the monotonic clock), never by the host's wall clock, which only stands in before Redis was ever reached.

Due work is found in a heap of due instants, each with the jobs due then, so a tick costs in proportion to the
fires due, not to the number of jobs, and a burst (100,000 jobs due at one instant) is one heap entry. Jobs that
share a schedule and a catch-up policy (and have no jitter) share their plan within a tick. While Redis applies
one batch of writes, the beat prepares the next (at most one batch in flight, each fenced on its own).
"""

from __future__ import annotations

import contextlib
import heapq
import logging
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache, partial

from beatd import defaults
from beatd.audit import audit_record
from beatd.clock import Clock, SystemClock
from beatd.collector import collector_paused, keep_out_of_collections
from beatd.config import Config, JobSpec
from beatd.config.compact import CompactJob
from beatd.emission import Counters, InstantTexts, Pending, TickWriter, account, message_template, plan_writes
from beatd.identity import Identity
from beatd.leader import Leadership
from beatd.messages import MessageTemplate, format_utc, to_ms
from beatd.metrics import Health, Metrics
from beatd.planner import CatchupPolicy, Plan, plan_job
from beatd.redis_clock import RedisClock
from beatd.reload import BEAT_APPLIES, Reload, job_changes, settings_change
from beatd.runtime_follow import RuntimeFollower
from beatd.signing import Signer
from beatd.store import InFlight, LeaderWrite, Store, StoreError, StoreUnavailable
from beatd.triggers import CronTrigger, Trigger, jitter_offset
from beatd.unreadable import Unreadable
from beatd.upkeep import Upkeep

__all__ = ["Beat", "JobState", "LaunchFreezer"]

log = logging.getLogger("beatd.beat")

MAX_SLEEP = 1.0
"""Longest sleep between ticks (s); signals wake the loop earlier."""

PAUSED_POLL = 1.0
"""How often (s) the leader re-reads which jobs are paused."""

BACKOFF_MAX = 5.0
"""Cap of the wait (s) between attempts while Redis is unreachable."""

PLANS_PER_TICK = 5000
"""Most jobs planned in one tick (well under 0.1 s of work): a long backlog is worked off over several ticks,
with the lease renewed between them."""

PREPARE_PER_TICK = 2000
"""Most message templates made in one tick with nothing due (about 20 ms): a job's first fire needs its
template; made ahead, while the leader is idle, the first burst after a start does not pay for them."""

PREPARE_PAUSE = 0.01
"""Longest sleep (s) while templates remain to be made."""

FLUSH_SIZE = 1000
"""Writes sent to Redis together (one ``emit.lua`` call) while the next are prepared."""

RUNTIME_LINES = 20
"""Most runtime job changes logged one by one per poll (a put_many of thousands gets one more line)."""

START_BATCH = 5000
"""Most start writes (new or rescheduled jobs) sent in one fenced call: bounds the memory a sync of many new
jobs takes (each call is one fence check, so batches of this size cost no more time than one call)."""

SYNC_READ_BATCH = 10_000
"""Jobs whose progress and schedule digest a sync reads in one HMGET of each hash, renewing the lease between
batches when due: a sync of 1,000,000 jobs takes longer than a lease (the start writes renew it the same way)."""

CELERY_REPROBE = 1.0
"""Seconds between probes of the Celery broker while beatd's Redis did not answer the last one."""

REFUSED_RETRY = 5.0
"""Wait (s) before planning again a job whose write Redis refused (out of memory, a wrong key type)."""


def _no_jitter(_: datetime) -> timedelta:
    return timedelta(0)


@dataclass(slots=True)
class JobState:
    """A job as the beat schedules it (``spec``: the compact job, whose attributes are its JobSpec's)."""

    spec: CompactJob
    trigger: Trigger
    policy: CatchupPolicy
    shares: Hashable | None = None
    """What decides the job's plans besides its progress (schedule and catch-up policy; None with jitter):
    jobs with an equal one plan alike (:func:`plan_share`)."""
    template: MessageTemplate | None = None
    """The job's message template, made at its first fire."""

    @classmethod
    def of(cls, spec: CompactJob, shared: dict[Hashable, Hashable] | None = None) -> JobState:
        """Build the trigger and policy of ``spec``; ``shared`` interns the plan shares of many jobs."""
        policy = _policy(spec.catchup, spec.misfire_grace, spec.catchup_limit)
        trigger = spec.trigger()
        shares = None if spec.jitter else plan_share(trigger, policy)
        if shares is not None and shared is not None:
            shares = shared.setdefault(shares, shares)
        return cls(spec=spec, trigger=trigger, policy=policy, shares=shares)

    @classmethod
    def all_of(cls, specs: Mapping[str, CompactJob], shared: dict[Hashable, Hashable]) -> dict[str, JobState]:
        """:meth:`of` each enabled job of ``specs``: what jobs of one shape and one trigger object share (their
        policy, their plan share) is worked out once for them (100,000 jobs have a few of each)."""
        policies: dict[int, tuple[object, CatchupPolicy]] = {}
        shares: dict[tuple[int, int], tuple[Trigger, Hashable | None]] = {}
        states = {}
        for name, spec in specs.items():
            if not spec.enabled:
                continue
            shape, trigger = spec.shape, spec.trigger()
            known = policies.get(id(shape))
            if known is None or known[0] is not shape:
                known = policies[id(shape)] = (shape, _policy(spec.catchup, spec.misfire_grace, spec.catchup_limit))
            policy = known[1]
            share = None
            if not spec.jitter:
                found = shares.get((id(trigger), id(policy)))
                if found is None or found[0] is not trigger:
                    plan = plan_share(trigger, policy)
                    interned = shared.setdefault(plan, plan) if plan is not None else None
                    found = shares[(id(trigger), id(policy))] = (trigger, interned)
                share = found[1]
            states[name] = cls(spec=spec, trigger=trigger, policy=policy, shares=share)
        return states


def plan_share(trigger: Trigger, policy: CatchupPolicy) -> Hashable | None:
    """What decides the plans of a job without jitter besides its progress, equal for jobs whose triggers
    fire at the same instants (a cron trigger's ``H`` values are in its expanded expression; the job name it
    hashes them from is not); None when that is not known, and for a trigger with its own ``start`` (jobs spread
    over an interval by their starts share nothing: a share each would only cost memory)."""
    if getattr(trigger, "start", None) is not None:
        return None
    if isinstance(trigger, CronTrigger):
        return ("cron", trigger.expanded_expression, trigger.zone, trigger.start, trigger.end, policy)
    try:
        hash(trigger)
    except TypeError:
        return None
    return (trigger, policy)


_policy = lru_cache(maxsize=256)(CatchupPolicy)
"""Equal policies are one object: 100,000 jobs have a handful of them."""


def late_after(lease: timedelta) -> timedelta:
    """How late a fire may be and still count as on time: two leases and a second (a failover is no gap)."""
    return 2 * lease + timedelta(seconds=1)


class Beat:
    """One beat replica."""

    def __init__(
        self,
        config: Config,
        store: Store,
        replica: Identity,
        signer: Signer | None = None,
        metrics: Metrics | None = None,
        health: Health | None = None,
        clock: Clock | None = None,
        runtime: RuntimeFollower | None = None,
        shard: int | None = None,
    ) -> None:
        self.store = store
        self.shard = shard
        """The shard this beat leads (None: the one shard of an unsharded deployment). A sharded replica runs
        one Beat per shard (:mod:`beatd.shard_beat`): each holds its shard's jobs and lease; only shard 0's
        publishes the replica's heartbeat and runs the deployment-wide upkeep."""
        self.contend = True
        """Whether this beat may take its lease when it is free (a sharded replica's lease plan decides)."""
        self.handing_over: list[Callable[[str], contextlib.AbstractContextManager[None]]] = []
        """What holds still while :meth:`resign` gives up the lease (called with its token): the shard's Celery
        relay, which deletes what the broker confirmed while the lease still holds."""
        self.describe_extra: Callable[[], dict[str, object]] | None = None
        """More fields for the heartbeat (a sharded replica's shards led and wanted)."""
        self.runtime = runtime
        """The runtime jobs (``beatd job put``), followed from Redis; None: YAML jobs only."""
        self.signer = signer
        self.metrics = metrics or Metrics(len(config.jobs))
        self.health = health or Health()
        self.replica = replica
        self.config = config
        self.specs: dict[str, CompactJob] = self._all_specs(config)
        """Every job, enabled or not: the YAML's and the valid runtime jobs (a YAML job wins a name)."""
        self.shared: dict[Hashable, Hashable] = {}
        """The plan shares of the jobs (:attr:`JobState.shares`), interned."""
        self.jobs = JobState.all_of(self.specs, self.shared)
        self.redis_clock = RedisClock()
        lease = config.settings.leader.lease
        monotonic = (clock or SystemClock()).monotonic
        self.label = f" of shard {shard}" if shard is not None else ""
        """What log lines add to say which shard they are about ('' unsharded)."""
        self.leadership = Leadership(
            store, replica.id, lease, self._leader_record, self.redis_clock, monotonic, label=self.label
        )
        self.late_after = late_after(lease)
        self.progress: dict[str, datetime] = {}
        self.heap: list[datetime] = []
        """The instants some job is due at (a key of ``due``), earliest first."""
        self.due: dict[datetime, list[str]] = {}
        """The jobs queued at each instant of ``heap`` (a job queued again since is skipped: see ``queued``)."""
        self.queued: dict[str, datetime] = {}
        """When each scheduled job is due next."""
        self.in_flight: tuple[list[Pending], InFlight] | None = None
        """The writes sent to Redis whose outcome is not read yet."""
        self.instants = InstantTexts()
        self.unprepared: list[str] = []
        """Jobs whose message template may not be made yet (made ahead while idle: :meth:`_prepare`)."""
        self.paused: set[str] = set()
        self.unreadable = Unreadable(store.keys.progress)
        self.upkeep = Upkeep(store.upkeep, self.metrics, heartbeats=not shard, shard=shard)
        self.synced = False
        self.config_error: str | None = None
        self.celery_outbox: bool | None = False
        """Whether celery fires go to the outbox for the relay (the broker is another server, or AMQP:
        :mod:`beatd.celery_broker`) rather than straight into the broker's database; None while the broker
        probe could not tell (beatd's Redis did not answer it, or a reload changed ``celery`` and the probe of
        the new broker has not run yet): celery fires wait, and ``celery_reprobe`` runs before the leader's next
        emission, at most every ``CELERY_REPROBE`` s. A changed job's old schedule settled meanwhile goes to the
        outbox: at least once, never pushed into a server not proven to be the broker's."""
        self.celery_reprobe: Callable[[], None] | None = None
        self.counters = Counters()
        self.unavailable_since: float | None = None
        self._next_heartbeat = 0.0
        self._next_paused_poll = 0.0
        self._backoff = 0.1
        self._now = replica.started_at
        self._changes_seen = 0
        self._next_runtime_poll = 0.0
        self.runtime_read = runtime is None or (runtime.version >= 0 and not runtime.reading)
        """The runtime jobs have been read in full once (until then they are logged as one line, not one each)."""
        self._next_celery_probe = 0.0

    # -- the loop step -----------------------------------------------------------------------------------
    def now(self, host_now: datetime, monotonic: float) -> datetime:
        """The instant that decides what is due: Redis's time carried on the monotonic clock; ``host_now``
        only until Redis has answered once."""
        return self.redis_clock.now(monotonic) or host_now

    def tick(self, now: datetime, monotonic: float) -> float:
        """Do what is due; return the seconds the loop may sleep before the next tick.

        ``now`` is the host's clock, used only before Redis first answered; ``monotonic`` times everything."""
        try:
            # A replica contends for the lease once it has read every runtime job (it leads only then, see
            # _lead): holding the lease meanwhile would keep a standby that has read them all from taking over.
            leading = self.leadership.step(monotonic, contend=self.runtime_read and self.contend)
            now = self._now = self.now(now, monotonic)
            self._heartbeat(now, monotonic)
            self._follow_runtime(now, monotonic)
            if leading:
                self._lead(now, monotonic)
            else:
                self._settle_in_flight()
                self.synced = False
        except StoreError as error:
            self._settle_in_flight()
            self.metrics.redis_errors.inc()
            self._observe(monotonic, redis_ok=False)
            return self._unavailable(error, monotonic)
        self._observe(monotonic, redis_ok=True)
        if self.unavailable_since is not None:
            log.info("Redis reachable again")
            self.unavailable_since = None
            self._backoff = 0.1
        return self._sleep(now, monotonic, leading=self.leadership.is_leader(monotonic))

    def _lead(self, now: datetime, monotonic: float) -> None:
        if not self.synced:
            if self.runtime is not None and self.runtime.reading:
                # Lead once every runtime job is met: one met later would be taken for a new job, started from now.
                return
            with collector_paused():  # a sync of 1,000,000 jobs makes millions of objects, none in a cycle
                self._sync(now)
        if monotonic >= self._next_paused_poll:
            self._poll_paused(now)
            self._recheck_skipped(now)
            self._next_paused_poll = monotonic + PAUSED_POLL
        if self.celery_outbox is None and self.celery_reprobe is not None and monotonic >= self._next_celery_probe:
            self._next_celery_probe = monotonic + CELERY_REPROBE
            self.celery_reprobe()
        self._emit_due(now)
        if self.unprepared and not (self.heap and self.heap[0] <= now):
            self._prepare()
        if self.upkeep.due(monotonic) and self.leadership.token is not None:
            self._upkeep(self.leadership.token, now, monotonic)

    def _upkeep(self, token: str, now: datetime, monotonic: float) -> None:
        """The leader's upkeep step; a failure of its own (a refused write, data it cannot read) is logged and
        counted, never allowed to hold up emission. Redis being unreachable ends the tick as ever."""
        try:
            self.upkeep.step(token, self.specs, now, monotonic)
            if self.runtime is not None:
                self._forget_deleted(token)
        except StoreUnavailable:
            raise
        except Exception:
            log.exception("upkeep step failed; the next one comes in %s", defaults.UPKEEP_INTERVAL)
            self.metrics.loop_errors.inc()

    def _observe(self, monotonic: float, *, redis_ok: bool) -> None:
        """Publish role, leader changes and health after a tick."""
        leading = self.leadership.is_leader(monotonic)
        self.metrics.leader.set(1 if leading else 0)
        if not leading:
            self.upkeep.stand_down()
        if self.leadership.changes > self._changes_seen:
            self.metrics.leader_changes.inc(self.leadership.changes - self._changes_seen)
            self._changes_seen = self.leadership.changes
        self.health.step(redis_ok=redis_ok, role="leader" if leading else "standby")

    def next_fire(self) -> datetime | None:
        """The earliest due instant this leader knows of (None as standby or with nothing scheduled)."""
        while self.heap and not any(self.queued.get(name) == self.heap[0] for name in self.due[self.heap[0]]):
            del self.due[heapq.heappop(self.heap)]
        return self.heap[0] if self.heap else None

    def shutdown(self) -> None:
        """Release the lease (a standby takes over at once) and withdraw the heartbeat."""
        self._settle_in_flight()
        self.leadership.release()
        if self.shard:  # the replica's heartbeat is shard 0's to withdraw
            return
        with contextlib.suppress(StoreError):
            self.store.forget_replicas([self.replica.id])

    def resign(self) -> None:
        """Give the lease up now (a sharded replica hands the shard over to its target): what is in flight is
        read first, then the lease released; the next tick stands by. Raises nothing (a failed release lapses)."""
        self._settle_in_flight()
        token = self.leadership.token
        with contextlib.ExitStack() as holding:
            for hold in self.handing_over:
                if token is not None:
                    holding.enter_context(hold(token))
            self.leadership.release()
        self.synced = False
        self.heap, self.due, self.queued = [], {}, {}
        self.upkeep.stand_down()

    def heartbeat_soon(self) -> None:
        """Publish the heartbeat at the next tick (what it says changed: the shards led or wanted)."""
        self._next_heartbeat = 0.0

    # -- config reload -----------------------------------------------------------------------------------
    def report_config_error(self, error: str | None) -> None:
        """Record the outcome of the last reload; the next tick publishes it in the heartbeat."""
        self.config_error = error
        self._next_heartbeat = 0.0

    def apply_config(self, config: Config, now: datetime, monotonic: float) -> Reload:
        """Switch to ``config`` (already validated) at host instant ``now``; say what changed.

        New jobs and jobs whose schedule changed start from now: nothing retroactive, nothing doubled; a
        changed job first settles every fire its old schedule had at or before now (one held back by jitter
        is emitted early rather than lost). Removed jobs stop being scheduled; their progress, schedule
        digest and history stay in Redis, so a replica whose config still has them (a rolling change) judges
        them from their progress when it leads. The lease (with ``late_after``) and the signing key apply at
        once; the Redis connection and namespace need a restart (listed in ``needs_restart``).
        """
        now = self.now(now, monotonic)
        settings = settings_change(self.config.settings, config.settings, BEAT_APPLIES, unused=("worker",))
        self.leadership.set_lease(config.settings.leader.lease)
        self.late_after = late_after(config.settings.leader.lease)
        self.signer = Signer.optional(config.settings.security.signing_key)
        if self.runtime is not None:
            try:
                self.runtime.set_config(config)
            except StoreError as error:  # the next poll reads them all under the new config
                log.warning("runtime jobs not judged again yet: %s", error)
        specs = self._all_specs(config)
        self.shared = {}
        old, new = self.jobs, JobState.all_of(specs, self.shared)
        lines, names = job_changes(
            {name: state.spec for name, state in old.items()}, {name: state.spec for name, state in new.items()}
        )
        restart = {name: old.get(name) for name in names}
        if config.settings.celery != self.config.settings.celery:
            self.celery_outbox = None  # the new broker is not probed yet (the daemon probes it after this)
        self.config, self.jobs, self.specs = config, new, specs
        self.unprepared = list(new)
        for name in old:
            if name not in new:
                self.queued.pop(name, None)
        if self.synced and restart:
            try:
                readable = {name: before for name, before in restart.items() if name not in self.unreadable.jobs}
                self._start_from_now(readable, now)
            except StoreError:
                self.synced = False  # a later sync compares schedule digests and does the same
        return Reload(lines, settings)

    # -- runtime jobs ------------------------------------------------------------------------------------
    def _all_specs(self, config: Config) -> dict[str, CompactJob]:
        """Every job of ``config`` and the runtime jobs, as compact jobs (:mod:`beatd.config.compact`)."""
        runtime = self.runtime.compact if self.runtime is not None else {}
        yaml = config.compact
        if not runtime and isinstance(yaml, dict):  # shared with the config until a runtime job comes
            return yaml
        return {**{name: job for name, job in runtime.items() if name not in yaml}, **yaml}

    def _follow_runtime(self, now: datetime, monotonic: float) -> None:
        """Apply the runtime jobs changed since the last poll (one GET when none did)."""
        if self.runtime is None or monotonic < self._next_runtime_poll:
            return
        changed = self.runtime.poll()
        self._next_runtime_poll = monotonic + (0.0 if self.runtime.behind else defaults.RUNTIME_POLL.total_seconds())
        lines = self.apply_job_changes(changed, now) if changed else []
        if not self.runtime_read:  # the first read (the daemon's start): one line once it is complete
            if self.runtime.version >= 0 and not self.runtime.reading:
                self.runtime_read = True
                runtime = self.runtime
                log.info(
                    "runtime jobs%s read: %d valid, %d refused", self.label, len(runtime.compact), len(runtime.refused)
                )
            return
        for line in lines[:RUNTIME_LINES]:
            log.info("runtime job %s", line)
        if len(lines) > RUNTIME_LINES:
            more = len(lines) - RUNTIME_LINES
            log.info("runtime jobs: %d more changes applied (%d jobs in all)", more, len(self.jobs))

    def _forget_deleted(self, token: str) -> None:
        """Forget the per-job fields of runtime jobs deleted (a bounded batch an upkeep step): those this
        leader no longer schedules (one it still does has a delete it has not read yet: the next step), and a
        name its YAML declares only leaves the set (the fields are the YAML job's)."""
        assert self.runtime is not None
        names = self.runtime.store.deleted(defaults.RUNTIME_FORGET_BATCH)
        gone = [name for name in names if name not in self.specs or name in self.config.jobs]
        yaml = [name for name in gone if name in self.config.jobs]
        if yaml:
            self.runtime.store.forget_names(yaml)
        forgotten = self.runtime.store.forget(token, [name for name in gone if name not in self.config.jobs])
        if forgotten > 0:
            log.info("forgot the progress and state of %d deleted runtime jobs", forgotten)

    def apply_job_changes(self, changed: Mapping[str, CompactJob | JobSpec | None], now: datetime) -> list[str]:
        """Apply changes of some runtime jobs (None: gone) at ``now``, touching only those: like a reload of
        them alone (a new or rescheduled job starts from now, a changed one first settles its old schedule).
        Returns one line per change (past ``RUNTIME_LINES`` of them, an added job's line names it alone: a
        put_many of 100,000 jobs logs 20 lines). A name the YAML declares is left to the YAML job."""
        lines: list[str] = []
        restart: dict[str, JobState | None] = {}
        scheduled: dict[str, CompactJob] = {}  # their states made together: jobs of a shape share their work
        for name, given in changed.items():
            if name in self.config.jobs:
                continue
            spec = CompactJob.of_spec(given) if isinstance(given, JobSpec) else given
            before = self.jobs.get(name)
            if spec is None:
                if self.specs is self.config.compact and name in self.specs:
                    self.specs = dict(self.specs)
                self.specs.pop(name, None)
                self.jobs.pop(name, None)
                self.queued.pop(name, None)
                self.progress.pop(name, None)  # put again, it starts from now; its Redis fields go by the upkeep
                lines.append(f"removed {name}")
                continue
            if self.specs is self.config.compact:  # the config's own: copied before the first change
                self.specs = dict(self.specs)
            self.specs[name] = spec
            if not spec.enabled:
                self.jobs.pop(name, None)
                self.queued.pop(name, None)
                lines.append(f"disabled {name}")
                continue
            scheduled[name] = spec
            self.unprepared.append(name)
            if before is None:
                lines.append(f"added {name}: {spec.schedule_text}" if len(lines) < RUNTIME_LINES else f"added {name}")
                restart[name] = None
            elif before.spec.schedule_digest != spec.schedule_digest:
                lines.append(f"changed {name}: {before.spec.schedule_text} -> {spec.schedule_text}, from now on")
                restart[name] = before
            else:
                lines.append(f"changed {name}: target or policies (schedule unchanged)")
        self.jobs.update(JobState.all_of(scheduled, self.shared))
        if self.synced and restart:
            try:
                readable = {name: before for name, before in restart.items() if name not in self.unreadable.jobs}
                self._start_from_now(readable, now)
            except StoreError:
                self.synced = False  # a later sync compares schedule digests and does the same
                raise
        return lines

    # -- leader work -------------------------------------------------------------------------------------
    def _sync(self, now: datetime) -> None:
        """As a new leader: load progress and pause state, start new or changed jobs from now, plan all.

        Progress and schedule digests are read ``SYNC_READ_BATCH`` jobs at a time, the lease renewed between
        them when due (:meth:`Leadership.keep`), so a sync of 1,000,000 jobs, however long, keeps the lease; one
        that lapsed meanwhile stops (the next sync starts again). Jobs this config lacks keep their progress and
        schedule digest (another replica's config may have them, during a rolling change): a job unknown to
        this leader is simply not scheduled by it."""
        self._settle_in_flight()
        self.paused = self._read_paused()
        self.unreadable.jobs = {}
        self.progress = {}
        self.heap, self.due, self.queued = [], {}, {}
        self.unprepared = list(self.jobs)
        names = list(self.jobs)
        fresh: dict[str, JobState | None] = {}
        instants: dict[int, datetime] = {}  # many jobs have one progress (they started together): one object
        for offset in range(0, len(names), SYNC_READ_BATCH):
            batch = names[offset : offset + SYNC_READ_BATCH]
            stored, corrupt = self.store.read_progress(batch)
            digests = self.store.schedule_digests(batch)
            for problem in corrupt:
                self.unreadable.skip(problem)
            for name in batch:
                value = stored.get(name)
                if value is not None:
                    instant = instants.get(value)
                    if instant is None and (instant := self.unreadable.instant(name, value)) is not None:
                        instants[value] = instant
                    if instant is not None:
                        self.progress[name] = instant
                if name in self.unreadable.jobs:
                    continue
                if name not in self.progress or digests.get(name) != self.jobs[name].spec.schedule_digest:
                    fresh[name] = None
                else:
                    self._push_at(name, now)
            if not self.leadership.keep():  # the lease lapsed during the read: nothing is written under it
                self.heap, self.due, self.queued = [], {}, {}
                return
        self.synced = True
        self._start_from_now(fresh, now)
        log.info(
            "leading %d jobs%s (%d new or changed start from %s)", len(self.jobs), self.label, len(fresh),
            format_utc(now),
        )  # fmt: skip

    def _start_from_now(self, names: dict[str, JobState | None], now: datetime) -> None:
        """Move the progress of ``names`` to now; a job's old schedule (the value, when given) is settled first,
        unless the job is paused (its paused period is never emitted: resume starts it from then)."""
        self._collect()  # a fire refused in flight is settled from the progress Redis kept, not from memory's
        pending: list[Pending] = []
        for name, before in names.items():
            if before is not None and name in self.progress and name not in self.paused:
                settle = plan_job(before.trigger, _no_jitter, self.progress[name], now, before.policy, self.late_after)
                pending.extend(self._writes(before, settle, now))
            pending.append(Pending(LeaderWrite.base(name, to_ms(now), self.jobs[name].spec.schedule_digest)))
            if len(pending) >= START_BATCH:  # 100,000 new jobs in one call would hold all their writes at once
                self._send(pending)  # the next batch is made while Redis applies this one
                pending = []
        self._flush(pending)
        for name in names:
            self.progress[name] = max(self.progress.get(name, now), now)
            self._push_at(name, now)

    def _poll_paused(self, now: datetime) -> None:
        paused = self._read_paused()
        resumed = [name for name in self.paused - paused if name in self.jobs]
        self.paused = paused
        if resumed:
            for name, value in self.store.progress(resumed).items():
                if (instant := self.unreadable.instant(name, value)) is not None:
                    self.progress[name] = instant
            for name in resumed:
                if name not in self.unreadable.jobs:
                    self._push_at(name, now)

    def _read_paused(self) -> set[str]:
        return self.unreadable.paused(*self.store.read_paused())

    def _recheck_skipped(self, now: datetime) -> None:
        """Schedule the skipped jobs whose data has become readable (fixed, or deleted: then from now)."""
        self.unreadable.jobs = {name: why for name, why in self.unreadable.jobs.items() if name in self.jobs}
        if not self.unreadable.jobs:
            return
        progress, deleted = self.unreadable.repaired(*self.store.read_progress(list(self.unreadable.jobs)))
        for name, instant in progress.items():
            self.progress[name] = instant
            self._push_at(name, now)
        self._start_from_now(dict.fromkeys(deleted), now)

    def _emit_due(self, now: datetime) -> None:
        """Plan and emit the due jobs, at most PLANS_PER_TICK of them, so the loop returns to renew the lease
        (and heartbeat) in time even under a backlog; what is left is done in the next tick, at once.

        Writes go to Redis FLUSH_SIZE at a time, the next ones planned while Redis applies them. The cyclic
        garbage collector is paused meanwhile: a burst makes a few tuples per fire, none in a cycle, and the
        collections they would set off (each walking every object alive) cost more than the fires."""
        if not (self.heap and self.heap[0] <= now):
            self._collect()
            return
        with collector_paused():
            self._emit_due_now(now)

    def _emit_due_now(self, now: datetime) -> None:
        pending: list[Pending] = []
        budget = PLANS_PER_TICK
        plans: dict[tuple[int, datetime], Plan] = {}  # by (id of the interned share, progress): this tick's
        celery = self.config.settings.celery
        writer = TickWriter(
            now, self.store.keys, self.signer, celery, outbox=self.celery_outbox is not False, instants=self.instants
        )
        jobs, progress_of, paused = self.jobs, self.progress, self.paused
        last_shares: Hashable | None = None  # the share, progress and plan of the job planned last
        last_progress: datetime | None = None
        last_plan: Plan | None = None
        while self.heap and self.heap[0] <= now and budget > 0 and self.synced:
            due = self.heap[0]
            bucket = self.due[due]
            if not bucket:
                heapq.heappop(self.heap)
                del self.due[due]
                continue
            names = bucket[:budget]
            del bucket[:budget]
            queued, unreadable = self.queued, self.unreadable.jobs
            # the jobs queued at one next instant (a burst's, sharing a plan): their heap bucket, found once
            next_due: datetime | None = None
            next_bucket: list[str] = []
            for name in names:
                at = queued.get(name)
                if at is not due and at != due:  # (the same object, mostly: comparing aware instants costs)
                    continue  # queued again since
                del queued[name]
                state = jobs.get(name)
                if state is None or name in paused or name in unreadable:
                    continue
                if state.spec.celery is not None and self.celery_outbox is None:
                    self._push_at(name, now + timedelta(seconds=CELERY_REPROBE))  # not yet known where to push
                    continue
                budget -= 1
                progress = progress_of.get(name, now)
                shares = state.shares
                if last_plan is not None and shares is not None and shares is last_shares and progress is last_progress:
                    plan = last_plan  # the job before's, the same share and progress (a burst's jobs, mostly)
                else:
                    found = plans.get((id(shares), progress)) if shares is not None else None
                    if found is None:
                        found = self._plan(state, progress, now)
                        if shares is not None:
                            plans[(id(shares), progress)] = found
                    plan = last_plan = found
                    last_shares, last_progress = shares, progress
                if plan.steps:
                    if state.template is None and (state.spec.celery is None or celery is None):
                        state.template = message_template(state.spec)
                    writer.add(pending, state.spec, plan, state.template)
                progress_of[name] = plan.progress
                if plan.next_due is not None:
                    if plan.next_due is not next_due:
                        self._push_at(name, plan.next_due)
                        next_due, next_bucket = plan.next_due, self.due[plan.next_due]
                    else:
                        queued[name] = next_due
                        next_bucket.append(name)
                if len(pending) >= FLUSH_SIZE:
                    self._send(pending)
                    pending = []
                    if not self.synced:
                        return
                    queued, unreadable = self.queued, self.unreadable.jobs
                    next_due = None
        self._send(pending)
        if not (self.heap and self.heap[0] <= now and self.synced):
            self._collect()  # else the next tick comes at once and goes on while Redis applies these

    def _plan(self, state: JobState, progress: datetime, now: datetime) -> Plan:
        spec = state.spec
        jitter = partial(jitter_offset, spec.name, jitter=spec.jitter) if spec.jitter else _no_jitter
        return plan_job(state.trigger, jitter, progress, now, state.policy, self.late_after)

    def _prepare(self) -> None:
        """Make the message templates of up to PREPARE_PER_TICK jobs that lack one."""
        celery = self.config.settings.celery
        for name in self.unprepared[-PREPARE_PER_TICK:]:
            state = self.jobs.get(name)
            if state is not None and state.template is None and (state.spec.celery is None or celery is None):
                state.template = message_template(state.spec)
        del self.unprepared[-PREPARE_PER_TICK:]

    def _writes(self, state: JobState, plan: Plan, now: datetime) -> list[Pending]:
        spec = state.spec
        celery = self.config.settings.celery
        if state.template is None and (spec.celery is None or celery is None):
            state.template = message_template(spec)
        return plan_writes(
            spec, plan, now, self.store.keys, self.signer, celery, outbox=self.celery_outbox is not False,
            template=state.template, instants=self.instants,
        )  # fmt: skip

    def _flush(self, pending: list[Pending]) -> None:
        """Apply ``pending`` now (and what was in flight before)."""
        self._send(pending)
        self._collect()

    def _send(self, pending: list[Pending]) -> None:
        """Send ``pending`` to Redis, after reading the outcome of what was in flight (at most one batch is)
        and renewing the lease if a renewal is due: a tick that sends many batches (a burst, a sync of many new
        jobs, slower still on a loaded host) keeps the lease's schedule, never renewing only after it."""
        refused = self._collect()
        if refused:  # planned ahead of the reply from the progress in memory: nothing may go past a refused fire
            pending = [item for item in pending if item.write.job not in refused]
        if not pending or self.leadership.token is None or not self.synced:
            return
        if not self.leadership.keep():  # the lease lapsed during this tick: what is pending is never sent
            self.synced = False  # the next sync reads the progress Redis has
            return
        self.in_flight = (pending, self.store.submit(self.leadership.token, [item.write for item in pending]))

    def _settle_in_flight(self) -> None:
        """Read (and count) what Redis did with writes still in flight, as the leadership ends or before a
        sync; an error reading them is dropped (the next sync reads the progress Redis has)."""
        if self.in_flight is None:
            return
        pending, submitted = self.in_flight
        self.in_flight = None
        with contextlib.suppress(StoreError):
            account(pending, submitted.result(), self.metrics, self.counters)

    def _collect(self) -> frozenset[str]:
        """Read what Redis did with the writes in flight, count them, and act on a lost lease or refusals;
        the jobs whose writes Redis refused (their progress in memory is back at the stored one)."""
        if self.in_flight is None:
            return frozenset()
        pending, submitted = self.in_flight
        self.in_flight = None
        result = submitted.result()
        account(pending, result, self.metrics, self.counters)
        if not result.leader:
            self.leadership.lost()
            self.synced = False
            self.heap, self.due, self.queued = [], {}, {}
            return frozenset()
        if "refused" not in result.statuses:
            return frozenset()
        refused = {
            item.write.job: error
            for item, status, error in zip(pending, result.statuses, result.errors, strict=True)
            if status == "refused"
        }
        self._retry_refused(refused)
        return frozenset(refused)

    def _retry_refused(self, refused: dict[str, str]) -> None:
        """Redis refused some jobs' writes: their progress did not move; plan them again after a pause."""
        for job, error in refused.items():
            log.error("Redis refused the write for job %s: %s; retrying in %.0fs", job, error, REFUSED_RETRY)
        stored, corrupt = self.store.read_progress(list(refused))
        for problem in corrupt:
            self.unreadable.skip(problem)
        retry_at = self._now + timedelta(seconds=REFUSED_RETRY)
        for job in refused:
            if job in stored and (instant := self.unreadable.instant(job, stored[job])) is not None:
                self.progress[job] = instant
            if job in self.jobs and job not in self.unreadable.jobs:
                self._push_at(job, retry_at)

    def _push_at(self, name: str, due: datetime) -> None:
        self.queued[name] = due
        bucket = self.due.get(due)
        if bucket is None:
            self.due[due] = [name]
            heapq.heappush(self.heap, due)
        else:
            bucket.append(name)

    # -- heartbeat, sleeping, errors ---------------------------------------------------------------------
    def _heartbeat(self, now: datetime, monotonic: float) -> None:
        if monotonic < self._next_heartbeat or self.shard:  # a sharded replica's heartbeat is shard 0's
            return
        self._next_heartbeat = monotonic + defaults.HEARTBEAT_INTERVAL.total_seconds()
        self.store.heartbeat(self.replica.id, {**self._describe(), "heartbeat_at": format_utc(now)})

    def _leader_record(self) -> dict[str, object]:
        sharded = {"shard": self.shard} if self.shard is not None else {}
        return audit_record("leader", self._now, replica=self.replica.id, config_digest=self.config.digest, **sharded)

    def _describe(self) -> dict[str, object]:
        return {
            "replica": self.replica.id,
            "host": self.replica.host,
            "pid": self.replica.pid,
            "started_at": format_utc(self.replica.started_at),
            "role": "leader" if self.leadership.token else "standby",
            "config_path": str(self.config.path),
            "config_digest": self.config.digest,
            "config_error": self.config_error,
            "jobs": len(self.jobs),
            "emitted": self.counters.emitted,
            **(self.describe_extra() if self.describe_extra is not None else {}),
        }

    def _sleep(self, now: datetime, monotonic: float, *, leading: bool) -> float:
        # a beat told not to contend, holding no lease, has nothing to do for the lease (it would spin)
        acting = self.contend or self.leadership.token is not None
        lease_wait = self.leadership.seconds_until_action(monotonic) if acting else MAX_SLEEP
        heartbeat_wait = max(0.0, self._next_heartbeat - monotonic) if not self.shard else MAX_SLEEP
        wait = min(MAX_SLEEP, lease_wait, heartbeat_wait)
        if self.runtime is not None:
            wait = min(wait, max(0.0, self._next_runtime_poll - monotonic))
        upcoming = self.next_fire() if leading else None
        if upcoming is not None:
            wait = min(wait, max(0.0, (upcoming - now).total_seconds()))
        if leading and self.unprepared:
            wait = min(wait, PREPARE_PAUSE)
        return wait

    def _unavailable(self, error: StoreError, monotonic: float) -> float:
        if self.unavailable_since is None:
            self.unavailable_since = monotonic
            log.error("%s; retrying with backoff up to %.0fs", error, BACKOFF_MAX)
        self.synced = False
        self._next_heartbeat = 0.0
        wait, self._backoff = self._backoff, min(BACKOFF_MAX, self._backoff * 2)
        return min(wait, max(0.0, self.leadership.valid_until - monotonic) or wait)


class LaunchFreezer:
    """What the beat daemon's loop puts out of the collector's reach while ``beat`` launches (the first read of
    the runtime jobs, and a leader's first sync): what each tick made, at once, like the config; else full
    collections would walk the jobs read so far again and again as they grow (a quarter of the launch's time at
    100,000 jobs). Then, once, the leader's state of every job (and each one's message template).

    A tick that failed (Redis unreachable or refusing) freezes nothing: its garbage (exceptions, tracebacks,
    connections, in cycles) is left to the collector. Frozen, it would never be freed, and a beat launched while
    Redis is down fails every tick until it is back."""

    def __init__(self, beat: Beat) -> None:
        self.beat = beat
        self.launched = False
        """The first read and sync are done (or this replica is a standby that read every runtime job)."""
        self.prepared = False
        self.read = False
        """The runtime jobs were all read by the end of the last tick that succeeded."""

    def after_tick(self, monotonic: float) -> None:
        """Freeze what the tick just run made, when launching and it succeeded."""
        beat = self.beat
        if beat.unavailable_since is not None:
            return
        if not self.launched:
            keep_out_of_collections()
            contended, self.read = self.read, beat.runtime_read  # read before this tick: it contended for the lease
            self.launched = contended and (beat.synced or not beat.leadership.is_leader(monotonic))
        if not self.prepared and beat.synced and not beat.unprepared:
            keep_out_of_collections()
            self.prepared = True
