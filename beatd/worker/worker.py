"""The worker: claim fires from the queue streams, run them, record every attempt.

Roles, each in its own module: :class:`~beatd.worker.intake.Intake` (the main thread: read, check, claim in
one ``claim.lua`` call per batch, move due retries back, reclaim abandoned runs), ``concurrency``
:class:`~beatd.worker.runners.Runners` (run one claimed fire at a time: a callable in a child process, or a
command), the :class:`~beatd.worker.finisher.Finisher` (writes run ends in batches: an entry is acknowledged
only in the step that writes its record), the :class:`~beatd.worker.leases.LeaseKeeper` (renews leases,
passes on cancellations, publishes the heartbeat), and the pure outcome policy (:mod:`beatd.worker.outcome`).
"""

from __future__ import annotations

import logging
import threading

from beatd import defaults
from beatd.clock import Clock
from beatd.config import Config, Isolation
from beatd.identity import Identity
from beatd.metrics import Health, Metrics
from beatd.runtime_follow import RuntimeFollower, ShardedFollower
from beatd.signing import Signer
from beatd.store import RunStore, StoreError
from beatd.worker.executor import ThreadExecutor
from beatd.worker.finisher import Finisher
from beatd.worker.intake import Intake
from beatd.worker.leases import LeaseKeeper
from beatd.worker.live import LiveOutput
from beatd.worker.registry import Registry, Run, Setup
from beatd.worker.runners import Runners

__all__ = ["Worker", "needs_restart"]

log = logging.getLogger("beatd.worker")

CLAIM_BATCH_LIMIT = 500
"""Most entries read and claimed in one go, so one script call stays short whatever the claim window."""

HOUSEKEEPING_INTERVAL = 0.5
"""How often (s) the main thread moves due retries back and looks for runs to reclaim."""

DRAIN_POLL = 0.1
"""How often (s) a drain waiting for running jobs checks whether it was asked to stop at once."""


