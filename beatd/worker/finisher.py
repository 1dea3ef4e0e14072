"""Group commit of run ends: runners hand their ends over; one thread writes whatever has gathered in one
script call. At a high rate many ends share a round trip to Redis; at a low rate each is written at once."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable

from beatd.clock import Clock
from beatd.messages import to_ms
from beatd.store import Finish, RunStore, StoreError, StoreUnavailable
from beatd.store.runs import PartlyApplied

__all__ = ["Finisher"]

log = logging.getLogger("beatd.worker")

BATCH_LIMIT = 500
"""Most ends written in one script call."""

RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0)
"""Waits (s) between tries of a batch while Redis is unreachable; after the last, the ends are left to be
reclaimed (their runs run again)."""


class Finisher:
    """A thread that writes run ends (records and acknowledgements) in batches, in the order submitted."""

    def __init__(
        self, store: RunStore, clock: Clock, *, written: Callable[[], None], failed: Callable[[], None]
    ) -> None:
        self.store = store
        self.clock = clock
        self.written = written
        self.failed = failed
        self._ends: queue.SimpleQueue[Finish | None] = queue.SimpleQueue()
        self._writing = 0
        self._thread = threading.Thread(target=self._loop, name="finisher", daemon=True)

    def start(self) -> None:
        """Start the writing thread."""
        self._thread.start()

    def submit(self, end: Finish) -> None:
        """Queue one end for writing."""
        self._ends.put(end)

    def pending(self) -> int:
        """Ends submitted and not yet written."""
        return self._ends.qsize() + self._writing

    def close(self, timeout: float = 30.0) -> None:
        """Write what is left, then stop the thread."""
        self._ends.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        closing = False
        while not closing:
            first = self._ends.get()
            batch = [first] if first is not None else []
            closing = first is None
            with contextlib.suppress(queue.Empty):
                while len(batch) < BATCH_LIMIT and not closing:
                    end = self._ends.get_nowait()
                    if end is None:
                        closing = True
                    else:
                        batch.append(end)
            self._writing = len(batch)
            try:
                if batch:
                    self._write(batch)
            finally:
                self._writing = 0
                self.written()

    def _finish(self, batch: list[Finish]) -> tuple[dict[str, str], list[Finish], StoreError | None]:
        """Write ``batch``: what Redis refused (run id -> error), the ends left unwritten and the error that left
        them (None: none left). While Redis is unreachable the ends not written yet are tried again, for a few
        seconds: with several shards, when one shard's call failed, only that shard's ends (another's, written,
        would be written twice). The writes are idempotent but for a dead letter, which a try again after a lost
        reply may add twice."""
        refused: dict[str, str] = {}
        left, delays = batch, iter(RETRY_DELAYS)
        while True:
            try:
                return refused | self.store.finish(left, to_ms(self.clock.now())), [], None
            except PartlyApplied as partial:
                refused |= {left[position].run_id: reason for position, reason in partial.applied.items() if reason}
                left = [end for position, end in enumerate(left) if position not in partial.applied]
                error: StoreError = partial.error
            except StoreError as failure:
                error = failure
            delay = next(delays, None)
            if delay is None or not isinstance(error, StoreUnavailable):
                return refused, left, error
            log.warning("writing %d run ends (%s): %s; again in %.1fs", len(left), _names(left), error, delay)
            self.failed()
            time.sleep(delay)

    def _write(self, batch: list[Finish]) -> None:
        try:
            refused, left, error = self._finish(batch)
        except Exception:
            log.exception("%d run ends (%s) not written, left to be reclaimed", len(batch), _names(batch))
            return
        if error is not None:
            # Their entries stay pending with leases that are no longer renewed: they are reclaimed and re-run.
            log.error("%d run ends (%s) not written, left to be reclaimed: %s", len(left), _names(left), error)
            self.failed()
        for run, reason in refused.items():
            log.error("end of run %s not written, left to be reclaimed: Redis refused it: %s", run, reason)


NAMED = 5
"""Most run ids a log line about a batch of run ends names."""


def _names(batch: list[Finish]) -> str:
    """The run ids of a batch, for a log line: the first few, then how many more."""
    names = ", ".join(end.run_id for end in batch[:NAMED])
    return names + (f" and {len(batch) - NAMED} more" if len(batch) > NAMED else "")
