"""Real `beatd beat` replicas and a `beatd worker` on a real Redis Cluster (``redis.cluster: true``, one shard in
the tagged layout): every fire emitted and run exactly once across kill -9 of the leader and a ``CLUSTER
FAILOVER`` of the shard's master; a kill -9 of that master loses no fire (duplicates are counted)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from beatd.client import AsyncClient, Client
from beatd.keys import Keys
from beatd.localredis import require_redis_server
from tests.conftest import REPO
from tests.integration.conftest import Daemon, wait_for
from tests.redis_cluster import ClusterNodeProcess, RedisClusterProcesses
from tests.redis_server import RedisServer

JOBS = ("a", "b", "c")
PERIOD = timedelta(seconds=1)


def shard_master(cluster: RedisClusterProcesses, keys: Keys) -> tuple[ClusterNodeProcess, ClusterNodeProcess]:
    """The master holding ``keys``' slot and its linked replica (asked of the nodes themselves)."""
    with cluster.client() as client:
        port = client.get_node_from_key(keys.leader).port
    for node in cluster.nodes:
        if node.replica_linked():
            with node.client() as direct:
                if int(direct.info("replication")["master_port"]) == port:
                    return cluster.node(port), node
    raise AssertionError(f"the master on port {port} has no linked replica")


def fail_over(master: ClusterNodeProcess, replica: ClusterNodeProcess, timeout: float = 25) -> None:
    """``CLUSTER FAILOVER`` on ``replica`` until ``master`` has turned replica: a manual fail-over the master's
    replica cannot finish in time (still catching up after an earlier one) times out and is asked again."""
    asked = [0.0]

    def switched() -> bool:
        if replica.role() == "master" and master.role() == "slave":
            return True
        if time.monotonic() - asked[0] > 6:
            with replica.client() as direct:
                assert direct.execute_command("CLUSTER FAILOVER") in ("OK", True, b"OK")
            asked[0] = time.monotonic()
        return False

    wait_for(switched, timeout=timeout, what="the fail-over")


def replicated_namespace(cluster: RedisClusterProcesses) -> str:
    """A fresh namespace whose shard 0 lives on a master with a linked replica now."""
    for _ in range(100):
        namespace = f"t{uuid.uuid4().hex[:10]}"
        try:
            shard_master(cluster, Keys(namespace, 0, tagged=True))
        except AssertionError:
            continue
        return namespace
    raise AssertionError("no master with a linked replica")


def write_cluster_config(tmp_path: Path, cluster: RedisClusterProcesses, namespace: str) -> Path:
    """A config of three jobs every second on the cluster, each run appending its context to ``JOB.log``."""
    seeds = ", ".join(f"'127.0.0.1:{node.port}'" for node in cluster.nodes[1:3])
    jobs = "".join(
        f"  {job}: {{call: tests.worker_jobs:report_context, args: ['{tmp_path / job}.log'], every: 1s, "
        "catchup: all}\n"
        for job in JOBS
    )
    path = tmp_path / "beatd.yaml"
    path.write_text(
        f"redis: {{url: '{cluster.url}', cluster: true, cluster_nodes: [{seeds}]}}\nnamespace: {namespace}\n"
        f"leader: {{lease: 1s}}\nworker: {{isolation: thread}}\npythonpath: [{REPO}]\njobs:\n{jobs}"
    )
    return path


def executed(tmp_path: Path, job: str) -> Counter[datetime]:
    """How many times each scheduled instant of ``job`` ran (one log line per run)."""
    log = tmp_path / f"{job}.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(datetime.fromisoformat(json.loads(line)["scheduled_at"]) for line in lines)


def progress(cluster: RedisClusterProcesses, keys: Keys) -> dict[str, datetime]:
    """Each job's progress (its last emitted instant) as the shard's master holds it now."""
    with cluster.client() as client:
        raw = client.hgetall(keys.progress)
    return {job: datetime.fromtimestamp(int(value) / 1000, tz=UTC) for job, value in raw.items()}


def leader_pid(cluster: RedisClusterProcesses, keys: Keys) -> int | None:
    """The pid in the current fencing token (``epoch:host:pid:suffix``), or None."""
    try:
        with cluster.client() as client:
            token = client.get(keys.leader)
    except Exception:  # the cluster may be mid fail-over: no leader known yet
        return None
    return int(str(token).split(":")[2]) if token else None


def beats_and_worker(daemons: Callable[..., Daemon], config: Path, beats: int) -> tuple[list[Daemon], Daemon]:
    """``beats`` beat replicas and one worker on ``config``."""
    replicas = [daemons("beat", "-c", str(config), name=f"beat{index}") for index in range(beats)]
    return replicas, daemons("worker", "-c", str(config), name="worker")


