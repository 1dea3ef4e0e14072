"""Real `beatd beat` replicas of ``shards: 4`` and a `beatd worker` on a real Redis Cluster (3 masters + 3
replicas, the shards' slots on more than one master): every fire of every shard is emitted and run exactly once
across kill -9 of replicas, a replica joining and one leaving; each shard's leader epochs only grow and no shard
stays unled for longer than a lease and a planning tick (with slack)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis.cluster import RedisCluster

from beatd.keys import Keys
from tests.conftest import REPO
from tests.integration.conftest import Daemon, wait_for
from tests.integration.helpers import LeaseWatch, jobs_per_shard, lease_holders
from tests.redis_cluster import RedisClusterProcesses

SHARDS = 4
LEASE = 2.0
PLAN_TICK = 0.25
"""beatd.shard_beat.PLAN_INTERVAL: how often a replica looks at the leases."""
PERIOD = timedelta(seconds=1)


JOBS = jobs_per_shard(2, SHARDS, "job")
ALL_JOBS = [name for names in JOBS.values() for name in names]


def _keys(namespace: str, shard: int) -> Keys:
    return Keys(namespace, shard, tagged=True)


def _masters_of(client: RedisCluster, namespace: str) -> dict[int, int]:
    """Shard -> the port of the master holding its slot."""
    return {shard: client.get_node_from_key(_keys(namespace, shard).leader).port for shard in range(SHARDS)}


def _spread_namespace(client: RedisCluster) -> str:
    """A fresh namespace whose shards' slots are on at least two masters."""
    for _ in range(100):
        namespace = f"t{uuid.uuid4().hex[:10]}"
        if len(set(_masters_of(client, namespace).values())) >= 2:
            return namespace
    raise AssertionError("no namespace spread over two masters")


def _config(tmp_path: Path, cluster: RedisClusterProcesses, namespace: str) -> Path:
    """Two jobs per shard every second, phases spread over the second, each run appending to ``JOB.log``."""
    seeds = ", ".join(f"'127.0.0.1:{node.port}'" for node in cluster.nodes[1:3])
    jobs = "".join(
        f"  {name}: {{call: tests.worker_jobs:report_context, args: ['{tmp_path / name}.log'], every: 1s, "
        f"start: '2026-01-01T00:00:00.{index * 1000 // len(ALL_JOBS):03d}Z', catchup: all}}\n"
        for index, name in enumerate(ALL_JOBS)
    )
    path = tmp_path / "beatd.yaml"
    path.write_text(
        f"redis: {{url: '{cluster.url}', cluster: true, cluster_nodes: [{seeds}]}}\nnamespace: {namespace}\n"
        f"leader: {{lease: {LEASE:g}s}}\nshards: {SHARDS}\nworker: {{isolation: thread}}\npythonpath: [{REPO}]\n"
        f"jobs:\n{jobs}"
    )
    return path


def _holders(client: RedisCluster, namespace: str) -> list[str | None]:
    return lease_holders(client, namespace, SHARDS)


def _fair(client: RedisCluster, namespace: str, replicas: list[Daemon]) -> bool:
    """Every shard is led by a live replica, each leading 4 // n shards or one more."""
    holders = _holders(client, namespace)
    if None in holders:
        return False
    counts = [sum(1 for holder in holders if holder and f":{daemon.pid}:" in holder) for daemon in replicas]
    base = SHARDS // len(replicas)
    return sum(counts) == SHARDS and all(base <= count <= base + 1 for count in counts)


def _leading(client: RedisCluster, namespace: str, replicas: list[Daemon]) -> Daemon:
    """A replica that leads at least one shard now."""
    holders = _holders(client, namespace)
    return next(daemon for daemon in replicas if any(f":{daemon.pid}:" in (holder or "") for holder in holders))


def _executed(tmp_path: Path, job: str) -> Counter[datetime]:
    """How many times each scheduled instant of ``job`` ran (one log line per run)."""
    log = tmp_path / f"{job}.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(datetime.fromisoformat(json.loads(line)["scheduled_at"]) for line in lines)


def _runs(tmp_path: Path) -> dict[str, int]:
    return {job: sum(_executed(tmp_path, job).values()) for job in ALL_JOBS}


def _more_runs(tmp_path: Path, count: int) -> None:
    """Wait until every job of every shard has run ``count`` more times."""
    before = _runs(tmp_path)
    wait_for(
        lambda: all(runs >= before[job] + count for job, runs in _runs(tmp_path).items()),
        timeout=20,
        what=f"{count} more runs of every job",
    )


def _progress(client: RedisCluster, namespace: str) -> dict[str, datetime]:
    """Each job's progress (its last emitted instant), read from its shard."""
    found: dict[str, datetime] = {}
    for shard in range(SHARDS):
        for job, value in client.hgetall(_keys(namespace, shard).progress).items():
            found[job] = datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    return found


