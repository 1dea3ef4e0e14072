"""Every key beatd writes stays within a bound, against a real redis-server.

The worker's side runs in-process (real Intake and store scripts, an injected clock: a worker "dies" by never
ending its run while the clock moves past its lease); the beat's upkeep runs in a Beat on an injected clock;
`expires` is also checked with a real worker process.
"""

from __future__ import annotations

import dataclasses
import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from beatd import defaults, upkeep
from beatd.audit import audit_record
from beatd.beat import Beat
from beatd.cli import cli as cli_main
from beatd.cli.runtime import Runtime
from beatd.clock import FixedClock
from beatd.config import Config, load_config
from beatd.identity import Identity
from beatd.keys import GROUP, Keys
from beatd.messages import Message, fire_id, format_utc, parse_utc, to_ms
from beatd.metrics import Metrics
from beatd.records import RunRecord
from beatd.store import Finish, RunStore, Store, connect
from beatd.store.upkeep import HISTORY_BATCH
from beatd.worker.ends import conclude
from beatd.worker.finisher import Finisher
from beatd.worker.intake import Intake
from beatd.worker.registry import Registry, Run, Setup
from tests.integration.conftest import Daemon, wait_for
from tests.integration.helpers import runs, write_config
from tests.integration.test_beat_operations import cli
from tests.integration.test_worker import config_file, enqueue, lines, statuses
from tests.redis_server import RedisServer

JOBS = """
    flaky: {command: [x], every: 1h, retries: 1, retry_delay: 0s, overlap: allow, history: {keep: 3}}
    busy: {command: [x], every: 1h, retries: 1, retry_delay: 0s, overlap: skip, history: {keep: 3}}
    swap: {command: [x], every: 1h, overlap: replace, history: {keep: 3}}
    gone: {command: [x], every: 1h, history: {keep: 3}}
    late: {command: [x], every: 1h, retries: 1, retry_delay: 0s, expires: 1m, overlap: allow, history: {keep: 3}}
"""

LEASE = 30  # s: every job's run lease (timeout + kill grace, capped by RUN_LEASE_MAX)

BOOKKEEPING = ("attempts", "cancel", "leases:", "active:", "retry:", "buffer:")
"""Key names that hold in-flight state only: none of them may be left once every fire has ended."""


class WriteNow(Finisher):
    """The finisher, writing each end at once in the caller's thread (the test decides the order)."""

    def submit(self, end: Finish) -> None:
        """Write ``end`` now."""
        assert not self.store.finish([end], to_ms(self.clock.now()))


@dataclass
class InProcessWorker:
    """One worker's intake on the shared clock; claimed runs land in ``claimed`` instead of a runner."""

    intake: Intake
    claimed: list[Run] = field(default_factory=list)

    def read(self) -> Run:
        """Read and claim one entry; return the run claimed."""
        before = len(self.claimed)
        self.intake.read(1)
        assert len(self.claimed) == before + 1, "nothing was claimed"
        return self.claimed[-1]

    def end(self, run: Run, status: str) -> None:
        """End ``run`` with ``status`` as a runner would, through the outcome policy."""
        now = self.intake.clock.now()
        run.record.status = status  # type: ignore[assignment]
        run.record.started_at = run.record.finished_at = format_utc(now)
        self.intake.registry.drop([run.record.run_id])
        self.intake.finisher.submit(conclude(run.spec, run.delivery, run.message, run.record, now, lambda *_: 0.0))


@dataclass
class Scene:
    """Two configs (the second lacks job ``gone``), one namespace, one injected clock."""

    store: RunStore
    beat_store: Store
    config: Config
    without_gone: Config
    clock: FixedClock

    def worker(self, name: str, config: Config) -> InProcessWorker:
        """A worker named ``name`` running ``config``."""
        identity = Identity(name, "test", 0, self.clock.now())
        finisher = WriteNow(self.store, self.clock, written=lambda: None, failed=lambda: None)
        worker = InProcessWorker(None)  # type: ignore[arg-type]
        worker.intake = Intake(
            self.store, Registry(Setup.of(config, None)), identity, self.clock, finisher, Metrics(),
            signer=None, dispatch=worker.claimed.append, stop_run=lambda run, reason: None,
        )  # fmt: skip
        return worker

    def fire(self, job: str, scheduled: datetime) -> str:
        """Put one scheduled fire of ``job`` into the default queue; return its fire id."""
        now = self.clock.now()
        message = Message(fire_id(job, scheduled), job, format_utc(scheduled), format_utc(now), "schedule", "d")
        self.beat_store.enqueue("default", [(message.to_json(), "")], audit_record("trigger", now, job=job))
        return message.fire_id

    def keys(self) -> dict[str, int]:
        """Every key of the namespace -> MEMORY USAGE (bytes)."""
        client = self.store.client
        prefix = self.store.keys.namespace + ":"
        return {str(key)[len(prefix) :]: int(client.memory_usage(key)) for key in client.scan_iter(f"{prefix}*")}


