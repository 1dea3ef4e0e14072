"""The per-tick shard lease plan of a beat replica, alone and in a simulated group of replicas (leases in memory,
an injected clock): converges on the fair assignment, hands over without flapping, bounds how long a shard is
unled."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from beatd.shard_leases import LeasePlan, plan_leases
from beatd.sharding import assign, moved

LEASE = 5.0
TICK = 1.0
FRESH = 3.0  # a heartbeat older than this is stale: its replica no longer counts as live


@pytest.mark.parametrize(
    ("holders", "unled_for", "peers", "plan"),
    [
        # Alone: take every free shard.
        ({}, {}, {}, LeasePlan(frozenset({0, 1}), frozenset(), frozenset())),
        # Held by me and still mine: keep (renew), nothing to do.
        ({0: "a", 1: "a"}, {}, {}, LeasePlan(frozenset(), frozenset(), frozenset())),
        # b is live and the target of shard 1 (see assign(["a", "b"], 2)) but does not want it yet: keep it.
        ({0: "a", 1: "a"}, {}, {"b": frozenset()}, LeasePlan(frozenset(), frozenset(), frozenset())),
        # b wants shard 1: give it up.
        ({0: "a", 1: "a"}, {}, {"b": frozenset({1})}, LeasePlan(frozenset(), frozenset({1}), frozenset())),
        # b holds shard 0, whose target is a: want it, take nothing.
        ({0: "b", 1: "b"}, {}, {"b": frozenset()}, LeasePlan(frozenset(), frozenset(), frozenset({0}))),
        # Shard 1 is free and b's: leave it to b while it has been free for less than a lease...
        ({0: "a"}, {1: LEASE - 1}, {"b": frozenset()}, LeasePlan(frozenset(), frozenset(), frozenset())),
        # ...and take it once it has been free for longer (b is not taking it).
        ({0: "a"}, {1: LEASE + 1}, {"b": frozenset()}, LeasePlan(frozenset({1}), frozenset(), frozenset())),
    ],
)
def test_plan_of_one_replica(
    holders: dict[int, str], unled_for: dict[int, float], peers: dict[str, frozenset[int]], plan: LeasePlan
) -> None:
    """Replica a's plan for two shards, given the lease holders, how long free shards were free, and its peers."""
    assert assign(["a", "b"], 2) == {0: "a", 1: "b"}  # the table's premise
    assert plan_leases("a", peers, 2, holders, unled_for, LEASE) == plan


@dataclass
class Group:
    """Replicas ticking together once a second over leases kept in memory (holder, expiry), as the lease scripts
    keep them in Redis: acquire only a free or expired lease, renew and release only one's own."""

    shards: int
    alive: list[str] = field(default_factory=list)
    fresh: float = FRESH
    now: float = 0.0
    leases: dict[int, tuple[str, float]] = field(default_factory=dict)
    heartbeats: dict[str, tuple[float, frozenset[int]]] = field(default_factory=dict)
    free_since: dict[str, dict[int, float]] = field(default_factory=dict)
    changes: int = 0
    longest_unled: float = 0.0
    _unled_since: dict[int, float] = field(default_factory=dict)

    def holders(self) -> dict[int, str]:
        """Shard -> holder of each unexpired lease."""
        return {shard: holder for shard, (holder, expiry) in self.leases.items() if expiry > self.now}

    def tick_replica(self, replica: str) -> None:
        """One tick of ``replica``: read, plan, write (renew, release, acquire), publish its heartbeat."""
        holders = self.holders()
        seen = self.free_since.setdefault(replica, {})
        for shard in range(self.shards):
            if shard in holders:
                seen.pop(shard, None)
            else:
                seen.setdefault(shard, self.now)
        peers = {
            other: wants
            for other, (at, wants) in self.heartbeats.items()
            if other != replica and self.now - at < self.fresh
        }
        unled = {shard: self.now - since for shard, since in seen.items()}
        plan = plan_leases(replica, peers, self.shards, holders, unled, LEASE)
        for shard, holder in holders.items():
            if holder == replica and shard not in plan.release:
                self.leases[shard] = (replica, self.now + LEASE)
        for shard in plan.release:
            del self.leases[shard]
        for shard in sorted(plan.acquire):
            if shard not in self.holders():
                self.leases[shard] = (replica, self.now + LEASE)
                self.changes += 1
        self.heartbeats[replica] = (self.now, plan.wants)

    def step(self) -> None:
        """One second: every live replica ticks (in id order), then the longest unled stretch is noted."""
        for replica in sorted(self.alive):
            self.tick_replica(replica)
        holders = self.holders()
        for shard in range(self.shards):
            if shard in holders:
                self._unled_since.pop(shard, None)
            else:
                since = self._unled_since.setdefault(shard, self.now)
                self.longest_unled = max(self.longest_unled, self.now - since + TICK)
        self.now += TICK

    def run(self, seconds: float) -> None:
        """Step for ``seconds``."""
        for _ in range(int(seconds / TICK)):
            self.step()

    def settled(self) -> bool:
        """True when every shard is held by its target among the live replicas."""
        return self.holders() == assign(self.alive, self.shards)


