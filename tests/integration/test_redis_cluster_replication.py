"""What a kill -9 of a Redis Cluster master loses, measured: writes it acknowledged that its promoted replica
never got (asynchronous replication), with and without a ``WAIT`` on the writing connection."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from tests.integration.conftest import wait_for
from tests.redis_cluster import ClusterNodeProcess, RedisClusterProcesses

# One "emit": progress and a queue entry written by one script, as emit.lua writes them.
EMIT = "redis.call('HSET', KEYS[1], 'job', ARGV[1]); redis.call('XADD', KEYS[2], '*', 'n', ARGV[1]); return 1"


def replicated_tag(
    redis_cluster: RedisClusterProcesses, prefix: str
) -> tuple[str, ClusterNodeProcess, ClusterNodeProcess]:
    """A hash tag whose slot's master has a live replica now, with that master and replica."""
    pairs = {}
    for node in redis_cluster.nodes:
        if node.role() == "slave":
            with node.client() as direct:
                pairs[int(direct.info("replication")["master_port"])] = node
    with redis_cluster.client() as cluster:
        for index in range(1000):
            port = cluster.get_node_from_key(f"{{{prefix}-{index}}}").port
            if port in pairs:
                return f"{prefix}-{index}", redis_cluster.node(port), pairs[port]
    raise AssertionError("no master with a live replica")


def emit_until_killed(redis_cluster: RedisClusterProcesses, tag: str, wait_replicas: bool) -> tuple[int, int, int]:
    """Emit on the master of ``{tag}`` from a thread, kill -9 the master mid-stream, wait for its replica to be
    promoted; return (emits acknowledged, progress on the new master, queue entries on the new master)."""
    tag, master, replica = replicated_tag(redis_cluster, tag)
    progress, queue = f"{{{tag}}}:progress", f"{{{tag}}}:queue"
    acknowledged = 0
    started = threading.Event()

    def writer() -> None:
        nonlocal acknowledged
        with master.client() as direct:
            number = 0
            try:
                while True:
                    number += 1
                    if wait_replicas:  # WAIT counts the replicas that have this connection's writes
                        pipe = direct.pipeline(transaction=False)
                        pipe.eval(EMIT, 2, progress, queue, number)
                        pipe.wait(1, 1000)
                        if pipe.execute()[1] < 1:
                            return
                    else:
                        direct.eval(EMIT, 2, progress, queue, number)
                    acknowledged = number
                    if number == 200:
                        started.set()
            except (redis.ConnectionError, redis.TimeoutError):
                return

    thread = threading.Thread(target=writer)
    thread.start()
    assert started.wait(10)
    time.sleep(0.3)  # emitting at full speed when the kill comes
    master.kill()
    thread.join(10)
    wait_for(lambda: replica.role() == "master", timeout=60, what="the replica's promotion")
    with replica.client() as promoted:
        return acknowledged, int(promoted.hget(progress, "job") or 0), int(promoted.xlen(queue))


@pytest.mark.parametrize("wait_replicas", [False, True], ids=["no-wait", "wait-1"])
def test_a_master_kill_loses_only_unreplicated_acknowledged_emits(
    redis_cluster: RedisClusterProcesses, wait_replicas: bool
) -> None:
    """Each emit survives whole or not at all (progress matches the queue); without WAIT the new master may lack
    the last acknowledged emits, with ``WAIT 1`` on the writing connection it has every one."""
    tag = f"lost-{int(wait_replicas)}"
    acknowledged, progress, entries = emit_until_killed(redis_cluster, tag, wait_replicas)
    print(f"wait={wait_replicas}: acknowledged {acknowledged}, on the promoted replica {progress} "
          f"(lost {acknowledged - progress})")  # fmt: skip
    assert progress == entries  # a script's effects are replicated as one transaction
    assert progress <= acknowledged + 1  # the last one may have been applied without its reply arriving
    if wait_replicas:
        assert progress >= acknowledged