def settle(tmp_path: Path, cluster: RedisClusterProcesses, keys: Keys, replicas: list[Daemon]) -> dict[str, datetime]:
    """Stop the beats, then wait until every instant up to each job's progress has run (or 20 s); the progress."""
    for replica in replicas:
        replica.stop()
    final = progress(cluster, keys)

    def all_ran() -> bool:
        return all(set(expected(final[job], executed(tmp_path, job))) <= set(executed(tmp_path, job)) for job in JOBS)

    deadline = time.monotonic() + 20
    while not all_ran() and time.monotonic() < deadline:
        time.sleep(0.1)
    return final


def expected(last: datetime, runs: Counter[datetime]) -> list[datetime]:
    """Every instant from the first that ran up to ``last``."""
    first = min(runs) if runs else last
    return [first + PERIOD * step for step in range(int((last - first) / PERIOD) + 1)]


def losses_and_duplicates(tmp_path: Path, final: dict[str, datetime]) -> tuple[list[str], list[str]]:
    """The fires up to each job's progress that never ran, and those that ran more than once."""
    lost, doubled = [], []
    for job in JOBS:
        runs = executed(tmp_path, job)
        assert runs, f"{job} never ran"
        lost += [f"{job}@{instant:%H:%M:%S}" for instant in expected(final[job], runs) if instant not in runs]
        doubled += [f"{job}@{instant:%H:%M:%S}x{count}" for instant, count in runs.items() if count > 1]
    return lost, doubled


def assert_nothing_refused(daemons: list[Daemon]) -> None:
    """No daemon logged a refusal (a command or script the cluster refuses: CROSSSLOT, a blocked pipeline
    command) or a traceback."""
    for daemon in daemons:
        log = daemon.log()
        assert "Redis refused" not in log and "Traceback" not in log, f"{daemon.log_path}:\n{log[-3000:]}"


def beatd(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a ``beatd`` operator command on ``config``."""
    return subprocess.run(
        [sys.executable, "-m", "beatd", *args, "-c", str(config)], cwd=REPO, capture_output=True, text=True, timeout=30
    )


def fires_run(tmp_path: Path) -> int:
    """Runs so far, all jobs."""
    return sum(sum(executed(tmp_path, job).values()) for job in JOBS)


def kill_leader(tmp_path: Path, cluster: RedisClusterProcesses, keys: Keys, replicas: list[Daemon]) -> None:
    """kill -9 of the leading replica; wait for another to lead and for 6 more runs."""
    pid = wait_for(lambda: leader_pid(cluster, keys), what="a leader")
    next(replica for replica in replicas if replica.pid == pid).signal(signal.SIGKILL)
    wait_for(lambda: leader_pid(cluster, keys) not in (None, pid), timeout=60, what="a new leader")
    count = fires_run(tmp_path)
    wait_for(lambda: fires_run(tmp_path) >= count + 6, what="runs after the takeover")


def test_kill_9_of_two_leaders_on_a_cluster_loses_and_doubles_nothing(
    tmp_path: Path, redis_cluster: RedisClusterProcesses, daemons: Callable[..., Daemon]
) -> None:
    """Three beat replicas and a worker on a Redis Cluster: kill -9 of the leader, twice; every fire up to the
    progress ran exactly once, and status, history and audit read the cluster."""
    namespace = replicated_namespace(redis_cluster)
    keys = Keys(namespace, 0, tagged=True)
    config = write_cluster_config(tmp_path, redis_cluster, namespace)
    replicas, worker = beats_and_worker(daemons, config, 3)
    wait_for(lambda: fires_run(tmp_path) >= 6, what="first runs")
    for _ in range(2):
        kill_leader(tmp_path, redis_cluster, keys, replicas)
    status, history, audit = beatd(config, "status"), beatd(config, "history", "a"), beatd(config, "audit")
    final = settle(tmp_path, redis_cluster, keys, replicas)
    lost, doubled = losses_and_duplicates(tmp_path, final)
    assert (lost, doubled) == ([], [])
    assert status.returncode == 0 and "leader:" in status.stdout and "a " in status.stdout, status
    assert history.returncode == 0 and "succeeded" in history.stdout, history
    leaders = [line for line in audit.stdout.splitlines() if " leader " in line]
    assert audit.returncode == 0 and len(leaders) == 3, audit.stdout  # the first leader and two takeovers
    assert_nothing_refused([*replicas, worker])


def test_cluster_failover_of_the_shards_master_loses_and_doubles_nothing(
    tmp_path: Path, redis_cluster: RedisClusterProcesses, daemons: Callable[..., Daemon]
) -> None:
    """``CLUSTER FAILOVER`` (manual: the replica catches up first) of the master holding the shard, during
    emission: no fire lost, none doubled, and emission carries on on the promoted replica."""
    namespace = replicated_namespace(redis_cluster)
    keys = Keys(namespace, 0, tagged=True)
    config = write_cluster_config(tmp_path, redis_cluster, namespace)
    master, replica = shard_master(redis_cluster, keys)
    replicas, worker = beats_and_worker(daemons, config, 2)
    wait_for(lambda: fires_run(tmp_path) >= 6, what="first runs")
    fail_over(master, replica)
    count = fires_run(tmp_path)
    wait_for(lambda: fires_run(tmp_path) >= count + 9, what="runs after the fail-over")
    final = settle(tmp_path, redis_cluster, keys, replicas)
    lost, doubled = losses_and_duplicates(tmp_path, final)
    assert (lost, doubled) == ([], [])
    assert_nothing_refused([*replicas, worker])


def test_celery_fires_on_a_cluster_reach_another_broker_through_the_outbox(
    tmp_path: Path, redis_cluster: RedisClusterProcesses, shared_redis: RedisServer, daemons: Callable[..., Daemon]
) -> None:
    """A celery job on a Redis Cluster: each fire goes to the shard's outbox (the Celery queue's name is a value,
    not a key of another slot) and the leader's relay publishes it to the broker, another Redis server."""
    namespace, queue = replicated_namespace(redis_cluster), f"q{uuid.uuid4().hex[:8]}"
    seed = f"127.0.0.1:{redis_cluster.nodes[1].port}"
    config = tmp_path / "beatd.yaml"
    config.write_text(
        f"redis: {{url: '{redis_cluster.url}', cluster: true, cluster_nodes: ['{seed}']}}\n"
        f"namespace: {namespace}\nleader: {{lease: 1s}}\n"
        f"celery: {{broker_url: '{shared_redis.url}', default_queue: {queue}}}\n"
        "jobs:\n  report: {celery: app.tasks.report, every: 1s}\n"
    )
    beat = daemons("beat", "-c", str(config))
    broker = shared_redis.client()
    wait_for(lambda: broker.llen(queue) >= 3, what="3 task messages on the broker")
    assert "through the outbox" in beat.log()
    tasks = [json.loads(envelope)["headers"]["task"] for envelope in broker.lrange(queue, 0, -1)]
    assert set(tasks) == {"app.tasks.report"}