def test_replicas_starting_together_settle_on_the_fair_assignment() -> None:
    """Three replicas and twelve shards: every shard led by its target within three ticks."""
    group = Group(12, alive=["a", "b", "c"])
    group.run(3 * TICK)
    assert group.settled()


def test_a_joining_replica_takes_its_share_each_shard_changing_hands_once() -> None:
    """A fourth replica joins: within three ticks every shard is with its target, and only the shards that move
    change hands, once each (nothing flaps)."""
    group = Group(12, alive=["a", "b", "c"])
    group.run(3 * TICK)
    group.changes = 0
    group.alive.append("d")
    group.run(3 * TICK)
    assert group.settled()
    assert group.changes == len(moved(assign(["a", "b", "c"], 12), assign(["a", "b", "c", "d"], 12)))


def test_a_killed_replicas_shards_are_unled_at_most_a_lease_and_a_tick() -> None:
    """A replica dies (stops renewing): its shards are free for at most a lease plus a tick, then the survivors
    settle on the fair assignment once its heartbeat is stale."""
    group = Group(12, alive=["a", "b", "c"])
    group.run(3 * TICK)
    group.longest_unled = 0.0
    group.alive.remove("b")
    group.run(LEASE + FRESH + 3 * TICK)
    assert group.settled()
    assert group.longest_unled <= LEASE + TICK


def test_a_target_dying_after_asking_for_a_shard_leaves_it_unled_at_most_a_lease_and_two_ticks() -> None:
    """A replica that asked for a shard and died before taking it: the shard is given up to nobody, then taken
    by a survivor once it has been free for a lease (and settles on its target when the heartbeat is stale)."""
    group = Group(8, alive=["a", "b"])
    group.run(3 * TICK)
    group.alive.append("c")
    group.tick_replica("c")  # c publishes what it wants (held by a and b) ...
    group.alive.remove("c")  # ... and dies before its next tick
    group.longest_unled = 0.0
    group.run(LEASE + FRESH + 3 * TICK)
    assert group.settled()
    assert group.longest_unled <= LEASE + 2 * TICK


def test_a_replica_leaving_and_coming_back_returns_to_the_same_assignment() -> None:
    """Leave and come back: the assignment is a function of who is live, so it ends where it started."""
    group = Group(16, alive=["a", "b", "c", "d"])
    group.run(3 * TICK)
    start = group.holders()
    group.alive.remove("d")
    group.run(LEASE + FRESH + 3 * TICK)
    group.alive.append("d")
    group.run(3 * TICK)
    assert group.holders() == start


def test_a_dead_target_whose_heartbeat_stays_fresh_long_does_not_make_a_shard_flap() -> None:
    """Heartbeats judged fresh for three leases: a dead replica stays a target that long, but it wants nothing,
    so the survivor that took its shards after a lease keeps them (no give-up, take-back cycle)."""
    group = Group(8, alive=["a", "b", "c"], fresh=3 * LEASE)
    group.run(3 * TICK)
    group.alive.remove("c")
    group.changes, group.longest_unled = 0, 0.0
    group.run(3 * LEASE)
    assert group.longest_unled <= LEASE + TICK
    assert group.changes == sum(1 for owner in assign(["a", "b", "c"], 8).values() if owner == "c")
    group.run(LEASE)
    assert group.settled()
