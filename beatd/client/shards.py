"""The client's view of a deployment's shards (docs/sharding.md section 6): one :class:`~beatd.store.Store` per
shard over one connection, what belongs to one job read and written in its shard, and the deployment-wide
reads (audit, paused jobs, queue lengths and backlogs) merged over every shard.

With one shard (the default) every read is the one read of shard 0 it was before sharding."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

from beatd.config import Config
from beatd.sharding import shard_of
from beatd.store import Store
from beatd.store.base import entry_order
from beatd.store.upkeep import Backlog

__all__ = ["ShardStores"]


class ShardStores:
    """The Store of each shard of ``config``'s deployment, sharing ``home``'s connection (``home``: shard 0's);
    built when first used."""

    def __init__(self, home: Store, config: Config) -> None:
        self.home = home
        self.count = config.shards
        self._config = config
        self._stores: dict[int, Store] = {0: home}

    def shard(self, shard: int) -> Store:
        """The Store of shard ``shard``."""
        if shard not in self._stores:
            self._stores[shard] = Store(self.home.client, self._config.keys(shard))
        return self._stores[shard]

    def of(self, job: str) -> Store:
        """The Store of the shard job ``job`` belongs to (its progress, pause, queues, records, backfill lock)."""
        return self.shard(shard_of(job, self.count)) if self.count > 1 else self.home

    def every(self) -> list[Store]:
        """Every shard's Store, shard 0 first."""
        return [self.shard(shard) for shard in range(self.count)]

    def read_audit(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` audit records of every shard, newest first (merged by entry id), each with its
        stream ``id`` (and, with several shards, its ``shard``)."""
        if self.count == 1:
            return self.home.read_audit(limit)
        streams = [
            [{**record, "shard": shard} for record in store.read_audit(limit)]
            for shard, store in enumerate(self.every())
        ]
        merged = heapq.merge(*streams, key=lambda record: (entry_order(record["id"]), record["shard"]), reverse=True)
        return list(merged)[:limit]

    def paused(self) -> dict[str, dict[str, Any]]:
        """Paused jobs of every shard and their pause records (see :meth:`Store.paused`)."""
        if self.count == 1:
            return self.home.paused()
        return {job: record for store in self.every() for job, record in store.paused().items()}

    def progress(self, jobs: Sequence[str]) -> dict[str, int]:
        """Last passed scheduled instant (epoch ms) of each of ``jobs`` that has one, read in its shard."""
        if self.count == 1:
            return self.home.progress(jobs)
        found: dict[str, int] = {}
        for shard, names in self._by_shard(jobs).items():
            found.update(self.shard(shard).progress(names))
        return found

    def queue_lengths(self, queues: Sequence[str]) -> dict[str, int]:
        """Entries in each queue, summed over the shards."""
        lengths = dict.fromkeys(queues, 0)
        for store in self.every():
            for queue, length in store.queue_lengths(queues).items():
                lengths[queue] += length
        return lengths

    def backlogs(self, queues: Sequence[str]) -> dict[str, Backlog]:
        """Each queue's entries not yet delivered, summed over the shards, with the oldest of them all."""
        if self.count == 1:
            return self.home.upkeep.backlogs(queues)
        every = [store.upkeep.backlogs(queues) for store in self.every()]
        merged = {}
        for queue in queues:
            parts = [backlogs[queue] for backlogs in every]
            oldest = min((part for part in parts if part.oldest_id), key=lambda part: entry_order(part.oldest_id),
                         default=Backlog(0))  # fmt: skip
            merged[queue] = Backlog(sum(part.waiting for part in parts), oldest.oldest_id, oldest.entries)
        return merged

    def _by_shard(self, jobs: Sequence[str]) -> dict[int, list[str]]:
        groups: dict[int, list[str]] = {}
        for job in jobs:
            groups.setdefault(shard_of(job, self.count), []).append(job)
        return groups
