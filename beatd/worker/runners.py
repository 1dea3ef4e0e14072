"""Runners: ``concurrency`` threads that each run one claimed fire at a time and hand its end to the finisher.

A fire starts only if the overlap policy allows it at the moment it would start (:func:`start_decision`):
fires of one job claimed together run one after another rather than skipping each other.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from datetime import datetime

from beatd.clock import Clock
from beatd.config import Isolation, JobSpec, RuntimeJobsSettings
from beatd.messages import Message, format_utc, parse_utc, to_ms
from beatd.metrics import Metrics
from beatd.records import RunRecord
from beatd.runtime_jobs import call_allowed
from beatd.store import RunStore, StoreError
from beatd.worker.context import previous_fire
from beatd.worker.ends import conclude, record_time
from beatd.worker.executor import ChildExecutor, Executor, Outcome, ThreadExecutor, run_command
from beatd.worker.finisher import Finisher
from beatd.worker.live import LiveOutput
from beatd.worker.outcome import start_decision
from beatd.worker.output import RunOutput, install
from beatd.worker.registry import Registry, Run

__all__ = ["Runners"]

log = logging.getLogger("beatd.worker")

RESTAMP_AFTER = 1.0
"""A claimed fire that waited longer than this (s) for a runner has its ``running`` record rewritten with
the instant it really started; sooner, the claim's instant stands until the final record."""

PREVIOUS_CACHE = 4096
"""Most data-interval starts remembered (see ``Runners._previous_at``)."""


_NO_RUNTIME = RuntimeJobsSettings(allow=())
"""The runtime jobs settings of a worker whose config has none: nothing allowed."""


