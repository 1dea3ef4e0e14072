"""The worker: claim fires from the queue streams, run them, record every attempt.

Threads: the main thread reads streams (``tick``), claims what it read in one script call per batch
(``lua/claim.lua``: overlap, attempt, lease and ``running`` record), moves due retries back and reclaims
runs of dead workers; ``concurrency`` runner threads each run one claimed fire at a time (a callable in their
own child process, or a command); the finisher thread writes run ends in batches (``lua/finish.lua``: a
stream entry is acknowledged only in the same atomic step that writes its run record); a heartbeat thread
renews run leases, passes on cancellations (``overlap: replace``) and publishes the worker's heartbeat.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import random
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from beatd import defaults
from beatd.clock import Clock
from beatd.config import Config, JobSpec
from beatd.identity import Identity
from beatd.messages import Message, MessageError, format_utc, parse_utc, to_ms
from beatd.metrics import Health, Metrics
from beatd.records import RunRecord, run_id
from beatd.signing import Signer
from beatd.store import Claim, ClaimRequest, Delivery, Finish, RunStore, StoreError
from beatd.worker.context import previous_fire
from beatd.worker.executor import ChildExecutor, Executor, Outcome, ThreadExecutor, run_command
from beatd.worker.finisher import Finisher

__all__ = ["Worker"]

log = logging.getLogger("beatd.worker")

RECLAIM_MIN_IDLE = timedelta(seconds=2)
"""An entry is reclaimed only after it has been pending this long and its run lease has ended."""

CLAIM_BATCH_LIMIT = 500
"""Most entries read and claimed in one go, so one script call stays short whatever the claim window."""

HOUSEKEEPING_INTERVAL = 0.5
"""How often (s) the main thread moves due retries back and looks for runs to reclaim."""

RESTAMP_AFTER = 1.0
"""A claimed fire that waited longer than this (s) for a runner has its ``running`` record rewritten with
the instant it really started; sooner, the claim's instant stands until the final record."""

REQUESTED = frozenset({"manual", "backfill"})
"""Triggers of fires asked for on purpose: they wait for a running fire of their job instead of being
skipped, and are never held back by ``buffer_one``."""

DEFER_DELAY = 0.5
"""A manual or backfill fire that finds its job running (overlap skip or buffer_one) waits this long (s) and
is tried again, instead of being skipped."""

HEARTBEAT_INTERVAL = 1.0
"""How often (s) leases are renewed and the heartbeat published."""

DRAIN_POLL = 0.1
"""How often (s) a drain waiting for running jobs checks whether it was asked to stop at once."""

PREVIOUS_CACHE = 4096
"""Most data-interval starts remembered (see ``Worker._previous_at``)."""


@dataclass
class Run:
    """A fire this worker claimed: waiting for a runner, then running."""

    spec: JobSpec
    delivery: Delivery
    message: Message
    record: RunRecord
    scheduled: datetime
    lease_ms: int
    claimed: float
    stop: threading.Event = field(default_factory=threading.Event)
    why_stopped: str | None = None

    @property
    def lease(self) -> tuple[str, str, str, str]:
        """(job, queue, entry id, run id): what names the run's lease."""
        return self.spec.name, self.delivery.queue, self.delivery.entry_id, self.record.run_id


