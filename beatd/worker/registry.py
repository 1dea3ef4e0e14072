"""What one worker holds: its claimed runs (waiting for a runner, held back, executing) and its setup.

Shared by the worker's roles (intake, runners, lease keeper); every access to the run tables goes through the
methods here, under one lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from beatd.config import Config, JobSpec
from beatd.expiry import REQUESTED
from beatd.messages import Message
from beatd.records import RunRecord
from beatd.store import Delivery
from beatd.worker.outcome import StartDecision

__all__ = ["Registry", "Run", "Setup"]


@dataclass(frozen=True)
class Setup:
    """What the current config decides for this worker (replaced as a whole on reload)."""

    config: Config
    queues: list[str]
    kill_grace: timedelta
    pythonpath: list[str]

    @classmethod
    def of(cls, config: Config, fixed_queues: list[str] | None) -> Setup:
        """The setup for ``config``; queues follow it unless given on the command line (celery jobs are run by
        the Celery app's workers: their queues are not beatd's)."""
        declared = {spec.queue for spec in config.jobs.values() if spec.celery is None}
        runtime = config.settings.runtime_jobs
        return cls(
            config=config,
            queues=fixed_queues or sorted(declared | set(runtime.queues if runtime is not None else ())),
            kill_grace=config.settings.worker.kill_grace,
            pythonpath=[str(entry) for entry in config.pythonpath],
        )


@dataclass
class Run:
    """A fire this worker claimed: waiting for a runner, held back, then executing."""

    spec: JobSpec
    delivery: Delivery
    message: Message
    record: RunRecord
    scheduled: datetime
    lease_ms: int
    claimed: float
    started: datetime | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    why_stopped: str | None = None

    @property
    def lease(self) -> tuple[str, str, str, str]:
        """(job, queue, entry id, run id): what names the run's lease."""
        return self.spec.name, self.delivery.queue, self.delivery.entry_id, self.record.run_id

    @property
    def requested(self) -> bool:
        """Asked for on purpose (manual, backfill): waits for a running fire of its job instead of skipping."""
        return self.message.trigger in REQUESTED


"""Triggers of fires asked for on purpose."""


class Registry:
    """The runs of one worker, keyed by run id, and which of them execute or wait per job."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.lock = threading.Lock()
        self._claimed: dict[str, Run] = {}
        self._executing: dict[str, dict[str, Run]] = {}
        self._held: dict[str, list[Run]] = {}
        self.processed = 0

    def add(self, run: Run) -> None:
        """A run was claimed."""
        with self.lock:
            self._claimed[run.record.run_id] = run

    def drop(self, run_ids: list[str]) -> None:
        """Forget runs (ended, or given back)."""
        with self.lock:
            for run_id in run_ids:
                self._claimed.pop(run_id, None)

    def claimed(self) -> list[Run]:
        """Every run claimed and not yet ended (waiting, held back or executing)."""
        with self.lock:
            return list(self._claimed.values())

    def count(self) -> int:
        """How many runs are claimed and not yet ended."""
        return len(self._claimed)

    def get(self, run_id: str) -> Run | None:
        """A claimed run by id."""
        with self.lock:
            return self._claimed.get(run_id)

    def running_since(self, job: str, instant: datetime) -> bool:
        """Whether a run of ``job`` that started at or before ``instant`` executes on this worker now."""
        with self.lock:
            return any(
                run.started is not None and run.started <= instant for run in self._executing.get(job, {}).values()
            )

    def executing(self) -> int:
        """How many runs execute now."""
        with self.lock:
            return sum(len(runs) for runs in self._executing.values())

    def begin(self, run: Run, decide: Callable[[bool], StartDecision]) -> tuple[StartDecision, list[Run]]:
        """Decide under the lock whether ``run`` starts (``decide(running_here)`` returns a
        :data:`~beatd.worker.outcome.StartDecision`); a run that starts or replaces is marked executing, one that
        waits is held back. Returns the decision and, for ``replace``, the runs to stop."""
        job = run.spec.name
        with self.lock:
            executing = self._executing.setdefault(job, {})
            held = self._held.setdefault(job, [])
            decision = decide(bool(executing))
            others = list(executing.values())
            if decision in ("run", "replace"):
                executing[run.record.run_id] = run
            elif decision == "wait":
                held.append(run)
            return decision, others if decision == "replace" else []

    def end(self, run: Run) -> Run | None:
        """``run`` stopped executing; returns a held-back run of its job that may now start, if any."""
        job = run.spec.name
        with self.lock:
            executing = self._executing.get(job, {})
            executing.pop(run.record.run_id, None)
            self._claimed.pop(run.record.run_id, None)
            held = self._held.get(job)
            released = held.pop(0) if held and not executing else None
            if not executing:
                self._executing.pop(job, None)
            if held is not None and not held:
                self._held.pop(job, None)
            return released

    def take_held(self) -> list[Run]:
        """Every held-back run (shutdown: they are given back)."""
        with self.lock:
            runs = [run for held in self._held.values() for run in held]
            self._held.clear()
            return runs