class Runners:
    """The runner threads and what each does with a claimed fire."""

    def __init__(
        self,
        store: RunStore,
        registry: Registry,
        clock: Clock,
        finisher: Finisher,
        metrics: Metrics,
        *,
        concurrency: int,
        isolation: Isolation,
        freed: Callable[[], None],
        live: LiveOutput | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.finisher = finisher
        self.metrics = metrics
        self.concurrency = concurrency
        self.isolation = isolation
        self.freed = freed
        self.live = live
        self.work: queue.SimpleQueue[Run | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.executors: list[Executor] = []
        self._previous: dict[tuple[str, str, str], str | None] = {}

    def start(self) -> None:
        """Start the runner threads (with thread isolation, once jobs' output is routed to their runs; the
        ``worker`` command does it earlier, before job modules are imported)."""
        if self.isolation == "thread":
            install()
        for index in range(self.concurrency):
            thread = threading.Thread(target=self._loop, name=f"runner-{index}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def busy(self) -> int:
        """Runs executing or waiting in the hand-off queue."""
        return self.registry.executing() + self.work.qsize()

    def take_waiting(self) -> list[Run]:
        """Every claimed run not started: waiting for a runner or held back (shutdown)."""
        waiting = []
        while True:
            try:
                run = self.work.get_nowait()
            except queue.Empty:
                break
            if run is not None:
                waiting.append(run)
        return waiting + self.registry.take_held()

    def retire_children(self) -> None:
        """Reload: runs from now on import the job code on disk (process isolation: in fresh children; idle
        children stop now, busy ones after their run)."""
        for executor in list(self.executors):
            executor.retire()

    def stop_threads(self) -> None:
        """Ask each runner to stop after its current run."""
        for _ in self.threads:
            self.work.put(None)

    def _loop(self) -> None:
        executor: Executor = ChildExecutor() if self.isolation == "process" else ThreadExecutor()
        self.executors.append(executor)
        try:
            while (run := self.work.get()) is not None:
                try:
                    self.perform(run, executor)
                except StoreError as error:
                    log.error("run %s left to be reclaimed: %s", run.record.run_id, error)
                    self._ended(run.record.run_id, "lost")
                except Exception:
                    log.exception("unexpected error in run %s; left to be reclaimed", run.record.run_id)
                    self._ended(run.record.run_id, "lost")  # its live stream ends (its tail is not recorded)
        finally:
            executor.close()

    def perform(self, run: Run, executor: Executor) -> None:
        """Start ``run`` if its overlap policy allows it now, run it, and hand its end to the finisher."""
        spec = run.spec
        if run.stop.is_set():  # replaced while it waited for a runner
            self.registry.drop([run.record.run_id])
            self._end(run, self.clock.now(), Outcome("cancelled"))
            self.freed()
            return
        started = self.clock.now()
        run.started = started
        decision, others = self.registry.begin(run, lambda running: start_decision(spec.overlap, running_here=running))
        if decision == "wait":
            log.debug("fire %s of %s waits for the run of its job here to end", run.message.fire_id, spec.name)
            return
        for other in others:  # replace: this worker's own run of the job
            log.info(
                "fire %s of %s replaces run %s (overlap: replace)", run.message.fire_id, spec.name, other.record.run_id
            )
            other.why_stopped = f"replaced by {run.message.fire_id}"
            other.stop.set()
        try:
            record = run.record
            record.started_at = format_utc(started)
            record.lag_s = round((started - run.scheduled).total_seconds(), 6)
            if self.clock.monotonic() - run.claimed > RESTAMP_AFTER:
                try:
                    self.store.write_record(spec.name, record.run_id, record.to_json(), to_ms(started))
                except StoreError as error:  # only the running record's start is stale; the run goes on
                    log.warning("running record of %s not restamped: %s", record.run_id, error)
            log.debug("running %s (attempt %d, %s)", record.run_id, record.attempt, run.message.trigger)
            output = self._output(spec, record.run_id)
            try:
                outcome = self._execute(spec, run.message, record, run, executor, output)
            finally:
                output.close()
        finally:
            released = self.registry.end(run)
            if released is not None:
                self.work.put(released)
            self.freed()
        self._end(run, started, outcome, output)

    def _output(self, spec: JobSpec, run: str) -> RunOutput:
        """The sink of one run's output: its tail for the record, and its live stream."""
        tail = spec.output.tail
        if tail is None:
            tail = self.registry.setup.config.settings.worker.output_tail
        return RunOutput(tail, self.live.sink(run) if self.live is not None else None)

    def _end(self, run: Run, started: datetime, outcome: Outcome, output: RunOutput | None = None) -> None:
        """Record how ``run`` ended (its claim is already dropped from the registry) and hand on its end."""
        spec, record = run.spec, run.record
        finished = self.clock.now()
        record.finished_at = format_utc(finished)
        record.duration_s = round((finished - started).total_seconds(), 6)
        _apply(record, outcome)
        if output is not None and output.tail.total and output.tail.limit:
            record.output, record.output_truncated = output.tail.text(), bool(output.tail.cut)
        if outcome.status == "cancelled" and run.why_stopped == "shutdown":
            record.status, record.reason = "lost", "the worker shut down before the run finished"
            self._ended(record.run_id, record.status)
            log.info(
                "%s run %s stopped at shutdown: recorded lost, handed back", spec.name, record.run_id,
                extra={"job": spec.name, "run_id": record.run_id, "status": record.status},
            )  # fmt: skip
            self.store.write_record(spec.name, record.run_id, record.to_json(), record_time(record, finished))
            self.store.release(run.delivery.queue, run.delivery.entry_id, spec.name, record.run_id)
            return
        if outcome.status == "cancelled":
            record.reason = run.why_stopped or "cancelled"
        self.finisher.submit(conclude(spec, run.delivery, run.message, record, finished))
        with self.registry.lock:
            self.registry.processed += 1
        job = self.metrics.job(spec.name)
        self.metrics.runs.labels(job, record.status).inc()
        self.metrics.run_duration.labels(job).observe(record.duration_s or 0.0)
        self._ended(record.run_id, record.status)
        about = {"job": spec.name, "run_id": record.run_id, "status": record.status}
        if record.status in ("failed", "timeout"):
            log.warning(
                "%s run %s %s in %.3fs: %s", spec.name, record.run_id, record.status, record.duration_s or 0.0,
                _why(record), extra=about,
            )  # fmt: skip
        else:
            log.info(
                "%s run %s %s in %.3fs", spec.name, record.run_id, record.status, record.duration_s or 0.0, extra=about
            )

    def _ended(self, run: str, status: str) -> None:
        if self.live is not None:
            self.live.end(run, status)

    def _execute(
        self, spec: JobSpec, message: Message, record: RunRecord, run: Run, executor: Executor, output: RunOutput
    ) -> Outcome:
        setup = self.registry.setup
        timeout = spec.timeout.total_seconds()
        grace = setup.kill_grace.total_seconds()
        if spec.call is not None:
            runtime = spec.name not in setup.config.jobs
            if runtime and not call_allowed((setup.config.settings.runtime_jobs or _NO_RUNTIME).allow, spec.call):
                why = f"{spec.call!r} is not allowed for runtime jobs by this worker's runtime_jobs.allow"
                return Outcome("failed", error={"type": "TargetError", "message": why, "traceback": ""})
            wanted = executor.wants_context(spec.call, setup.pythonpath)
            task = {
                "target": spec.call,
                # A runtime job runs only a function defined in the module allowed (not one imported into it).
                **({"module": spec.call.partition(":")[0]} if runtime else {}),
                "args": message.args,
                "kwargs": message.kwargs,
                "pythonpath": setup.pythonpath,
                "log_level": logging.getLogger().getEffectiveLevel(),
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
            return executor.run(task, timeout, run.stop, grace, output)
        argv = ["/bin/sh", "-c", (spec.command or ("",))[0]] if spec.shell else list(spec.command or ())
        env = {key: value for key, value in os.environ.items() if not key.startswith("BEATD_")} | spec.env
        cwd = str((setup.config.path.parent / spec.cwd).resolve()) if spec.cwd else None
        return run_command(argv, env, cwd, timeout, run.stop, grace, output)

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


def _apply(record: RunRecord, outcome: Outcome) -> None:
    record.status = outcome.status  # type: ignore[assignment]
    record.result, record.result_truncated = outcome.result, outcome.result_truncated
    record.error, record.exit_code = outcome.error, outcome.exit_code
    record.reason = outcome.reason


def _why(record: RunRecord) -> str:
    """A failed or timed-out run's error in one line, for the worker's log."""
    if record.error:
        return f"{record.error.get('type')}: {record.error.get('message')}"
    return record.reason or "no error recorded"
