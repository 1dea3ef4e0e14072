"""The relay: in the leader, publish the Celery outbox to a broker on another server, at least once.

The fenced emit script writes each celery fire's task message to the outbox (``{ns}:celery-outbox``) in the
step that advances the job's progress and records ``sent``. The relay, a thread of the leader, takes the oldest
entries in a fenced step (``lua/relay.lua``: only while its token holds the lease), publishes them (a Redis
broker's reply, an AMQP broker's publisher confirms) and deletes them in its next fenced step, only once the
broker confirmed them. A relay whose token is stale gets nothing and deletes nothing: it stops until its
replica leads again.

What is guaranteed: every task message in the outbox reaches the broker at least once. A duplicate publish
happens when the leader dies (or loses the lease) while a batch is in flight (published, its confirms not all
in) or after the broker confirmed it and before the relay deleted it: the next leader's relay publishes those
entries again (at most one batch: ``defaults.RELAY_BATCH``, ``RELAY_BATCH_AMQP``). A clean stop deletes the
confirmed ones before the lease is released. Each carries the fire's deterministic task id (uuid5 of the fire
id), so a duplicate is recognisable by id.

A broker that refuses or is unreachable is retried with a doubling backoff (0.1 s up to
``defaults.RELAY_BACKOFF_MAX``); emission goes on meanwhile (the relay has its own thread and connections),
and the outbox grows until ``celery.outbox_limit``, past which the fenced script refuses celery fires (logged,
retried, never dropped unrecorded). The relay warns when the outbox is half full.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence

from beatd import defaults
from beatd.celery_publish import Publisher, PublishFailed
from beatd.daemon import Backoff
from beatd.metrics import Metrics
from beatd.store import StoreError
from beatd.store.outbox import OutboxEntry, OutboxStore

__all__ = ["Relay", "RelayThread"]

log = logging.getLogger("beatd.relay")


class Relay:
    """One replica's relay from ``outbox`` to ``publisher``; call :meth:`step` with the leader's token."""

    def __init__(self, outbox: OutboxStore, publisher: Publisher, metrics: Metrics, limit: int) -> None:
        self.outbox, self.publisher, self.metrics, self.limit = outbox, publisher, metrics, limit
        self.confirmed: list[str] = []
        """Entries the broker confirmed, deleted by the next step."""
        self.dead: list[tuple[str, str]] = []
        """Entries the broker refused too often ((id, reason)), moved to the dead stream by the next step."""
        self.refusals: dict[str, int] = {}
        """How many times the broker refused each entry by itself (an outage does not count)."""
        self.backoff = Backoff(
            log,
            "Celery broker",
            first=0.1,
            longest=defaults.RELAY_BACKOFF_MAX.total_seconds(),
            recovered="Celery broker reachable again",
        )
        self._warned = False

    def step(self, token: str) -> float:
        """Delete what the broker confirmed, publish the next batch; the seconds to wait before the next step
        (0 when more may be waiting). Raises StoreError when beatd's Redis fails."""
        batch = self.outbox.step(token, self.confirmed, self.publisher.batch, self.dead)
        self.confirmed, self.dead = [], []
        if batch is None:
            log.info("relay: the lease is lost; stopping until this replica leads again")
            self.metrics.outbox_depth(self.outbox.keys.celery_outbox, None)
            return defaults.RELAY_IDLE.total_seconds()
        self.metrics.outbox_depth(self.outbox.keys.celery_outbox, batch.depth)
        self.metrics.celery_relay_last_step.set_to_current_time()
        self._warn(batch.depth)
        if not batch.entries:
            return defaults.RELAY_IDLE.total_seconds()
        try:
            self.publisher.publish(batch.entries)
        except PublishFailed as error:
            self.confirmed = list(error.confirmed)
            self.metrics.celery_publish_failures.inc()
            wait = self.backoff.failed(error)
            self._refused(batch.entries, error.refused)
        else:
            self.confirmed = [entry.entry_id for entry in batch.entries]
            self.backoff.succeeded()
            wait = 0.0
        self.metrics.celery_published.inc(len(self.confirmed))
        for entry_id in self.confirmed:
            self.refusals.pop(entry_id, None)
        return wait

    def _refused(self, entries: Sequence[OutboxEntry], refused: dict[str, str]) -> None:
        """Count each entry the broker refused by itself; one refused ``RELAY_POISON_AFTER`` times is moved to
        the dead stream by the next step (logged), so it no longer holds back the ones behind it."""
        for entry in entries:
            if entry.entry_id not in refused:
                continue
            count = self.refusals.get(entry.entry_id, 0) + 1
            self.refusals[entry.entry_id] = count
            if count >= defaults.RELAY_POISON_AFTER:
                reason = refused[entry.entry_id]
                log.error(
                    "relay: outbox entry %s for queue %s refused %d times (%s): moved to %s",
                    entry.entry_id,
                    entry.queue,
                    count,
                    reason,
                    self.outbox.keys.celery_outbox_dead,
                )
                self.dead.append((entry.entry_id, reason))
                del self.refusals[entry.entry_id]

    def _warn(self, depth: int) -> None:
        if depth * 2 >= self.limit and not self._warned:
            log.warning(
                "the Celery outbox holds %d task messages (bound %d, celery.outbox_limit): the broker is not keeping "
                "up; past the bound celery fires are refused",
                depth,
                self.limit,
            )
        self._warned = depth * 2 >= self.limit


