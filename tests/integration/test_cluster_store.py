"""beatd's store on a real Redis Cluster: batched scripts on the node of the shard's slot (and a refused one made
again after a fail-over the client has not seen), TIME from the shard's master, the Celery broker probe."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

from beatd.celery_broker import probe_broker
from beatd.config.model import CelerySettings, RedisSettings
from beatd.keys import Keys
from beatd.store import LeaderWrite, Store, StoreError, StoreUnavailable, connect
from beatd.store.base import reachable
from beatd.store.beat import BATCH_LIMIT, last_text
from beatd.store.runs import tally_bucket
from tests.integration.conftest import wait_for
from tests.integration.test_cluster_emission import fail_over, shard_master
from tests.redis_cluster import RedisClusterProcesses
from tests.redis_server import RedisServer


def cluster_store(cluster: RedisClusterProcesses, keys: Keys) -> Store:
    """A Store on the cluster, connected as the daemons connect (``redis.cluster: true``)."""
    return Store(connect(RedisSettings(url=cluster.url, cluster=True)), keys)


def emit(keys: Keys, scheduled_ms: int) -> LeaderWrite:
    """An emit write of job ``a`` at ``scheduled_ms``."""
    message = f'{{"job": "a", "scheduled_ms": {scheduled_ms}}}'
    return LeaderWrite.emit("a", scheduled_ms, keys.queue("default"), message, "", last_text(scheduled_ms, "s", "d"))


def test_an_emit_batch_after_an_unseen_fail_over_is_applied_once(redis_cluster: RedisClusterProcesses) -> None:
    """A batch sent to the shard's old master (now a replica, which answers MOVED without running it) is made
    again through the cluster client: applied once, on the new master; the next batch goes there directly."""
    keys = Keys(f"t{uuid.uuid4().hex[:10]}", 0, tagged=True)
    master, replica = shard_master(redis_cluster, keys)
    store = cluster_store(redis_cluster, keys)
    token, _ = store.acquire("one", 60_000, {"event": "leader"})
    assert token is not None
    assert store.apply(token, [emit(keys, 1_000), emit(keys, 2_000)]).statuses == ("applied", "applied")
    fail_over(master, replica)
    assert store.client.get_node_from_key(keys.leader).port == master.port  # the client has not seen it
    result = store.apply(token, [emit(keys, 3_000), emit(keys, 2_000)])
    assert result.statuses == ("applied", "duplicate"), result.errors
    assert store.client.get_node_from_key(keys.leader).port == replica.port  # learned from the MOVED
    assert store.apply(token, [emit(keys, 4_000)]).statuses == ("applied",)
    with replica.client() as direct:
        assert direct.xlen(keys.queue("default")) == 4  # 1, 2, 3 and 4 s: none twice
        assert direct.hget(keys.progress, "a") == "4000"


def test_a_batch_call_refused_mid_send_stops_the_calls_behind_it(redis_cluster: RedisClusterProcesses) -> None:
    """While the shard's slot is migrating, a node runs a call whose keys it holds and refuses (TRYAGAIN) one
    naming a key it lacks: a submit of three calls whose middle one names a new queue must not run the third
    before the second (the second's fires of job a would become duplicates of the third's progress: lost).
    Once the slot is stable again the same writes apply every fire, each once."""
    keys = Keys(f"t{uuid.uuid4().hex[:10]}", 0, tagged=True)
    store = cluster_store(redis_cluster, keys)
    token, _ = store.acquire("one", 60_000, {"event": "leader"})
    assert token is not None
    assert store.apply(token, [emit(keys, 1_000)]).statuses == ("applied",)
    master = redis_cluster.node(store.client.get_node_from_key(keys.leader).port)  # no replica needed
    assert master.role() == "master"
    slot = store.client.keyslot(keys.leader)
    other = next(
        node for node in redis_cluster.nodes if node.port != master.port and node.role() == "master"
    )  # the slot is never moved there: MIGRATING only makes the source refuse calls naming missing keys
    with master.client() as direct, other.client() as target:
        direct.hset(keys.schedules, "zz", "1")  # every fixed key of the calls exists on the source
        now_ms = int(time.time() * 1000)
        for bucket in {tally_bucket(now_ms), tally_bucket(now_ms + 120_000)}:
            direct.hset(keys.tally(bucket), "zz", 1)
        direct.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target.execute_command("CLUSTER MYID"))
    fresh = keys.queue("fresh")
    first = [emit(keys, 10_000 + index) for index in range(BATCH_LIMIT)]
    b = LeaderWrite.emit("b", 10_000, fresh, '{"job": "b"}', "", last_text(10_000, "s", "d"))
    second = [b, *(emit(keys, 11_000 + index) for index in range(BATCH_LIMIT - 1))]
    third = [emit(keys, 12_000 + index) for index in range(10)]
    try:
        with contextlib.suppress(StoreError):
            store.apply(token, first + second + third)
        with master.client() as direct:
            assert direct.hget(keys.progress, "a") == str(10_000 + BATCH_LIMIT - 1)  # the third never ran
            assert direct.hget(keys.progress, "b") is None  # the second was refused (TRYAGAIN), not run
    finally:
        with master.client() as direct:
            direct.execute_command("CLUSTER SETSLOT", slot, "STABLE")
    result = store.apply(token, first + second + third)
    assert result.statuses == ("duplicate",) * BATCH_LIMIT + ("applied",) * (BATCH_LIMIT + 10), result.errors
    with master.client() as direct:
        assert direct.xlen(keys.queue("default")) == 1 + BATCH_LIMIT + (BATCH_LIMIT - 1) + 10
        assert direct.xlen(fresh) == 1 and direct.hget(keys.progress, "a") == "12009"


def test_redis_time_comes_from_the_master_of_the_shard(redis_cluster: RedisClusterProcesses) -> None:
    """TIME goes to the master holding the shard's keys (whose clock its scripts read), not to the client's
    default node."""
    store = cluster_store(redis_cluster, Keys("probe", 0, tagged=True))
    default = store.client.get_default_node().port
    keys = next(
        keys
        for keys in (Keys(f"t{index}", 0, tagged=True) for index in range(100))
        if store.client.get_node_from_key(keys.leader).port != default
    )
    store = Store(store.client, keys)
    for node in redis_cluster.nodes:
        if node.answers():
            with node.client() as direct:
                direct.config_resetstat()
    store.redis_now()
    calls = {}
    for node in redis_cluster.nodes:
        if node.answers():
            with node.client() as direct:
                calls[node.port] = int(direct.info("commandstats").get("cmdstat_time", {}).get("calls", 0))
    assert calls == {port: int(port == store.client.get_node_from_key(keys.leader).port) for port in calls}


def test_the_celery_probe_on_a_cluster_concludes_outbox(
    redis_cluster: RedisClusterProcesses, shared_redis: RedisServer
) -> None:
    """On a cluster every Celery broker is served through the outbox (no SELECT is tried); a broker that is a
    node of a Redis Cluster is an error said at start (kombu has no cluster transport)."""
    client = connect(RedisSettings(url=redis_cluster.url, cluster=True))
    elsewhere = probe_broker(client, 0, CelerySettings(broker_url=shared_redis.url), ["celery"])
    assert elsewhere.outbox is not None and "outbox" in elsewhere.outbox
    assert (elsewhere.errors, elsewhere.unknown) == ([], False)
    node = f"redis://127.0.0.1:{redis_cluster.nodes[1].port}/0"
    on_cluster = probe_broker(client, 0, CelerySettings(broker_url=node), ["celery"])
    assert on_cluster.outbox is not None
    assert len(on_cluster.errors) == 1 and "is a Redis Cluster node" in on_cluster.errors[0]


def test_a_blocking_read_ended_by_a_fail_over_is_unavailable_not_a_refusal(
    redis_cluster: RedisClusterProcesses,
) -> None:
    """A blocking read on the shard's master when it turns replica (``UNBLOCKED ... master -> replica``) is an
    outage to back off from (StoreUnavailable), not a refusal logged as an error."""
    keys = Keys(f"t{uuid.uuid4().hex[:10]}", 0, tagged=True)
    master, replica = shard_master(redis_cluster, keys)
    client = connect(RedisSettings(url=redis_cluster.url, cluster=True), timeout=40)
    client.xadd(keys.queue("default"), {"n": "1"})
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            with reachable():
                client.xread({keys.queue("default"): "$"}, block=30_000)  # ample for a fail-over on a loaded host
        except BaseException as error:  # the outcome is the assertion
            outcome.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    wait_for(lambda: int(master.client().info("clients")["blocked_clients"]) == 1, what="the blocked read")
    fail_over(master, replica)
    reader.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], StoreUnavailable), outcome
    assert "UNBLOCKED" in str(outcome[0])
