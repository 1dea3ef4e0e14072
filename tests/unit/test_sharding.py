"""Shards of job names (jump consistent hash of SHA-256) and the fair sharing of shards among beat replicas."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from collections import Counter

import pytest
from redis.crc import key_slot

from beatd.keys import Keys
from beatd.sharding import (
    assign,
    global_prefix,
    jump_hash,
    moved,
    name_key,
    shard_of,
    shard_prefix,
    tagged_layout,
)

REPLICAS = [f"beat-{index}" for index in range(11)]
SHARD_COUNTS = [*range(1, 33), 48, 64, 100, 128]
REPLICA_COUNTS = range(1, 11)


@pytest.mark.parametrize(
    ("key", "buckets", "bucket"),
    [
        # ClickHouse's tests of jumpConsistentHash (00580_consistent_hashing_functions) and rust-jumphash's.
        (1, 1, 0),
        (42, 57, 43),
        (256, 1024, 520),
        (3735883980, 1, 0),
        (3735883980, 666, 361),
        (16045690984833335023, 255, 237),
        (123456, 1000, 984),
    ],
)
def test_jump_hash_matches_the_published_algorithm(key: int, buckets: int, bucket: int) -> None:
    """jump_hash gives the bucket other implementations of the paper's algorithm give."""
    assert jump_hash(key, buckets) == bucket


@pytest.mark.parametrize(
    ("job", "shards", "shard"),
    [("backup", 1, 0), ("backup", 8, 5), ("report", 8, 2), ("cleanup", 8, 4), ("a", 8, 1), ("", 8, 5)],
)
def test_shard_of_a_job_name_is_pinned(job: str, shards: int, shard: int) -> None:
    """A job's shard is a documented function of its name: these values must never change (stored state)."""
    assert shard_of(job, shards) == shard


def test_name_key_is_the_first_eight_bytes_of_sha256() -> None:
    """The 64-bit key of a name is SHA-256's first 8 bytes, big-endian."""
    assert name_key("backup") == 6111399565520850680


