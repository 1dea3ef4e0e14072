"""What one beat replica does with the shard leases this tick (pure; the leases themselves live in Redis).

Every tick a replica reads every shard's lease holder and the fresh heartbeats of the other ready replicas
(each listing the shards it ``wants``: shards it is the target of that another replica still holds), then
:func:`plan_leases` says which leases to take, which to give up, and what to publish as its own ``wants``:

- a free shard is taken by its target (:func:`beatd.sharding.assign` over the live replicas), or by anyone once
  it has been seen free for longer than a lease (its target is not taking it);
- a held shard whose target is another replica is given up only when that target's fresh heartbeat wants it,
  so a hand-over leaves the shard free for one tick, and a dead or broken target (which wants nothing) never
  makes a shard go back and forth;
- the lease scripts stay the only arbiter: two replicas with different views may both try, one wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from beatd.sharding import assign

__all__ = ["LeasePlan", "plan_leases"]


@dataclass(frozen=True)
class LeasePlan:
    """One tick's decisions for one replica: shards to take (acquire), to give up (release), and the shards it
    wants (publish in its heartbeat)."""

    acquire: frozenset[int]
    release: frozenset[int]
    wants: frozenset[int]


def plan_leases(
    me: str,
    peers: Mapping[str, frozenset[int]],
    shards: int,
    holders: Mapping[int, str | None],
    unled_for: Mapping[int, float],
    lease_seconds: float,
) -> LeasePlan:
    """The lease plan of replica ``me``.

    ``peers``: the other live, ready replicas (fresh heartbeats) -> the shards each wants. ``holders``: shard ->
    the replica holding its lease now (None or absent: free). ``unled_for``: shard -> seconds it has been seen
    free, on this replica's monotonic clock (absent: 0)."""
    target = assign([me, *peers], shards)
    acquire, release, wants = set(), set(), set()
    for shard in range(shards):
        holder = holders.get(shard)
        owner = target[shard]
        if holder is None:
            if owner == me or unled_for.get(shard, 0.0) > lease_seconds:
                acquire.add(shard)
        elif holder == me:
            if owner != me and shard in peers.get(owner, frozenset()):
                release.add(shard)
        elif owner == me:
            wants.add(shard)
    return LeasePlan(frozenset(acquire), frozenset(release), frozenset(wants))
