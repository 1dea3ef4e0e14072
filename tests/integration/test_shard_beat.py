"""Real `beatd beat` replicas sharing ``shards: 4`` on a real redis-server: each leads a fair share, every fire
of every shard is emitted once across kill -9, joins and leaves, and no shard stays unled for long."""

from __future__ import annotations

import itertools
import json
import signal
from collections.abc import Callable
from pathlib import Path

import redis

from beatd.keys import Keys
from beatd.sharding import shard_of
from tests.conftest import run_cli
from tests.integration.conftest import Daemon, wait_for
from tests.integration.helpers import LeaseWatch, assert_contiguous, jobs_per_shard, lease_holders
from tests.redis_server import RedisServer

SHARDS = 4
LEASE = 2.0
PERIOD = 0.2
PLAN_TICK = 0.25
"""beatd.shard_beat.PLAN_INTERVAL: how often a replica looks at the leases."""


JOBS = jobs_per_shard(2, SHARDS, "tick")


def _config(path: Path, server: RedisServer, namespace: str, extra: str = "") -> Path:
    body = "".join(
        f"  {name}: {{command: ['true'], every: 200ms, catchup: all}}\n" for names in JOBS.values() for name in names
    )
    path.write_text(
        f"redis: {{url: '{server.url}'}}\nnamespace: {namespace}\nleader: {{lease: {LEASE:g}s}}\n"
        f"shards: {SHARDS}\n{extra}jobs:\n{body}"
    )
    return path


def _keys(namespace: str, shard: int) -> Keys:
    return Keys(namespace, shard, tagged=True)


def _fires(client: redis.Redis, namespace: str) -> dict[str, list[str]]:
    """Every job's fire ids in its shard's queue stream, in stream order."""
    fires: dict[str, list[str]] = {}
    for shard in range(SHARDS):
        for _entry, fields in client.xrange(_keys(namespace, shard).queue("default")):
            message = json.loads(fields["message"])
            assert shard_of(message["job"], SHARDS) == shard, f"{message['job']} emitted into shard {shard}"
            fires.setdefault(message["job"], []).append(message["scheduled_at"])
    return fires


def _assert_exactly_once(client: redis.Redis, namespace: str) -> dict[str, list[str]]:
    from beatd.messages import parse_utc

    fires = _fires(client, namespace)
    assert set(fires) == {name for names in JOBS.values() for name in names}
    for job, instants in fires.items():
        assert len(instants) == len(set(instants)), f"{job}: a fire emitted twice"
        assert_contiguous([parse_utc(text) for text in instants], PERIOD)
    return fires


def _led(client: redis.Redis, namespace: str) -> dict[str, list[int]]:
    """Replica id -> the shards its heartbeat says it leads."""
    beats = {member: json.loads(value) for member, value in client.hgetall(_keys(namespace, 0).replicas).items()}
    return {member: sorted(beat.get("shards", [])) for member, beat in beats.items()}


def _holders(client: redis.Redis, namespace: str) -> list[str | None]:
    return lease_holders(client, namespace, SHARDS)


def _fair(client: redis.Redis, namespace: str, replicas: list[Daemon]) -> bool:
    """Every shard is led, each live replica leads 4 // n or one more, and the heartbeats agree with the leases."""
    holders = _holders(client, namespace)
    if None in holders:
        return False
    counts = sorted(sum(1 for holder in holders if holder and f":{daemon.pid}:" in holder) for daemon in replicas)
    base = SHARDS // len(replicas)
    return sum(counts) == SHARDS and all(base <= count <= base + 1 for count in counts)


def _epochs(client: redis.Redis, namespace: str, shard: int) -> list[int]:
    """The epochs of shard ``shard``'s leader audit records, in order (each acquisition's INCR)."""
    epochs = []
    for _entry, fields in client.xrange(_keys(namespace, shard).audit):
        if fields["event"] == "leader":
            record = json.loads(fields["record"])
            assert record.get("shard") == shard
            epochs.append(int(fields["token"].partition(":")[0]))
    return epochs


