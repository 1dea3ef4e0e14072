"""The local Redis Cluster fixture is a real cluster: slots on three masters, Lua in one slot, fail-over."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from tests import redis_cluster as redis_cluster_module
from tests.integration.conftest import wait_for
from tests.redis_cluster import RedisClusterProcesses


def masters_of(client: RedisCluster, keys: list[str]) -> set[str]:
    """The ``host:port`` of the master holding each of ``keys``."""
    return {client.get_node_from_key(key).name for key in keys}


def test_keys_in_different_slots_land_on_different_masters(redis_cluster: RedisClusterProcesses) -> None:
    """Keys spread over slots are written and read back through the cluster client, on all three masters."""
    with redis_cluster.client() as client:
        keys = [f"spread:{index}" for index in range(30)]
        for key in keys:
            client.set(key, key.upper())
        assert [client.get(key) for key in keys] == [key.upper() for key in keys]
        assert len(masters_of(client, keys)) == 3


def test_lua_runs_on_keys_sharing_a_hash_tag_and_crossslot_is_refused(redis_cluster: RedisClusterProcesses) -> None:
    """A script on keys with one hash tag runs atomically on their master; keys in two slots are refused."""
    script = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])"
    with redis_cluster.client() as client:
        tagged = ["{ns:3}:leader", "{ns:3}:leader:epoch"]
        assert client.keyslot(tagged[0]) == client.keyslot(tagged[1])
        registered = client.register_script(script)
        assert registered(keys=tagged, args=["token"]) == 1
        assert registered(keys=tagged, args=["token"]) == 2
        assert client.get(tagged[0]) == "token"
        untagged = ["ns:leader", "ns:progress"]
        assert client.keyslot(untagged[0]) != client.keyslot(untagged[1])
        with pytest.raises(redis.RedisClusterException, match="same key slot"):
            client.eval(script, 2, *untagged, "token")  # refused by the client before it is sent
        owner = client.get_node_from_key(untagged[0])
        with redis_cluster.node(owner.port).client() as direct, pytest.raises(redis.ResponseError, match="same slot"):
            direct.eval(script, 2, *untagged, "token")  # and by the server


def test_cluster_failover_on_a_replica_moves_the_slot_master(redis_cluster: RedisClusterProcesses) -> None:
    """``CLUSTER FAILOVER`` sent to a replica promotes it; the client follows the slot there and the key survives."""
    key = "{failover}:key"
    with redis_cluster.client() as client:
        client.set(key, "kept")
        old_master = client.get_node_from_key(key)
        replica = client.get_node_from_key(key, replica=True)
        assert replica is not None and replica.port != old_master.port
        promoted, demoted = redis_cluster.node(replica.port), redis_cluster.node(old_master.port)
        with promoted.client() as direct:
            assert direct.execute_command("CLUSTER FAILOVER") in ("OK", True)
        wait_for(lambda: promoted.role() == "master" and demoted.role() == "slave", timeout=60, what="the swap")

        def routed_to_promoted() -> bool:
            client.set(key, "after")  # a MOVED reply from the old master refreshes the client's slot map
            return bool(client.get_node_from_key(key).port == promoted.port)

        wait_for(routed_to_promoted, timeout=60, what="the client to route the slot to the promoted node")
        with promoted.client() as direct:
            assert direct.get(key) == "after"


def test_one_tags_transaction_and_stream_read_run_and_two_tags_are_refused(
    redis_cluster: RedisClusterProcesses,
) -> None:
    """MULTI and a multi-stream XREADGROUP run on keys of one hash tag; keys of two tags are refused by the client."""
    with redis_cluster.client() as client:
        streams = ["{ns:1}:queue:a", "{ns:1}:queue:b"]
        with client.pipeline(transaction=True) as pipe:
            for stream in streams:
                pipe.xadd(stream, {"message": stream})
                pipe.xgroup_create(stream, "workers", id="0")
            pipe.execute()
        reply = client.xreadgroup("workers", "w1", dict.fromkeys(streams, ">"), count=10)
        assert sorted(stream for stream, _entries in reply) == streams
        with client.pipeline(transaction=True) as pipe:
            pipe.xadd("{ns:1}:queue:a", {"message": "x"})
            pipe.xadd("{ns:2}:queue:a", {"message": "x"})
            with pytest.raises(redis.exceptions.CrossSlotTransactionError):
                pipe.execute()
        with pytest.raises(redis.RedisClusterException, match="same key slot"):
            client.xreadgroup("workers", "w1", {"{ns:1}:queue:a": ">", "{ns:2}:queue:a": ">"})
        assert not isinstance(redis.RedisClusterException(), redis.RedisError)  # escapes `except RedisError`


def test_a_node_whose_port_was_taken_is_started_again_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A port chosen free may be bound by another test's server before the node binds it: the node exits and
    the fixture starts it again on new ports instead of timing out (a CI run lost a whole module so)."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    chosen = redis_cluster_module.distinct_free_ports
    calls: list[int] = []

    def first_bus_port_taken(count: int) -> list[int]:
        calls.append(count)
        ports = chosen(count)
        if len(calls) == 1:
            ports[1] = taken.getsockname()[1]  # node 0's cluster bus port
        return ports

    monkeypatch.setattr(redis_cluster_module, "distinct_free_ports", first_bus_port_taken)
    cluster = RedisClusterProcesses(tmp_path / "cluster")
    try:
        cluster.start()
        assert len(calls) >= 2 and cluster.nodes[0].bus_port != taken.getsockname()[1]
        with cluster.client() as client:
            client.set("k", "v")
            assert client.get("k") == "v"
    finally:
        cluster.stop()
        taken.close()
