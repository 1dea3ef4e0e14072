"""`beatd reshard --to M` with real beats and workers (docs/sharding.md section 9): a deployment run at one
plain shard, resharded to 3 and then to 2, keeps every job's progress (fires contiguous across the reshards,
each run once), history and pause; a reshard is refused while a beat leads, while work is left, and when the
count does not change; a beat started during a reshard refuses; a reshard crashed at any step is finished by a
rerun; on a real Redis Cluster it leaves what it leaves on one server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from beatd.keys import Keys
from beatd.messages import parse_utc
from beatd.reshard import Reshard
from beatd.sharding import shard_of
from beatd.store import StoreUnavailable
from beatd.store.reshard import ReshardStore
from tests.conftest import REPO
from tests.integration.conftest import Daemon, wait_for
from tests.integration.helpers import assert_contiguous
from tests.redis_cluster import RedisClusterProcesses
from tests.redis_server import RedisServer

PERIOD = 0.5


def _two_per_shard(shards: int) -> list[str]:
    """Two job names in each of ``shards`` shards, ordered by shard."""
    found: dict[int, list[str]] = {shard: [] for shard in range(shards)}
    for name in (f"job{number}" for number in range(1000)):
        bucket = found[shard_of(name, shards)]
        if len(bucket) < 2:
            bucket.append(name)
    return [name for shard in range(shards) for name in found[shard]]


JOBS = _two_per_shard(3)
"""Two jobs in each of 3 shards: growing from 1 moves four, shrinking to 2 moves shard 2's two."""
PAUSED = JOBS[4]
"""In shard 2 with 3 shards: moved by both reshards."""
MOVER = JOBS[2]
"""A job of shard 1 with 3 shards."""


def _config(tmp_path: Path, server: RedisServer, namespace: str, shards: int) -> Path:
    """A config of ``shards`` (the plain layout for one) with ``JOBS`` every 500 ms, catching up all."""
    log = tmp_path / "runs.jsonl"
    body = "".join(
        f"  {job}: {{call: tests.worker_jobs:report_context, kwargs: {{log: '{log}'}}, every: 500ms, catchup: all}}\n"
        for job in JOBS
    )
    path = tmp_path / f"beatd-{shards}.yaml"
    redis_yaml = f"{{url: '{server.url}'}}"
    path.write_text(
        f"redis: {redis_yaml}\nnamespace: {namespace}\nleader: {{lease: 1s}}\npythonpath: ['{REPO}']\n"
        f"worker: {{kill_grace: 500ms, concurrency: 4}}\n" + (f"shards: {shards}\n" if shards > 1 else "") + "jobs:\n"
        f"{body}"
    )
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "beatd", *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )


def _keys(namespace: str, shards: int, job: str = "") -> Keys:
    """``job``'s shard's keys with ``shards`` (plain for one)."""
    return Keys(namespace, shard_of(job, shards), tagged=shards > 1)


def _records(client: redis.Redis, namespace: str, shards: int, job: str) -> list[dict[str, Any]]:
    return [json.loads(text) for text in client.hvals(_keys(namespace, shards, job).runs(job))]


def _succeeded(client: redis.Redis, namespace: str, shards: int, job: str) -> int:
    return sum(record["status"] == "succeeded" for record in _records(client, namespace, shards, job))


def _run(
    daemons: Callable[..., Daemon], client: redis.Redis, config: Path, namespace: str, shards: int, more: int
) -> None:
    """Start a beat and a worker on ``config``; once every unpaused job has ``more`` new succeeded runs, stop the
    beat, let the worker drain the queues, stop the worker."""
    before = {job: _succeeded(client, namespace, shards, job) for job in JOBS}
    beat = daemons("beat", "-c", str(config), name=f"beat{shards}")
    worker = daemons("worker", "-c", str(config), name=f"worker{shards}")
    active = [job for job in JOBS if job != PAUSED]
    wait_for(
        lambda: all(_succeeded(client, namespace, shards, job) >= before[job] + more for job in active),
        timeout=30,
        what=f"{more} more runs of every job with {shards} shards",
    )
    assert beat.stop() == 0
    shard_keys = [Keys(namespace, s, shards > 1) for s in range(shards)]
    wait_for(lambda: all(client.xlen(keys.queue("default")) == 0 for keys in shard_keys), what="queues drained")
    assert worker.stop() == 0