def test_three_replicas_share_four_shards_each_fire_once(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """Three replicas of shards: 4 lead 1, 1 and 2 shards, and every fire of every shard's jobs is emitted once."""
    config = _config(tmp_path / "beatd.yaml", shared_redis, namespace)
    replicas = [daemons("beat", "-c", str(config)) for _ in range(3)]
    client = shared_redis.client()
    wait_for(lambda: _fair(client, namespace, replicas), timeout=60, what="a fair share of the shards each")
    start = {job: len(fires) for job, fires in _fires(client, namespace).items()}
    wait_for(
        lambda: all(len(fires) >= start.get(job, 0) + 5 for job, fires in _fires(client, namespace).items()),
        what="5 more fires of every job",
    )
    _assert_exactly_once(client, namespace)
    led = wait_for(
        lambda: (found := _led(client, namespace)) and sorted(map(len, found.values())) == [1, 1, 2] and found,
        timeout=5,
        what="heartbeats listing the shards led",
    )
    assert sorted(shard for shards in led.values() for shard in shards) == list(range(SHARDS))
    assert client.get(_keys(namespace, 0).layout) is not None
    assert not client.exists(Keys(namespace).progress), "a plain key written by a sharded deployment"

    from click.testing import CliRunner

    from beatd.cli import Runtime, cli

    shown = CliRunner().invoke(cli, ["status", "-c", str(config), "--json"], obj=Runtime(environ={}, cwd=tmp_path))
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.output)
    pids = {daemon.pid for daemon in replicas}
    assert [row["shard"] for row in report["shards"]] == list(range(SHARDS))
    assert all(row["pid"] in pids and 0 < row["lease_left_s"] <= LEASE for row in report["shards"])
    assert [row["jobs"] for row in report["shards"]] == [2] * SHARDS
    assert {job["name"] for job in report["jobs"] if job["last_emission"]} == set(start) | set(
        _fires(client, namespace)
    )
    emitted = sum(len(fires) for fires in _fires(client, namespace).values())  # read after the status: more
    assert sum(start.values()) < report["queues"]["default"] <= emitted
    table = CliRunner().invoke(cli, ["status", "-c", str(config)], obj=Runtime(environ={}, cwd=tmp_path))
    assert table.exit_code == 0 and "SHARD" in table.output and "LEASE LEFT" in table.output, table.output


