"""The leader lease: acquire, renew well before expiry, release on shutdown.

Correctness does not rest on this module's view of time: every write of the leader is fenced in Lua by the
token. This module only decides when to ask Redis, and stops claiming leadership locally once the lease
may have lapsed (after a failed renewal), so a partitioned leader stops trying to emit by itself. Each call
also samples Redis's clock into a :class:`~beatd.redis_clock.RedisClock`, timed on the monotonic clock.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from beatd.redis_clock import RedisClock
from beatd.store import Store, StoreError

__all__ = ["Leadership", "holder_of"]

log = logging.getLogger("beatd.leader")

RENEW_FRACTION = 1 / 3
"""Renew after this fraction of the lease: two renewals may fail before the lease lapses."""

POLL_INTERVAL = 0.25
"""How often (s) a standby asks whether the lease is free, at most; bounds takeover after a release."""


class Leadership:
    """One replica's view of the lease. Call :meth:`step` from the beat loop."""

    def __init__(
        self,
        store: Store,
        replica: str,
        lease: timedelta,
        leader_record: Callable[[], dict[str, Any]],
        redis_clock: RedisClock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        label: str = "",
    ) -> None:
        self.store = store
        self.label = label
        """What the log lines add after "lease" / "leader" (a sharded replica's " of shard 3"; '' unsharded)."""
        self.replica = replica
        self.lease_seconds = lease.total_seconds()
        self.leader_record = leader_record
        self.redis_clock = redis_clock or RedisClock()
        self._monotonic = monotonic
        self.token: str | None = None
        self.valid_until = 0.0
        self.next_action = 0.0
        self.changes = 0
        self.others: Sequence[Leadership] = ()
        """The other leases this process holds (a sharded replica's other shards, stepped by the same loop):
        :meth:`keep` renews those due too, so one shard's long piece of work does not let them lapse."""

    @property
    def lease_ms(self) -> int:
        """The lease TTL in milliseconds."""
        return max(1, int(self.lease_seconds * 1000))

    def is_leader(self, monotonic: float) -> bool:
        """True while this replica holds a lease that cannot have lapsed yet."""
        return self.token is not None and monotonic < self.valid_until

    def step(self, monotonic: float, *, contend: bool = True) -> bool:
        """Renew or try to acquire when due (acquire only with ``contend``); return whether this replica leads now.

        Raises StoreError when Redis cannot be reached or refuses (after scheduling the next attempt and, once
        the lease may have lapsed, standing down).
        """
        if self.token is not None and monotonic >= self.valid_until:
            log.warning("lease%s lapsed without renewal; standing down", self.label)
            self.token = None
        if monotonic >= self.next_action:
            if self.token is None:
                if contend:
                    self._try_acquire(monotonic)
            else:
                self._renew(monotonic)
        if self.token is not None and monotonic >= self.valid_until:
            log.warning("lease%s lapsed without renewal; standing down", self.label)
            self.token = None
        return self.is_leader(monotonic)

    def keep(self) -> bool:
        """Renew now if a renewal is due, and say whether this replica still leads: a long piece of leader work
        (a burst of 100,000 fires, the start of as many new jobs) calls this between its batches, so the lease
        keeps its renewal schedule however long one tick takes (:meth:`step` runs only between ticks).

        Raises StoreError as :meth:`step` does."""
        monotonic = self._monotonic()
        for other in self.others:
            with contextlib.suppress(StoreError):  # its own step meets the outage (backoff, standing down)
                other._keep(monotonic)
        self._keep(monotonic)
        return self.is_leader(monotonic)

    def _keep(self, monotonic: float) -> None:
        if self.token is not None and self.next_action <= monotonic < self.valid_until:
            self._renew(monotonic)

    def set_lease(self, lease: timedelta) -> None:
        """Use a new lease TTL (a reload); a leader renews with it at once."""
        if lease.total_seconds() != self.lease_seconds:
            self.lease_seconds = lease.total_seconds()
            self.next_action = 0.0

    def seconds_until_action(self, monotonic: float) -> float:
        """How long the loop may sleep before this module needs to run again."""
        return max(0.0, self.next_action - monotonic)

    def lost(self) -> None:
        """The fenced write said the token is stale: stop leading now."""
        if self.token is not None:
            log.warning("lease%s lost (token %s is stale); standing down", self.label, self.token)
        self.token = None
        self.next_action = 0.0

    def release(self) -> None:
        """Give the lease up at once (shutdown), so a standby takes over within a poll interval."""
        if self.token is None:
            return
        try:
            self.store.release(self.token)
            log.info("lease%s released", self.label)
        except StoreError as error:
            log.warning("could not release the lease%s: %s", self.label, error)
        self.token = None

    def _try_acquire(self, monotonic: float) -> None:
        sent = self._monotonic()
        try:
            token, redis_seconds = self.store.acquire(self.replica, self.lease_ms, self.leader_record())
        except StoreError:
            self.next_action = monotonic + min(self.lease_seconds, 1.0)
            raise
        self.redis_clock.observe(redis_seconds, sent, self._monotonic())
        if token is None:
            self.next_action = monotonic + min(POLL_INTERVAL, self.lease_seconds / 4)
            return
        self.token = token
        self.changes += 1
        self.valid_until = monotonic + self.lease_seconds
        self.next_action = monotonic + self.lease_seconds * RENEW_FRACTION
        log.info("became leader%s (token %s)", self.label, token)

    def _renew(self, monotonic: float) -> None:
        assert self.token is not None
        sent = self._monotonic()
        try:
            renewed, redis_seconds = self.store.renew(self.token, self.lease_ms)
        except StoreError:
            self.next_action = monotonic + min(0.5, self.lease_seconds / 10)
            raise
        self.redis_clock.observe(redis_seconds, sent, self._monotonic())
        if not renewed:
            self.lost()
            return
        self.valid_until = monotonic + self.lease_seconds
        self.next_action = monotonic + self.lease_seconds * RENEW_FRACTION


def holder_of(token: str) -> str:
    """The replica id in a fencing token ``"{epoch}:{replica}"``."""
    return token.partition(":")[2]