@pytest.fixture
def scene(tmp_path: Path, shared_redis: RedisServer, namespace: str) -> Iterator[Scene]:
    """The scene on the shared redis-server, with the default queue's consumer group."""
    config = load_config(write_config(tmp_path / "a.yaml", shared_redis, namespace, JOBS), {})
    without = JOBS.replace("    gone: {command: [x], every: 1h, history: {keep: 3}}\n", "")
    without_gone = load_config(write_config(tmp_path / "b.yaml", shared_redis, namespace, without), {})
    store = RunStore(connect(shared_redis.url), Keys(namespace))
    store.ensure_groups(["default"])
    yield Scene(store, Store(connect(shared_redis.url), Keys(namespace)), config, without_gone,
                FixedClock(datetime.now(UTC).replace(microsecond=0)))  # fmt: skip


def cycle(scene: Scene, first: InProcessWorker, second: InProcessWorker, third: InProcessWorker) -> None:
    """Retries to dead, a retry skipped, a replaced run whose worker dies, a reclaimed fire dead-lettered."""
    store, clock = scene.store, scene.clock
    base = clock.now()
    # A fire out of retries: attempt 1 fails, the retry fails, dead.
    scene.fire("flaky", base)
    first.end(first.read(), "failed")
    store.requeue_due_retries("default", to_ms(clock.now()))
    first.end(first.read(), "failed")
    # A fire whose retry finds its job running on another worker: skipped.
    retried = scene.fire("busy", base + timedelta(minutes=1))
    first.end(first.read(), "failed")
    scene.fire("busy", base - timedelta(seconds=1))
    running = second.read()
    store.requeue_due_retries("default", to_ms(clock.now()))
    first.intake.read(1)
    skipped = json.loads(store.client.hget(store.keys.runs("busy"), f"{retried}#0"))
    assert skipped["status"] == "skipped"
    second.end(running, "succeeded")
    # A run replaced while its worker (second) dies; a run of `gone` whose worker (first) stalls.
    scene.fire("swap", base)
    replaced = second.read()
    scene.fire("swap", base + timedelta(seconds=1))
    replacing = first.read()
    assert store.client.hexists(store.keys.cancel, replaced.record.run_id)
    first.end(replacing, "succeeded")
    scene.fire("gone", base)
    stalled = first.read()
    # Both leases end. A fresh worker (third) without `gone` in its config takes both entries over: the
    # replaced fire is recorded cancelled and not run again; the other is dead-lettered. The stalled worker
    # renews once more, then dies.
    clock.advance(LEASE + 1)
    taken = store.reclaim("default", third.intake.identity.id, to_ms(clock.now()), 0)
    assert len(taken) == 2
    third.intake.admit(taken)
    assert third.claimed == []
    record = json.loads(store.client.hget(store.keys.runs("swap"), replaced.record.run_id))
    assert record["status"] == "cancelled" and record["reason"].startswith("replaced by swap@")
    store.renew([stalled.lease], first.intake.identity.id, to_ms(clock.now()) + LEASE * 1000)
    clock.advance(LEASE + 1)


def test_retries_deaths_replacements_reclaims_and_dead_letters_leave_nothing_behind(scene: Scene) -> None:
    """After fires that retried to dead, retried then were skipped, were replaced under a dying worker, and
    were reclaimed then dead-lettered, no in-flight key is left, and the key count and memory do not grow
    with the number of fires: history is capped by `history.keep`, dead letters by their stream's length."""
    first = scene.worker("first", scene.config)
    second = scene.worker("second", scene.config)
    third = scene.worker("third", scene.without_gone)
    for _ in range(5):
        cycle(scene, first, second, third)
    after_five = scene.keys()
    for _ in range(15):
        cycle(scene, first, second, third)
    # The history of `gone` holds one record per dead-lettered attempt until a run of it ends on a worker
    # that knows it, which prunes it to `history.keep`.
    scene.fire("gone", scene.clock.now())
    first.end(first.read(), "succeeded")
    after_twenty = scene.keys()
    left = {key: _fields(scene, key) for key in after_twenty if key.startswith(BOOKKEEPING)}
    assert left == {}
    store = scene.store
    # The jobs' ended streams (what waiters read) are capped by ENDED_MAXLEN and expire ENDED_TTL after their
    # last end: bounded by count like the dead letters, and a job's appears with its first end.
    ended = {key for key in after_twenty if key.startswith("ended:")}
    assert ended and all(store.client.pttl(f"{store.keys.namespace}:{key}") > 0 for key in ended)
    # The dashboard's run-count buckets (one per 5 minutes of the injected clock) expire TALLY_TTL after their
    # last count: bounded by time, like the ended streams.
    tallies = {key for key in set(after_twenty) | set(after_five) if key.startswith("tally:")}
    kept = tallies & set(after_twenty)
    assert kept and all(store.client.pttl(f"{store.keys.namespace}:{key}") > 0 for key in kept)
    ended |= tallies
    assert set(after_twenty) - ended == set(after_five) - ended
    # queue stream, dead letters, audit log, four jobs' history, and the failing jobs (a field per job)
    assert len(after_twenty) - len(ended) == 12 and "failing" in after_twenty
    for job in ("flaky", "busy", "swap", "gone"):
        assert "running" not in {record["status"] for record in runs(store.client, store.keys.namespace, job)}
    assert store.client.xlen(store.keys.dead) == 2 * 20  # every dead letter kept (the stream is capped)
    assert store.client.xlen(store.keys.queue("default")) == 0
    capped = ("dead", "audit", *ended)  # bounded by count (DEAD_MAXLEN, AUDIT_MAXLEN, ENDED_MAXLEN): grow up to it
    after = sum(size for key, size in after_twenty.items() if key not in capped)
    before = sum(size for key, size in after_five.items() if key not in capped)
    assert after <= 1.1 * before, (after_five, after_twenty)