def test_kill_9_join_and_leave_every_fire_once_no_shard_unled_long(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """Across kill -9 of a replica, a replica joining and one leaving (SIGTERM), every fire of every shard is
    emitted once with no gap, each shard's leader epochs only grow, and no shard is unled for longer than a
    lease and a planning tick (with slack for a loaded host)."""
    config = _config(tmp_path / "beatd.yaml", shared_redis, namespace)
    client = shared_redis.client()
    watch = LeaseWatch(shared_redis.client(), namespace, SHARDS)
    thread = watch.start()
    replicas = [daemons("beat", "-c", str(config)) for _ in range(3)]
    wait_for(lambda: _fair(client, namespace, replicas), timeout=60, what="a fair share")
    watch.longest.clear()  # the start (nobody led yet) is not a gap

    victim = next(
        daemon for daemon in replicas if any(f":{daemon.pid}:" in (h or "") for h in _holders(client, namespace))
    )
    victim.signal(signal.SIGKILL)
    replicas.remove(victim)
    wait_for(lambda: _fair(client, namespace, replicas), timeout=60, what="the killed replica's shards taken")

    replicas.append(daemons("beat", "-c", str(config)))  # a replica joins: shards move to it
    wait_for(lambda: _fair(client, namespace, replicas), timeout=60, what="a share for the new replica")

    leaving = replicas.pop(0)
    leaving.signal(signal.SIGTERM)
    assert leaving.process is not None and leaving.process.wait(10) == 0
    wait_for(lambda: _fair(client, namespace, replicas), timeout=60, what="the leaver's shards taken")
    count = {job: len(fires) for job, fires in _fires(client, namespace).items()}
    wait_for(
        lambda: all(len(fires) >= count[job] + 5 for job, fires in _fires(client, namespace).items()),
        what="fires after the changes",
    )
    watch.stop()
    thread.join(2)
    _assert_exactly_once(client, namespace)
    bound = LEASE + PLAN_TICK + 1.0  # a lease and a planning tick, and a second of slack for 2 shared cores
    assert all(gap <= bound for gap in watch.longest.values()), f"unled for {watch.longest} (bound {bound}s)"
    for shard in range(SHARDS):
        epochs = _epochs(client, namespace, shard)
        assert epochs == sorted(set(epochs)), f"shard {shard}: leader epochs {epochs}"


def test_runtime_jobs_live_in_their_shard_and_fire_there(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """`beatd job put` writes each runtime job to its own shard's keys; that shard's leader follows it and emits
    its fires into that shard's queue, and a worker (following every shard's runtime jobs) runs them; `job list`
    reads every shard; `job rm` stops its fires."""
    from click.testing import CliRunner

    from beatd.cli import Runtime, cli

    repo = Path(__file__).resolve().parents[2]
    extra = f"pythonpath: [{repo}]\nruntime_jobs: {{allow: ['tests.worker_jobs:*']}}\n"
    config = _config(tmp_path / "beatd.yaml", shared_redis, namespace, extra)
    client = shared_redis.client()
    beats = [daemons("beat", "-c", str(config)) for _ in range(2)]
    names = [next(f"made{i}" for i in itertools.count() if shard_of(f"made{i}", SHARDS) == shard) for shard in (1, 3)]
    runtime = Runtime(environ={}, cwd=tmp_path)
    spec = tmp_path / "job.yaml"
    spec.write_text("every: 200ms\ncall: tests.worker_jobs:noop\n")
    for name in names:
        put = CliRunner().invoke(cli, ["job", "put", name, "-f", str(spec), "-c", str(config)], obj=runtime)
        assert put.exit_code == 0, put.output
    for name, shard in zip(names, (1, 3), strict=True):
        stored = {other: client.hexists(_keys(namespace, other).runtime_jobs, name) for other in range(SHARDS)}
        assert stored == {other: other == shard for other in range(SHARDS)}, f"{name} stored in {stored}"
        wait_for(lambda name=name: len(_fires(client, namespace).get(name, [])) >= 3, what=f"fires of {name}")
    worker = daemons("worker", "-c", str(config))  # follows every shard's runtime jobs, records in their shard
    for name, shard in zip(names, (1, 3), strict=True):
        runs = _keys(namespace, shard).runs(name)
        wait_for(
            lambda runs=runs: any(json.loads(text)["status"] == "succeeded" for text in client.hvals(runs)),
            what=f"a run of {name} recorded in shard {shard}",
        )
    assert worker.stop() == 0
    assert not any(client.xlen(_keys(namespace, shard).dead) for shard in range(SHARDS)), "a fire dead-lettered"
    listed = CliRunner().invoke(cli, ["job", "list", "-c", str(config), "--json"], obj=runtime)
    assert listed.exit_code == 0, listed.output
    assert sorted(entry["name"] for entry in json.loads(listed.output)) == sorted(names)
    removed = CliRunner().invoke(cli, ["job", "rm", names[0], "-c", str(config)], obj=runtime)
    assert removed.exit_code == 0, removed.output
    # every replica follows every shard's runtime jobs (a standby too, to lead at once): wait for both
    wait_for(lambda: all(f"runtime job removed {names[0]}" in beat.log() for beat in beats), what="the delete followed")
    gone = len(_fires(client, namespace)[names[0]])
    other = len(_fires(client, namespace)[names[1]])
    wait_for(lambda: len(_fires(client, namespace)[names[1]]) >= other + 5, what=f"more fires of {names[1]}")
    assert len(_fires(client, namespace)[names[0]]) == gone, f"{names[0]} fired after its delete"
    _assert_exactly_once_jobs(client, namespace, names[1:])


def _assert_exactly_once_jobs(client: redis.Redis, namespace: str, jobs: list[str]) -> None:
    from beatd.messages import parse_utc

    fires = _fires(client, namespace)
    for job in jobs:
        instants = fires[job]
        assert len(instants) == len(set(instants)), f"{job}: a fire emitted twice"
        assert_contiguous([parse_utc(text) for text in instants], PERIOD)


def test_beat_refuses_a_shard_count_redis_does_not_hold(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A beat whose `shards` differs from the deployment's layout (or from a plain deployment's keys in use)
    exits 2 naming the setting and writes nothing; a reload that changes `shards` is refused and audited."""
    client = shared_redis.client()
    first = daemons("beat", "-c", str(_config(tmp_path / "four.yaml", shared_redis, namespace)))
    wait_for(lambda: _fair(client, namespace, [first]), timeout=60, what="the first beat leading")
    two = (tmp_path / "four.yaml").read_text().replace(f"shards: {SHARDS}", "shards: 2")
    (tmp_path / "two.yaml").write_text(two)
    one = (tmp_path / "four.yaml").read_text().replace(f"shards: {SHARDS}\n", "")
    (tmp_path / "one.yaml").write_text(one)
    for name in ("two.yaml", "one.yaml"):
        refused = daemons("beat", "-c", str(tmp_path / name), name=name)
        assert refused.process is not None and refused.process.wait(15) == 2
        assert f"{tmp_path / name}: shards: this deployment's Redis holds shards: {SHARDS}" in refused.log()
        assert "Traceback" not in refused.log()
    assert not client.exists(Keys(namespace).epoch), "the refused plain beat contended for a lease"

    (tmp_path / "four.yaml").write_text(two)  # a reload cannot change the shard count
    first.signal(signal.SIGHUP)
    first.wait_log("reload refused: shards: 4 -> 2: a reload cannot change the shard count", timeout=10)
    wait_for(
        lambda: any(fields["event"] == "reload-failed" for _, fields in client.xrange(_keys(namespace, 0).audit)),
        what="the refused reload audited",
    )
    assert _fair(client, namespace, [first])

    plain = "t" + namespace[1:][::-1]  # a plain deployment's keys in use: a sharded beat refuses them
    client.set(Keys(plain).progress, "x")
    mixed = daemons("beat", "-c", str(_config(tmp_path / "plain.yaml", shared_redis, plain)), name="plain")
    assert mixed.process is not None and mixed.process.wait(15) == 2
    assert "holds shards: 1" in mixed.log()
    assert not client.exists(_keys(plain, 0).layout)


def test_beat_started_while_redis_is_down_checks_the_layout_before_leading(
    tmp_path: Path, own_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A beat started while Redis is down stays alive and leads nothing; once Redis answers it checks the
    layout first, and a shard count other than Redis's makes it exit 2 without taking any lease."""
    client = own_redis.client()
    client.set(_keys(namespace, 0).layout, json.dumps({"version": 1, "shards": 8, "state": "ready"}))
    config = _config(tmp_path / "beatd.yaml", own_redis, namespace)
    own_redis.stop()
    beat = daemons("beat", "-c", str(config))
    beat.wait_log(r"the deployment's layout is not checked yet", timeout=30)
    own_redis.start(timeout=30)
    assert beat.process is not None and beat.process.wait(30) == 2
    assert f"shards: this deployment's Redis holds shards: 8 ({_keys(namespace, 0).layout})" in beat.log()
    client = own_redis.client()
    assert not any(client.exists(_keys(namespace, shard).leader, _keys(namespace, shard).epoch) for shard in range(4))


def test_a_plain_beat_writes_only_plain_keys(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """`shards: 1` (the default) keeps today's layout: a leading plain beat writes every key under `{ns}:` and
    nothing tagged (no `{ns:0}:layout`, no `{ns:0}:replicas`), and its heartbeat carries no shard fields."""
    body = "".join(f"  {name}: {{command: ['true'], every: 200ms}}\n" for name in JOBS[0] + JOBS[1])
    config = tmp_path / "beatd.yaml"
    config.write_text(
        f"redis: {{url: '{shared_redis.url}'}}\nnamespace: {namespace}\nleader: {{lease: {LEASE:g}s}}\njobs:\n{body}"
    )
    client = shared_redis.client()
    daemons("beat", "-c", str(config))
    plain = Keys(namespace)
    wait_for(lambda: client.xlen(plain.queue("default")) >= 4, what="fires in the plain queue")
    written = sorted(str(key) for key in client.scan_iter(match=f"*{namespace}*"))
    assert written and all(key.startswith(f"{namespace}:") for key in written), written

    def leading() -> dict[str, object] | None:
        return next((beat for beat in map(json.loads, client.hvals(plain.replicas)) if beat["role"] == "leader"), None)

    heartbeat = wait_for(leading, what="a heartbeat as leader")
    assert not {"shards", "wants", "shard_count", "ready"} & set(heartbeat), heartbeat


def test_one_shards_long_work_renews_the_other_shards_leases(shared_redis: RedisServer, namespace: str) -> None:
    """A sharded replica steps its shards' beats one after the other: while one does a long piece of work (a
    burst, a sync of many jobs: it calls `keep()` between batches), the leases of the other shards it holds are
    renewed too, not left to lapse until that tick ends."""
    from datetime import timedelta

    from beatd.leader import Leadership
    from beatd.store import Store, connect

    client = connect(shared_redis.url)
    now = [0.0]
    leases = [
        Leadership(Store(client, _keys(namespace, shard)), "r1", timedelta(seconds=3), dict, monotonic=lambda: now[0])
        for shard in range(2)
    ]
    busy, other = leases
    busy.others = [other]  # as ShardedBeat wires them
    assert busy.step(0.0) and other.step(0.0)
    now[0] = 2.5  # past the renewal time (a third of the lease), the lease not lapsed yet
    shared_redis.client().pexpire(_keys(namespace, 1).leader, 500)  # as 2.5 s later in Redis
    assert busy.keep()
    assert other.valid_until == 2.5 + 3, "the other shard's lease was not renewed during the long work"
    assert 2000 < shared_redis.client().pttl(_keys(namespace, 1).leader) <= 3000


def test_an_unreadable_heartbeat_neither_stops_the_shards_being_led_nor_breaks_status(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A field of ``{ns:0}:replicas`` that is not JSON (written by something else): a sharded beat still leads
    every shard (the lease plan had failed on it at every interval, so nothing was led), and `beatd status`
    answers (it had ended in a JSONDecodeError traceback)."""
    client = shared_redis.client()
    client.hset(_keys(namespace, 0).replicas, "stranger", "not json{")
    client.hset(_keys(namespace, 0).replicas, "empty", "{}")  # JSON, but no heartbeat_at
    config = _config(tmp_path / "beatd.yaml", shared_redis, namespace)
    beat = daemons("beat", "-c", str(config))
    wait_for(lambda: _fair(client, namespace, [beat]), timeout=60, what="every shard led despite the bad heartbeat")
    status = run_cli("status", "-c", str(config))
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
