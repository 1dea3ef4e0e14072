"""A worker's batch over two shards when one shard's call fails and the other's went through (a real connection
cut, through tests/tcp_proxy.py, on the request naming the second shard's keys: Redis never sees it): the ends
written are not written again, and the claims made are run."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from beatd.clock import FixedClock, SystemClock
from beatd.config import load_config
from beatd.identity import Identity
from beatd.keys import GROUP, Keys
from beatd.messages import Message, fire_id, format_utc
from beatd.metrics import Metrics
from beatd.sharding import shard_of
from beatd.store import Claim, Delivery, Finish, RunStore, StoreError, connect
from beatd.worker.finisher import Finisher
from beatd.worker.intake import Intake
from beatd.worker.registry import Registry, Run, Setup
from tests.integration.test_run_store import NOW, WORKER, end, request
from tests.redis_server import RedisServer
from tests.tcp_proxy import TcpProxy

FIRST, SECOND = "alpha", "delta"
"""A job of shard 0 and one of shard 1 (of two)."""


@dataclasses.dataclass
class Shards:
    """A RunStore over two shards, talking to Redis through ``proxy``."""

    store: RunStore
    proxy: TcpProxy
    keys: tuple[Keys, Keys]

    def cut_second_shard_once(self) -> None:
        """Cut the connection of the next request naming a key of shard 1, before Redis sees it."""
        self.proxy.cut_request_with = f"{{{self.keys[1].namespace}:1}}".encode()

    def deliver(self, *fires: str) -> list[Delivery]:
        """Add an entry per fire id to the default queue of its job's shard; read them all as ``WORKER``."""
        for fire in fires:
            message = json.dumps({"fire_id": fire})
            self.store.client.xadd(self.store.keys_of(fire.split("@")[0]).queue("default"), {"message": message})
        return sorted(self.store.read(["default"], WORKER, len(fires), block_ms=0), key=lambda d: d.shard)

    def pending(self, shard: int) -> int:
        """Entries of shard ``shard``'s default queue read and not acknowledged."""
        return int(self.store.client.xpending(self.keys[shard].queue("default"), GROUP)["pending"])


@pytest.fixture
def shards(shared_redis: RedisServer, namespace: str) -> Iterator[Shards]:
    """Two shards of ``namespace`` on the shared server, reached through a proxy that cuts nothing yet."""
    assert (shard_of(FIRST, 2), shard_of(SECOND, 2)) == (0, 1)
    proxy = TcpProxy(("127.0.0.1", shared_redis.port))
    keys = (Keys(namespace, 0, tagged=True), Keys(namespace, 1, tagged=True))
    store = RunStore(connect(f"redis://127.0.0.1:{proxy.port}/0"), keys[0], keys)
    store.ensure_groups(["default"])
    try:
        yield Shards(store, proxy, keys)
    finally:
        proxy.close()


def dead_end(delivery: Delivery, job: str) -> Finish:
    """The end of attempt 1 of ``delivery``'s fire: failed, out of attempts (a dead letter)."""
    finish = end(delivery, job, f"{job}@1#1", status="failed")
    return dataclasses.replace(
        finish, then="dead", message=delivery.message, reason="out of attempts", fire_done=True, status="failed"
    )


def tallied(store: RunStore, keys: Keys, status: str) -> int:
    """Runs of ``status`` counted in the tally buckets of ``keys``'s shard."""
    pattern = keys.tally(0).removesuffix("0") + "*"
    return sum(int(store.client.hget(key, status) or 0) for key in store.client.scan_iter(match=pattern))


def test_a_batch_of_ends_whose_second_shard_fails_once_is_written_once_in_each_shard(shards: Shards) -> None:
    """The finisher writes two dead ends, one per shard; shard 1's call is cut once: the try again writes only
    shard 1's end, so each shard has one dead letter and one failed run tallied (shard 0's were twice)."""
    store = shards.store
    first, second = shards.deliver(f"{FIRST}@1", f"{SECOND}@1")
    store.claim([request(first, FIRST, "allow"), request(second, SECOND, "allow")], WORKER, NOW)
    finisher = Finisher(store, SystemClock(), written=lambda: None, failed=lambda: None)
    finisher.submit(dead_end(first, FIRST))
    finisher.submit(dead_end(second, SECOND))
    shards.cut_second_shard_once()
    finisher.start()  # both ends are one batch: they were queued before the thread started
    finisher.close()
    assert shards.proxy.cuts == 1, "shard 1's call was never cut"
    for shard, keys in enumerate(shards.keys):
        assert (store.client.xlen(keys.dead), tallied(store, keys, "failed")) == (1, 1), f"shard {shard}"
        assert shards.pending(shard) == 0


