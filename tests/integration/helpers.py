"""Reading what the beat wrote, for assertions."""

from __future__ import annotations

import itertools
import json
import textwrap
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from beatd.keys import Keys
from beatd.messages import parse_utc
from beatd.sharding import shard_of
from tests.redis_server import RedisServer


def write_config(path: Path, server: RedisServer, namespace: str, jobs: str, lease: str = "1s") -> Path:
    """Write a beat config for ``server`` and ``namespace`` with the given ``jobs:`` body (YAML, dedented)."""
    body = textwrap.indent(textwrap.dedent(jobs).strip("\n"), "  ")
    path.write_text(
        f"redis: {{url: '{server.url}'}}\nnamespace: {namespace}\nleader: {{lease: {lease}}}\n"
        f"pythonpath: [{Path(__file__).resolve().parents[2]}]\njobs:\n{body}\n"
    )
    return path


def messages(client: redis.Redis, namespace: str, queue: str = "default") -> list[dict[str, Any]]:
    """Every message in a queue stream, oldest first, with the stream entry id as ``_id``."""
    entries = client.xrange(Keys(namespace).queue(queue))
    return [{"_id": entry_id, **json.loads(fields["message"])} for entry_id, fields in entries]


def scheduled(items: list[dict[str, Any]], job: str) -> list[datetime]:
    """Scheduled instants of ``job``'s messages, in stream order."""
    return [parse_utc(item["scheduled_at"]) for item in items if item["job"] == job]


def assert_contiguous(instants: list[datetime], period_seconds: float) -> None:
    """No duplicate and no gap: consecutive instants are exactly one period apart."""
    assert len(instants) == len(set(instants)), f"duplicated fires: {instants}"
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(instants)]
    assert all(abs(gap - period_seconds) < 1e-6 for gap in gaps), f"gaps {gaps} in {instants}"


def leader_token(client: redis.Redis, namespace: str) -> str | None:
    """The current fencing token, or None."""
    value = client.get(Keys(namespace).leader)
    return str(value) if value else None


def runs(client: redis.Redis, namespace: str, job: str) -> list[dict[str, Any]]:
    """Run records of ``job``, oldest scheduled instant first."""
    keys = Keys(namespace)
    ids = client.zrange(keys.runs_by_time(job), 0, -1)
    return [json.loads(record) for record in client.hmget(keys.runs(job), ids)] if ids else []


def jobs_per_shard(count: int, shards: int, prefix: str) -> dict[int, list[str]]:
    """``count`` job names (``{prefix}{n}``) in each of ``shards`` shards, by shard."""
    found: dict[int, list[str]] = {shard: [] for shard in range(shards)}
    for index in itertools.count():
        name = f"{prefix}{index}"
        bucket = found[shard_of(name, shards)]
        if len(bucket) < count:
            bucket.append(name)
        if all(len(names) == count for names in found.values()):
            return found
    raise AssertionError("unreachable")


def lease_holders(client: Any, namespace: str, shards: int) -> list[str | None]:
    """Each tagged shard's lease holder (``host:pid:suffix`` of its token), or None: one pipeline (split by node
    on a Redis Cluster)."""
    pipe = client.pipeline(transaction=False)
    for shard in range(shards):
        pipe.get(Keys(namespace, shard, tagged=True).leader)
    return [str(token).partition(":")[2] if token else None for token in pipe.execute()]


@dataclass
class LeaseWatch:
    """Samples every shard's lease holder every 20 ms in a thread (:meth:`start`): the longest time each shard
    was unled, and its holders in turn."""

    client: Any
    namespace: str
    shards: int
    longest: dict[int, float] = field(default_factory=dict)
    changes: dict[int, list[str]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        free_since: dict[int, float] = {}
        last: dict[int, str | None] = {}
        while not self._stop.wait(0.02):
            now = time.monotonic()
            for shard, holder in enumerate(lease_holders(self.client, self.namespace, self.shards)):
                if holder is None:
                    free_since.setdefault(shard, now)
                elif shard in free_since:
                    self.longest[shard] = max(self.longest.get(shard, 0.0), now - free_since.pop(shard))
                if holder is not None and last.get(shard) != holder:
                    self.changes.setdefault(shard, []).append(holder)
                last[shard] = holder