def _fields(scene: Scene, key: str) -> list[str]:
    """The fields of a hash of the namespace (what a leaked key holds)."""
    return sorted(scene.store.client.hkeys(f"{scene.store.keys.namespace}:{key}"))


def test_a_job_s_ended_stream_keeps_only_the_ends_of_its_last_ended_ttl(scene: Scene) -> None:
    """Ends older than ENDED_TTL by Redis's clock leave a job's ended stream at its next end (whole stream nodes
    at a time): a job ending a fire every 10 s keeps about 10 minutes of ends, not ENDED_MAXLEN of them."""
    client, key = scene.store.client, scene.store.keys.ended("flaky")
    seconds, _ = client.time()
    old_ms = (int(seconds) - 3600) * 1000
    pipe = client.pipeline(transaction=False)
    for number in range(500):  # an hour-old stretch of ends, as a job ending a fire every 10 s would have left
        pipe.xadd(key, {"fire_id": f"old-{number}", "run_id": f"old-{number}#1", "status": "succeeded"},
                  id=f"{old_ms + number}-0")  # fmt: skip
    pipe.execute()
    worker = scene.worker("w", scene.config)
    fire = scene.fire("flaky", scene.clock.now())
    worker.end(worker.read(), "succeeded")
    entries = client.xrange(key)
    assert entries[-1][1]["fire_id"] == fire
    assert len(entries) <= 101, len(entries)  # at most one node of old ends left (approximate trimming)
    assert 0 < client.pttl(key) <= defaults.ENDED_TTL.total_seconds() * 1000


def test_dead_retry_runs_the_fire_as_its_next_attempt(scene: Scene) -> None:
    """A dead fire keeps no attempt count, yet put back with `dead retry` it runs as the next attempt."""
    worker = scene.worker("w", scene.config)
    fire = scene.fire("flaky", scene.clock.now())
    worker.end(worker.read(), "failed")
    scene.store.requeue_due_retries("default", to_ms(scene.clock.now()))
    worker.end(worker.read(), "failed")
    assert scene.store.client.hlen(scene.store.keys.attempts) == 0
    (letter,) = scene.store.dead_letters.newest(10)
    audit = audit_record("dead-retry", scene.clock.now(), entry=letter["id"])
    assert scene.store.dead_letters.retry(letter["id"], letter["queue"], audit)
    assert worker.read().record.run_id == f"{fire}#3"


def test_a_stale_worker_does_not_dead_letter_an_entry_another_worker_took_over(scene: Scene) -> None:
    """Worker x (its config lacks the job) reads an entry and stalls; y reclaims it and runs attempt 1; when x
    resumes, its dead letter finds the entry no longer its own and leaves everything of y's run alone."""
    x = scene.worker("x", scene.without_gone)
    y = scene.worker("y", scene.config)
    fire = scene.fire("gone", scene.clock.now())
    store = scene.store
    deliveries = store.read(["default"], "x", 1, block_ms=0)  # x reads, and stalls before checking it
    scene.clock.advance(3)
    y.intake.admit(store.reclaim("default", "y", to_ms(scene.clock.now()), 0))
    assert [run.record.run_id for run in y.claimed] == [f"{fire}#1"]
    x.intake.admit(deliveries)
    assert store.client.hget(store.keys.attempts, fire) == "1"
    assert store.client.hkeys(store.keys.active("gone")) == [f"{fire}#1"]
    assert store.client.hkeys(store.keys.leases("default")) == [deliveries[0].entry_id]
    assert store.client.xlen(store.keys.queue("default")) == 1 and store.client.xlen(store.keys.dead) == 0
    y.end(y.claimed[0], "succeeded")
    assert [record["status"] for record in runs(store.client, store.keys.namespace, "gone")] == ["succeeded"]