def test_a_claim_whose_second_shard_fails_returns_the_claims_made(shards: Shards) -> None:
    """RunStore.claim over two shards with shard 1's call cut: it raises, and the error carries shard 0's
    claim (``run``, attempt 1); shard 1's entry stays pending with no attempt counted."""
    store = shards.store
    first, second = shards.deliver(f"{FIRST}@1", f"{SECOND}@1")
    shards.cut_second_shard_once()
    with pytest.raises(StoreError) as raised:
        store.claim([request(first, FIRST, "allow"), request(second, SECOND, "allow")], WORKER, NOW)
    assert shards.proxy.cuts == 1
    assert getattr(raised.value, "applied", None) == {0: Claim("run", 1)}
    assert store.attempts(f"{SECOND}@1") == 0 and shards.pending(1) == 1


def claimed_in_both_then_cut_first(shards: Shards) -> list[tuple[str, str, str, str]]:
    """One fire of each shard's job delivered and claimed (attempt 1), then the next request naming shard 0's
    keys set to be cut: the runs, as (job, queue, entry id, run id)."""
    first, second = shards.deliver(f"{FIRST}@1", f"{SECOND}@1")
    shards.store.claim([request(first, FIRST, "allow"), request(second, SECOND, "allow")], WORKER, NOW)
    shards.proxy.cut_request_with = f"{{{shards.keys[0].namespace}:0}}".encode()
    return [(FIRST, "default", first.entry_id, f"{FIRST}@1#1"), (SECOND, "default", second.entry_id, f"{SECOND}@1#1")]


def test_a_lease_renewal_whose_first_shard_fails_still_renews_the_other_shard(shards: Shards) -> None:
    """RunStore.renew of runs in both shards with shard 0's call cut: shard 1's lease is still extended (it
    was never sent: a node down let the others' runs lapse and be reclaimed while they still ran), and the
    failure is raised after it."""
    store, runs = shards.store, claimed_in_both_then_cut_first(shards)
    with pytest.raises(StoreError) as raised:
        store.renew(runs, WORKER, NOW + 60_000)
    assert shards.proxy.cuts == 1
    assert getattr(raised.value, "applied", None) == {1: 1}, "shard 1's lease was not renewed"


def test_giving_back_claims_whose_first_shard_fails_still_gives_back_the_other_shard_s(shards: Shards) -> None:
    """RunStore.unclaim (a worker's shutdown) over both shards with shard 0's call cut: shard 1's claim is
    undone all the same (its attempt count back to 0), and the failure is raised after it."""
    store, runs = shards.store, claimed_in_both_then_cut_first(shards)
    with pytest.raises(StoreError) as raised:
        store.unclaim(runs, WORKER)
    assert shards.proxy.cuts == 1
    assert getattr(raised.value, "applied", None) == {1: 1}, "shard 1's claim was not given back"
    assert store.attempts(f"{SECOND}@1") == 0


JOBS = f"""
    {FIRST}: {{command: [x], every: 1h, overlap: skip}}
    {SECOND}: {{command: [x], every: 1h, overlap: skip}}
"""


def test_the_intake_runs_the_fire_claimed_in_one_shard_when_the_other_shard_s_claim_fails(
    tmp_path: Path, shared_redis: RedisServer, shards: Shards
) -> None:
    """A worker's intake admits a fire of each shard; shard 1's claim call is cut: shard 0's fire is handed to
    a runner at once (not left to wait out its lease and be recorded lost), the error still reaches the worker
    loop, and shard 1's entry is left pending, unclaimed, to be reclaimed."""
    body = textwrap.indent(textwrap.dedent(JOBS).strip("\n"), "  ")
    path = tmp_path / "beatd.yaml"
    path.write_text(
        f"redis: {{url: '{shared_redis.url}'}}\nnamespace: {shards.keys[0].namespace}\nshards: 2\njobs:\n{body}\n"
    )
    config = load_config(path, {})
    clock = FixedClock(datetime.now(UTC).replace(microsecond=0))
    started: list[Run] = []
    intake = Intake(
        shards.store, Registry(Setup.of(config, None)), Identity("w", "test", 0, clock.now()), clock,
        Finisher(shards.store, clock, written=lambda: None, failed=lambda: None), Metrics(),
        signer=None, dispatch=started.append, stop_run=lambda run, reason: None,
    )  # fmt: skip
    now = format_utc(clock.now())
    for job in (FIRST, SECOND):
        message = Message(fire_id(job, clock.now()), job, now, now, "schedule", "d")
        shards.store.client.xadd(shards.store.keys_of(job).queue("default"), {"message": message.to_json()})
    deliveries = shards.store.read(["default"], intake.identity.id, 2, block_ms=0)
    assert sorted(delivery.shard for delivery in deliveries) == [0, 1]
    shards.cut_second_shard_once()
    with pytest.raises(StoreError):
        intake.admit(deliveries)
    assert shards.proxy.cuts == 1
    assert [(run.spec.name, run.record.attempt) for run in started] == [(FIRST, 1)]
    assert shards.store.attempts(fire_id(SECOND, clock.now())) == 0 and shards.pending(1) == 1
