"""The beat: as leader, emit every due fire exactly once; as standby, wait for the lease.

``Beat.tick(now, monotonic)`` is one step of the loop and returns how long the loop may sleep; ``run`` lives
in :mod:`beatd.daemon`. This module knows neither YAML nor Redis commands: it decides with the pure
planner and writes through the :class:`~beatd.store.Store`, whose every write is fenced by the lease.

Due work is found in a heap ordered by due instant, so a tick costs in proportion to the fires due, not to
the number of jobs.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from beatd import defaults
from beatd.audit import audit_record
from beatd.config import Config, JobSpec
from beatd.identity import Identity
from beatd.leader import Leadership
from beatd.messages import Message, format_utc, from_ms, scheduled_fire_id, to_ms
from beatd.metrics import Health, Metrics
from beatd.planner import CatchupPolicy, Plan, plan_job
from beatd.records import RunRecord, run_id
from beatd.signing import Signer
from beatd.store import Op, Store, StoreError
from beatd.triggers import Trigger, jitter_offset

__all__ = ["Beat", "JobState"]

log = logging.getLogger("beatd.beat")

MAX_SLEEP = 1.0
"""Longest sleep between ticks (s); signals wake the loop earlier."""

PAUSED_POLL = 1.0
"""How often (s) the leader re-reads which jobs are paused."""

BACKOFF_MAX = 5.0
"""Cap of the wait (s) between attempts while Redis is unreachable."""

PLANS_PER_TICK = 2000
"""Most jobs planned in one tick (about 0.1 s of work): a long backlog is worked off over several ticks, with
the lease renewed between them."""

REFUSED_RETRY = 5.0
"""Wait (s) before planning again a job whose write Redis refused (out of memory, a wrong key type)."""


def _no_jitter(_: datetime) -> timedelta:
    return timedelta(0)


@dataclass
class JobState:
    """A job as the beat schedules it."""

    spec: JobSpec
    trigger: Trigger
    policy: CatchupPolicy

    @classmethod
    def of(cls, spec: JobSpec) -> JobState:
        """Build the trigger and policy of ``spec``."""
        policy = CatchupPolicy(spec.catchup, spec.misfire_grace, spec.catchup_limit)
        return cls(spec=spec, trigger=spec.trigger(), policy=policy)


@dataclass
class Counters:
    """What this replica has done since it started."""

    emitted: int = 0
    missed: int = 0
    duplicates: int = 0
    by_trigger: dict[str, int] = field(default_factory=dict)


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
    ) -> None:
        self.store = store
        self.signer = signer
        self.metrics = metrics or Metrics(len(config.jobs))
        self.health = health or Health()
        self.replica = replica
        self.config = config
        self.jobs = {name: JobState.of(spec) for name, spec in config.jobs.items() if spec.enabled}
        self.leadership = Leadership(store, replica.id, config.settings.leader.lease, self._leader_record)
        self.late_after = 2 * config.settings.leader.lease + timedelta(seconds=1)
        self.progress: dict[str, datetime] = {}
        self.heap: list[tuple[datetime, str]] = []
        self.queued: dict[str, datetime] = {}
        self.paused: set[str] = set()
        self.synced = False
        self.config_error: str | None = None
        self.counters = Counters()
        self.unavailable_since: float | None = None
        self._next_heartbeat = 0.0
        self._next_paused_poll = 0.0
        self._backoff = 0.1
        self._now = replica.started_at
        self._changes_seen = 0

    # -- the loop step -----------------------------------------------------------------------------------
    def tick(self, now: datetime, monotonic: float) -> float:
        """Do what is due at ``now``; return the seconds the loop may sleep before the next tick."""
        self._now = now
        try:
            leading = self.leadership.step(monotonic)
            self._heartbeat(now, monotonic)
            if not leading:
                self.synced = False
                return self._sleep(now, monotonic, leading=False)
            if not self.synced:
                self._sync(now)
            if monotonic >= self._next_paused_poll:
                self._poll_paused(now)
                self._next_paused_poll = monotonic + PAUSED_POLL
            self._emit_due(now)
        except StoreError as error:
            self.metrics.redis_errors.inc()
            self.metrics.leader.set(1 if self.leadership.is_leader(monotonic) else 0)
            self.health.step(redis_ok=False)
            return self._unavailable(error, monotonic)
        self.metrics.leader.set(1 if self.leadership.is_leader(monotonic) else 0)
        if self.leadership.changes > self._changes_seen:
            self.metrics.leader_changes.inc(self.leadership.changes - self._changes_seen)
            self._changes_seen = self.leadership.changes
        self.health.step(redis_ok=True)
        if self.unavailable_since is not None:
            log.info("Redis reachable again")
            self.unavailable_since = None
            self._backoff = 0.1
        return self._sleep(now, monotonic, leading=self.leadership.is_leader(monotonic))

    def next_fire(self) -> datetime | None:
        """The earliest due instant this leader knows of (None as standby or with nothing scheduled)."""
        while self.heap and self.queued.get(self.heap[0][1]) != self.heap[0][0]:
            heapq.heappop(self.heap)
        return self.heap[0][0] if self.heap else None

    def shutdown(self) -> None:
        """Release the lease (a standby takes over at once) and withdraw the heartbeat."""
        self.leadership.release()
        with contextlib.suppress(StoreError):
            self.store.forget_replicas([self.replica.id])

    # -- config reload -----------------------------------------------------------------------------------
    def report_config_error(self, error: str | None) -> None:
        """Record the outcome of the last reload; the next tick publishes it in the heartbeat."""
        self.config_error = error
        self._next_heartbeat = 0.0

    def apply_config(self, config: Config, now: datetime) -> list[str]:
        """Switch to ``config`` (already validated); return one line per job that changed.

        New jobs and jobs whose schedule changed start from ``now``: nothing retroactive, nothing doubled; a
        changed job first settles every fire its old schedule had at or before ``now`` (one held back by
        jitter is emitted early rather than lost). Removed jobs stop being scheduled; their progress and
        history stay in Redis, and if they come back they start from now.
        """
        old, new = self.jobs, {name: JobState.of(spec) for name, spec in config.jobs.items() if spec.enabled}
        lines = [f"removed {name}" for name in old if name not in new]
        restart: dict[str, JobState | None] = {}
        for name, state in new.items():
            before = old.get(name)
            if before is None:
                lines.append(f"added {name}: {state.spec.schedule_text}")
                restart[name] = None
            elif before.spec.schedule_digest != state.spec.schedule_digest:
                lines.append(f"changed {name}: {before.spec.schedule_text} -> {state.spec.schedule_text}, from now on")
                restart[name] = before
            elif before.spec.digest != state.spec.digest:
                lines.append(f"changed {name}: target or policies (schedule unchanged)")
        gone = [name for name in old if name not in new]
        self.config, self.jobs = config, new
        for name in gone:
            self.queued.pop(name, None)
        if self.synced and (restart or gone):
            try:
                self._start_from_now(restart, now)
                self._flush([Op("forget", name, 0, "", "") for name in gone])
            except StoreError:
                self.synced = False  # a later sync compares schedule digests and does the same
        return lines

    # -- leader work -------------------------------------------------------------------------------------
    def _sync(self, now: datetime) -> None:
        """As a new leader: load progress and pause state, start new or changed jobs from now, plan all."""
        stored = self.store.progress()
        digests = self.store.schedule_digests()
        self.paused = set(self.store.paused())
        self.progress = {name: from_ms(stored[name]) for name in self.jobs if name in stored}
        self.heap, self.queued = [], {}
        fresh: dict[str, JobState | None] = {
            name: None
            for name, state in self.jobs.items()
            if name not in stored or digests.get(name) != state.spec.schedule_digest
        }
        self.synced = True
        # Jobs disabled or removed while no replica ran: forget their schedule so they restart from now.
        self._flush([Op("forget", name, 0, "", "") for name in digests if name not in self.jobs])
        self._start_from_now(fresh, now)
        for name in self.jobs:
            if name not in fresh:
                self._push_at(name, now)
        log.info("leading %d jobs (%d new or changed start from now)", len(self.jobs), len(fresh))

    def _start_from_now(self, names: dict[str, JobState | None], now: datetime) -> None:
        """Move the progress of ``names`` to now; a job's old schedule (the value, when given) is settled first."""
        ops: list[Op] = []
        for name, before in names.items():
            if before is not None and name in self.progress:
                settle = plan_job(before.trigger, _no_jitter, self.progress[name], now, before.policy, self.late_after)
                ops.extend(self._ops(before.spec, settle, now))
            ops.append(Op("base", name, to_ms(now), "", self.jobs[name].spec.schedule_digest))
        self._flush(ops)
        for name in names:
            self.progress[name] = max(self.progress.get(name, now), now)
            self._push_at(name, now)

    def _poll_paused(self, now: datetime) -> None:
        paused = set(self.store.paused())
        resumed = [name for name in self.paused - paused if name in self.jobs]
        self.paused = paused
        if resumed:
            for name, value in self.store.progress(resumed).items():
                self.progress[name] = from_ms(value)
            for name in resumed:
                self._push_at(name, now)

    def _emit_due(self, now: datetime) -> None:
        """Plan and emit the due jobs, at most PLANS_PER_TICK of them, so the loop returns to renew the lease
        (and heartbeat) in time even under a backlog; what is left is done in the next tick, at once."""
        ops: list[Op] = []
        budget = PLANS_PER_TICK
        while self.heap and self.heap[0][0] <= now and budget > 0:
            due, name = heapq.heappop(self.heap)
            if self.queued.get(name) != due:
                continue  # superseded entry
            del self.queued[name]
            state = self.jobs.get(name)
            if state is None or name in self.paused:
                continue
            budget -= 1
            spec = state.spec
            progress = self.progress.get(name, now)
            plan = plan_job(
                state.trigger,
                partial(jitter_offset, name, jitter=spec.jitter),
                progress,
                now,
                state.policy,
                self.late_after,
            )
            ops.extend(self._ops(spec, plan, now))
            self.progress[name] = plan.progress
            if plan.next_due is not None:
                self._push_at(name, plan.next_due)
            if len(ops) >= 1000:
                self._flush(ops)
                ops = []
        self._flush(ops)

    def _ops(self, spec: JobSpec, plan: Plan, now: datetime) -> list[Op]:
        ops = []
        keys = self.store.keys
        emitted_at = format_utc(now)
        missed: list[str] = []
        for step in plan.steps:
            scheduled = format_utc(step.scheduled_at)
            identifier = scheduled_fire_id(spec.name, scheduled)
            if step.kind == "emit":
                message = Message(
                    fire_id=identifier,
                    job=spec.name,
                    scheduled_at=scheduled,
                    emitted_at=emitted_at,
                    trigger=step.trigger,
                    config_digest=spec.digest,
                    args=list(spec.args),
                    kwargs=dict(spec.kwargs),
                ).to_json()
                signature = self.signer.sign(message) if self.signer else ""
                due = step.scheduled_at
                if spec.jitter:
                    due += jitter_offset(spec.name, step.scheduled_at, spec.jitter)
                self.metrics.emission_lag.observe(max(0.0, (now - due).total_seconds()))
                self.metrics.fires_emitted.labels(self.metrics.job(spec.name), step.trigger).inc()
                ops.append(
                    Op("emit", spec.name, to_ms(step.scheduled_at), keys.queue(spec.queue), message, aux=signature)
                )
                self.counters.by_trigger[step.trigger] = self.counters.by_trigger.get(step.trigger, 0) + 1
                continue
            record = RunRecord(
                run_id=run_id(identifier, 0),
                fire_id=identifier,
                job=spec.name,
                scheduled_at=scheduled,
                trigger="schedule",
                attempt=0,
                status="missed",
                finished_at=emitted_at,
                config_digest=spec.digest,
                reason=step.reason,
            )
            if step.first is not None:
                record.extra = {"first": format_utc(step.first), "count": step.count, "count_exact": step.count_exact}
            missed.append(f"{identifier} ({step.reason}{', ' + str(step.count) + ' fires' if step.first else ''})")
            self.metrics.fires_missed.labels(self.metrics.job(spec.name)).inc(step.count)
            ops.append(
                Op(
                    "miss",
                    spec.name,
                    to_ms(step.scheduled_at),
                    keys.runs(spec.name),
                    record.to_json(),
                    second_key=keys.runs_by_time(spec.name),
                    keep=spec.history.keep,
                    aux=record.run_id,
                    score_ms=to_ms(now),
                )
            )
        if missed:  # one line per job and tick, however long the gap
            more = f" and {len(missed) - 1} more" if len(missed) > 1 else ""
            log.info("missed %s: %s%s", spec.name, missed[-1], more)
        return ops

    def _flush(self, ops: list[Op]) -> None:
        if not ops or self.leadership.token is None:
            return
        result = self.store.apply(self.leadership.token, ops)
        self.counters.emitted += result.emitted
        self.counters.missed += result.missed
        self.counters.duplicates += result.duplicates
        if not result.leader:
            self.leadership.lost()
            self.synced = False
            self.heap, self.queued = [], {}
            return
        if result.refused:
            self._retry_refused(dict(result.refused))

    def _retry_refused(self, refused: dict[str, str]) -> None:
        """Redis refused some jobs' writes: their progress did not move; plan them again after a pause."""
        for job, error in refused.items():
            log.error("Redis refused the write for job %s: %s; retrying in %.0fs", job, error, REFUSED_RETRY)
        stored = self.store.progress(list(refused))
        retry_at = self._now + timedelta(seconds=REFUSED_RETRY)
        for job in refused:
            if job in stored:
                self.progress[job] = from_ms(stored[job])
            if job in self.jobs:
                self._push_at(job, retry_at)

    def _push_at(self, name: str, due: datetime) -> None:
        self.queued[name] = due
        heapq.heappush(self.heap, (due, name))

    # -- heartbeat, sleeping, errors ---------------------------------------------------------------------
    def _heartbeat(self, now: datetime, monotonic: float) -> None:
        if monotonic < self._next_heartbeat:
            return
        self._next_heartbeat = monotonic + defaults.HEARTBEAT_INTERVAL.total_seconds()
        self.store.heartbeat(self.replica.id, {**self._describe(), "heartbeat_at": format_utc(now)})

    def _leader_record(self) -> dict[str, object]:
        return audit_record("leader", self._now, replica=self.replica.id, config_digest=self.config.digest)

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
        }

    def _sleep(self, now: datetime, monotonic: float, *, leading: bool) -> float:
        wait = min(
            MAX_SLEEP, self.leadership.seconds_until_action(monotonic), max(0.0, self._next_heartbeat - monotonic)
        )
        upcoming = self.next_fire() if leading else None
        if upcoming is not None:
            wait = min(wait, max(0.0, (upcoming - now).total_seconds()))
        return wait

    def _unavailable(self, error: StoreError, monotonic: float) -> float:
        if self.unavailable_since is None:
            self.unavailable_since = monotonic
            log.error("%s; retrying with backoff up to %.0fs", error, BACKOFF_MAX)
        self.synced = False
        self._next_heartbeat = 0.0
        wait, self._backoff = self._backoff, min(BACKOFF_MAX, self._backoff * 2)
        return min(wait, max(0.0, self.leadership.valid_until - monotonic) or wait)
