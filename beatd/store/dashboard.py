"""What the web dashboard reads besides history: run counts per time bucket, failing jobs, the newest records
of many jobs at once. Written by ``lua/finish.lua`` (``tally``); read here in one round trip each, over every
shard (counts summed, a job's records read in its shard)."""

from __future__ import annotations

from collections.abc import Sequence

import redis

from beatd.keys import Keys
from beatd.sharding import shard_of
from beatd.store.base import reachable

__all__ = ["DashboardStore"]


class DashboardStore:
    """Reads for ``beatd.client.dashboard``; every call one pipelined round trip (or one command)."""

    def __init__(self, client: redis.Redis, keys: Keys, shards: Sequence[Keys] = ()) -> None:
        self.client = client
        self.keys = keys
        self.shards: tuple[Keys, ...] = tuple(shards) or (keys,)
        """Every shard's keys, shard 0 first (default: ``keys`` alone)."""

    def _keys_of(self, job: str) -> Keys:
        return self.shards[shard_of(job, len(self.shards))] if len(self.shards) > 1 else self.keys

    def tallies(self, buckets: Sequence[int]) -> list[dict[str, int]]:
        """Status -> runs ended, of each bucket in ``buckets`` (bucket starts, epoch ms), summed over the shards;
        empty for a gone one."""
        with reachable():
            pipe = self.client.pipeline(transaction=False)
            for bucket in buckets:
                for keys in self.shards:
                    pipe.hgetall(keys.tally(bucket))
            replies = iter(pipe.execute())
        counts: list[dict[str, int]] = []
        for _ in buckets:
            summed: dict[str, int] = {}
            for _ in self.shards:
                for status, count in next(replies).items():
                    summed[str(status)] = summed.get(str(status), 0) + int(count)
            counts.append(summed)
        return counts

    def failing(self) -> dict[str, str]:
        """Job -> fire id of its last fire, for each job whose last ended fire ended ``dead`` (every shard)."""
        with reachable():
            pipe = self.client.pipeline(transaction=False)
            for keys in self.shards:
                pipe.hgetall(keys.failing)
            replies = pipe.execute()
        return {str(job): str(fire) for reply in replies for job, fire in reply.items()}

    def newest_records(self, jobs: Sequence[str], count: int) -> dict[str, list[str]]:
        """Job -> its newest ``count`` RunRecord JSON (newest scheduled instant first), for each of ``jobs``, in
        two pipelined round trips whatever the number of jobs."""
        if not jobs:
            return {}
        with reachable():
            pipe = self.client.pipeline(transaction=False)
            for job in jobs:
                pipe.zrevrange(self._keys_of(job).runs_by_time(job), 0, count - 1)
            ids = pipe.execute()
            pipe = self.client.pipeline(transaction=False)
            for job, runs in zip(jobs, ids, strict=True):
                if runs:
                    pipe.hmget(self._keys_of(job).runs(job), runs)
            texts = iter(pipe.execute())
        return {
            job: [str(text) for text in next(texts) if text] if runs else []
            for job, runs in zip(jobs, ids, strict=True)
        }
