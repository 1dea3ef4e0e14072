"""Upkeep: what keeps every key beatd writes within a bound, and what is done about fires nobody runs.

The pure rules come first (no Redis, no clock of their own: instants and monotonic seconds are passed in, so
each is table-tested): which heartbeats are stale, which
waiting fires have expired, which queues ``beatd status`` warns about. :class:`Upkeep` is the leader's step
over them, run every ``UPKEEP_INTERVAL`` with a bounded amount of work, each write fenced by the lease.

Heartbeats are judged stale by the leader's own monotonic clock (the same value seen unchanged for
``HEARTBEAT_FORGET_AFTER``), never by the instant a process wrote into it: a host whose clock is wrong cannot
have a live heartbeat deleted, nor keep a dead one.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from beatd import defaults
from beatd.alert_rules import wants_event
from beatd.config.compact import JobView
from beatd.durations import format_duration
from beatd.expiry import expired_record, start_deadline
from beatd.messages import Message, MessageError, to_ms
from beatd.metrics import Metrics
from beatd.store.upkeep import Backlog, ExpiredFire, UpkeepStore

__all__ = [
    "BacklogGauges",
    "HeartbeatWatch",
    "Upkeep",
    "backlog_warnings",
    "expired_fires",
]

log = logging.getLogger("beatd.beat")

HEARTBEAT_SCAN = 1000
"""Most heartbeats read per hash in one upkeep step (HSCAN COUNT)."""

WAITING_SCAN = 500
"""Most waiting entries of one queue looked at for expiry in one upkeep step (the oldest ones)."""

HISTORY_SCAN = 200
"""Jobs whose history retention one upkeep step applies (round robin over the config's jobs)."""


# -- pure rules -------------------------------------------------------------------------------------------
@dataclass
class _Seen:
    digest: str
    since: float
    last: float


@dataclass
class HeartbeatWatch:
    """Which members of one heartbeat hash are stale: seen with the same value for ``forget_after`` seconds of
    the caller's monotonic clock. A live process rewrites its heartbeat every second, so its value changes."""

    forget_after: float
    seen: dict[str, _Seen] = field(default_factory=dict)

    def observe(self, values: Mapping[str, str], monotonic: float) -> dict[str, str]:
        """Take in the values read now (all members or a slice of them); return the stale ones as member ->
        digest of the value that must still be there for it to be deleted."""
        stale = {}
        for member, value in values.items():
            digest = hashlib.sha1(value.encode(), usedforsecurity=False).hexdigest()
            known = self.seen.get(member)
            if known is None or known.digest != digest:
                self.seen[member] = _Seen(digest, monotonic, monotonic)
                continue
            known.last = monotonic
            if monotonic - known.since >= self.forget_after:
                stale[member] = digest
        # Members not read for a long time (deleted by their process, or by us) are forgotten here too.
        horizon = monotonic - 3 * self.forget_after
        self.seen = {member: seen for member, seen in self.seen.items() if seen.last >= horizon}
        return stale

    def forget(self, members: Sequence[str]) -> None:
        """Members that were deleted."""
        for member in members:
            self.seen.pop(member, None)


def expired_fires(
    waiting: Sequence[tuple[str, str]], jobs: Mapping[str, JobView], now: datetime, queue: str
) -> list[ExpiredFire]:
    """Of the waiting entries of ``queue`` ((entry id, message JSON), oldest first), those whose fire is past its
    job's start deadline, each with its ``expired`` record. Entries of jobs ``jobs`` lacks, of jobs without
    ``expires``, and unreadable ones stay (a worker dead-letters those): nothing is dropped unrecorded."""
    expired = []
    for entry_id, text in waiting:
        try:
            message = Message.from_json(text)
        except MessageError:
            continue
        spec = jobs.get(message.job)
        if spec is None:
            continue
        try:
            deadline = start_deadline(spec.expires, message)
        except ValueError:  # an emitted_at that is not an instant: left for a worker to dead-letter
            continue
        if deadline is None or now <= deadline:
            continue
        record = expired_record(spec, message, queue, now)
        expired.append(ExpiredFire(
            spec.name, message.fire_id, entry_id, record.to_json(), to_ms(now), spec.history.keep,
            to_ms(now - spec.history.max_age),
        ))  # fmt: skip
    return expired


def backlog_warnings(
    backlogs: Mapping[str, Backlog], consumers: Mapping[str, int], now: datetime, warn_after: timedelta
) -> list[str]:
    """The sentences ``beatd status`` warns with: a queue with waiting fires and no live worker consuming it,
    and a queue whose oldest waiting fire has waited longer than ``warn_after``."""
    warnings = []
    for queue, backlog in sorted(backlogs.items()):
        if backlog.waiting == 0:
            continue
        age = backlog.oldest_age(now)
        waited = f"the oldest has waited {format_duration(timedelta(seconds=round(age)))}"
        if consumers.get(queue, 0) == 0:
            warnings.append(f"queue {queue}: {backlog.waiting} fires waiting and no live worker consumes it ({waited})")
        elif age > warn_after.total_seconds():
            warnings.append(f"queue {queue}: {backlog.waiting} fires waiting, {waited}: workers are not keeping up")
    return warnings


# -- the leader's step ------------------------------------------------------------------------------------
class BacklogGauges:
    """The backlog gauges of a sharded replica: per queue, the fires waiting summed over the shards it leads,
    and the oldest one's age (the largest). Each shard's upkeep publishes its own backlogs; a shard handed over
    withdraws its share. Summed over the replicas (each shard has one leader), the deployment's backlog."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.by_shard: dict[int | None, dict[str, tuple[int, float]]] = {}

    def publish(self, shard: int | None, backlogs: Mapping[str, tuple[int, float]]) -> None:
        """Shard ``shard``'s backlogs now: queue -> (waiting, oldest age in seconds)."""
        before = self._queues()
        self.by_shard[shard] = dict(backlogs)
        self._refresh(before)

    def withdraw(self, shard: int | None) -> None:
        """Shard ``shard`` is no longer led here."""
        before = self._queues()
        if self.by_shard.pop(shard, None) is not None:
            self._refresh(before)

    def _queues(self) -> set[str]:
        return {queue for backlogs in self.by_shard.values() for queue in backlogs}

    def _refresh(self, before: set[str]) -> None:
        totals: dict[str, tuple[int, float]] = {}
        for backlogs in self.by_shard.values():
            for queue, (waiting, age) in backlogs.items():
                total, oldest = totals.get(queue, (0, 0.0))
                totals[queue] = (total + waiting, max(oldest, age))
        for queue in before - set(totals):
            self.metrics.queue_waiting.remove(queue)
            self.metrics.queue_oldest_age.remove(queue)
        for queue, (waiting, age) in totals.items():
            self.metrics.queue_waiting.labels(queue).set(waiting)
            self.metrics.queue_oldest_age.labels(queue).set(age)


class Upkeep:
    """The leader's upkeep: prune stale heartbeats and idle consumers, expire waiting fires past their deadline,
    publish backlogs."""

    def __init__(
        self, store: UpkeepStore, metrics: Metrics, *, heartbeats: bool = True, shard: int | None = None
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.shard = shard
        """The shard whose keys this upkeep keeps (None: the one shard of an unsharded deployment)."""
        forget_after = defaults.HEARTBEAT_FORGET_AFTER.total_seconds()
        # The heartbeats are deployment-wide keys in shard 0's slot: only shard 0's leader prunes them.
        watched = (store.keys.replicas, store.keys.workers) if heartbeats else ()
        self.watches = {key: HeartbeatWatch(forget_after) for key in watched}
        self.cursors = dict.fromkeys(self.watches, 0)
        self.history_at = 0
        self.pages: dict[str, str] = {}
        self.gauged: set[str] = set()
        """Queues whose backlog gauges this process publishes."""
        self.gauges: BacklogGauges | None = None
        """A sharded replica's gauges, shared by the upkeeps of the shards it leads (None: set here)."""
        self.next_at = 0.0

    def stand_down(self) -> None:
        """Not leading (any more): withdraw the backlog gauges, which only the leader keeps fresh."""
        if self.gauges is not None:
            self.gauges.withdraw(self.shard)
        else:
            self._withdraw(self.gauged)
        self.pages.clear()

    def _withdraw(self, queues: set[str]) -> None:
        for queue in queues:
            self.metrics.queue_waiting.remove(queue)
            self.metrics.queue_oldest_age.remove(queue)
        self.gauged -= queues

    def due(self, monotonic: float) -> bool:
        """Whether a step is due."""
        return monotonic >= self.next_at

    def step(self, token: str, jobs: Mapping[str, JobView], now: datetime, monotonic: float) -> None:
        """One bounded step as the holder of ``token``, at ``now`` (Redis's clock) and ``monotonic``."""
        self.next_at = monotonic + defaults.UPKEEP_INTERVAL.total_seconds()
        for key, watch in self.watches.items():
            self.cursors[key], values = self.store.scan_heartbeats(key, self.cursors[key], HEARTBEAT_SCAN)
            stale = watch.observe(values, monotonic)
            if stale:
                deleted = self.store.forget_heartbeats(token, key, stale)
                watch.forget(list(stale))
                log.info("forgot %d heartbeats of %s unchanged for %s", deleted, key, defaults.HEARTBEAT_FORGET_AFTER)
        self._prune_history(token, jobs, now)
        queues = sorted({spec.queue for spec in jobs.values() if spec.celery is None})
        forget_ms = int(defaults.HEARTBEAT_FORGET_AFTER.total_seconds() * 1000)
        gone = self.store.forget_consumers(token, queues, forget_ms)
        if gone:
            log.info("deleted %d idle consumers with nothing pending from the queues' groups", gone)
        shard_backlogs: dict[str, tuple[int, float]] = {}
        for queue in queues:
            # Page through a long backlog, WAITING_SCAN entries a step, so fires behind ones that never expire
            # are reached too; back to the oldest once a page comes back short.
            backlog = self.store.backlog(queue, WAITING_SCAN, self.pages.get(queue, ""))
            full = len(backlog.entries) == WAITING_SCAN
            self.pages[queue] = backlog.entries[-1][0] if full else ""
            expired = expired_fires(backlog.entries, jobs, now, queue)
            if expired:
                alerting = frozenset(fire.job for fire in expired if wants_event(jobs[fire.job].alert_rules, "expired"))
                done = self.store.expire(token, queue, expired, alerting)
                for fire in done:
                    self.metrics.runs.labels(self.metrics.job(fire.job), "expired").inc()
                if done:
                    log.warning(
                        "%d fires of queue %s expired unstarted (no worker took them in time)", len(done), queue
                    )
                    backlog = self.store.backlog(queue, 1)
            if self.gauges is not None:
                shard_backlogs[queue] = (backlog.waiting, backlog.oldest_age(now) if backlog.waiting else 0.0)
                continue
            self.metrics.queue_waiting.labels(queue).set(backlog.waiting)
            self.metrics.queue_oldest_age.labels(queue).set(backlog.oldest_age(now) if backlog.waiting else 0.0)
        if self.gauges is not None:
            self.gauges.publish(self.shard, shard_backlogs)
            return
        self._withdraw(self.gauged - set(queues))  # queues no longer configured
        self.gauged = set(queues)

    def _prune_history(self, token: str, jobs: Mapping[str, JobView], now: datetime) -> None:
        """Apply the retention of the next HISTORY_SCAN jobs: records written without a prune (a claim's
        ``running`` record, a dead letter's ``lost`` one) and jobs that stopped running stay within it too."""
        names = sorted(jobs)
        if not names:
            return
        start = self.history_at % len(names)
        chosen = (names[start:] + names[:start])[:HISTORY_SCAN]
        self.history_at = start + len(chosen)
        retention = {name: (jobs[name].history.keep, to_ms(now - jobs[name].history.max_age)) for name in chosen}
        self.store.prune_history(token, retention)
