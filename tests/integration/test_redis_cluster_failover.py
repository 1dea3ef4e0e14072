"""beatd on a real Redis Cluster: lease scripts per tagged shard; a killed master is an outage to wait out,
CROSSSLOT a refusal."""

from __future__ import annotations

import time

import pytest
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from beatd.keys import Keys
from beatd.store.base import StoreRejected, StoreUnavailable, reachable, script
from tests.integration.conftest import wait_for
from tests.redis_cluster import RedisClusterProcesses


def test_keys_of_two_slots_in_one_script_are_a_refusal_not_a_crash(redis_cluster: RedisClusterProcesses) -> None:
    """The cluster client's own CROSSSLOT refusal (no RedisError) comes out of reachable() as StoreRejected."""
    with redis_cluster.client() as client, pytest.raises(StoreRejected, match="same key slot"), reachable():
        client.eval("return 1", 2, "beatd:leader", "beatd:progress")


def test_beatds_lease_scripts_run_per_tagged_shard(redis_cluster: RedisClusterProcesses) -> None:
    """acquire.lua, renew.lua and release.lua run on each tagged shard's master (each shard fenced on its own);
    the plain layout's lease keys are refused (they span slots)."""
    with redis_cluster.client() as client:
        acquire, renew, release = (client.register_script(script(name)) for name in ("acquire", "renew", "release"))
        shards = [Keys("beatd", shard, tagged=True) for shard in range(6)]
        assert len({client.get_node_from_key(keys.leader).port for keys in shards}) > 1  # several masters
        for number, keys in enumerate(shards):
            lease = [keys.leader, keys.epoch, keys.audit]
            token = acquire(keys=lease, args=[f"beat-{number}", 5000, "{}", 100])[0]
            assert token == f"1:beat-{number}"
            assert acquire(keys=lease, args=["other", 5000, "{}", 100])[0] == ""  # held: refused
            assert renew(keys=[keys.leader], args=[token, 5000])[0] == 1
            assert release(keys=[keys.leader], args=[token]) == 1
        plain = Keys("beatd")
        with pytest.raises(StoreRejected, match="same key slot"), reachable():
            acquire(keys=[plain.leader, plain.epoch, plain.audit], args=["beat-0", 5000, "{}", 100])


def test_a_killed_master_is_unavailable_until_its_replica_is_promoted(redis_cluster: RedisClusterProcesses) -> None:
    """kill -9 of a master: each write of its slot either succeeds or raises StoreUnavailable, and writes succeed
    again once the replica took over (within a few node timeouts)."""
    key = "{killed}:counter"
    client = RedisCluster(
        startup_nodes=redis_cluster.startup_nodes(),
        decode_responses=True, socket_timeout=2.0, socket_connect_timeout=2.0,
    )  # fmt: skip
    with client:
        client.set(key, 0)
        master = redis_cluster.node(client.get_node_from_key(key).port)
        replica = client.get_node_from_key(key, replica=True)
        assert replica is not None
        wait_for(lambda: client.wait(1, 1000) is not None, what="replication")  # the counter reached the replica
        master.kill()
        killed_at = time.monotonic()
        outcomes: list[str] = []

        def written() -> bool:
            try:
                with reachable():
                    client.incr(key)
            except StoreUnavailable as error:
                outcomes.append(f"unavailable: {type(error.__cause__).__name__}")
                return False
            outcomes.append("written")
            return True

        wait_for(written, timeout=30, interval=0.1, what="a write after the replica's promotion")
        recovered = time.monotonic() - killed_at
        assert redis_cluster.node(replica.port).role() == "master"
        assert any(outcome.startswith("unavailable") for outcome in outcomes) and outcomes[-1] == "written"
        assert recovered < 20
        print(f"write after kill -9 of the master: {recovered:.1f} s, {sorted(set(outcomes))}")


def test_a_cluster_down_is_unavailable_not_a_refusal(redis_cluster: RedisClusterProcesses) -> None:
    """With a master and its replica both killed the cluster answers CLUSTERDOWN for every slot: an outage to
    wait out (StoreUnavailable), not a refused operation. (It leaves this module's cluster down: only the test
    of no node left follows it.)"""
    replicas = [node for node in redis_cluster.nodes if node.role() == "slave"]
    doomed_replica = replicas[0]
    with doomed_replica.client() as direct:
        doomed_master = redis_cluster.node(int(direct.info("replication")["master_port"]))
    quick = Retry(ExponentialBackoff(cap=0.05, base=0.01), 2)  # the default (10 attempts, 1 s cap) takes seconds
    with RedisCluster(startup_nodes=redis_cluster.startup_nodes(), retry=quick) as client:
        other = next(key for key in (f"{{other-{index}}}:key" for index in range(100))
                     if client.get_node_from_key(key).port != doomed_master.port)  # fmt: skip
        survivor = redis_cluster.node(client.get_node_from_key(other).port)
        doomed_master.kill()
        doomed_replica.kill()
        wait_for(lambda: not survivor.cluster_ok(), timeout=60, what="the survivors to mark the cluster failed")
        with pytest.raises(StoreUnavailable, match=r"CLUSTERDOWN|cluster is down"), reachable():
            client.set(other, "refused while the cluster is down")


def test_a_cluster_with_no_node_left_is_unavailable_not_a_refusal(redis_cluster: RedisClusterProcesses) -> None:
    """With every node gone the cluster client cannot rediscover the cluster (its own RedisClusterException,
    caused by the connection errors): an outage to wait out, StoreUnavailable, not a refused operation."""
    quick = Retry(ExponentialBackoff(cap=0.05, base=0.01), 2)
    with RedisCluster(startup_nodes=redis_cluster.startup_nodes(), retry=quick, socket_connect_timeout=1.0) as client:
        for node in redis_cluster.nodes:
            node.kill()
        with pytest.raises(StoreUnavailable), reachable():
            client.set("{gone}:key", "refused with no node left")
