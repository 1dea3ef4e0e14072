"""A beat replica of a sharded deployment (``shards: N > 1``): one :class:`~beatd.beat.Beat` per shard, each
holding only its shard's jobs, keys and lease, all stepped by one loop (docs/sharding.md section 4).

Every :data:`PLAN_INTERVAL` the replica reads every shard's lease holder and the other replicas' heartbeats
(in shard 0's slot; each lists the shards its replica leads and wants), and :func:`beatd.shard_leases.plan_leases`
says which free shards this replica contends for, which it hands over to their target, and what it wants. Each
shard's Beat then steps as an unsharded beat would: renews its lease, emits its due fires fenced by its own
token, syncs when it becomes leader. Every guarantee (fencing, exactly once, catch-up, missed records) holds per
shard because every write of shard ``s`` is checked against ``{ns:s}:leader`` in the same script.

Shard 0's Beat publishes the replica's heartbeat (with ``shards``, ``wants``, ``ready``) and its upkeep prunes
the deployment-wide heartbeats; every shard's upkeep keeps its own keys.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from beatd import defaults
from beatd.beat import Beat
from beatd.config import Config
from beatd.config.compact import CompactJob, JobSpecs
from beatd.leader import holder_of
from beatd.metrics import Health, Metrics
from beatd.reload import Reload
from beatd.shard_leases import plan_leases
from beatd.sharding import shard_of
from beatd.store import StoreError
from beatd.store.beat import read_leases
from beatd.upkeep import BacklogGauges

__all__ = ["PLAN_INTERVAL", "ShardedBeat", "shard_views"]

log = logging.getLogger("beatd.beat")

PLAN_INTERVAL = 0.25
"""How often (s) a replica reads the shard leases and heartbeats and plans which leases to take or give up:
a hand-over leaves a shard free for about this long."""

FRESH_FOR = 2.5 * defaults.HEARTBEAT_INTERVAL.total_seconds()
"""A peer counts as live while its heartbeat changed within this many seconds of this replica's monotonic
clock (it rewrites it every ``HEARTBEAT_INTERVAL``)."""


def shard_views(config: Config) -> list[Config]:
    """``config`` once per shard, each holding only that shard's jobs (:func:`beatd.sharding.shard_of`): what
    that shard's Beat schedules. Each keeps the whole config's digest (replicas and the audit compare it)."""
    split: list[dict[str, CompactJob]] = [{} for _ in range(config.shards)]
    for name, job in config.compact.items():
        split[shard_of(name, config.shards)][name] = job
    views = []
    for compact in split:
        view = dataclasses.replace(config, jobs=JobSpecs(compact))
        view.__dict__["compact"] = compact  # the cached properties, set rather than worked out again
        view.__dict__["digest"] = config.digest
        views.append(view)
    return views


class ShardedBeat:
    """One replica leading a fair share of the shards: :meth:`tick` plans the leases, then steps every shard's
    Beat (``beats[s]`` is shard ``s``'s)."""

    def __init__(self, beats: Sequence[Beat], metrics: Metrics, health: Health) -> None:
        self.beats = list(beats)
        self.metrics, self.health = metrics, health
        self.home = self.beats[0]
        """Shard 0's beat: it publishes the heartbeat and runs the deployment-wide upkeep."""
        self.replica = self.home.replica.id
        self.shards = len(self.beats)
        self.led: frozenset[int] = frozenset()
        self.wants: frozenset[int] = frozenset()
        self.unled_since: dict[int, float] = {}
        self.seen: dict[str, tuple[Any, float | None]] = {}
        """Replica id -> its heartbeat as last read and when (monotonic) it last changed (None: not since it
        was first read)."""
        self.next_plan = 0.0
        gauges = BacklogGauges(metrics)
        for beat in self.beats:
            beat.contend = False
            beat.upkeep.gauges = gauges
            # one shard's long work (a burst, a sync of many jobs) renews the others' leases as it goes
            beat.leadership.others = [other.leadership for other in self.beats if other is not beat]
        self.home.describe_extra = self._describe

    @property
    def ready(self) -> bool:
        """Config loaded, every shard's runtime jobs read, Redis answering: only then does it take shards."""
        return all(beat.runtime_read and beat.unavailable_since is None for beat in self.beats)

    def tick(self, now: datetime, monotonic: float) -> float:
        """Plan the leases when due, step every shard's beat; the seconds the loop may sleep."""
        if monotonic >= self.next_plan:
            self.next_plan = monotonic + PLAN_INTERVAL
            with contextlib.suppress(StoreError):  # each shard's beat meets an outage in its own step
                self._plan(monotonic)
        wait = PLAN_INTERVAL
        for beat in self.beats:
            wait = min(wait, beat.tick(now, monotonic))
        led = frozenset(shard for shard, beat in enumerate(self.beats) if beat.leadership.is_leader(monotonic))
        if led != self.led:
            log.info("leading shards %s", _shards_text(led) or "none")
            self.led = led
            self.home.heartbeat_soon()
        self.metrics.leader.set(1 if led else 0)
        redis_ok = all(beat.unavailable_since is None for beat in self.beats)
        self.health.step(redis_ok=redis_ok, role="leader" if led else "standby")
        return max(0.0, min(wait, self.next_plan - monotonic))

    def _plan(self, monotonic: float) -> None:
        holders: dict[int, str | None] = {}
        for shard, lease in enumerate(
            read_leases(self.home.store.client, [beat.store.keys.leader for beat in self.beats])
        ):
            holders[shard] = holder_of(lease[0]) if lease is not None else None
            if lease is None:
                self.unled_since.setdefault(shard, monotonic)
            else:
                self.unled_since.pop(shard, None)
        peers = self._peers(self.home.store.replicas(), monotonic)
        if not self.ready:
            self._contend(frozenset(), frozenset())
            return
        unled_for = {shard: monotonic - since for shard, since in self.unled_since.items()}
        lease_seconds = self.home.leadership.lease_seconds
        plan = plan_leases(self.replica, peers, self.shards, holders, unled_for, lease_seconds)
        for shard in sorted(plan.release):
            target = next((peer for peer, wanted in peers.items() if shard in wanted), "?")
            log.info("handing shard %d over to %s", shard, target)
            self.beats[shard].resign()
        self._contend(plan.acquire, plan.wants)

    def _contend(self, acquire: frozenset[int], wants: frozenset[int]) -> None:
        for shard, beat in enumerate(self.beats):
            beat.contend = shard in acquire
        if wants != self.wants:
            self.wants = wants
            self.home.heartbeat_soon()

    def _peers(self, heartbeats: Mapping[str, Any], monotonic: float) -> dict[str, frozenset[int]]:
        """The other live, ready replicas of this layout -> the shards each wants. A heartbeat is fresh while
        it keeps changing (judged on this replica's monotonic clock, never by the time written in it); one read
        for the first time counts only once it has changed."""
        peers: dict[str, frozenset[int]] = {}
        seen: dict[str, tuple[Any, float | None]] = {}
        for replica, record in heartbeats.items():
            before = self.seen.get(replica)
            # None: not seen changing yet (a dead replica's heartbeat stays in the hash until pruned)
            changed = None if before is None else monotonic if before[0] != record else before[1]
            seen[replica] = (record, changed)
            if replica == self.replica or changed is None or monotonic - changed > FRESH_FOR:
                continue
            if not isinstance(record, dict) or record.get("shard_count") != self.shards or not record.get("ready"):
                continue
            wants = record.get("wants")
            peers[replica] = (
                frozenset(int(shard) for shard in wants if isinstance(shard, int))
                if isinstance(wants, list)
                else frozenset()
            )
        self.seen = seen
        return peers

    def _describe(self) -> dict[str, object]:
        return {
            "role": "leader" if self.led else "standby",
            "shard_count": self.shards,
            "shards": sorted(self.led),
            "wants": sorted(self.wants),
            "ready": self.ready,
            "jobs": sum(len(beat.jobs) for beat in self.beats),
        }

    # -- what the daemon asks of it ------------------------------------------------------------------------
    def status(self, monotonic: float) -> str:
        """The sd_notify STATUS line."""
        led = sorted(shard for shard, beat in enumerate(self.beats) if beat.leadership.is_leader(monotonic))
        jobs = sum(len(self.beats[shard].jobs) for shard in led)
        text = f"leader of shards {_shards_text(frozenset(led))} of {self.shards}, {jobs} jobs" if led else "standby"
        if self.home.config_error:
            text += ", config reload failed"
        return text

    def apply_config(self, config: Config, now: datetime, monotonic: float) -> Reload:
        """Switch every shard's beat to its part of ``config`` (same ``shards``: the caller checked)."""
        done = [
            beat.apply_config(view, now, monotonic) for beat, view in zip(self.beats, shard_views(config), strict=True)
        ]
        return Reload([line for reload in done for line in reload.jobs], done[0].settings)

    def report_config_error(self, error: str | None) -> None:
        """The outcome of the last reload, for every shard's beat (shard 0's heartbeat publishes it)."""
        for beat in self.beats:
            beat.report_config_error(error)

    def shutdown(self) -> None:
        """Release every lease (shard 0's last: it withdraws the heartbeat)."""
        for beat in reversed(self.beats):
            beat.shutdown()


def _shards_text(shards: frozenset[int]) -> str:
    return ",".join(str(shard) for shard in sorted(shards))
