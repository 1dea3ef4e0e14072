"""The lease keeper: a thread that renews the leases of a worker's claimed runs, passes on cancellations
(``overlap: replace``) and publishes the worker's heartbeat, every second."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from beatd.clock import Clock
from beatd.identity import Identity
from beatd.messages import format_utc, to_ms
from beatd.metrics import Metrics
from beatd.store import RunStore, StoreError
from beatd.worker.registry import Registry

__all__ = ["LeaseKeeper"]

log = logging.getLogger("beatd.worker")

HEARTBEAT_INTERVAL = 1.0
"""How often (s) leases are renewed and the heartbeat published."""


class LeaseKeeper:
    """Keeps this worker's runs leased and its heartbeat fresh until :meth:`stop`."""

    def __init__(
        self,
        store: RunStore,
        registry: Registry,
        identity: Identity,
        clock: Clock,
        metrics: Metrics,
        *,
        describe: Callable[[], dict[str, object]],
        cancel: Callable[[str, str], None],
    ) -> None:
        self.store = store
        self.registry = registry
        self.identity = identity
        self.clock = clock
        self.metrics = metrics
        self.describe = describe
        self.cancel = cancel
        self._stopped = threading.Event()

    def start(self) -> None:
        """Start the thread."""
        threading.Thread(target=self._loop, name="leases", daemon=True).start()

    def stop(self) -> None:
        """Stop renewing (the worker is gone after this)."""
        self._stopped.set()

    def _loop(self) -> None:
        while not self._stopped.wait(HEARTBEAT_INTERVAL):
            try:
                self.beat()
            except StoreError as error:
                log.warning("heartbeat failed: %s", error)
            except Exception:
                log.exception("heartbeat failed")

    def beat(self) -> None:
        """Renew every claimed run's lease, pass on cancel requests, publish queue depths and the heartbeat."""
        now = self.clock.now()
        runs = self.registry.claimed()
        for lease in {run.lease_ms for run in runs}:
            same = [run.lease for run in runs if run.lease_ms == lease]
            self.store.renew(same, self.identity.id, to_ms(now) + lease)
        for run_name, reason in self.store.cancel_requests([run.record.run_id for run in runs]).items():
            self.cancel(run_name, reason)
        queues = self.registry.setup.queues
        for queue_name, depth in self.store.queue_lengths(queues).items():
            self.metrics.queue_depth.labels(queue_name).set(depth)
        record = {
            "worker": self.identity.id,
            "host": self.identity.host,
            "pid": self.identity.pid,
            "queues": queues,
            "started_at": format_utc(self.identity.started_at),
            "heartbeat_at": format_utc(self.clock.now()),
            "runs": [run.record.run_id for run in runs],
            "processed": self.registry.processed,
            "config_digest": self.registry.setup.config.digest,
        }
        self.store.heartbeat(self.identity.id, record | self.describe())