def _assert_kept(client: redis.Redis, namespace: str, shards: int, first_runs: dict[str, set[str]]) -> None:
    """Every job's records are all in its shard of ``shards`` (none elsewhere), its fires contiguous and each run
    once, and its first phase's runs among them."""
    everywhere = [Keys(namespace)] + [Keys(namespace, s, True) for s in range(4)]
    for job in JOBS:
        home = _keys(namespace, shards, job)
        assert all(not client.exists(keys.runs(job)) for keys in everywhere if keys != home), f"{job} left behind"
        records = _records(client, namespace, shards, job)
        assert first_runs[job] <= {record["run_id"] for record in records}, f"{job}: history lost"
        if job == PAUSED:
            continue
        instants: list[datetime] = sorted(parse_utc(record["scheduled_at"]) for record in records)
        assert_contiguous(instants, PERIOD)
        # skipped: a fire due while the job's first run (importing its module on a loaded machine) still ran
        assert all(record["status"] in ("succeeded", "skipped") for record in records), records


def test_reshard_1_to_3_to_2_keeps_progress_history_and_pauses(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """Jobs run at one plain shard, then 3, then 2 shards, with `beatd reshard` between (beat and worker
    stopped): each job's fires are contiguous across both reshards and each ran once (no gap, no duplicate,
    no catch-up from scratch), `beatd history` shows the first runs, the paused job stays paused; a reshard
    while the beat leads and the worker runs (each named), or to the count it has, is refused with exit 2 and
    changes nothing."""
    client = shared_redis.client()
    plain = _config(tmp_path, shared_redis, namespace, 1)
    beat = daemons("beat", "-c", str(plain), name="beat-first")
    worker = daemons("worker", "-c", str(plain), name="worker-first")
    wait_for(lambda: all(_succeeded(client, namespace, 1, job) >= 2 for job in JOBS), what="first runs")
    paused = _cli("pause", "-c", str(plain), PAUSED, "--reason", "kept across reshards")
    assert paused.returncode == 0, paused.stderr

    refused = _cli("reshard", "--to", "3", "-c", str(plain))  # the beat leads
    assert refused.returncode == 2, refused.stderr
    assert f"{namespace}:leader: led by beat replica" in refused.stderr and "Traceback" not in refused.stderr
    assert f"{namespace}:replicas: beat replica" in refused.stderr and f"{namespace}:workers: worker" in refused.stderr
    assert not client.exists(Keys(namespace, 0, True).layout), "a refused reshard marked the layout"

    wait_for(lambda: _succeeded(client, namespace, 1, JOBS[1]) >= 3, what="more runs")
    assert beat.stop() == 0
    wait_for(lambda: client.xlen(Keys(namespace).queue("default")) == 0, what="the plain queue drained")
    assert worker.stop() == 0
    first_runs = {job: {r["run_id"] for r in _records(client, namespace, 1, job)} for job in JOBS}
    same = _cli("reshard", "--to", "1", "-c", str(plain))
    assert same.returncode == 2 and "has 1 shard (plain) already" in same.stderr, same.stderr

    dry = _cli("reshard", "--to", "3", "-c", str(plain), "--dry-run")
    assert dry.returncode == 0 and "would move 6 jobs" in dry.stdout, dry.stdout + dry.stderr
    assert not client.exists(Keys(namespace, 0, True).layout)
    grown = _cli("reshard", "--to", "3", "-c", str(plain))
    assert grown.returncode == 0, grown.stderr
    assert "1 shard (plain) -> 3 shards (tagged): moved 6 jobs" in grown.stdout
    layout = json.loads(client.get(Keys(namespace, 0, True).layout) or "{}")
    assert layout == {"version": 1, "shards": 3, "state": "ready", "tagged": True}
    assert not any(key.startswith(f"{namespace}:") for key in client.scan_iter(match=f"{namespace}:*"))
    epoch = int(client.get(Keys(namespace, 0, True).epoch) or 0)
    assert epoch >= 1 and all(int(client.get(Keys(namespace, s, True).epoch) or 0) == epoch for s in (1, 2))
    assert client.hexists(_keys(namespace, 3, PAUSED).paused, PAUSED)

    three = _config(tmp_path, shared_redis, namespace, 3)
    _run(daemons, client, three, namespace, 3, more=2)
    _assert_kept(client, namespace, 3, first_runs)

    shrunk = _cli("reshard", "--to", "2", "-c", str(three))
    assert shrunk.returncode == 0, shrunk.stderr
    assert "3 shards (tagged) -> 2 shards (tagged)" in shrunk.stdout and "retired shards [2]" in shrunk.stdout
    two = _config(tmp_path, shared_redis, namespace, 2)
    _run(daemons, client, two, namespace, 2, more=2)
    _assert_kept(client, namespace, 2, first_runs)
    ran = [json.loads(line)["run_id"] for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert len(ran) == len(set(ran)), "a fire ran twice"

    history = _cli("history", "-c", str(two), JOBS[1], "--limit", "1000", "--json")
    assert history.returncode == 0, history.stderr
    assert first_runs[JOBS[1]] <= {record["run_id"] for record in json.loads(history.stdout)}
    assert client.hexists(_keys(namespace, 2, PAUSED).paused, PAUSED)
    assert (
        not _records(client, namespace, 2, PAUSED)
        or {r["run_id"] for r in _records(client, namespace, 2, PAUSED)} == first_runs[PAUSED]
    ), "the paused job fired"
    audits = [json.loads(fields["record"]) for _, fields in client.xrange(Keys(namespace, 0, True).audit)]
    assert [(a["from"], a["to"]) for a in audits if a["event"] == "reshard"] == [(1, 3), (3, 2)]


def test_reshard_refuses_work_left_and_a_beat_started_meanwhile_refuses(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A fire left in a queue refuses the reshard (exit 2, naming the queue, nothing changed); a crashed
    reshard's journal (layout `resharding`) makes a beat refuse to start, and running the reshard again
    finishes it; a reshard back to one shard on one server restores the plain keys."""
    client = shared_redis.client()
    plain = _config(tmp_path, shared_redis, namespace, 1)
    client.hset(Keys(namespace).progress, MOVER, "1000")
    client.xadd(Keys(namespace).queue("default"), {"message": "{}"})
    refused = _cli("reshard", "--to", "3", "-c", str(plain))
    assert refused.returncode == 2 and f"{namespace}:queue:default: 1 left (not drained)" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not client.exists(Keys(namespace, 0, True).layout) and client.hexists(Keys(namespace).progress, MOVER)
    client.delete(Keys(namespace).queue("default"))
    message = json.dumps({"v": 1, "job": MOVER, "fire_id": f"{MOVER}@2026-01-01T00:00:00Z"})
    fields = {"message": message, "sig": "", "reason": "failed for good", "queue": Keys(namespace).queue("default")}
    client.xadd(Keys(namespace).dead, {**fields, "run_id": f"{MOVER}@2026-01-01T00:00:00Z#3"})

    journal = {"version": 1, "state": "resharding", "from": 1, "from_tagged": False, "to": 3, "to_tagged": True}
    client.set(Keys(namespace, 0, True).layout, json.dumps({**journal, "epoch": 0}))  # as a crashed reshard left it
    home = _keys(namespace, 3, MOVER)
    client.hset(Keys(namespace).runs(MOVER), mapping={"a": "1", "b": "2"})
    client.hset(home.runs(MOVER), "a", "1")  # copied before the crash, not yet deleted from the source
    for config in (plain, _config(tmp_path, shared_redis, namespace, 3)):
        beat = daemons("beat", "-c", str(config), name=f"refused-{config.stem}")
        assert beat.process is not None and beat.process.wait(20) == 2
        assert "shards: a `beatd reshard` from 1 to 3 shards is under way or unfinished" in beat.log()
        assert "Traceback" not in beat.log()
    worker = daemons("worker", "-c", str(plain), name="refused-worker")  # it would dead-letter moved jobs' fires
    assert worker.process is not None and worker.process.wait(20) == 2
    assert "shards: a `beatd reshard` from 1 to 3 shards is under way or unfinished" in worker.log()
    other = _cli("reshard", "--to", "2", "-c", str(plain))
    assert other.returncode == 2 and "run `beatd reshard --to 3` again" in other.stderr, other.stderr
    finished = _cli("reshard", "--to", "3", "-c", str(plain))
    assert finished.returncode == 0, finished.stderr
    assert client.hget(_keys(namespace, 3, MOVER).progress, MOVER) == "1000"
    assert client.hgetall(home.runs(MOVER)) == {"a": "1", "b": "2"}
    assert not client.exists(Keys(namespace).runs(MOVER), Keys(namespace, 0, True).runs(MOVER))
    assert json.loads(client.get(Keys(namespace, 0, True).layout) or "{}")["state"] == "ready"
    assert "and 1 dead letters" in finished.stdout
    assert not client.exists(Keys(namespace).dead, Keys(namespace, 0, True).dead)
    [(dead_id, moved)] = client.xrange(home.dead)  # with the job, naming its shard's queue: retried there
    assert moved["queue"] == home.queue("default") and moved["message"] == message
    retried = _cli("dead", "retry", f"{home.shard}:{dead_id}", "-c", str(_config(tmp_path, shared_redis, namespace, 3)))
    assert retried.returncode == 0, retried.stderr
    assert [json.loads(f["message"])["job"] for _, f in client.xrange(home.queue("default"))] == [MOVER]
    client.delete(home.queue("default"))

    back = _cli("reshard", "--to", "1", "-c", str(plain))  # tagged -> plain: every job's keys plain again
    assert back.returncode == 0 and "3 shards (tagged) -> 1 shard (plain)" in back.stdout, back.stderr
    assert client.hget(Keys(namespace).progress, MOVER) == "1000"
    assert not any(client.exists(Keys(namespace, s, True).progress) for s in range(3))
    layout = json.loads(client.get(Keys(namespace, 0, True).layout) or "{}")
    assert layout == {"version": 1, "shards": 1, "state": "ready", "tagged": False, "retired": [1, 2]}


class _Crashing(ReshardStore):
    """A real store that fails (as an outage would) at its ``crash_at``-th write step: before a step, between a
    step's copy and its delete, or in a round of key moves half done."""

    def __init__(self, client: Any, crash_at: int) -> None:
        super().__init__(client)
        self.crash_at, self.steps, self.keys_in_round = crash_at, 0, 0

    def _step(self) -> None:
        self.steps += 1
        if self.steps == self.crash_at:
            raise StoreUnavailable("Redis unavailable: injected crash")

    def move_keys(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Crash before this step, or make it."""
        self._step()
        self.keys_in_round = 0
        return super().move_keys(pairs)

    def _move_key(self, source: str, target: str, target_type: str) -> None:
        """Crash after a round's first key moved (a round half done), or move it."""
        self.keys_in_round += 1
        if self.keys_in_round == 2:
            self._step()
        super()._move_key(source, target, target_type)

    def move_fields(self, source: str, target: str, fields: dict[str, str]) -> int:
        """Crash before this step, or between its copy and its delete, or make it."""
        self._step()
        if fields:
            self.client.hset(target, mapping=fields)
            self._step()
        return super().move_fields(source, target, fields)

    def move_members(self, source: str, target: str, members: Sequence[str]) -> None:
        """Crash before this step, or between its copy and its delete, or make it."""
        self._step()
        if members:
            self.client.sadd(target, *members)
            self._step()
        super().move_members(source, target, members)

    def raise_epoch(self, key: str, floor: int) -> None:
        """Crash before this step, or make it."""
        self._step()
        super().raise_epoch(key, floor)

    def delete(self, keys: Sequence[str]) -> int:
        """Crash before this step, or make it."""
        self._step()
        return super().delete(keys)

    def move_runtime_jobs(self, source: Any, target: Any, entries: dict[str, str], maxlen: int) -> int:
        """Crash before this step, or make it."""
        self._step()
        return super().move_runtime_jobs(source, target, entries, maxlen)

    def write_stream(self, key: str, entries: Sequence[tuple[str, dict[str, str]]]) -> None:
        """Crash before this step, or make it."""
        self._step()
        super().write_stream(key, entries)

    def move_scores(self, source: str, target: str, scores: dict[str, float]) -> int:
        """Crash before this step, or between its copy and its delete, or make it."""
        self._step()
        if scores:
            self.client.zadd(target, scores)
            self._step()
        return super().move_scores(source, target, scores)

    def delete_entries(self, key: str, ids: Sequence[str]) -> None:
        """Crash before this step, or make it."""
        self._step()
        super().delete_entries(key, ids)


def _seed(client: Any, keys: Keys) -> None:
    """One shard's state (plain, or shard 0 of one tagged shard) for 12 jobs: progress, pauses, alert state,
    runs, ends, runtime jobs, dead letters, alert events, an epoch; and shard 2's alert group and deliveries."""
    if keys.tagged:
        client.set(keys.layout, json.dumps({"version": 1, "shards": 1, "state": "ready"}))
    for number in range(12):
        job = f"seed{number}"
        client.hset(keys.progress, job, str(1000 + number))
        client.hset(keys.schedules, job, f"digest{number}")
        client.hset(keys.last, job, f"{1000 + number} schedule d")
        client.hset(keys.runs(job), mapping={f"{job}@{t}#1": json.dumps({"t": t}) for t in range(3)})
        client.zadd(keys.runs_by_time(job), {f"{job}@{t}#1": t for t in range(3)})
        client.xadd(keys.ended(job), {"fire_id": f"{job}@1", "status": "succeeded"})
        client.pexpire(keys.ended(job), 600_000)
        client.hset(keys.alert_state, mapping={f"open:{job}": "failed", f"mark:deadline:{job}": "{}"})
        if number % 3 == 0:
            client.hset(keys.paused, job, json.dumps({"reason": "seeded"}))
            client.hset(keys.runtime_jobs, job, json.dumps({"version": number + 1, "spec": {"every": "1h"}}))
            message = json.dumps({"job": job})
            client.xadd(keys.dead, {"message": message, "sig": "", "reason": "x", "queue": keys.queue("default")})
        if number % 4 == 0:  # noted by a worker once the beats had stopped: not grouped yet
            client.xadd(keys.alert_events, {"record": json.dumps({"job": job, "status": "dead"})})
    dropped = Keys(keys.namespace, 2, True)  # dropped by 3 -> 2: an alert group and its deliveries, due
    client.hset(dropped.alert_groups, "seed2|failed|1000", json.dumps({"count": 1}))
    client.hset(dropped.alert_deliveries, mapping={"close": "{}", "summary": "{}"})
    client.zadd(dropped.alert_due, {"close": 1600, "summary": 1200})
    client.hset(keys.alert_state, "mark:no_worker:default", "{}")
    client.set(keys.runtime_version, 12)
    client.set(keys.epoch, 5)


def _snapshot(client: Any, namespace: str) -> dict[str, Any]:
    """Every key of ``namespace`` by a name without the namespace, with its content (stream ids, runtime job
    versions, the audit log and the runtime change log left out: a rerun adds to those; they differ run to run)."""
    found: dict[str, Any] = {}
    skipped = ("runtime-jobs:version", "runtime-jobs:changes", "audit", "layout")
    for key in [*client.scan_iter(match=f"{namespace}:*"), *client.scan_iter(match=f"{{{namespace}:*")]:
        name = key.replace(namespace, "NS")
        if name.endswith(skipped):
            continue
        kind = client.type(key)
        if kind == "hash":
            value: Any = client.hgetall(key)
            if name.endswith("runtime-jobs"):
                value = {job: {**json.loads(text), "version": 0} for job, text in value.items()}
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            # A moved entry's ``moved_from`` names its old stream id: kept to its shard, as the ids are left out.
            value = [
                {f: v.replace(namespace, "NS") if f != "moved_from" else v.partition(":")[0] for f, v in fields.items()}
                for _, fields in client.xrange(key)
            ]
        else:
            value = client.get(key)
        found[name] = value
    return found


def test_a_beat_and_a_worker_stalled_through_a_reshard_exit_2_when_they_resume(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A beat and a worker of 2 shards stopped (SIGSTOP) until `beatd reshard --to 3` has taken them for gone and
    run: resumed, each reads the layout again before it does anything more, and exits 2 naming the shard count
    Redis holds (the beat led its old shards' leases with the old count, the worker read the old shards)."""
    jobs = "".join(f"  {job}: {{command: ['true'], every: 1h}}\n" for job in JOBS)  # no fire during the test
    config = tmp_path / "beatd.yaml"
    config.write_text(
        f"redis: {{url: '{shared_redis.url}'}}\nnamespace: {namespace}\nleader: {{lease: 1s}}\nshards: 2\n"
        f"worker: {{kill_grace: 500ms}}\njobs:\n{jobs}"
    )
    beat = daemons("beat", "-c", str(config), name="beat")
    worker = daemons("worker", "-c", str(config), name="worker")
    beat.wait_log(r"leading shards 0,1")
    wait_for(lambda: shared_redis.client().hlen(Keys(namespace, 0, True).workers) == 1, what="the worker's heartbeat")
    for daemon in (beat, worker):
        daemon.signal(signal.SIGSTOP)
    # Refused while the stopped daemons' heartbeats are fresh (10 s), then done.
    done = wait_for(lambda: _cli("reshard", "--to", "3", "-c", str(config)).returncode == 0, timeout=90,
                    interval=1.0, what="the reshard, once the stopped daemons' heartbeats are stale")  # fmt: skip
    assert done
    layout = json.loads(shared_redis.client().get(Keys(namespace, 0, True).layout) or "{}")
    assert (layout.get("shards"), layout.get("state")) == (3, "ready")
    for daemon in (beat, worker):
        daemon.signal(signal.SIGCONT)
    for daemon in (beat, worker):
        assert daemon.process is not None and daemon.process.wait(30) == 2, daemon.log()
        assert "holds shards: 3" in daemon.log() and "Traceback" not in daemon.log()
    holders = [shared_redis.client().get(Keys(namespace, shard, True).leader) for shard in range(3)]
    assert not any(holder and f":{beat.pid}:" in holder for holder in holders), holders


def test_a_reshard_crashed_at_any_step_is_finished_by_running_it_again(shared_redis: RedisServer) -> None:
    """A reshard that fails at any one of its write steps (1 -> 3, then 3 -> 2), run again, leaves exactly what
    one uninterrupted reshard leaves: every field, key, TTL'd stream and dead letter once, where it belongs."""
    client = shared_redis.client()
    reference = f"r{uuid.uuid4().hex[:8]}"
    _seed(client, Keys(reference))
    expected = {}
    for to in (3, 2):
        Reshard(ReshardStore(client), reference, to, cluster=False).run()
        expected[to] = _snapshot(client, reference)
    assert any(name.startswith("{NS:2}:runs:") for name in expected[3])
    assert "{NS:0}:alerts:groups" in expected[2] and "{NS:2}:alerts:due" not in expected[2]
    crash_at = 1
    while True:
        namespace = f"c{uuid.uuid4().hex[:8]}"
        _seed(client, Keys(namespace))
        crashed = False
        for to in (3, 2):
            store = _Crashing(client, crash_at)
            try:
                Reshard(store, namespace, to, cluster=False).run()
            except StoreUnavailable:
                crashed = True
                assert json.loads(client.get(Keys(namespace, 0, True).layout) or "{}")["state"] == "resharding"
                Reshard(ReshardStore(client), namespace, to, cluster=False).run()
            assert _snapshot(client, namespace) == expected[to], f"crashed at step {crash_at} of --to {to}"
            assert all(client.pttl(key) > 0 for key in client.scan_iter(match=f"{{{namespace}:*}}:ended:*"))
        if not crashed:
            break  # every step of both reshards has been crashed at once
        crash_at += 1
    assert crash_at > 5, crash_at


def test_reshard_on_a_redis_cluster_leaves_what_it_leaves_on_one_server(
    tmp_path: Path, shared_redis: RedisServer, redis_cluster: RedisClusterProcesses
) -> None:
    """On a real Redis Cluster (keys moved across slots: DUMP + RESTORE) `beatd reshard` from one tagged shard
    to 3, then to 2, leaves exactly what it leaves on one server (RENAME), and a moved key keeps its TTL."""
    reference, namespace = f"r{uuid.uuid4().hex[:8]}", f"k{uuid.uuid4().hex[:8]}"
    client = redis_cluster.client()
    _seed(shared_redis.client(), Keys(reference, 0, True))
    _seed(client, Keys(namespace, 0, True))
    seeds = ", ".join(f"'127.0.0.1:{node.port}'" for node in redis_cluster.nodes[1:3])
    config = tmp_path / "cluster.yaml"
    config.write_text(
        f"redis: {{url: '{redis_cluster.url}', cluster: true, cluster_nodes: [{seeds}]}}\nnamespace: {namespace}\n"
        "jobs: {}\n"
    )
    for to, moved in ((3, "1 shard (tagged) -> 3 shards (tagged)"), (2, "3 shards (tagged) -> 2 shards (tagged)")):
        Reshard(ReshardStore(shared_redis.client()), reference, to, cluster=False).run()
        done = _cli("reshard", "--to", str(to), "-c", str(config))
        assert done.returncode == 0 and moved in done.stdout, done.stderr
        assert _snapshot(client, namespace) == _snapshot(shared_redis.client(), reference), f"--to {to}"
    ended = [
        key for key in client.scan_iter(match=f"{{{namespace}:*}}:ended:*") if not key.startswith(f"{{{namespace}:0}}")
    ]
    assert ended and all(0 < client.pttl(key) <= 600_000 for key in ended)


def test_alert_events_not_yet_grouped_move_with_their_job(shared_redis: RedisServer) -> None:
    """The alert events the workers noted after the beats stopped (a drained run's record, waiting for a
    leader to group them) move to their job's new shard: its leader's config view holds only its own jobs, and
    a dropped shard has no leader at all. An unreadable event stays (or goes to shard 0 from a dropped shard)."""
    client = shared_redis.client()
    namespace = f"a{uuid.uuid4().hex[:8]}"
    plain = Keys(namespace)
    jobs = _two_per_shard(3)
    for job in jobs:
        client.hset(plain.progress, job, "1000")
        client.xadd(plain.alert_events, {"record": json.dumps({"job": job, "run_id": f"{job}@1#1", "status": "dead"})})
    client.xadd(plain.alert_events, {"record": "not json"})
    for to in (3, 2):
        Reshard(ReshardStore(client), namespace, to, cluster=False).run()
        for shard in range(3):
            events = client.xrange(Keys(namespace, shard, True).alert_events)
            owners = [
                json.loads(fields["record"]).get("job") if fields["record"] != "not json" else None
                for _, fields in events
            ]
            expected = sorted(job for job in jobs if shard_of(job, to) == shard) + ([None] if shard == 0 else [])
            assert sorted(owners, key=str) == sorted(expected, key=str), (to, shard, owners)


def test_alert_groups_and_deliveries_of_a_dropped_shard_go_to_shard_0(shared_redis: RedisServer) -> None:
    """A dropped shard has no leader to close its alert groups and deliver its deliveries: they go to shard 0
    (a group with the delivery that closes it, each delivery still due when it was)."""
    client = shared_redis.client()
    namespace = f"g{uuid.uuid4().hex[:8]}"
    client.set(Keys(namespace, 0, True).layout, json.dumps({"version": 1, "shards": 3, "state": "ready"}))
    dropped, home = Keys(namespace, 2, True), Keys(namespace, 0, True)
    job = JOBS[4]
    client.hset(dropped.progress, job, "1000")
    client.hset(dropped.alert_groups, f"{job}|failed|1000", json.dumps({"count": 2}))
    client.hset(dropped.alert_deliveries, mapping={"d-close": '{"kind": "close"}', "d-sum": '{"kind": "summary"}'})
    client.zadd(dropped.alert_due, {"d-close": 1600, "d-sum": 1200})
    client.hset(home.alert_deliveries, "d-home", '{"kind": "summary"}')
    client.zadd(home.alert_due, {"d-home": 1100})
    Reshard(ReshardStore(client), namespace, 2, cluster=False).run()
    assert client.hgetall(home.alert_groups) == {f"{job}|failed|1000": json.dumps({"count": 2})}
    assert sorted(client.hkeys(home.alert_deliveries)) == ["d-close", "d-home", "d-sum"]
    assert client.zrange(home.alert_due, 0, -1, withscores=True) == [
        ("d-home", 1100),
        ("d-sum", 1200),
        ("d-close", 1600),
    ]
    assert not any(client.exists(key) for key in (dropped.alert_groups, dropped.alert_deliveries, dropped.alert_due))


class _Slow(ReshardStore):
    """A real store on which every SCAN takes ``seconds`` (a large keyspace: SCAN walks every key of the
    server): the clock moves on, and so do the leases' TTLs in Redis."""

    def __init__(self, client: Any, seconds: float) -> None:
        super().__init__(client)
        self.seconds, self.now = seconds, 0.0
        self.leases_of: list[str] = []
        self.lapsed: list[str] = []

    def scan(self, pattern: str) -> list[str]:
        """Scan, then let ``seconds`` pass."""
        found = super().scan(pattern)
        self.now += self.seconds
        for key in self.leases_of:
            left = self.client.pttl(key)
            if left > 0:
                if left <= self.seconds * 1000:
                    self.client.delete(key)
                    self.lapsed.append(key)
                else:
                    self.client.pexpire(key, left - int(self.seconds * 1000))
        return found


def test_a_reshard_keeps_its_leases_while_it_reads_every_shard(shared_redis: RedisServer) -> None:
    """Reading what each shard holds (a few SCANs of the whole keyspace per shard, before the first job moves)
    takes longer than the reshard's lease on a large deployment: the leases are renewed between shards."""
    client = shared_redis.client()
    namespace = f"l{uuid.uuid4().hex[:8]}"
    client.set(Keys(namespace, 0, True).layout, json.dumps({"version": 1, "shards": 3, "state": "ready"}))
    for job in JOBS:
        client.hset(Keys(namespace, shard_of(job, 3), True).progress, job, "1000")
    store = _Slow(client, 5.0)
    store.leases_of = [Keys(namespace, shard, True).leader for shard in range(3)]
    reshard = Reshard(store, namespace, 2, cluster=False)
    reshard.monotonic = lambda: store.now
    summary = reshard.run()
    assert summary.jobs_moved == 2 and not store.lapsed, store.lapsed
    assert all(client.hget(Keys(namespace, shard_of(job, 2), True).progress, job) == "1000" for job in JOBS)
