"""Intake: read queue streams, check each message, claim the runnable fires in one script call per batch, and
hand each to the runners or record why it does not run; move due retries back and reclaim abandoned runs."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta

from beatd import defaults
from beatd.alert_rules import wants_event
from beatd.clock import Clock
from beatd.config import JobSpec
from beatd.config.alerts import AlertRule
from beatd.expiry import REQUESTED, expired_record, start_deadline
from beatd.identity import Identity
from beatd.messages import Message, MessageError, format_utc, parse_utc, to_ms
from beatd.metrics import Metrics
from beatd.overrides import refusal
from beatd.records import RunRecord, run_id
from beatd.runtime_follow import RuntimeFollower, ShardedFollower
from beatd.signing import Signer
from beatd.store import Claim, ClaimRequest, Delivery, LostRun, RunStore, StoreError
from beatd.store.runs import PartlyApplied, job_of_fire
from beatd.worker.ends import end_of, record_of
from beatd.worker.finisher import Finisher
from beatd.worker.registry import Registry, Run

__all__ = ["Intake"]

log = logging.getLogger("beatd.worker")

RECLAIM_MIN_IDLE = timedelta(seconds=2)
"""An entry is reclaimed only after it has been pending this long and its run lease has ended."""

DEFER_DELAY = 0.5
"""A manual or backfill fire that finds its job running elsewhere (overlap skip or buffer_one) waits this long
(s) and is tried again, instead of being skipped."""


class Intake:
    """The worker's main-thread role: from stream entries to claimed runs."""

    def __init__(
        self,
        store: RunStore,
        registry: Registry,
        identity: Identity,
        clock: Clock,
        finisher: Finisher,
        metrics: Metrics,
        *,
        signer: Signer | None,
        dispatch: Callable[[Run], None],
        stop_run: Callable[[str, str], None],
        runtime: RuntimeFollower | ShardedFollower | None = None,
    ) -> None:
        self.runtime = runtime
        """The runtime jobs this worker may run (judged by its own config), followed from Redis."""
        self.store = store
        self.registry = registry
        self.identity = identity
        self.clock = clock
        self.finisher = finisher
        self.metrics = metrics
        self.signer = signer
        self.dispatch = dispatch
        self.stop_run = stop_run
        self.name = f"{identity.host}:{identity.pid}"

    def read(self, count: int) -> None:
        """Read up to ``count`` new entries (blocking briefly for the first) and admit them."""
        queues = self.registry.setup.queues
        self.admit(self.store.read(queues, self.identity.id, count, block_ms=200))

    def housekeeping(self) -> None:
        """Move due retries back into their queues and take over runs whose lease ended."""
        now_ms = to_ms(self.clock.now())
        idle_ms = int(RECLAIM_MIN_IDLE.total_seconds() * 1000)
        for name in self.registry.setup.queues:
            self.store.requeue_due_retries(name, now_ms)
            reclaimed = self.store.reclaim(name, self.identity.id, now_ms, idle_ms)
            for delivery in reclaimed:
                log.info("reclaimed entry %s of queue %s (its run's lease ended)", delivery.entry_id, name)
            self.admit(reclaimed)

    def admit(self, deliveries: list[Delivery]) -> None:
        """Check the deliveries, claim the runnable ones in one batch, and hand each to a runner or record why
        it does not run."""
        if deliveries and self.runtime is not None:
            # One GET when nothing changed; after a large put_many, read on until caught up, so a fire of a job
            # put a moment ago is not taken for one of an unknown job. A run always uses the latest spec.
            self.runtime.poll_all()
        now = self.clock.now()
        now_ms = to_ms(now)
        requests, pending = [], []
        for delivery in deliveries:
            try:
                checked = self._check(delivery)
                if checked is None:
                    continue
                spec, message = checked
                lease_ms = int(
                    min(spec.timeout + self.registry.setup.kill_grace, defaults.RUN_LEASE_MAX).total_seconds() * 1000
                )
                record = record_of(spec, message, 0, "running")
                scheduled = parse_utc(message.scheduled_at)
                record.started_at = format_utc(now)
                record.lag_s = round((now - scheduled).total_seconds(), 6)
                record.worker = self.name
                lost = self._lost(spec.name, message, spec.alert_rules) if delivery.deliveries > 1 else None
                deadline = start_deadline(spec.expires, message)
                requests.append(ClaimRequest(
                    spec.name, delivery, message.fire_id, spec.overlap, now_ms + lease_ms,
                    record.to_json(omit=("run_id", "attempt")), now_ms,
                    requested=message.trigger in REQUESTED,
                    scheduled_ms=to_ms(scheduled), busy_here=self.registry.running_since(spec.name, scheduled),
                    lost=lost, deadline_ms=to_ms(deadline) if deadline else 0,
                ))  # fmt: skip
                pending.append(Run(spec, delivery, message, record, scheduled, lease_ms, self.clock.monotonic()))
            except StoreError:
                raise
            except Exception as error:  # a message that passed the checks and still breaks something
                log.exception("entry %s of queue %s cannot be run", delivery.entry_id, delivery.queue)
                named = _named(delivery)
                self._dead_letter(
                    delivery, f"not run: {type(error).__name__}: {error}", named, self._lost_quietly(delivery, named)
                )
        if requests:
            try:
                claims = self.store.claim(requests, self.identity.id, now_ms)
            except PartlyApplied as partial:
                # One shard's call failed after another's went through: the claims made are acted on (a run
                # left unstarted would wait out its lease and be recorded lost); the failed shard's entries are
                # left pending, to be reclaimed, as after any failed claim.
                for position, claim in sorted(partial.applied.items()):
                    self._decide(pending[position], claim, now_ms)
                raise
            for run, claim in zip(pending, claims, strict=True):
                self._decide(run, claim, now_ms)

    def _check(self, delivery: Delivery) -> tuple[JobSpec, Message] | None:
        """The job and message of a delivery this worker may run; else dead-letter it and return None."""
        try:
            message = Message.from_json(delivery.message)
        except MessageError as error:
            self._dead_letter(delivery, f"not run: {error}")
            return None
        if self.signer is not None and not self.signer.verify(delivery.message, delivery.signature):
            problem = "unsigned" if not delivery.signature else "signature does not match"
            self._dead_letter(delivery, f"not run: message {problem}")  # its content is not to be acted on
            return None
        home = self.store.shard_of(message.job)
        if home != delivery.shard:  # everything of a fire lives in its job's shard; this entry's keys do not
            self._dead_letter(
                delivery, f"not run: a fire of job {message.job!r} (shard {home}) in a queue of shard {delivery.shard}"
            )
            return None
        if self.store.shard_of(job_of_fire(message.fire_id)) != home:  # its attempts would be counted elsewhere
            self._dead_letter(delivery, f"not run: fire id {message.fire_id!r} is not one of job {message.job!r}")
            return None
        spec = self.registry.setup.config.jobs.get(message.job)
        if spec is None and self.runtime is not None:
            spec = self.runtime.jobs.get(message.job)
            if spec is None and message.job in self.runtime.refused:
                reason = (
                    f"not run: runtime job {message.job!r} refused by this worker: {self.runtime.refused[message.job]}"
                )
                lost = self._lost(message.job, message) if delivery.deliveries > 1 else None
                self._dead_letter(delivery, reason, message, lost)
                return None
        if spec is None:
            reason = f"not run: job {message.job!r} is not declared in this worker's config"
            lost = self._lost(message.job, message) if delivery.deliveries > 1 else None
            self._dead_letter(delivery, reason, message, lost)
            return None
        if spec.celery is not None:
            self._dead_letter(delivery, f"not run: job {message.job!r} is a celery job, run by Celery's workers")
            return None
        # Arguments other than the job's own need its `overrides` (judged only on the same config: during a
        # rolling change the beat's own args may differ from this worker's).
        problem = refusal(spec, message.args, message.kwargs) if message.config_digest == spec.digest else ""
        if problem:
            self._dead_letter(delivery, f"not run: {problem}", message)
            return None
        return spec, message

    def _lost(self, job: str, message: Message, rules: Sequence[AlertRule] = ()) -> LostRun | None:
        """The previous attempt of a redelivered fire, marked ``lost`` if it is still recorded ``running``: the
        claim writes it only if the record is unchanged since read here, and notes it as an alert event when the
        job's ``rules`` want one (``failed``: a worker that died mid-run failed the attempt)."""
        attempts = self.store.attempts(message.fire_id)
        if attempts == 0:
            return None
        previous = run_id(message.fire_id, attempts)
        raw = self.store.run_record(job, previous)
        if raw is None:
            return LostRun(previous, "", "")
        record = RunRecord.from_json(raw)
        if record.status != "running":
            return LostRun(previous, "", "")
        now = self.clock.now()
        record.status = "lost"
        record.finished_at = format_utc(now)
        record.reason = f"worker {record.worker} stopped renewing the run's lease"
        replaced = self.store.cancel_requests([previous]).get(previous)
        if replaced is not None:  # asked to stop (overlap: replace) before its worker died: not run again
            record.status = "cancelled"
            record.reason = f"{replaced}; {record.reason} before the run ended"
        return LostRun(previous, raw, record.to_json(), wants_event(rules, record.status))

    def _lost_quietly(self, delivery: Delivery, message: Message | None) -> LostRun | None:
        """:meth:`_lost` for a redelivered entry that failed its checks; None when that fails too (its record
        unreadable): the dead letter goes on without it."""
        if message is None or delivery.deliveries <= 1:
            return None
        try:
            return self._lost(message.job, message)
        except StoreError:
            raise
        except Exception:
            log.exception("the previous attempt of fire %s cannot be read", message.fire_id)
            return None

    def _decide(self, run: Run, claim: Claim, now_ms: int) -> None:
        spec, delivery, message = run.spec, run.delivery, run.message
        now = self.clock.now()
        if claim.decision == "run":
            for replaced in claim.replaced:
                log.info("fire %s of %s replaces run %s (overlap: replace)", message.fire_id, spec.name, replaced)
                self.stop_run(replaced, f"replaced by {message.fire_id}")
            run.record.attempt, run.record.run_id = claim.attempt, run_id(message.fire_id, claim.attempt)
            self.registry.add(run)
            self.dispatch(run)
        elif claim.decision == "taken":
            log.info(
                "fire %s of %s not started: entry %s was taken over", message.fire_id, spec.name, delivery.entry_id
            )
        elif claim.decision == "error":
            log.error("fire %s of %s not started, left to be reclaimed: %s", message.fire_id, spec.name, claim.error)
        elif claim.decision == "replaced":
            log.info("fire %s of %s not run again: a later fire replaced it (overlap: replace)", message.fire_id,
                     spec.name)  # fmt: skip
            end = end_of(spec, delivery, message, record_of(spec, message, 0, "cancelled"), now)
            self.finisher.submit(dataclasses.replace(end, record=""))
        elif claim.decision == "expired":
            record = expired_record(spec, message, delivery.queue, now)
            log.warning("fire %s of %s expired unstarted: %s", message.fire_id, spec.name, record.reason)
            self.metrics.runs.labels(self.metrics.job(spec.name), "expired").inc()
            self.finisher.submit(end_of(spec, delivery, message, record, now))
        elif claim.decision == "buffered":
            log.info(
                "fire %s of %s held back until the running one ends (overlap: buffer_one)", message.fire_id, spec.name
            )
            record = record_of(spec, message, 0, "skipped")
            # Not done: it runs once the running one ends (a retry held back keeps its attempt count).
            self.finisher.submit(end_of(spec, delivery, message, record, now, hold=True, fire_done=False))
        elif run.requested or claim.decision == "defer":
            # Asked for on purpose, or due before the running fire started: wait for it instead of skipping
            # (a backfill keeps every day; a backlog after a delay is worked off one fire after another).
            log.info("fire %s of %s waits for the running one (%s)", message.fire_id, spec.name, message.trigger)
            end = end_of(spec, delivery, message, record_of(spec, message, 0, "queued"), now, fire_done=False)
            retry_at = now_ms + int(DEFER_DELAY * 1000)
            self.finisher.submit(dataclasses.replace(end, record="", then="retry", retry_at_ms=retry_at))
        else:
            record = record_of(spec, message, 0, "skipped")
            record.reason = f"a run of {spec.name} was still in progress (overlap: {spec.overlap})"
            log.info("skipped fire %s of %s: %s", message.fire_id, spec.name, record.reason)
            self.metrics.fires_skipped.labels(self.metrics.job(spec.name)).inc()
            self.finisher.submit(end_of(spec, delivery, message, record, now))  # done: its attempt count goes

    def _dead_letter(
        self, delivery: Delivery, reason: str, message: Message | None = None, lost: LostRun | None = None
    ) -> None:
        consumer = self.identity.id
        if message is None:
            done = self.store.dead_letters.add(delivery, consumer, reason)
        else:
            done = self.store.dead_letters.add(delivery, consumer, reason, message.fire_id, message.job, lost)
        if done:
            log.warning("dead-lettered entry %s of queue %s: %s", delivery.entry_id, delivery.queue, reason)
        else:
            log.info("entry %s of queue %s not dead-lettered: it was taken over", delivery.entry_id, delivery.queue)


def _named(delivery: Delivery) -> Message | None:
    """The message of a delivery, if it reads as one."""
    try:
        return Message.from_json(delivery.message)
    except MessageError:
        return None