def needs_restart(old: Config, new: Config, fixed: frozenset[str] = frozenset()) -> list[str]:
    """The settings that differ between ``old`` and ``new`` and that a running worker cannot take over (its
    runner threads, their isolation, its Redis connection, namespace and shards); ``fixed`` names those the command line
    sets, which a reload leaves alone."""
    before, after = old.settings, new.settings
    changed = {
        "worker.concurrency": before.worker.concurrency != after.worker.concurrency,
        "worker.isolation": before.worker.isolation != after.worker.isolation,
        "redis": before.redis != after.redis,
        "namespace": old.namespace != new.namespace,
        "shards": old.shards != new.shards,
    }
    return [name for name, differs in changed.items() if differs and name not in fixed]


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
        isolation: Isolation,
        signer: Signer | None,
        metrics: Metrics | None = None,
        health: Health | None = None,
        runtime: RuntimeFollower | ShardedFollower | None = None,
    ) -> None:
        self.store = store
        self.identity = identity
        self.clock = clock
        self.fixed_queues = queues
        self.prefetch = prefetch
        self.grace = grace
        self.metrics = metrics or Metrics(len(config.jobs))
        self.health = health or Health()
        self.registry = Registry(Setup.of(config, queues))
        self._capacity = threading.Event()
        self.finisher = Finisher(store, clock, written=self._capacity.set, failed=self.metrics.redis_errors.inc)
        self.live = LiveOutput(store)
        self.runners = Runners(
            store, self.registry, clock, self.finisher, self.metrics,
            concurrency=concurrency, isolation=isolation, freed=self._capacity.set, live=self.live,
        )  # fmt: skip
        self.intake = Intake(
            store, self.registry, identity, clock, self.finisher, self.metrics,
            signer=signer, dispatch=self.runners.work.put, stop_run=self.stop_run, runtime=runtime,
        )  # fmt: skip
        self.leases = LeaseKeeper(
            store, self.registry, identity, clock, self.metrics, describe=self._describe, cancel=self.stop_run
        )
        self._next_housekeeping = 0.0

    @property
    def config(self) -> Config:
        """The config in use."""
        return self.registry.setup.config

    @property
    def queues(self) -> list[str]:
        """The queues consumed."""
        return self.registry.setup.queues

    @property
    def concurrency(self) -> int:
        """Runner threads."""
        return self.runners.concurrency

    @property
    def processed(self) -> int:
        """Runs done since start."""
        return self.registry.processed

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Create the consumer groups and start the runner, finisher and lease threads."""
        self.store.ensure_groups(self.queues)
        self.finisher.start()
        self.live.start()
        self.runners.start()
        self.leases.start()
        log.info(
            "worker %s consuming %s with %d runners (%s isolation)",
            self.identity.id,
            ",".join(self.queues),
            self.concurrency,
            self.runners.isolation,
        )

    def tick(self) -> float:
        """Read and claim new entries for free runners (blocking briefly), and do housekeeping when due."""
        try:
            now_mono = self.clock.monotonic()
            if now_mono >= self._next_housekeeping:
                self._next_housekeeping = now_mono + HOUSEKEEPING_INTERVAL
                self.intake.housekeeping()
            # Claim beyond the runners, so a runner that finishes starts the next run at once; and, unless a
            # runner is idle, only once half the window is free, so claims go in batches under load.
            window = self.prefetch * self.concurrency
            free = window - self.registry.count() - self.finisher.pending()
            idle = self.runners.busy() < self.concurrency
            if free <= 0 or (free < window // 2 and not idle):
                self._capacity.wait(0.1)
                self._capacity.clear()
                return 0.0
            self.intake.read(min(free, CLAIM_BATCH_LIMIT))
        except StoreError as error:
            log.error("%s; retrying", error)
            self.metrics.redis_errors.inc()
            self.health.step(redis_ok=False)
            return 1.0
        self.health.step(redis_ok=True)
        return 0.0

    def reload(self, config: Config, *, prefetch: int, grace: float, signer: Signer | None) -> None:
        """Use a new config for the next runs (queues follow it unless given on the command line), with the
        settings a running worker can take over: prefetch, grace, kill grace, the signing key; and, in process
        isolation, the job code on disk: every run that starts from now on does so in a fresh child (idle
        children stop now, busy ones after their run). The children are retired before the new setup is in
        place, so no run of the new config meets a child that imported the old code."""
        self.runners.retire_children()
        self.registry.setup = Setup.of(config, self.fixed_queues)
        if self.intake.runtime is not None:
            self.intake.runtime.set_config(config)
        self.prefetch, self.grace, self.intake.signer = prefetch, grace, signer
        self.store.ensure_groups(self.queues)

    def drain(self, stop_now: threading.Event | None = None) -> None:
        """Stop taking work; give back fires claimed but not started; let running jobs finish up to the grace
        (or until ``stop_now`` is set: a second stop signal); then stop the rest (recorded ``lost``, handed back
        at once)."""
        waiting = self.runners.take_waiting()
        for run in waiting:
            if run.stop.is_set():  # replaced while waiting: recorded cancelled, not given back
                try:
                    self.runners.perform(run, ThreadExecutor())
                except StoreError as error:
                    log.warning("cancelled run %s not recorded: %s", run.record.run_id, error)
        self._give_back([run for run in waiting if not run.stop.is_set()])
        self.runners.stop_threads()
        deadline = self.clock.monotonic() + self.grace
        hurry = stop_now or threading.Event()
        for thread in self.runners.threads:
            while thread.is_alive() and not hurry.is_set() and (left := deadline - self.clock.monotonic()) > 0:
                thread.join(min(left, DRAIN_POLL))
        if any(thread.is_alive() for thread in self.runners.threads):
            if hurry.is_set():
                log.warning("asked again to stop: stopping the runs still going; they are handed back")
            else:
                log.warning("grace of %.0fs over: stopping the runs still going; they are handed back", self.grace)
            self.abandon()
            for thread in self.runners.threads:
                thread.join(30)
        self.finisher.close()
        self.live.close()
        self.leases.stop()
        try:
            self.store.forget_workers([self.identity.id])
        except StoreError as error:
            log.warning("heartbeat not withdrawn: %s", error)

    def abandon(self) -> None:
        """Stop every run still going at once: each is recorded ``lost`` and its entry handed back."""
        for run in self.registry.claimed():
            run.why_stopped = "shutdown"
            run.stop.set()

    def stop_run(self, run_name: str, reason: str) -> None:
        """Ask a run of this worker to stop (``overlap: replace``); a run still waiting for a runner never starts."""
        run = self.registry.get(run_name)
        if run is not None and not run.stop.is_set():
            log.info("cancelling run %s: %s", run_name, reason)
            run.why_stopped = reason
            run.stop.set()

    def status(self) -> str:
        """One line for systemd: runs in progress and runs done."""
        executing = self.registry.executing()
        return f"{executing}/{self.concurrency} running, {self.processed} done, queues {','.join(self.queues)}"

    def _describe(self) -> dict[str, object]:
        return {"concurrency": self.concurrency, "isolation": self.runners.isolation}

    def _give_back(self, runs: list[Run]) -> None:
        """Undo the claims of fires not started (shutdown), so the next worker runs them as if unclaimed."""
        if not runs:
            return
        self.registry.drop([run.record.run_id for run in runs])  # first, so no heartbeat renews them meanwhile
        try:
            undone = self.store.unclaim([run.lease for run in runs], self.identity.id)
            log.info("gave back %d claimed fires not started", undone)
        except StoreError as error:
            log.warning("could not give back %d claimed fires (reclaimed when their leases end): %s", len(runs), error)
