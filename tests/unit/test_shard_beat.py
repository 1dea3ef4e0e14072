"""A sharded beat replica's parts that need no Redis: the config split by shard, who holds a token, which peers
count as live, the backlog gauges summed over the shards it leads."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import redis

from beatd.beat import Beat
from beatd.config import Config, load_config
from beatd.identity import Identity
from beatd.leader import holder_of
from beatd.metrics import Health, Metrics
from beatd.shard_beat import FRESH_FOR, ShardedBeat, shard_views
from beatd.sharding import shard_of
from beatd.store import Store
from beatd.upkeep import BacklogGauges


def _config(tmp_path: Path, shards: int = 4) -> Config:
    jobs = "".join(f"  job{index}: {{command: ['true'], every: 1m}}\n" for index in range(40))
    path = tmp_path / "beatd.yaml"
    path.write_text(f"redis: {{url: 'redis://127.0.0.1:1/0'}}\nshards: {shards}\njobs:\n{jobs}")
    return load_config(path, {})


def test_shard_views_split_the_jobs_and_keep_the_digest(tmp_path: Path) -> None:
    """Each shard's view holds exactly the jobs of that shard, every job in one view, with the whole digest."""
    config = _config(tmp_path)
    views = shard_views(config)
    assert len(views) == 4
    for shard, view in enumerate(views):
        assert all(shard_of(name, 4) == shard for name in view.compact)
        assert set(view.jobs) == set(view.compact)
        assert view.digest == config.digest
        assert view.settings is config.settings
    assert sorted(name for view in views for name in view.compact) == sorted(config.compact)
    assert all(views), "40 jobs over 4 shards: none empty"


def test_holder_of_a_token_is_the_replica_after_the_epoch() -> None:
    """A fencing token "{epoch}:{replica}" names its replica (whose id holds colons itself)."""
    assert holder_of("12:host:4242:abcdef") == "host:4242:abcdef"


def _sharded(tmp_path: Path) -> ShardedBeat:
    config = _config(tmp_path)
    client = redis.Redis.from_url("redis://127.0.0.1:1/0", decode_responses=True)  # never connected here
    metrics, health = Metrics(40), Health()
    replica = Identity.here(datetime(2030, 1, 1, tzinfo=UTC))
    beats = [
        Beat(view, Store(client, config.keys(shard)), replica, metrics=metrics, health=health, shard=shard)
        for shard, view in enumerate(shard_views(config))
    ]
    return ShardedBeat(beats, metrics, health)


def _beat(wants: list[int], *, ready: bool = True, shard_count: int = 4, emitted: int = 0) -> dict[str, object]:
    return {"shard_count": shard_count, "ready": ready, "wants": wants, "emitted": emitted}


def test_peers_are_the_fresh_ready_replicas_of_the_same_layout(tmp_path: Path) -> None:
    """A peer counts once its heartbeat has changed since it was first read, while it keeps changing within
    FRESH_FOR, says ready and has the same shard count; this replica is never its own peer."""
    sharded = _sharded(tmp_path)
    me = sharded.replica
    first = {me: _beat([]), "b": _beat([1]), "c": _beat([], ready=False), "d": _beat([], shard_count=8)}
    assert sharded._peers(first, 0.0) == {}, "first read: ages unknown"
    changed = {name: {**beat, "emitted": 1} for name, beat in first.items()}  # all rewrote their heartbeat
    assert sharded._peers(changed, 1.0) == {"b": frozenset({1})}
    assert sharded._peers(changed, 1.0 + FRESH_FOR - 0.1) == {"b": frozenset({1})}
    assert sharded._peers(changed, 1.0 + FRESH_FOR + 0.1) == {}, "unchanged for longer than FRESH_FOR: gone"
    again = {**changed, "b": _beat([2], emitted=2)}
    assert sharded._peers(again, 10.0) == {"b": frozenset({2})}, "changes again: live again"


def test_heartbeat_lists_the_shards_led_and_wanted(tmp_path: Path) -> None:
    """Shard 0's heartbeat carries the replica's shards, wants, readiness and shard count."""
    sharded = _sharded(tmp_path)
    sharded.led, sharded.wants = frozenset({2, 0}), frozenset({3})
    described = sharded.home._describe()
    assert described["shards"] == [0, 2] and described["wants"] == [3]
    assert described["role"] == "leader" and described["shard_count"] == 4 and described["jobs"] == 40
    assert not any(beat.contend for beat in sharded.beats), "nothing is contended before a plan"


def test_backlog_gauges_sum_the_shards_led() -> None:
    """Waiting fires are summed over the shards a replica leads, the oldest age is the largest, and a shard
    handed over withdraws its share (a queue no shard has any more loses its series)."""
    metrics = Metrics(1)
    gauges = BacklogGauges(metrics)
    gauges.publish(0, {"default": (3, 2.0), "slow": (1, 9.0)})
    gauges.publish(2, {"default": (4, 5.0)})

    def value(name: str, queue: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"queue": queue})

    assert value("beatd_queue_waiting", "default") == 7
    assert value("beatd_queue_oldest_age_seconds", "default") == 5.0
    gauges.withdraw(0)
    assert value("beatd_queue_waiting", "default") == 4
    assert value("beatd_queue_waiting", "slow") is None


def test_a_heartbeat_unchanged_since_first_read_never_counts(tmp_path: Path) -> None:
    """A peer's heartbeat that has not changed since this replica first read it (a dead replica's, left in the
    hash until pruned) does not count as live, however often it is read again; once it changes, it counts."""
    sharded = _sharded(tmp_path)
    stale = {"dead": _beat([1])}
    assert sharded._peers(stale, 0.0) == {}
    assert sharded._peers(stale, 0.25) == {}, "read twice, unchanged: its age is still unknown"
    assert sharded._peers(stale, 0.5) == {}
    assert sharded._peers({"dead": _beat([1], emitted=1)}, 0.75) == {"dead": frozenset({1})}, "it changed: live"