class RelayThread:
    """Runs a :class:`Relay` in a daemon thread while ``token()`` gives the leader's token (None: not leading).

    ``after``: the relay this one replaces (a reload): the new thread waits for it to end first, in its own
    thread, so two relays never publish the same entries at once and the main loop never waits on a broker.
    """

    def __init__(self, relay: Relay, token: Callable[[], str | None], after: RelayThread | None = None) -> None:
        self.relay, self.token, self.after = relay, token, after
        self._stop = threading.Event()
        self._stepping = threading.Lock()
        """Held through each step (its publish included): :meth:`paused` waits for it."""
        self._thread = threading.Thread(target=self._run, name="celery-relay", daemon=True)
        self._redis = Backoff(log, "relay: beatd's Redis", recovered="relay: beatd's Redis reachable again")

    def start(self) -> RelayThread:
        """Start the thread."""
        self._thread.start()
        return self

    def stop(self, timeout: float = defaults.RELAY_STOP_WAIT.total_seconds()) -> bool:
        """Ask the thread to stop after its current publish and wait at most ``timeout`` seconds; whether it
        ended. On its way out the thread deletes what the broker confirmed (while the lease still holds: stop
        before releasing it) and closes the broker connection; one still publishing does so when its publish
        ends (bounded by the broker timeouts), and a stale token then deletes nothing (published again)."""
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @contextlib.contextmanager
    def paused(self, token: str, timeout: float = defaults.RELAY_STOP_WAIT.total_seconds()) -> Iterator[None]:
        """Hold the relay between two steps while the caller gives up the lease ``token`` (a sharded replica
        handing a shard over): wait at most ``timeout`` seconds for the step being made (its publish) to end,
        delete what the broker confirmed while the lease still holds, and start no step until the block ends
        (by then ``token()`` gives None). Without it the next leader publishes that batch again."""
        held = self._stepping.acquire(timeout=timeout)
        try:
            if held and (self.relay.confirmed or self.relay.dead):
                with contextlib.suppress(StoreError):
                    self.relay.outbox.step(token, self.relay.confirmed, 0, self.relay.dead)
                self.relay.confirmed, self.relay.dead = [], []
            yield
        finally:
            if held:
                self._stepping.release()

    def alive(self) -> bool:
        """Whether the thread is still running."""
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            if self.after is not None:
                self.after._thread.join()
                self.after = None
            self._loop()
        finally:
            self._finish()

    def _loop(self) -> None:
        wait = 0.0
        while not self._stop.wait(wait):
            with self._stepping:
                wait = self._step()

    def _step(self) -> float:
        token = self.token()
        if token is None:
            # Not ours to delete any more: the new leader publishes them again (and counts the depth).
            self.relay.confirmed, self.relay.dead = [], []
            self.relay.metrics.outbox_depth(self.relay.outbox.keys.celery_outbox, None)
            return defaults.RELAY_IDLE.total_seconds()
        try:
            wait = self.relay.step(token)
            self._redis.succeeded()
        except StoreError as error:
            wait = self._redis.failed(error)
        except Exception:  # the relay survives any one bad step, as the loop does
            log.exception("relay step failed; retrying in 1s")
            wait = 1.0
        return wait

    def _finish(self) -> None:
        token = self.token()
        if token is not None and (self.relay.confirmed or self.relay.dead):
            with contextlib.suppress(StoreError):
                self.relay.outbox.step(token, self.relay.confirmed, 0, self.relay.dead)
        self.relay.confirmed, self.relay.dead = [], []
        self.relay.publisher.close()