def test_a_manual_fire_on_a_cluster_is_waited_for_by_both_clients(
    tmp_path: Path, redis_cluster: RedisClusterProcesses, daemons: Callable[..., Daemon]
) -> None:
    """`beatd trigger --wait` and the asyncio client's trigger and wait work on a cluster: the enqueue and the
    waiting read are transactions of the shard's slot, the clock is the shard's master's."""
    namespace = replicated_namespace(redis_cluster)
    config = write_cluster_config(tmp_path, redis_cluster, namespace)
    daemons("worker", "-c", str(config), name="worker")
    with Client.from_config(config) as client:
        wait_for(lambda: client.live_workers("default"), what="the worker's heartbeat")
    triggered = beatd(config, "trigger", "a", "--wait")
    assert triggered.returncode == 0 and "status: succeeded" in triggered.stdout, triggered
    assert "no live worker" not in triggered.stderr, triggered.stderr

    async def trigger_and_wait() -> str:
        async with AsyncClient.from_config(config) as client:
            handle = await client.trigger("b")
            return (await handle.wait(timeout=20)).status

    assert asyncio.run(trigger_and_wait()) == "succeeded"


def test_kill_9_of_the_shards_master_loses_no_fire(
    tmp_path: Path, redis_cluster: RedisClusterProcesses, daemons: Callable[..., Daemon]
) -> None:
    """kill -9 of the master holding the shard during emission: once its replica is promoted, emission carries
    on and every fire up to the new master's progress ran (a lost emit batch is planned again with the same
    fire ids); a run whose writes died with the master may run again: counted, allowed (docs/sharding.md §7)."""
    namespace = replicated_namespace(redis_cluster)
    keys = Keys(namespace, 0, tagged=True)
    config = write_cluster_config(tmp_path, redis_cluster, namespace)
    master, replica = shard_master(redis_cluster, keys)
    replicas, _ = beats_and_worker(daemons, config, 2)
    wait_for(lambda: fires_run(tmp_path) >= 6, what="first runs")
    master.kill()
    killed_at = time.monotonic()
    wait_for(lambda: replica.role() == "master", timeout=60, what="the replica's promotion")
    promoted = time.monotonic() - killed_at
    count = fires_run(tmp_path)
    wait_for(lambda: fires_run(tmp_path) >= count + 9, timeout=30, what="runs after the promotion")
    final = settle(tmp_path, redis_cluster, keys, replicas)
    lost, doubled = losses_and_duplicates(tmp_path, final)
    total = fires_run(tmp_path)
    print(
        f"kill -9 of the shard's master: promoted after {promoted:.1f}s; {total} runs, lost {lost}, doubled {doubled}"
    )
    assert lost == []
    assert len(doubled) <= len(JOBS) * 2, doubled  # at most the fires of the writes in flight at the kill
    master.start(require_redis_server())  # back, as a replica of the promoted one
