"""The Redis side of ``beatd reshard`` (:mod:`beatd.reshard`): reading what a shard holds and moving a job's
fields and keys from one shard to another, each step safe to repeat (copy first, delete the source after).

Works on one server and on a Redis Cluster: a key moves with ``RENAME`` on one server (atomic, keeps its
TTL) and with ``DUMP`` + ``RESTORE`` (its ``PTTL`` kept) then ``DEL`` across a cluster's slots. A key whose
destination exists already (a rerun after a crash between copy and delete) is merged into it (hash fields,
sorted-set members) or, for a stream or string, replaced by the source.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from beatd.store.base import Heartbeats, append_audit, is_cluster, reachable, script
from beatd.store.beat import read_leases

__all__ = ["JOB_HASHES", "ReshardStore", "alert_job"]

JOB_HASHES = ("progress", "schedules", "last", "paused", "failing")
"""The per-shard hashes keyed by job name whose field follows its job (``beatd.keys.Keys`` attribute names)."""

_ALERT_JOB_PREFIXES = ("open:", "success:", "mark:deadline:", "mark:silence:")


def alert_job(field: str) -> str | None:
    """The job an ``alerts:state`` field belongs to (``open:{job}``, ``success:{job}``, ``mark:deadline:{job}``,
    ``mark:silence:{job}``); None for a field of a queue or of the shard (``mark:no_worker:{queue}``)."""
    for prefix in _ALERT_JOB_PREFIXES:
        if field.startswith(prefix):
            return field[len(prefix) :]
    return None


class ReshardStore:
    """Reads and moves of one deployment's keys on ``client`` (one server or a cluster)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.cluster = is_cluster(client)
        self._renew = client.register_script(script("renew"))
        self._release = client.register_script(script("release"))

    # reads

    def scan(self, pattern: str) -> list[str]:
        """Every key matching ``pattern`` (SCAN; on a cluster every master), sorted."""
        with reachable():
            return sorted({str(key) for key in self.client.scan_iter(match=pattern, count=1000)})

    def get(self, key: str) -> str | None:
        """A string key's value."""
        with reachable():
            value = self.client.get(key)
        return None if value is None else str(value)

    def set(self, key: str, value: str) -> None:
        """Write a string key (no TTL)."""
        with reachable():
            self.client.set(key, value)

    def delete(self, keys: Sequence[str]) -> int:
        """Delete ``keys`` (one command per key: they may be in several slots); how many existed."""
        if not keys:
            return 0
        with reachable():
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.delete(key)
            return sum(int(count) for count in pipe.execute())

    def field_names(self, key: str) -> list[str]:
        """The fields of hash ``key``."""
        with reachable():
            return [str(name) for name in self.client.hkeys(key)]

    def members(self, key: str) -> list[str]:
        """The members of set ``key``."""
        with reachable():
            return [str(name) for name in self.client.smembers(key)]

    def sizes(self, keys: Sequence[str]) -> dict[str, int]:
        """Key -> its length (XLEN, ZCARD, HLEN, ... by type; 1 for a string), only for keys that exist."""
        if not keys:
            return {}
        with reachable():
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.type(key)
            types = [str(kind) for kind in pipe.execute()]
            measure = {"stream": "xlen", "zset": "zcard", "hash": "hlen", "set": "scard", "list": "llen"}
            pipe = self.client.pipeline(transaction=False)
            present = [(key, kind) for key, kind in zip(keys, types, strict=True) if kind != "none"]
            for key, kind in present:
                if kind in measure:
                    getattr(pipe, measure[kind])(key)
                else:
                    pipe.exists(key)
            return {key: int(size) for (key, _), size in zip(present, pipe.execute(), strict=True)}

    def heartbeats(self, key: str) -> dict[str, dict[str, Any]]:
        """The heartbeats (member -> record) in hash ``key``."""
        return Heartbeats(self.client, key).read()

    def redis_ms(self, key: str) -> int:
        """Redis's clock (ms) on the master holding ``key``."""
        with reachable():
            if self.cluster:
                seconds, micros = self.client.time(target_nodes=self.client.get_node_from_key(key))
            else:
                seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def leases(self, keys: Sequence[str]) -> list[tuple[str, int] | None]:
        """Each lease key's token and ms left (None: free)."""
        return read_leases(self.client, keys)

    # leases

    def take(self, key: str, token: str, lease_ms: int) -> bool:
        """Take the lease ``key`` for ``token`` if it is free (or already ``token``'s)."""
        with reachable():
            if self.client.set(key, token, nx=True, px=lease_ms):
                return True
        return self.renew(key, token, lease_ms)

    def renew(self, key: str, token: str, lease_ms: int) -> bool:
        """Extend the lease ``key`` if ``token`` still holds it (``lua/renew.lua``)."""
        with reachable():
            renewed, _seconds, _micros = self._renew(keys=[key], args=[token, lease_ms])
        return bool(int(renewed))

    def release(self, key: str, token: str) -> None:
        """Free the lease ``key`` if ``token`` holds it (``lua/release.lua``)."""
        with reachable():
            self._release(keys=[key], args=[token])

    # moves

    def read_fields(self, key: str, jobs: Sequence[str]) -> dict[str, str]:
        """Job -> its field in hash ``key``, for the jobs that have one."""
        if not jobs:
            return {}
        with reachable():
            values = self.client.hmget(key, list(jobs))
        return {job: str(value) for job, value in zip(jobs, values, strict=True) if value is not None}

    def move_fields(self, source: str, target: str, fields: dict[str, str]) -> int:
        """Copy ``fields`` (name -> value, read from hash ``source``) into hash ``target``, then delete them from
        ``source``; how many moved."""
        if not fields:
            return 0
        with reachable():
            self.client.hset(target, mapping=fields)
            self.client.hdel(source, *fields)
        return len(fields)

    def scores(self, key: str) -> dict[str, float]:
        """Member -> score of sorted set ``key``."""
        with reachable():
            return {str(member): float(score) for member, score in self.client.zrange(key, 0, -1, withscores=True)}

    def move_scores(self, source: str, target: str, scores: dict[str, float]) -> int:
        """Copy ``scores`` (member -> score, read from sorted set ``source``) into ``target``, then remove them
        from ``source``; how many moved."""
        if not scores:
            return 0
        with reachable():
            self.client.zadd(target, scores)
            self.client.zrem(source, *scores)
        return len(scores)

    def move_members(self, source: str, target: str, members: Sequence[str]) -> None:
        """Move ``members`` of set ``source`` to set ``target``."""
        if members:
            with reachable():
                self.client.sadd(target, *members)
                self.client.srem(source, *members)

    def move_keys(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Move each key ``source`` to ``target`` (a source that does not exist is skipped); how many moved."""
        pairs = list(pairs)
        if not pairs:
            return 0
        with reachable():
            pipe = self.client.pipeline(transaction=False)
            for source, target in pairs:
                pipe.exists(source)
                pipe.type(target)
            replies = pipe.execute()
            moving = [
                (source, target, str(kind))
                for (source, target), present, kind in zip(pairs, replies[::2], replies[1::2], strict=True)
                if present
            ]
            for source, target, kind in moving:
                self._move_key(source, target, kind)
        return len(moving)

    def _move_key(self, source: str, target: str, target_type: str) -> None:
        client = self.client
        if target_type in ("hash", "zset", "set"):  # a rerun after a crash between copy and delete: merge
            kind = str(client.type(source))
            if kind == target_type:
                self._merge(source, target, kind)
                client.delete(source)
                return
        if not self.cluster:
            client.rename(source, target)  # overwrites a stream or string left by an earlier attempt
            return
        payload = client.dump(source)  # bytes: redis-py never decodes a DUMP reply
        ttl = client.pttl(source)
        if payload is None:
            return
        client.restore(target, max(int(ttl), 0), payload, replace=True)
        client.delete(source)

    def _merge(self, source: str, target: str, kind: str) -> None:
        client = self.client
        if kind == "hash":
            for chunk in _chunks(client.hscan_iter(source, count=1000), 1000):
                client.hset(target, mapping=dict(chunk))
        elif kind == "zset":
            for chunk in _chunks(client.zscan_iter(source, count=1000), 1000):
                client.zadd(target, dict(chunk))
        else:
            for chunk in _chunks(client.sscan_iter(source, count=1000), 1000):
                client.sadd(target, *chunk)

    def move_runtime_jobs(self, source: Any, target: Any, entries: dict[str, str], maxlen: int) -> int:
        """Move runtime jobs' entries (name -> JSON) from shard keys ``source`` to ``target`` (``beatd.keys.Keys``):
        each is written to the target with the target's next version and announced on both shards' change
        streams, so a follower of either sees the change (it reads the job again: gone from one, there in the
        other). Returns how many moved."""
        with reachable():
            for job, text in entries.items():
                entry = json.loads(text)
                entry["version"] = int(self.client.incr(target.runtime_version))
                self.client.hset(target.runtime_jobs, job, json.dumps(entry))
                self.client.xadd(target.runtime_changes, {"job": job, "version": entry["version"]}, maxlen=maxlen)
                if self.client.hdel(source.runtime_jobs, job):
                    version = int(self.client.incr(source.runtime_version))
                    self.client.xadd(source.runtime_changes, {"job": job, "version": version}, maxlen=maxlen)
        return len(entries)

    def read_stream(self, key: str) -> list[tuple[str, dict[str, str]]]:
        """Every entry (id, fields) of stream ``key``, oldest first."""
        with reachable():
            return [(str(entry_id), dict(fields)) for entry_id, fields in self.client.xrange(key)]

    def write_stream(self, key: str, entries: Sequence[tuple[str, dict[str, str]]]) -> None:
        """Make stream ``key`` hold exactly ``entries`` (ids increasing): written to ``{key}:reshard`` (the same
        hash tag, so the same slot), then renamed over ``key``; deleted when there are none."""
        temporary = f"{key}:reshard"
        with reachable():
            self.client.delete(temporary)
            if not entries:
                self.client.delete(key)
                return
            for start in range(0, len(entries), 1000):
                pipe = self.client.pipeline(transaction=False)
                for entry_id, fields in entries[start : start + 1000]:
                    pipe.xadd(temporary, fields, id=entry_id)
                pipe.execute()
            self.client.rename(temporary, key)

    def delete_entries(self, key: str, ids: Sequence[str]) -> None:
        """Delete the entries ``ids`` of stream ``key`` (and the key once empty)."""
        if ids:
            with reachable():
                self.client.xdel(key, *ids)
                if not self.client.xlen(key):
                    self.client.delete(key)

    def raise_epoch(self, key: str, floor: int) -> None:
        """Set the leader epoch ``key`` to ``floor`` if it is lower (so fencing tokens never repeat)."""
        with reachable():
            if int(self.client.get(key) or 0) < floor:
                self.client.set(key, floor)

    def audit(self, key: str, record: dict[str, Any], maxlen: int) -> None:
        """Append ``record`` to the audit stream ``key``."""
        append_audit(self.client, key, record, maxlen)


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
