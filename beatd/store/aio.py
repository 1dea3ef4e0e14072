"""The few Redis operations the asyncio client makes itself (redis.asyncio): a manual fire's enqueue and the
reads of a wait. Same keys and the same writes as :meth:`Store.enqueue` and :class:`RunStore`'s reads (a job's
keys in its shard)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from beatd.keys import Keys
from beatd.sharding import shard_of
from beatd.store.base import AUDIT_MAXLEN, is_cluster, reachable
from beatd.store.runs import waiting_texts

__all__ = ["AsyncRunStore"]


class AsyncRunStore:
    """A namespace's queues and history over one ``redis.asyncio.Redis`` (see ``store.base.connect_async``)."""

    def __init__(self, client: Any, keys: Keys, shards: Sequence[Keys] = ()) -> None:
        self.client = client
        self.keys = keys
        self.shards: tuple[Keys, ...] = tuple(shards) or (keys,)

    def keys_of(self, job: str) -> Keys:
        """The keys of the shard job ``job`` belongs to."""
        return self.shards[shard_of(job, len(self.shards))] if len(self.shards) > 1 else self.keys

    async def redis_now_ms(self) -> int:
        """Redis's clock now, epoch ms (``TIME``; on a Redis Cluster, of the master holding this shard)."""
        with reachable():
            if is_cluster(self.client):
                await self.client.initialize()  # an asyncio cluster client learns the slot map on first use
                seconds, micros = await self.client.time(target_nodes=self.client.get_node_from_key(self.keys.leader))
            else:
                seconds, micros = await self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def enqueue(self, job: str, queue: str, message: str, signature: str, audit: dict[str, Any]) -> None:
        """Append one message (text, signature) of ``job`` to ``queue`` and its audit record, in one transaction
        (in the job's shard)."""
        keys = self.keys_of(job)
        with reachable():
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xadd(keys.queue(queue), {"message": message, "sig": signature})
                pipe.xadd(keys.audit, {"event": audit["event"], "record": json.dumps(audit)}, maxlen=AUDIT_MAXLEN)
                await pipe.execute()

    async def read_streams(self, after: dict[str, str], count: int, block_ms: int | None) -> list[Any]:
        """XREAD of the streams ``after`` names from the ids given, blocking up to ``block_ms`` (None: not)."""
        with reachable():
            return list(await self.client.xread(after, count=count, block=block_ms) or [])

    async def run_record(self, job: str, run: str) -> str | None:
        """One RunRecord JSON by run id."""
        with reachable():
            value = await self.client.hget(self.keys_of(job).runs(job), run)
        return str(value) if value is not None else None

    async def records_of_fires(self, job: str, fire_ids: Sequence[str], since_ms: int) -> dict[str, list[str]]:
        """As :meth:`RunStore.records_of_fires` with ``since_ms``."""
        wanted, keys = set(fire_ids), self.keys_of(job)
        with reachable():
            ids = await self.client.zrangebyscore(keys.runs_by_time(job), since_ms, "+inf")
            ids = [str(run) for run in ids if str(run).rsplit("#", 1)[0] in wanted]
            texts = await self.client.hmget(keys.runs(job), ids) if ids else []
        found: dict[str, list[str]] = {}
        for run, text in zip(ids, texts, strict=True):
            if text:
                found.setdefault(run.rsplit("#", 1)[0], []).append(str(text))
        return found

    async def waiting_messages(self, queue: str, job: str) -> list[str]:
        """As :meth:`RunStore.waiting_messages`."""
        keys = self.keys_of(job)
        with reachable():
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xrange(keys.queue(queue))
                pipe.zrange(keys.retry(queue), 0, -1)
                pipe.hget(keys.buffer(job), "message")
                entries, retries, held = await pipe.execute()
        return waiting_texts(entries, retries, held)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()