def _epochs(client: RedisCluster, namespace: str, shard: int) -> list[int]:
    """The epochs of shard ``shard``'s leader audit records, in order (each acquisition's INCR)."""
    epochs = []
    for _entry, fields in client.xrange(_keys(namespace, shard).audit):
        if fields["event"] == "leader":
            assert json.loads(fields["record"]).get("shard") == shard
            epochs.append(int(fields["token"].partition(":")[0]))
    return epochs


READS = ("status", "status --json", "history", "history job0", "audit", "dead", "export", "alerts", "jobs")
"""Operator commands that read every shard (or one job's), each over slots of several masters."""


def _beatd(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a ``beatd`` operator command on ``config``."""
    return subprocess.run(
        [sys.executable, "-m", "beatd", *args, "-c", str(config)], cwd=REPO, capture_output=True, text=True, timeout=30
    )


def test_four_shards_on_a_cluster_kill_join_leave_every_fire_once(
    tmp_path: Path, redis_cluster: RedisClusterProcesses, daemons: Callable[..., Daemon]
) -> None:
    """Three replicas of shards: 4 on a Redis Cluster and a worker: kill -9 of a leading replica, a replica
    joining, another kill -9 and a replica leaving (SIGTERM); every fire of every shard ran exactly once up to its
    progress, each shard's leader epochs only grow, and no shard was unled for longer than a lease and a tick."""
    client = redis_cluster.client()
    namespace = _spread_namespace(client)
    config = _config(tmp_path, redis_cluster, namespace)
    watch = LeaseWatch(redis_cluster.client(), namespace, SHARDS)
    thread = watch.start()
    replicas = [daemons("beat", "-c", str(config), name=f"beat{index}") for index in range(3)]
    worker = daemons("worker", "-c", str(config), name="worker")
    everyone = [*replicas, worker]
    wait_for(lambda: _fair(client, namespace, replicas), timeout=30, what="a fair share of the shards each")
    _more_runs(tmp_path, 2)
    watch.longest.clear()  # the start (nobody led yet) is not a gap

    for step in ("kill", "join", "kill", "leave"):
        if step == "join":
            replicas.append(daemons("beat", "-c", str(config), name=f"beat{len(everyone)}"))
            everyone.append(replicas[-1])
        elif step == "kill":
            victim = _leading(client, namespace, replicas)
            victim.signal(signal.SIGKILL)
            replicas.remove(victim)
        else:
            leaving = replicas.pop(0)
            leaving.signal(signal.SIGTERM)
            assert leaving.process is not None and leaving.process.wait(10) == 0
        wait_for(lambda: _fair(client, namespace, replicas), timeout=60, what=f"a fair share after the {step}")
    _more_runs(tmp_path, 2)
    watch.stop()
    thread.join(2)
    reads = {command: _beatd(config, *command.split()) for command in READS}

    for replica in replicas:
        replica.stop()
    final = _progress(client, namespace)
    assert set(final) == set(ALL_JOBS)

    def expected(job: str) -> list[datetime]:
        runs = _executed(tmp_path, job)
        first = min(runs) if runs else final[job]
        return [first + PERIOD * step for step in range(int((final[job] - first) / PERIOD) + 1)]

    def all_ran() -> bool:
        return all(set(expected(job)) <= set(_executed(tmp_path, job)) for job in ALL_JOBS)

    wait_for(all_ran, timeout=60, what="every emitted fire to run")
    lost = [f"{job}@{at:%H:%M:%S.%f}" for job in ALL_JOBS for at in expected(job) if at not in _executed(tmp_path, job)]
    doubled = [f"{job}@{at:%H:%M:%S.%f}x{n}" for job in ALL_JOBS for at, n in _executed(tmp_path, job).items() if n > 1]
    assert (lost, doubled) == ([], [])
    assert all(len(expected(job)) >= 8 for job in ALL_JOBS), {job: len(expected(job)) for job in ALL_JOBS}

    bound = LEASE + PLAN_TICK + 1.5  # a lease and a planning tick, and slack for 2 shared cores
    assert all(gap <= bound for gap in watch.longest.values()), f"unled for {watch.longest} (bound {bound}s)"
    for shard in range(SHARDS):
        epochs = _epochs(client, namespace, shard)
        assert len(epochs) >= 1 and epochs == sorted(set(epochs)), f"shard {shard}: leader epochs {epochs}"
    assert sum(len(_epochs(client, namespace, shard)) for shard in range(SHARDS)) > SHARDS  # shards moved
    for command, done in reads.items():
        assert done.returncode == 0 and "Traceback" not in done.stderr, f"beatd {command}: {done}"
    shown = json.loads(reads["status --json"].stdout)
    assert [row["shard"] for row in shown["shards"]] == list(range(SHARDS))
    assert all(row["pid"] for row in shown["shards"])
    assert "succeeded" in reads["history"].stdout and "succeeded" in reads["history job0"].stdout
    for daemon in everyone:
        log = daemon.log()
        assert "Redis refused" not in log and "Traceback" not in log, f"{daemon.log_path}:\n{log[-3000:]}"