class Worker:
    """One worker process's runs."""

    def __init__(
        self,
        config: Config,
        store: RunStore,
        identity: Identity,
        clock: Clock,
        *,
        queues: list[str] | None,
        concurrency: int,
        prefetch: int = defaults.WORKER_PREFETCH,
        grace: float,
        isolation: str,
        signer: Signer | None,
        metrics: Metrics | None = None,
        health: Health | None = None,
    ) -> None:
        self.store = store
        self.identity = identity
        self.clock = clock
        self.fixed_queues = queues
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.grace = grace
        self.isolation = isolation
        self.signer = signer
        self.metrics = metrics or Metrics(len(config.jobs))
        self.health = health or Health()
        self.processed = 0
        self._use(config)
        self._name = f"{identity.host}:{identity.pid}"
        self._work: queue.SimpleQueue[Run | None] = queue.SimpleQueue()
        self._running = 0
        self._lock = threading.Lock()
        self._active: dict[str, Run] = {}
        self._abandon = threading.Event()
        self._capacity = threading.Event()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._finisher = Finisher(store, clock, written=self._capacity.set, failed=self.metrics.redis_errors.inc)
        self._next_housekeeping = 0.0
        self._previous: dict[tuple[str, str, str], str | None] = {}

    def _use(self, config: Config) -> None:
        self.config = config
        self.queues = self.fixed_queues or sorted({spec.queue for spec in config.jobs.values()})
        self.kill_grace = config.settings.worker.kill_grace
        self._pythonpath = [str(entry) for entry in config.pythonpath]

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Create the consumer groups and start the runner, finisher and heartbeat threads."""
        self.store.ensure_groups(self.queues)
        self._finisher.start()
        for index in range(self.concurrency):
            thread = threading.Thread(target=self._runner, name=f"runner-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True).start()
        log.info(
            "worker %s consuming %s with %d runners (%s isolation)",
            self.identity.id,
            ",".join(self.queues),
            self.concurrency,
            self.isolation,
        )

    def tick(self) -> float:
        """Read and claim new entries for free runners (blocking briefly), and do housekeeping when due."""
        try:
            now_mono = self.clock.monotonic()
            if now_mono >= self._next_housekeeping:
                self._next_housekeeping = now_mono + HOUSEKEEPING_INTERVAL
                self._housekeeping()
            # Claim beyond the runners, so a runner that finishes starts the next run at once; and, unless a
            # runner is idle, only once half the window is free, so claims go in batches under load.
            window = self.prefetch * self.concurrency
            free = window - len(self._active) - self._finisher.pending()
            idle = self._running + self._work.qsize() < self.concurrency
            if free <= 0 or (free < window // 2 and not idle):
                self._capacity.wait(0.1)
                self._capacity.clear()
                return 0.0
            count = min(free, CLAIM_BATCH_LIMIT)
            self._admit(self.store.read(self.queues, self.identity.id, count, block_ms=200))
        except StoreError as error:
            log.error("%s; retrying", error)
            self.metrics.redis_errors.inc()
            self.health.step(redis_ok=False)
            return 1.0
        self.health.step(redis_ok=True)
        return 0.0

    def reload(self, config: Config) -> None:
        """Use a new config for the next runs (queues follow it unless given on the command line)."""
        self._use(config)
        self.store.ensure_groups(self.queues)

    def drain(self, stop_now: threading.Event | None = None) -> None:
        """Stop taking work; give back fires claimed but not started; let running jobs finish up to the grace
        (or until ``stop_now`` is set: a second stop signal); then stop the rest (see ``stop_runs``)."""
        waiting = []
        with contextlib.suppress(queue.Empty):
            while True:
                if (run := self._work.get_nowait()) is not None:
                    waiting.append(run)
        for run in waiting:
            if run.stop.is_set():  # replaced while waiting: recorded cancelled, not given back
                with contextlib.suppress(StoreError):
                    self._perform(run, ThreadExecutor())
        self._give_back([run for run in waiting if not run.stop.is_set()])
        for _ in self._threads:
            self._work.put(None)
        deadline = self.clock.monotonic() + self.grace
        hurry = stop_now or threading.Event()
        for thread in self._threads:
            while thread.is_alive() and not hurry.is_set() and (left := deadline - self.clock.monotonic()) > 0:
                thread.join(min(left, DRAIN_POLL))
        if any(thread.is_alive() for thread in self._threads):
            if hurry.is_set():
                log.warning("asked again to stop: stopping the runs still going; they are handed back")
            else:
                log.warning("grace of %.0fs over: stopping the runs still going; they are handed back", self.grace)
            self.stop_runs()
            for thread in self._threads:
                thread.join(30)
        self._finisher.close()
        self._stopped.set()
        with contextlib.suppress(StoreError):
            self.store.forget_workers([self.identity.id])

    def stop_runs(self) -> None:
        """Stop every running job now: each is recorded ``lost`` and its entry handed back for another worker."""
        self._abandon.set()
        with self._lock:
            for run in self._active.values():
                run.why_stopped = "shutdown"
                run.stop.set()

    def status(self) -> str:
        """One line for systemd: runs in progress and runs done."""
        return f"{self._running}/{self.concurrency} running, {self.processed} done, queues {','.join(self.queues)}"

    # -- threads -----------------------------------------------------------------------------------------
    def _runner(self) -> None:
        executor: Executor = ChildExecutor() if self.isolation == "process" else ThreadExecutor()
        try:
            while (run := self._work.get()) is not None:
                try:
                    self._perform(run, executor)
                except StoreError as error:
                    log.error("run %s left to be reclaimed: %s", run.record.run_id, error)
                except Exception:
                    log.exception("unexpected error in run %s; left to be reclaimed", run.record.run_id)
                finally:
                    with self._lock:
                        self._active.pop(run.record.run_id, None)
                    self._capacity.set()
        finally:
            executor.close()

    def _heartbeat_loop(self) -> None:
        while not self._stopped.wait(HEARTBEAT_INTERVAL):
            try:
                self._heartbeat()
            except StoreError as error:
                log.warning("heartbeat failed: %s", error)
            except Exception:
                log.exception("heartbeat failed")

    def _heartbeat(self) -> None:
        now_ms = to_ms(self.clock.now())
        with self._lock:
            runs = list(self._active.values())
        for lease in {run.lease_ms for run in runs}:
            self.store.renew([run.lease for run in runs if run.lease_ms == lease], self.identity.id, now_ms + lease)
        for run_name, reason in self.store.cancel_requests([run.record.run_id for run in runs]).items():
            self._stop(run_name, reason)
        for queue_name, depth in self.store.queue_lengths(self.queues).items():
            self.metrics.queue_depth.labels(queue_name).set(depth)
        self.store.heartbeat(self.identity.id, {
            "worker": self.identity.id, "host": self.identity.host, "pid": self.identity.pid,
            "queues": self.queues, "concurrency": self.concurrency, "isolation": self.isolation,
            "started_at": format_utc(self.identity.started_at), "heartbeat_at": format_utc(self.clock.now()),
            "runs": [run.record.run_id for run in runs], "processed": self.processed,
            "config_digest": self.config.digest,
        })  # fmt: skip

    def _stop(self, run_name: str, reason: str) -> None:
        """Ask a run of this worker to stop (``overlap: replace``); a run still waiting for a runner never starts."""
        with self._lock:
            active = self._active.get(run_name)
            if active is not None and not active.stop.is_set():
                log.info("cancelling run %s: %s", run_name, reason)
                active.why_stopped = reason
                active.stop.set()

    def _housekeeping(self) -> None:
        now_ms = to_ms(self.clock.now())
        for name in self.queues:
            self.store.requeue_due_retries(name, now_ms)
            idle_ms = int(RECLAIM_MIN_IDLE.total_seconds() * 1000)
            reclaimed = self.store.reclaim(name, self.identity.id, now_ms, idle_ms)
            for delivery in reclaimed:
                log.info("reclaimed entry %s of queue %s (its run's lease ended)", delivery.entry_id, name)
            self._admit(reclaimed)

    # -- claiming ----------------------------------------------------------------------------------------
    def _admit(self, deliveries: list[Delivery]) -> None:
        """Check the deliveries, claim the runnable ones in one batch, and hand each to a runner or record why
        it does not run."""
        now = self.clock.now()
        now_ms = to_ms(now)
        requests, pending = [], []
        for delivery in deliveries:
            try:
                checked = self._check(delivery)
                if checked is None:
                    continue
                spec, message = checked
                if delivery.deliveries > 1:
                    self._record_lost(spec, message)
                lease_ms = int(min(spec.timeout + self.kill_grace, defaults.RUN_LEASE_MAX).total_seconds() * 1000)
                record = self._record(spec, message, 0, "running")
                scheduled = parse_utc(message.scheduled_at)
                record.started_at = format_utc(now)
                record.lag_s = round((now - scheduled).total_seconds(), 6)
                record.worker = self._name
                requests.append(ClaimRequest(
                    spec.name, delivery, message.fire_id, spec.overlap, now_ms + lease_ms,
                    record.to_json(omit=("run_id", "attempt")), now_ms, requested=message.trigger in REQUESTED,
                ))  # fmt: skip
                pending.append(Run(spec, delivery, message, record, scheduled, lease_ms, self.clock.monotonic()))
            except StoreError:
                raise
            except Exception as error:  # a message that passed the checks and still breaks something
                log.exception("entry %s of queue %s cannot be run", delivery.entry_id, delivery.queue)
                self._dead_letter(delivery, f"not run: {type(error).__name__}: {error}")
        for run, claim in zip(pending, self.store.claim(requests, self.identity.id, now_ms), strict=True):
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
            self._dead_letter(delivery, f"not run: message {problem}")
            return None
        spec = self.config.jobs.get(message.job)
        if spec is None:
            self._dead_letter(delivery, f"not run: job {message.job!r} is not declared in this worker's config")
            return None
        return spec, message

    def _decide(self, run: Run, claim: Claim, now_ms: int) -> None:
        spec, delivery, message = run.spec, run.delivery, run.message
        if claim.decision == "run":
            for replaced in claim.replaced:
                log.info("fire %s of %s replaces run %s (overlap: replace)", message.fire_id, spec.name, replaced)
                self._stop(replaced, f"replaced by {message.fire_id}")
            run.record.attempt, run.record.run_id = claim.attempt, run_id(message.fire_id, claim.attempt)
            with self._lock:
                self._active[run.record.run_id] = run
            self._work.put(run)
        elif claim.decision == "error":
            log.error("fire %s of %s not started, left to be reclaimed: %s", message.fire_id, spec.name, claim.error)
        elif claim.decision == "buffered":
            log.info(
                "fire %s of %s held back until the running one ends (overlap: buffer_one)", message.fire_id, spec.name
            )
            self._finisher.submit(
                self._finish(spec, delivery, message, self._record(spec, message, 0, "skipped"), hold=True)
            )
        elif message.trigger in REQUESTED:
            # Asked for on purpose: wait for the running fire instead of skipping (a backfill keeps every day).
            log.info("fire %s of %s waits for the running one (%s)", message.fire_id, spec.name, message.trigger)
            end = self._finish(spec, delivery, message, self._record(spec, message, 0, "queued"), fire_done=False)
            retry_at = now_ms + int(DEFER_DELAY * 1000)
            self._finisher.submit(_replace(end, record="", then="retry", retry_at_ms=retry_at))
        else:
            record = self._record(spec, message, 0, "skipped")
            record.reason = f"a run of {spec.name} was still in progress (overlap: {spec.overlap})"
            log.info("skipped fire %s of %s: %s", message.fire_id, spec.name, record.reason)
            self.metrics.fires_skipped.labels(self.metrics.job(spec.name)).inc()
            self._finisher.submit(self._finish(spec, delivery, message, record, fire_done=False))

    def _give_back(self, runs: list[Run]) -> None:
        """Undo the claims of fires not started (shutdown), so the next worker runs them as if unclaimed."""
        if not runs:
            return
        with self._lock:  # first, so no heartbeat renews them meanwhile
            for run in runs:
                self._active.pop(run.record.run_id, None)
        try:
            undone = self.store.unclaim([run.lease for run in runs], self.identity.id)
            log.info("gave back %d claimed fires not started", undone)
        except StoreError as error:
            log.warning("could not give back %d claimed fires (reclaimed when their leases end): %s", len(runs), error)

    # -- running -----------------------------------------------------------------------------------------
    def _perform(self, run: Run, executor: Executor) -> None:
        """Run a claimed fire and hand its end to the finisher."""
        spec, message, record = run.spec, run.message, run.record
        started = self.clock.now()
        with self._lock:
            self._running += 1
        try:
            if run.stop.is_set():  # replaced while it waited for a runner
                outcome = Outcome("cancelled")
            else:
                record.started_at = format_utc(started)
                record.lag_s = round((started - run.scheduled).total_seconds(), 6)
                if self.clock.monotonic() - run.claimed > RESTAMP_AFTER:
                    try:
                        self.store.write_record(spec.name, record.run_id, record.to_json(), to_ms(started))
                    except StoreError as error:  # only the running record's start is stale; the run goes on
                        log.warning("running record of %s not restamped: %s", record.run_id, error)
                log.debug("running %s (attempt %d, %s)", record.run_id, record.attempt, message.trigger)
                outcome = self._execute(spec, message, record, run, executor)
        finally:
            with self._lock:
                self._running -= 1
        finished = self.clock.now()
        record.finished_at = format_utc(finished)
        record.duration_s = round((finished - started).total_seconds(), 6)
        _apply(record, outcome)
        if outcome.status == "cancelled" and run.why_stopped == "shutdown":
            record.status, record.reason = "lost", "the worker shut down before the run finished"
            self.store.write_record(spec.name, record.run_id, record.to_json(), _record_time(record, finished))
            self.store.release(run.delivery.queue, run.delivery.entry_id, spec.name, record.run_id)
            return
        if outcome.status == "cancelled":
            record.reason = run.why_stopped or "cancelled"
        end = self._conclude(spec, run.delivery, message, record)
        self._finisher.submit(end)
        with self._lock:
            self.processed += 1
        job = self.metrics.job(spec.name)
        self.metrics.runs.labels(job, record.status).inc()
        self.metrics.run_duration.labels(job).observe(record.duration_s or 0.0)
        log.info("%s run %s %s in %.3fs", spec.name, record.run_id, record.status, record.duration_s or 0.0)

    def _execute(self, spec: JobSpec, message: Message, record: RunRecord, run: Run, executor: Executor) -> Outcome:
        timeout = spec.timeout.total_seconds()
        grace = self.kill_grace.total_seconds()
        if spec.call is not None:
            wanted = executor.wants_context(spec.call, self._pythonpath)
            task = {
                "target": spec.call,
                "args": message.args,
                "kwargs": message.kwargs,
                "pythonpath": self._pythonpath,
                "context": {
                    "run_id": record.run_id,
                    "fire_id": message.fire_id,
                    "job": spec.name,
                    "scheduled_at": message.scheduled_at,
                    "previous_at": self._previous_at(spec, message.scheduled_at) if wanted else None,
                    "timezone": spec.timezone,
                    "attempt": record.attempt,
                    "trigger": message.trigger,
                },
            }
            return executor.run(task, timeout, run.stop, grace)
        argv = ["/bin/sh", "-c", (spec.command or ("",))[0]] if spec.shell else list(spec.command or ())
        env = {key: value for key, value in os.environ.items() if not key.startswith("BEATD_")} | spec.env
        cwd = str((self.config.path.parent / spec.cwd).resolve()) if spec.cwd else None
        return run_command(argv, env, cwd, timeout, run.stop, grace)

    def _previous_at(self, spec: JobSpec, scheduled_at: str) -> str | None:
        """The job's scheduled instant before ``scheduled_at`` (the start of the data interval), remembered:
        every retry, and every manual fire of one instant, asks again."""
        key = (spec.name, spec.schedule_digest, scheduled_at)
        if key not in self._previous:
            if len(self._previous) >= PREVIOUS_CACHE:
                self._previous.clear()
            previous = previous_fire(spec.trigger(), parse_utc(scheduled_at))
            self._previous[key] = previous.isoformat() if previous else None
        return self._previous[key]

    # -- records -----------------------------------------------------------------------------------------
    def _record(self, spec: JobSpec, message: Message, attempt: int, status: str) -> RunRecord:
        return RunRecord(
            run_id=run_id(message.fire_id, attempt),
            fire_id=message.fire_id,
            job=spec.name,
            scheduled_at=message.scheduled_at,
            trigger=message.trigger,
            attempt=attempt,
            status=status,  # type: ignore[arg-type]
            emitted_at=message.emitted_at,
            config_digest=message.config_digest,
        )

    def _record_lost(self, spec: JobSpec, message: Message) -> None:
        attempts = self.store.attempts(message.fire_id)
        if attempts == 0:
            return
        previous = run_id(message.fire_id, attempts)
        raw = self.store.run_record(spec.name, previous)
        if raw is None:
            return
        record = RunRecord.from_json(raw)
        if record.status == "running":
            record.status = "lost"
            record.finished_at = format_utc(self.clock.now())
            record.reason = f"worker {record.worker} stopped renewing the run's lease"
            self.store.write_record(spec.name, previous, record.to_json(), _record_time(record, self.clock.now()))
        self.store.forget_run(spec.name, previous)

    def _conclude(self, spec: JobSpec, delivery: Delivery, message: Message, record: RunRecord) -> Finish:
        if record.status not in ("failed", "timeout"):
            return self._finish(spec, delivery, message, record, fire_done=True)
        if record.attempt <= spec.retries:
            ceiling = min(
                spec.retry_delay_max.total_seconds(), spec.retry_delay.total_seconds() * 2 ** (record.attempt - 1)
            )
            delay = random.uniform(0, ceiling)  # full jitter
            record.reason = f"{record.reason + '; ' if record.reason else ''}retry in {delay:.1f}s"
            end = self._finish(spec, delivery, message, record, fire_done=False)
            end_retry = to_ms(self.clock.now()) + int(delay * 1000)
            return _replace(end, then="retry", retry_at_ms=end_retry)
        reason = f"{record.status} on attempt {record.attempt} of {spec.retries + 1}: no retries left"
        record.reason = f"{record.reason}; {reason}" if record.reason else reason
        # The fire-level record ({fire_id}#dead) is written with the last attempt's. The attempt count is kept,
        # so a dead letter put back with `beatd dead retry` runs as the next attempt.
        dead = self._record(spec, message, record.attempt, "dead")
        dead.run_id = f"{message.fire_id}#dead"
        dead.finished_at, dead.reason = record.finished_at, record.reason
        end = self._finish(spec, delivery, message, record, fire_done=False)
        return _replace(end, then="dead", reason=reason, dead_record=dead.to_json())

    def _finish(
        self,
        spec: JobSpec,
        delivery: Delivery,
        message: Message,
        record: RunRecord,
        *,
        fire_done: bool = True,
        hold: bool = False,
    ) -> Finish:
        now = self.clock.now()
        return Finish(
            job=spec.name, queue=delivery.queue, run_id=record.run_id, entry_id=delivery.entry_id,
            record="" if hold else record.to_json(), score_ms=_record_time(record, now),
            keep=spec.history.keep, oldest_ms=to_ms(now - spec.history.max_age), message=delivery.message,
            signature=delivery.signature, fire_id=message.fire_id, fire_done=fire_done,
        )  # fmt: skip

    def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        log.warning("dead-lettered entry %s of queue %s: %s", delivery.entry_id, delivery.queue, reason)
        self.store.dead_letter(delivery, reason)


def _apply(record: RunRecord, outcome: Outcome) -> None:
    record.status = outcome.status  # type: ignore[assignment]
    record.result, record.result_truncated = outcome.result, outcome.result_truncated
    record.error, record.exit_code = outcome.error, outcome.exit_code
    record.stdout_tail, record.stderr_tail = outcome.stdout_tail, outcome.stderr_tail
    record.reason = outcome.reason


def _record_time(record: RunRecord, now: datetime) -> int:
    """A record's place in history (ms): when its run started, else when it was written."""
    return to_ms(parse_utc(record.started_at)) if record.started_at else to_ms(now)


def _replace(end: Finish, **changes: object) -> Finish:
    return dataclasses.replace(end, **changes)  # type: ignore[arg-type]