def test_shard_of_is_the_same_in_another_process_with_another_hash_seed() -> None:
    """Python's per-process string hash salt does not change a job's shard."""
    names = [f"job-{index}" for index in range(50)]
    code = f"from beatd.sharding import shard_of; print([shard_of(n, 16) for n in {names!r}])"
    other = subprocess.run(
        [sys.executable, "-c", code], env=os.environ | {"PYTHONHASHSEED": "12345"},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert other.strip() == str([shard_of(name, 16) for name in names])


def test_jobs_spread_evenly_over_shards() -> None:
    """Ten thousand job names fill 16 shards within 15% of the mean."""
    counts = Counter(shard_of(f"job-{index}", 16) for index in range(10_000))
    assert set(counts) == set(range(16))
    assert max(counts.values()) < 625 * 1.15 and min(counts.values()) > 625 * 0.85


def test_growing_the_shard_count_moves_only_jobs_to_the_new_shard() -> None:
    """From N to N + 1 shards a job either keeps its shard or moves to shard N, about 1/(N + 1) of them."""
    names = [f"job-{index}" for index in range(10_000)]
    for shards in (1, 2, 7, 8, 31):
        before = {name: shard_of(name, shards) for name in names}
        after = {name: shard_of(name, shards + 1) for name in names}
        changed = [name for name in names if before[name] != after[name]]
        assert all(after[name] == shards for name in changed)
        assert len(changed) == pytest.approx(len(names) / (shards + 1), rel=0.15)


@pytest.mark.parametrize("shards", [0, -1])
def test_jump_hash_refuses_no_buckets(shards: int) -> None:
    """A shard count below one is a programming error, refused."""
    with pytest.raises(ValueError):
        jump_hash(1, shards)


def test_assignment_is_fair_for_every_shard_and_replica_count() -> None:
    """Every shard gets a leader and every replica leads shards // replicas or one more."""
    for shards in SHARD_COUNTS:
        for count in REPLICA_COUNTS:
            owners = assign(REPLICAS[:count], shards)
            assert sorted(owners) == list(range(shards))
            loads = Counter(owners.values())
            base = shards // count
            assert all(loads[replica] in (base, base + 1) for replica in REPLICAS[:count])
            assert sum(1 for replica in REPLICAS[:count] if loads[replica] == base + 1) == shards % count


def test_assignment_depends_only_on_the_set_of_replica_ids() -> None:
    """Order and repeats of the replica ids do not change the assignment."""
    ids = ["b", "c", "a", "d"]
    assert assign(ids, 16) == assign(sorted(ids), 16) == assign([*reversed(ids), "a"], 16)


@pytest.mark.parametrize(("replicas", "shards"), [([], 8), (["a"], 0)])
def test_assignment_of_nothing_is_empty(replicas: list[str], shards: int) -> None:
    """No replicas or no shards: nothing to lead."""
    assert assign(replicas, shards) == {}


def test_one_replica_leads_every_shard() -> None:
    """A lone replica leads all shards."""
    assert assign(["only"], 5) == dict.fromkeys(range(5), "only")


def churn() -> list[tuple[int, int, int]]:
    """(shards, shards moved, the fewest that must move) for a replica joining and one leaving, over the grid."""
    rows = []
    for shards in SHARD_COUNTS:
        for count in REPLICA_COUNTS:
            before, joined = assign(REPLICAS[:count], shards), assign(REPLICAS[: count + 1], shards)
            newcomer = sum(1 for owner in joined.values() if owner == REPLICAS[count])
            rows.append((shards, len(moved(before, joined)), newcomer))
            left = assign(REPLICAS[1 : count + 1], shards)
            leaver = sum(1 for owner in joined.values() if owner == REPLICAS[0])
            rows.append((shards, len(moved(joined, left)), leaver))
    return rows


def test_a_replica_joining_or_leaving_moves_few_shards() -> None:
    """A join or leave moves at most twice the shards that must move plus 3, and 1.3 times them over the grid."""
    rows = churn()
    assert all(count <= 2 * needed + 3 for _shards, count, needed in rows)
    assert sum(count for _s, count, _n in rows) <= 1.3 * sum(needed for _s, _c, needed in rows)


def test_the_shards_a_newcomer_takes_are_its_fair_share() -> None:
    """A replica joining three others with 16 shards takes four, and at most three other shards change leader."""
    before, after = assign(REPLICAS[:3], 16), assign(REPLICAS[:4], 16)
    taken = {shard for shard, owner in after.items() if owner == REPLICAS[3]}
    assert len(taken) == 4
    assert len(moved(before, after) - taken) <= 3


def every_key(keys: Keys) -> list[str]:
    """Every key ``keys`` builds: its properties, and each builder called with a sample job, queue, run or bucket."""
    built = []
    for name, member in inspect.getmembers(Keys):
        if name.startswith("_") or name in ("queue_name", "of_shard"):  # these build no key of their own
            continue
        if isinstance(member, property):
            built.append(getattr(keys, name))
        elif inspect.isfunction(member):
            arguments = len(inspect.signature(member).parameters) - 1
            built.append(member(keys, *[1_700_000_000_000 if name == "tally" else "sample"][:arguments]))
    return built


@pytest.mark.parametrize(("shards", "cluster", "tagged"), [(1, False, False), (2, False, True), (1, True, True)])
def test_the_layout_is_tagged_with_several_shards_or_a_cluster(shards: int, cluster: bool, tagged: bool) -> None:
    """One shard on one server keeps the plain layout; several shards or a cluster tag every key."""
    assert tagged_layout(shards, cluster) is tagged


def test_the_plain_layout_keeps_todays_keys() -> None:
    """Plain prefixes are the namespace itself, so every key is byte for byte today's."""
    assert shard_prefix("beatd", 0, tagged=False) == global_prefix("beatd", tagged=False) == "beatd"
    assert every_key(Keys("beatd", 0, tagged=False)) == every_key(Keys("beatd"))
    assert Keys("beatd").progress == "beatd:progress" and Keys("beatd").workers == "beatd:workers"


@pytest.mark.parametrize("shard", [0, 3, 15])
def test_every_key_of_a_tagged_shard_hashes_to_one_slot(shard: int) -> None:
    """All keys of one tagged shard share the Redis Cluster slot of ``{namespace}:{shard}``, so any script may
    name any of them together."""
    keys = every_key(Keys("beatd", shard, tagged=True))
    assert len(set(keys)) > 30
    tagged = Keys("beatd", shard, tagged=True)
    deployment_wide = {tagged.replicas, tagged.workers, tagged.layout}
    assert {key_slot(key.encode()) for key in set(keys) - deployment_wide} == {key_slot(f"beatd:{shard}".encode())}
    assert {key_slot(key.encode()) for key in deployment_wide} == {key_slot(b"beatd:0")}


def test_tagged_shards_spread_over_slots_and_the_deployment_wide_keys_live_with_shard_0() -> None:
    """Sixteen shards get sixteen different slots (they spread over the masters); the heartbeats of replicas
    and workers are shard 0's, whose lease fences their upkeep."""
    shards = [Keys("beatd", shard, tagged=True) for shard in range(16)]
    assert len({key_slot(keys.progress.encode()) for keys in shards}) == 16
    assert global_prefix("beatd", tagged=True) == shard_prefix("beatd", 0, tagged=True) == "{beatd:0}"
    assert {keys.replicas for keys in shards} == {"{beatd:0}:replicas"}
