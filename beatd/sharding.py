"""Which shard a job belongs to, and which beat replica leads which shard (pure; no Redis).

A job's shard is a *jump consistent hash* (Lamping and Veach, 2014, arXiv:1406.2294) of the first 8 bytes of
the SHA-256 of its name (UTF-8), so it is the same in every process and on every Python version (``hash()`` is
salted per process), and growing ``shards`` from N to N + 1 moves only about 1/(N + 1) of the jobs, each to
the new shard.

The shards are shared among the live replicas by :func:`assign`: every replica gets ``shards // replicas``
shards or one more, and which ones is decided by rendezvous (highest random weight) scores, SHA-256 of
``"{replica}\\0{shard}"``, so every replica that sees the same set of replica ids computes the same assignment,
and a replica joining or leaving moves few shards besides those that must move (over the grid of
``tests/unit/test_sharding.py``, up to 128 shards and 1-10 replicas: at most twice those plus 3, and 1.24 times
them in all). The assignment is only a target: each shard's lease still decides who leads it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

__all__ = ["assign", "global_prefix", "jump_hash", "moved", "name_key", "shard_of", "shard_prefix", "tagged_layout"]

_JUMP_MULTIPLIER = 2862933555777941757
_MASK_64 = (1 << 64) - 1


def name_key(name: str) -> int:
    """The 64-bit key of a job name: the first 8 bytes (big-endian) of SHA-256 of its UTF-8 bytes."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash of a 64-bit ``key`` into ``buckets`` (0 .. buckets - 1), the paper's algorithm with
    64-bit wrap-around arithmetic."""
    if buckets < 1:
        raise ValueError(f"buckets must be at least 1, not {buckets}")
    key &= _MASK_64
    bucket, candidate = -1, 0
    while candidate < buckets:
        bucket = candidate
        key = (key * _JUMP_MULTIPLIER + 1) & _MASK_64
        candidate = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


def shard_of(job: str, shards: int) -> int:
    """The shard (0 .. shards - 1) of job ``job`` when there are ``shards``; always 0 for one shard."""
    return jump_hash(name_key(job), shards)


def tagged_layout(shards: int, cluster: bool) -> bool:
    """True when keys carry hash tags: more than one shard, or any Redis Cluster (whose scripts need one slot).
    One shard on one server (or Sentinel) keeps the plain layout: today's keys, byte for byte."""
    return cluster or shards > 1


def shard_prefix(namespace: str, shard: int, *, tagged: bool) -> str:
    """The key prefix (``beatd.keys.Keys`` namespace) of shard ``shard``: ``namespace`` in the plain layout,
    ``{namespace:shard}`` tagged, so all of a shard's keys hash to the slot of ``namespace:shard``."""
    return f"{{{namespace}:{shard}}}" if tagged else namespace


def global_prefix(namespace: str, *, tagged: bool) -> str:
    """The key prefix of the keys no shard owns (replica and worker heartbeats, the layout): shard 0's, so shard
    0's lease fences their upkeep and no lease of their own is needed."""
    return shard_prefix(namespace, 0, tagged=tagged)


def _score(replica: str, shard: int) -> bytes:
    """The rendezvous score of ``replica`` for ``shard`` (compared as bytes: higher wins)."""
    return hashlib.sha256(f"{replica}\0{shard}".encode()).digest()


def assign(replicas: Iterable[str], shards: int) -> dict[int, str]:
    """Shard -> the replica that should lead it, for every shard 0 .. shards - 1 (empty without replicas).

    Deterministic from the set of replica ids and ``shards`` (order and repeats of ``replicas`` do not matter).
    Fair: each replica gets ``shards // len(replicas)`` or one more. Pairs (shard, replica) are taken by
    descending rendezvous score; a pair is kept while its shard is unassigned and its replica has room (the base
    share, or one more while fewer than ``shards % len(replicas)`` replicas have taken their extra one). Every
    shard ends assigned: the rooms add up to ``shards``."""
    members = sorted(set(replicas))
    if not members or shards < 1:
        return {}
    base, extras = divmod(shards, len(members))
    pairs = sorted(
        ((_score(replica, shard), shard, replica) for shard in range(shards) for replica in members), reverse=True
    )
    owner: dict[int, str] = {}
    taken = dict.fromkeys(members, 0)
    extras_taken = 0
    for _score_value, shard, replica in pairs:
        if shard in owner:
            continue
        count = taken[replica]
        extra = count == base
        if count > base or (extra and extras_taken == extras):
            continue
        extras_taken += extra
        owner[shard] = replica
        taken[replica] = count + 1
        if len(owner) == shards:
            break
    return dict(sorted(owner.items()))


def moved(before: Mapping[int, str], after: Mapping[int, str]) -> set[int]:
    """The shards whose leader changes from ``before`` to ``after`` (a shard new in ``after`` counts)."""
    return {shard for shard, replica in after.items() if before.get(shard) != replica}
