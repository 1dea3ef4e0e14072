"""Group commit of run ends: runners hand their ends over; one thread writes whatever has gathered in one
script call. At a high rate many ends share a round trip to Redis; at a low rate each is written at once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from beatd.clock import Clock
from beatd.messages import to_ms
from beatd.store import Finish, RunStore, StoreError

__all__ = ["Finisher"]

log = logging.getLogger("beatd.worker")

BATCH_LIMIT = 500
"""Most ends written in one script call."""


class Finisher:
    """A thread that writes run ends (records and acknowledgements) in batches, in the order submitted."""

    def __init__(
        self, store: RunStore, clock: Clock, *, written: Callable[[], None], failed: Callable[[], None]
    ) -> None:
        self.store = store
        self.clock = clock
        self.written = written
        self.failed = failed
        self._ends: list[Finish] = []
        self._writing = 0
        self._closing = False
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="finisher", daemon=True)

    def start(self) -> None:
        """Start the writing thread."""
        self._thread.start()

    def submit(self, end: Finish) -> None:
        """Queue one end for writing."""
        with self._condition:
            self._ends.append(end)
            self._condition.notify()

    def pending(self) -> int:
        """Ends submitted and not yet written."""
        return len(self._ends) + self._writing

    def close(self, timeout: float = 30.0) -> None:
        """Write what is left, then stop the thread."""
        with self._condition:
            self._closing = True
            self._condition.notify()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self._ends and not self._closing:
                    self._condition.wait()
                if not self._ends:
                    return
                batch, self._ends = self._ends[:BATCH_LIMIT], self._ends[BATCH_LIMIT:]
                self._writing = len(batch)
            try:
                self._write(batch)
            finally:
                with self._condition:
                    self._writing = 0
                self.written()

    def _write(self, batch: list[Finish]) -> None:
        try:
            refused = self.store.finish(batch, to_ms(self.clock.now()))
        except StoreError as error:
            # Their entries stay pending with leases that are no longer renewed: they are reclaimed and re-run.
            log.error("%d run ends not written, left to be reclaimed: %s", len(batch), error)
            self.failed()
            return
        except Exception:
            log.exception("%d run ends not written, left to be reclaimed", len(batch))
            return
        for run, reason in refused.items():
            log.error("end of run %s not written, left to be reclaimed: Redis refused it: %s", run, reason)