def test_a_reclaimed_fire_dead_lettered_then_retried_runs_as_its_next_attempt(scene: Scene) -> None:
    """A fire whose worker died, reclaimed by a worker that lacks its job, is dead-lettered with the run id of
    its last attempt; `dead retry` runs it as attempt 2, and the `lost` record of attempt 1 stays."""
    first = scene.worker("first", scene.config)
    third = scene.worker("third", scene.without_gone)
    fire = scene.fire("gone", scene.clock.now())
    first.read()  # attempt 1 runs on `first`, which dies
    scene.clock.advance(LEASE + 1)
    store = scene.store
    third.intake.admit(store.reclaim("default", third.intake.identity.id, to_ms(scene.clock.now()), 0))
    (letter,) = store.dead_letters.newest(10)
    assert letter["run_id"] == f"{fire}#1"
    assert store.dead_letters.retry(
        letter["id"], letter["queue"], audit_record("dead-retry", scene.clock.now(), entry=letter["id"])
    )
    again = first.read()
    assert again.record.run_id == f"{fire}#2"
    records = {record["run_id"]: record["status"] for record in runs(store.client, store.keys.namespace, "gone")}
    assert records == {f"{fire}#1": "lost", f"{fire}#2": "running"}


def test_a_redelivered_fire_that_breaks_the_admission_records_its_previous_attempt_lost(
    scene: Scene, tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """A reclaimed fire that fails on the new worker past the checks (here: an `expires` its config adds meets
    an emitted_at that is no instant) is dead-lettered, and its previous attempt recorded `lost`, as a fire of
    an unknown job is."""
    strict = JOBS.replace("gone: {command: [x], every: 1h,", "gone: {command: [x], every: 1h, expires: 1m,")
    with_expires = load_config(write_config(tmp_path / "c.yaml", shared_redis, namespace, strict), {})
    first, other = scene.worker("first", scene.config), scene.worker("other", with_expires)
    now = scene.clock.now()
    message = Message(fire_id("gone", now, "manual", now), "gone", format_utc(now), "soon", "manual", "d")
    scene.beat_store.enqueue("default", [(message.to_json(), "")], audit_record("trigger", now, job="gone"))
    first.read()
    scene.clock.advance(LEASE + 1)
    store = scene.store
    other.intake.admit(store.reclaim("default", other.intake.identity.id, to_ms(scene.clock.now()), 0))
    assert other.claimed == []
    assert [record["status"] for record in runs(store.client, store.keys.namespace, "gone")] == ["lost"]
    (letter,) = store.dead_letters.newest(10)
    assert letter["run_id"] == f"{message.fire_id}#1" and "ValueError" in letter["reason"]


def test_the_upkeep_leaves_a_retry_waiting_past_expires_to_run(scene: Scene) -> None:
    """A fire whose attempt 1 started in time and failed waits in the queue past its job's `expires`: the
    leader's upkeep neither expires it nor drops its attempt count; a worker runs it as attempt 2."""
    worker = scene.worker("w", scene.config)
    store, clock = scene.store, scene.clock
    fire = scene.fire("late", clock.now())
    worker.end(worker.read(), "failed")
    store.requeue_due_retries("default", to_ms(clock.now()))
    clock.advance(120)
    store.client.set(store.keys.leader, "token")
    upkeep_store = scene.beat_store.upkeep
    waiting = upkeep_store.backlog("default", 10).entries
    expired = upkeep.expired_fires(waiting, scene.config.jobs, clock.now(), "default")
    assert [fire_ for fire_ in expired if fire_.fire_id == fire]  # past its deadline by the rule alone
    assert upkeep_store.expire("token", "default", expired) == []
    assert store.client.hget(store.keys.attempts, fire) == "1"
    assert worker.read().record.run_id == f"{fire}#2"


def test_a_run_replaced_while_its_worker_is_dead_stays_cancelled_past_a_later_fire(scene: Scene) -> None:
    """F2 replaces F1 whose worker then dies; F3 is claimed before anyone reclaims F1: F1's cancel request
    stays for the reclaiming claim, which records F1 cancelled and does not run it again."""
    first, second, third = (scene.worker(name, scene.config) for name in ("first", "second", "third"))
    store, clock = scene.store, scene.clock
    base = clock.now()
    scene.fire("swap", base)
    replaced = second.read()
    scene.fire("swap", base + timedelta(seconds=1))
    first.end(first.read(), "succeeded")
    clock.advance(LEASE + 1)  # second died; its lease ended
    scene.fire("swap", base + timedelta(seconds=2))
    first.end(first.read(), "succeeded")
    third.intake.admit(store.reclaim("default", third.intake.identity.id, to_ms(clock.now()), 0))
    assert third.claimed == []
    record = json.loads(store.client.hget(store.keys.runs("swap"), replaced.record.run_id))
    assert record["status"] == "cancelled"
    assert store.client.exists(store.keys.cancel, store.keys.attempts) == 0


@pytest.mark.parametrize(("skew", "age", "ran"), [(-3600, 600, False), (3600, 0, True)])
def test_a_worker_judges_a_fire_s_deadline_by_redis_s_clock(scene: Scene, skew: int, age: int, ran: bool) -> None:
    """A worker whose host clock is an hour behind does not run a fire ten minutes past its `expires: 1m`; one
    an hour ahead runs a fresh fire: the deadline is judged by Redis's clock."""
    real = datetime.now(UTC).replace(microsecond=0)
    fire = scene.fire("late", real - timedelta(seconds=age))
    worker = dataclasses.replace(scene, clock=FixedClock(real + timedelta(seconds=skew))).worker("w", scene.config)
    worker.intake.read(1)
    assert [run.record.run_id for run in worker.claimed] == ([f"{fire}#1"] if ran else [])
    records = runs(scene.store.client, scene.store.keys.namespace, "late")
    assert [record["status"] for record in records] == (["running"] if ran else ["expired"])
    if not ran:  # the same record the leader's upkeep writes for a fire still waiting
        deadline = format_utc(real - timedelta(seconds=age) + timedelta(minutes=1))
        assert (
            records[0]["reason"]
            == f"not started within expires (1m): no worker took it from queue default by {deadline}"
        )


@pytest.mark.parametrize("command", [["trigger", "late"], ["backfill", "late", "--from", "2026-01-01T00:00:00Z",
                                                          "--to", "2026-01-01T01:00:00Z"]])  # fmt: skip
def test_trigger_and_backfill_stamp_emitted_at_by_redis_s_clock(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, command: list[str]
) -> None:
    """Run on a host whose clock is an hour behind, `beatd trigger` and `beatd backfill` stamp their fires'
    `emitted_at` (where `expires` counts from) with Redis's time."""
    path = write_config(tmp_path / "a.yaml", shared_redis, namespace, JOBS)
    skewed = FixedClock(datetime.now(UTC) - timedelta(hours=1))
    runtime = Runtime(environ={}, cwd=tmp_path, clock=skewed)
    result = CliRunner().invoke(cli_main, [*command, "-c", str(path)], obj=runtime, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    messages = [json.loads(text) for _, text in Store(shared_redis.client(), Keys(namespace)).read_queue("default")]
    assert messages
    for message in messages:
        assert abs((parse_utc(message["emitted_at"]) - datetime.now(UTC)).total_seconds()) < 60


def test_a_lease_of_a_deleted_pending_entry_is_dropped_by_reclaim(scene: Scene) -> None:
    """An entry deleted while pending (by hand, or a trim) leaves no lease behind once its lease ended."""
    worker = scene.worker("w", scene.config)
    scene.fire("gone", scene.clock.now())
    run = worker.read()
    scene.store.client.xdel(scene.store.keys.queue("default"), run.delivery.entry_id)
    scene.clock.advance(LEASE + 1)
    assert scene.store.reclaim("default", "other", to_ms(scene.clock.now()), 0) == []
    assert scene.store.client.hlen(scene.store.keys.leases("default")) == 0


def test_a_run_replaced_while_its_worker_is_dead_is_cancelled_not_rerun(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Any
) -> None:
    """Real processes: worker one is killed with SIGKILL mid-run; a fire started on worker two replaces the run;
    when the dead run's lease ends, worker two records it `cancelled` and does not run it again, and no
    attempt count, cancel request, lease or active run is left."""
    log = tmp_path / "runs.jsonl"
    config = config_file(tmp_path, shared_redis, namespace, f"""
        swap: {{call: tests.worker_jobs:sleep_unless_manual, kwargs: {{seconds: 60, log: '{log}'}}, every: 1h,
                overlap: replace, timeout: 10s}}
    """)  # fmt: skip
    first: Daemon = daemons("worker", "-c", str(config), name="first")
    slow = enqueue(config, "swap")
    wait_for(lambda: lines(log), what="the slow run started")
    first.signal(signal.SIGKILL)
    first.process.wait()  # type: ignore[union-attr]
    quick = enqueue(config, "swap", trigger="manual")
    daemons("worker", "-c", str(config), name="second")
    wait_for(lambda: sorted(statuses(shared_redis, namespace, "swap")) == ["cancelled", "succeeded"], timeout=30,
             what="the replaced run recorded cancelled")  # fmt: skip
    records = {record["run_id"]: record for record in runs(shared_redis.client(), namespace, "swap")}
    assert records[f"{slow}#1"]["status"] == "cancelled" and records[f"{quick}#1"]["status"] == "succeeded"
    assert "replaced by" in records[f"{slow}#1"]["reason"]
    keys, client = Keys(namespace), shared_redis.client()
    wait_for(lambda: client.xlen(keys.queue("default")) == 0, what="both entries acknowledged")
    assert [entry["run_id"] for entry in lines(log)] == [f"{slow}#1", f"{quick}#1"]  # never run again
    assert [client.exists(key) for key in (keys.attempts, keys.cancel, keys.leases("default"))] == [0, 0, 0]
    assert client.hlen(keys.active("swap")) == 0


# -- the beat's upkeep --------------------------------------------------------------------------------------
def make_beat(tmp_path: Path, server: RedisServer, namespace: str, jobs: str) -> tuple[Beat, FixedClock, Path]:
    """An in-process Beat on an injected clock, with its config path."""
    path = write_config(tmp_path / "beat.yaml", server, namespace, jobs, lease="30s")
    config = load_config(path, {})
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    store = Store(connect(config.settings.redis), Keys(namespace))
    return Beat(config, store, Identity("beat", "test", 0, clock.now()), clock=clock), clock, path


def test_stale_heartbeats_are_pruned_by_the_leader_without_any_read_command(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """Replica and worker heartbeats unchanged for a minute are deleted by the leader's upkeep; live ones,
    rewritten meanwhile, and the leader's own stay. No CLI command runs."""
    beat, clock, _ = make_beat(tmp_path, shared_redis, namespace, "a: {command: [x], every: 1h}")
    keys, client = Keys(namespace), shared_redis.client()
    client.hset(keys.workers, "dead-worker", json.dumps({"heartbeat_at": "2020-01-01T00:00:00Z"}))
    client.hset(keys.replicas, "dead-replica", json.dumps({"heartbeat_at": "2020-01-01T00:00:00Z"}))
    for step in range(14):
        client.hset(keys.workers, "live-worker", json.dumps({"heartbeat_at": f"step {step}"}))
        beat.tick(clock.now(), clock.monotonic())
        clock.advance(5)
    assert set(client.hkeys(keys.workers)) == {"live-worker"}
    assert set(client.hkeys(keys.replicas)) == {"beat"}


@pytest.mark.parametrize("command", ["status", "workers"])
def test_read_commands_delete_no_heartbeat(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, command: str
) -> None:
    """`beatd status` and `beatd workers` only read heartbeats, however old they look by the host's clock
    (which may be wrong): deleting stale ones is the leader's upkeep."""
    path = write_config(tmp_path / "a.yaml", shared_redis, namespace, "a: {command: [x], every: 1h}")
    keys, client = Keys(namespace), shared_redis.client()
    old = {"heartbeat_at": "2020-01-01T00:00:00Z", "queues": ["default"], "runs": [], "worker": "w",
           "concurrency": 1, "processed": 0}  # fmt: skip
    client.hset(keys.workers, "old-worker", json.dumps(old))
    client.hset(keys.replicas, "old-replica", json.dumps({**old, "replica": "old-replica"}))
    runtime = Runtime(environ={}, cwd=tmp_path)
    result = CliRunner().invoke(cli_main, [command, "-c", str(path), "--json"], obj=runtime, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert client.hkeys(keys.workers) == ["old-worker"] and client.hkeys(keys.replicas) == ["old-replica"]


def test_status_and_workers_judge_liveness_by_redis_s_clock(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """Run on a host whose clock is an hour ahead, `beatd status` and `beatd workers` count a worker that
    published a heartbeat just now as alive, as `trigger` does: no "no live worker" warning."""
    path = write_config(tmp_path / "a.yaml", shared_redis, namespace, "a: {command: [x], every: 1h}")
    keys, client = Keys(namespace), shared_redis.client()
    now = format_utc(datetime.now(UTC))
    beat = {"heartbeat_at": now, "queues": ["default"], "runs": [], "worker": "w", "concurrency": 1, "processed": 0}
    client.hset(keys.workers, "w", json.dumps(beat))
    message = Message(fire_id("a", datetime.now(UTC)), "a", now, now, "schedule", "d")
    Store(client, keys).enqueue("default", [(message.to_json(), "")], audit_record("trigger", datetime.now(UTC)))
    runtime = Runtime(environ={}, cwd=tmp_path, clock=FixedClock(datetime.now(UTC) + timedelta(hours=1)))

    def run(*args: str) -> Any:
        result = CliRunner().invoke(cli_main, [*args, "-c", str(path), "--json"], obj=runtime, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    status = run("status")
    assert status["backlog"]["default"]["waiting"] == 1 and status["warnings"] == []
    assert [worker["worker"] for worker in run("workers")] == ["w"]


def test_idle_consumers_with_nothing_pending_are_deleted_by_the_leader(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Consumers of a queue's group left by workers that are gone (each worker joins under a name of its own)
    are deleted by the leader's upkeep once idle longer than HEARTBEAT_FORGET_AFTER; one holding a pending
    entry stays however long it is idle."""
    beat, clock, _ = make_beat(tmp_path, shared_redis, namespace, "a: {command: [x], every: 1h}")
    monkeypatch.setattr(defaults, "HEARTBEAT_FORGET_AFTER", timedelta(milliseconds=200))
    keys, client = Keys(namespace), shared_redis.client()
    stream = keys.queue("default")
    client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    client.xadd(stream, {"message": "{}", "sig": ""})
    client.xreadgroup(GROUP, "host-a:101:x1", {stream: ">"}, count=1)  # holds the entry, pending
    for name in ("host-a:102:x2", "host-b:201:x3", "host-b:202:x4"):
        client.xgroup_createconsumer(stream, GROUP, name)

    def consumers() -> set[str]:
        clock.advance(6)
        beat.tick(clock.now(), clock.monotonic())
        return {str(consumer["name"]) for consumer in client.xinfo_consumers(stream, GROUP)}

    wait_for(lambda: consumers() == {"host-a:101:x1"}, what="the idle consumers deleted")
    assert client.xpending(stream, GROUP)["pending"] == 1


def test_a_failing_upkeep_step_does_not_hold_up_emission(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An upkeep step Redis refuses (here the workers key holds a string) is logged and counted; the leader
    keeps its lease and emits on time."""
    beat, clock, _ = make_beat(tmp_path, shared_redis, namespace, "a: {command: [x], every: 1s}")
    client = shared_redis.client()
    client.set(Keys(namespace).workers, "not a hash")
    for _ in range(4):
        beat.tick(clock.now(), clock.monotonic())
        clock.advance(1)
    assert beat.leadership.token is not None and client.xlen(Keys(namespace).queue("default")) >= 2
    assert "upkeep step failed" in caplog.text
    assert beat.metrics.registry.get_sample_value("beatd_loop_errors_total") == 1


def test_history_written_without_a_prune_is_trimmed_by_the_leader(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """Records no end pruned (a claim's `running` record, a dead letter's `lost` one, a job that stopped
    running) are trimmed by the leader's upkeep to `history.keep`, and those past `history.max_age` go."""
    beat, clock, _ = make_beat(tmp_path, shared_redis, namespace, """
        a: {command: [x], every: 1h, history: {keep: 3, max_age: 1d}}
    """)  # fmt: skip
    keys, client = Keys(namespace), shared_redis.client()
    beat.tick(clock.now(), clock.monotonic())
    now = beat.now(clock.now(), clock.monotonic())
    scores = [to_ms(now - timedelta(days=2))] + [to_ms(now - timedelta(minutes=minute)) for minute in range(10)]
    for index, score in enumerate(scores):
        client.hset(keys.runs("a"), f"a@{index}#1", json.dumps({"status": "lost"}))
        client.zadd(keys.runs_by_time("a"), {f"a@{index}#1": score})
    clock.advance(6)
    beat.tick(clock.now(), clock.monotonic())
    assert sorted(client.hkeys(keys.runs("a"))) == ["a@1#1", "a@2#1", "a@3#1"]
    assert client.zcard(keys.runs_by_time("a")) == 3


def test_a_history_sweep_is_cut_into_short_calls(own_redis: RedisServer) -> None:
    """Retention over 200 jobs is applied in calls of at most HISTORY_BATCH jobs (each job's prune may drop
    2,000 records: one call over all of them would block Redis for a good fraction of a second)."""
    client, keys = own_redis.client(), Keys("h")
    for job in range(200):
        client.hset(keys.runs(f"j{job}"), mapping={f"r{index}": "x" for index in range(3)})
        client.zadd(keys.runs_by_time(f"j{job}"), {f"r{index}": index for index in range(3)})
    client.set(keys.leader, "token")
    store = Store(client, keys).upkeep
    store.prune_history("token", {f"j{job}": (1, 0) for job in range(200)})  # loads the script
    for job in range(200):
        client.hset(keys.runs(f"j{job}"), "again", "x")
        client.zadd(keys.runs_by_time(f"j{job}"), {"again": 5})
    calls = client.info("commandstats")["cmdstat_evalsha"]["calls"]
    store.prune_history("token", {f"j{job}": (1, 0) for job in range(200)})
    assert client.info("commandstats")["cmdstat_evalsha"]["calls"] - calls == 200 // HISTORY_BATCH == 10
    assert {client.zcard(keys.runs_by_time(f"j{job}")) for job in range(200)} == {1}


def test_fires_nobody_consumes_expire_with_a_record_and_show_in_the_backlog(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """In a queue no worker reads, a fire past its job's `expires` is recorded `expired` and removed by the
    leader (counted in beatd_runs_total{status="expired"}); a fire of a job without `expires` stays, counted
    in the backlog gauges, and `beatd status` warns that nobody consumes the queue."""
    beat, clock, path = make_beat(tmp_path, shared_redis, namespace, """
        report: {command: [x], every: 1h, queue: nobody, expires: 1m}
        plain: {command: [x], every: 1h, queue: nobody}
    """)  # fmt: skip
    beat.tick(clock.now(), clock.monotonic())  # the first tick learns Redis's time
    now = beat.now(clock.now(), clock.monotonic())
    store = beat.store
    for job, scheduled in [("report", now - timedelta(minutes=10)), ("plain", now - timedelta(minutes=10)),
                           ("report", now)]:  # fmt: skip
        message = Message(fire_id(job, scheduled), job, format_utc(scheduled), format_utc(now), "schedule", "d")
        store.enqueue("nobody", [(message.to_json(), "")], audit_record("trigger", now, job=job))
    clock.advance(6)
    beat.tick(clock.now(), clock.monotonic())
    records = runs(shared_redis.client(), namespace, "report")
    assert [(record["status"], record["scheduled_at"]) for record in records] == [
        ("expired", format_utc(now - timedelta(minutes=10)))
    ]
    assert "expires (1m)" in records[0]["reason"]
    assert [json.loads(text)["job"] for _, text in store.read_queue("nobody")] == ["plain", "report"]
    metrics = beat.metrics.registry
    assert metrics.get_sample_value("beatd_runs_total", {"job": "report", "status": "expired"}) == 1
    assert metrics.get_sample_value("beatd_queue_waiting", {"queue": "nobody"}) == 2
    assert (metrics.get_sample_value("beatd_queue_oldest_age_seconds", {"queue": "nobody"}) or 0) >= 1
    status: dict[str, Any] = json.loads(cli("status", "-c", str(path), "--json").stdout)
    assert status["backlog"]["nobody"]["waiting"] == 2
    assert any("no live worker consumes it" in warning for warning in status["warnings"])
    assert "warning: queue nobody: 2 fires waiting" in cli("status", "-c", str(path)).stdout


def test_backlog_gauges_are_withdrawn_for_a_queue_no_longer_configured_and_when_not_leading(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """The leader's backlog gauges cover the queues of its config only, and a replica that stops leading
    withdraws them (a standby would keep publishing stale values)."""
    beat, clock, _ = make_beat(tmp_path, shared_redis, namespace, """
        a: {command: [x], every: 1h, queue: one}
        b: {command: [x], every: 1h, queue: two}
    """)  # fmt: skip
    beat.tick(clock.now(), clock.monotonic())
    metrics = beat.metrics.registry

    def gauged() -> set[str]:
        return {
            sample.labels["queue"]
            for metric in metrics.collect()
            if metric.name == "beatd_queue_waiting"
            for sample in metric.samples
        }

    assert gauged() == {"one", "two"}
    clock.advance(6)
    assert beat.leadership.token is not None
    beat.upkeep.step(beat.leadership.token, {"a": beat.config.jobs["a"]}, beat.now(clock.now(), clock.monotonic()),
                     clock.monotonic())  # fmt: skip
    assert gauged() == {"one"}
    shared_redis.client().set(Keys(namespace).leader, "another replica's token")
    clock.advance(6)
    beat.tick(clock.now(), clock.monotonic())
    assert not beat.leadership.is_leader(clock.monotonic())
    assert gauged() == set()


def test_the_upkeep_pages_through_a_long_backlog(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fire past its deadline behind more waiting fires than one step looks at is reached a step later."""
    monkeypatch.setattr(upkeep, "WAITING_SCAN", 2)
    beat, clock, _ = make_beat(tmp_path, shared_redis, namespace, """
        report: {command: [x], every: 1h, queue: nobody, expires: 1m}
        plain: {command: [x], every: 1h, queue: nobody}
    """)  # fmt: skip
    beat.tick(clock.now(), clock.monotonic())
    now = beat.now(clock.now(), clock.monotonic())
    for index, job in enumerate(["plain", "plain", "plain", "report"]):
        scheduled = now - timedelta(minutes=10, seconds=index)
        message = Message(fire_id(job, scheduled), job, format_utc(scheduled), format_utc(now), "schedule", "d")
        beat.store.enqueue("nobody", [(message.to_json(), "")], audit_record("trigger", now, job=job))
    for _ in range(3):
        clock.advance(6)
        beat.tick(clock.now(), clock.monotonic())
    assert [record["status"] for record in runs(shared_redis.client(), namespace, "report")] == ["expired"]
    assert [json.loads(text)["job"] for _, text in beat.store.read_queue("nobody")] == ["plain"] * 3


def test_a_worker_records_a_fire_past_its_deadline_expired_and_does_not_run_it(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Any
) -> None:
    """A worker that finds a fire not started within its job's `expires` records it `expired` and runs only
    the fire still in time."""
    log = tmp_path / "ran.jsonl"
    config = config_file(tmp_path, shared_redis, namespace, f"""
        late: {{call: tests.worker_jobs:report_context, kwargs: {{log: '{log}'}}, every: 1h, expires: 1m}}
    """)  # fmt: skip
    now = datetime.now(UTC).replace(microsecond=0)
    enqueue(config, "late", now - timedelta(minutes=10))
    fresh = enqueue(config, "late", now)
    worker: Daemon = daemons("worker", "-c", str(config), name="worker")
    wait_for(lambda: sorted(statuses(shared_redis, namespace, "late")) == ["expired", "succeeded"], timeout=60,
             what="one expired, one ran")  # fmt: skip
    assert [entry["run_id"] for entry in lines(log)] == [f"{fresh}#1"]
    record = RunRecord.from_json(
        next(text for text in shared_redis.client().hvals(Keys(namespace).runs("late")) if "expired" in text)
    )
    assert record.attempt == 0 and "expires (1m)" in (record.reason or "")
    assert worker.process is not None and worker.process.poll() is None
