"""What the web dashboard reads besides history: run counts per time bucket, failing jobs, the newest records
of many jobs at once. Written by ``lua/finish.lua`` (``tally``); read here in one round trip each."""

from __future__ import annotations

from collections.abc import Sequence

import redis

from beatd.keys import Keys
from beatd.store.base import reachable

__all__ = ["DashboardStore"]


class DashboardStore:
    """Reads for ``beatd.client.dashboard``; every call one pipelined round trip (or one command)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def tallies(self, buckets: Sequence[int]) -> list[dict[str, int]]:
        """Status -> runs ended, of each bucket in ``buckets`` (bucket starts, epoch ms); empty for a gone one."""
        with reachable():
            pipe = self.client.pipeline(transaction=False)
            for bucket in buckets:
                pipe.hgetall(self.keys.tally(bucket))
            replies = pipe.execute()
        return [{str(status): int(count) for status, count in reply.items()} for reply in replies]

    def failing(self) -> dict[str, str]:
        """Job -> fire id of its last fire, for each job whose last ended fire ended ``dead``."""
        with reachable():
            return {str(job): str(fire) for job, fire in self.client.hgetall(self.keys.failing).items()}

    def newest_records(self, jobs: Sequence[str], count: int) -> dict[str, list[str]]:
        """Job -> its newest ``count`` RunRecord JSON (newest scheduled instant first), for each of ``jobs``, in
        two pipelined round trips whatever the number of jobs."""
        if not jobs:
            return {}
        with reachable():
            pipe = self.client.pipeline(transaction=False)
            for job in jobs:
                pipe.zrevrange(self.keys.runs_by_time(job), 0, count - 1)
            ids = pipe.execute()
            pipe = self.client.pipeline(transaction=False)
            for job, runs in zip(jobs, ids, strict=True):
                if runs:
                    pipe.hmget(self.keys.runs(job), runs)
            texts = iter(pipe.execute())
        return {
            job: [str(text) for text in next(texts) if text] if runs else []
            for job, runs in zip(jobs, ids, strict=True)
        }
