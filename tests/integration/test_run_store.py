"""The workers' scripts against a real redis-server: batched claims and ends, giving back, lease extension."""

from __future__ import annotations

import dataclasses
import json
import threading

import pytest

from beatd.clock import SystemClock
from beatd.keys import Keys
from beatd.store import ClaimRequest, Delivery, Finish, LostRun, RunStore, connect
from beatd.worker.finisher import Finisher
from tests.redis_server import RedisServer

NOW = 1_800_000_000_000
WORKER = "w1"


@pytest.fixture
def store(shared_redis: RedisServer, namespace: str) -> RunStore:
    """A RunStore on the shared server, in a fresh namespace, with the default queue's group created."""
    runs = RunStore(connect(shared_redis.url), Keys(namespace))
    runs.ensure_groups(["default"])
    return runs


def deliver(store: RunStore, *fires: str) -> list[Delivery]:
    """Add one entry per fire id to the default queue and read them as worker ``WORKER``."""
    for fire in fires:
        store.client.xadd(store.keys.queue("default"), {"message": json.dumps({"fire_id": fire}), "sig": ""})
    return store.read(["default"], WORKER, len(fires), block_ms=0)


def request(delivery: Delivery, job: str, overlap: str) -> ClaimRequest:
    """A claim of ``delivery``'s fire with a 30 s lease."""
    fire = json.loads(delivery.message)["fire_id"]
    record = json.dumps({"fire_id": fire, "job": job, "status": "running"})
    return ClaimRequest(job, delivery, fire, overlap, NOW + 30_000, record, NOW, scheduled_ms=NOW)


def end(delivery: Delivery, job: str, run: str, status: str = "succeeded") -> Finish:
    """The end of ``run`` with a record of ``status``."""
    record = json.dumps({"run_id": run, "status": status})
    return Finish(job, "default", run, delivery.entry_id, record, NOW, 100, 0, fire_id=run.split("#")[0])


def test_fires_of_one_job_claimed_together_by_one_worker_do_not_skip_each_other(store: RunStore) -> None:
    """In one claim call, a second fire of a `skip` job is claimed too (the worker runs its own claims one after
    another); each claimed run gets attempt 1 and a running record carrying its run id and attempt."""
    first, second = deliver(store, "s@1", "s@2")
    claims = store.claim([request(first, "s", "skip"), request(second, "s", "skip")], WORKER, NOW)
    assert [(claim.decision, claim.attempt, claim.replaced) for claim in claims] == [("run", 1, ()), ("run", 1, ())]
    record = json.loads(store.client.hget(store.keys.runs("s"), "s@1#1"))
    assert (record["run_id"], record["attempt"], record["status"]) == ("s@1#1", 1, "running")


def test_a_run_executing_here_or_on_another_worker_blocks_skip_and_is_replaced(store: RunStore) -> None:
    """A fire is skipped when its job executes on this worker (busy_here) or has a live run on another worker;
    a `replace` fire asks another worker's run to stop."""
    other = "w2"
    for fire in ("s@1", "r@1"):
        store.client.xadd(store.keys.queue("default"), {"message": json.dumps({"fire_id": fire}), "sig": ""})
    theirs = store.read(["default"], other, 2, block_ms=0)
    store.claim([request(theirs[0], "s", "skip"), request(theirs[1], "r", "replace")], other, NOW)
    s2, r2, h2 = deliver(store, "s@2", "r@2", "h@2")
    busy = dataclasses.replace(request(h2, "h", "skip"), busy_here=True)
    claims = store.claim([request(s2, "s", "skip"), request(r2, "r", "replace"), busy], WORKER, NOW)
    assert [(claim.decision, claim.replaced) for claim in claims] == [("skip", ()), ("run", ("r@1#1",)), ("skip", ())]
    assert store.client.hget(store.keys.cancel, "r@1#1") == "replaced by r@2"


def test_a_fire_due_before_another_workers_run_started_is_deferred_not_skipped(store: RunStore) -> None:
    """A backlog split between workers: a fire due before the other worker's run of its job started waits for
    that run (``defer``) instead of being skipped for it."""
    store.client.xadd(store.keys.queue("default"), {"message": json.dumps({"fire_id": "s@2"}), "sig": ""})
    [theirs] = store.read(["default"], "w2", 1, block_ms=0)
    store.claim([request(theirs, "s", "skip")], "w2", NOW)
    [mine] = deliver(store, "s@1")
    [claim] = store.claim([dataclasses.replace(request(mine, "s", "skip"), scheduled_ms=NOW - 5_000)], WORKER, NOW)
    assert claim.decision == "defer"


def test_a_claim_of_an_entry_another_worker_took_over_is_refused(store: RunStore) -> None:
    """A worker paused between reading an entry and claiming it finds the entry reclaimed: it does not start."""
    [delivery] = deliver(store, "a@1")
    taken = store.reclaim("default", "w2", NOW, 0)
    assert [entry.entry_id for entry in taken] == [delivery.entry_id]
    [claim] = store.claim([request(delivery, "a", "skip")], WORKER, NOW)
    assert claim.decision == "taken"
    assert store.client.hlen(store.keys.active("a")) == 0 and store.client.hget(store.keys.attempts, "a@1") is None


def test_reclaim_leaves_an_entry_whose_claim_came_first(store: RunStore) -> None:
    """An entry claimed (leased) by its reader is not taken over, however long it has been pending."""
    [delivery] = deliver(store, "a@1")
    store.claim([request(delivery, "a", "allow")], WORKER, NOW)
    assert store.reclaim("default", "w2", NOW + 1_000, 0) == []
    [taken] = store.reclaim("default", "w2", NOW + 31_000, 0)  # the lease ended
    assert (taken.entry_id, taken.deliveries) == (delivery.entry_id, 2)


def test_a_former_owners_end_is_never_overwritten_with_lost(store: RunStore) -> None:
    """The lost record of a redelivered fire's previous attempt is written only if that attempt's record is
    still the running one read before the claim; a succeeded written meanwhile stands."""
    [delivery] = deliver(store, "a@1")
    store.claim([request(delivery, "a", "allow")], WORKER, NOW)
    running = store.run_record("a", "a@1#1")
    assert running is not None
    store.client.hset(store.keys.runs("a"), "a@1#1", json.dumps({"run_id": "a@1#1", "status": "succeeded"}))
    [again] = store.reclaim("default", "w2", NOW + 31_000, 0)
    lost = LostRun("a@1#1", running, json.dumps({"run_id": "a@1#1", "status": "lost"}))
    [claim] = store.claim([dataclasses.replace(request(again, "a", "allow"), lost=lost)], "w2", NOW + 31_000)
    assert (claim.decision, claim.attempt) == ("run", 2)
    assert json.loads(store.run_record("a", "a@1#1") or "{}")["status"] == "succeeded"
    assert store.client.hkeys(store.keys.active("a")) == ["a@1#2"]


def test_giving_back_undoes_a_claim_entirely(store: RunStore) -> None:
    """unclaim removes the lease, the active entry, the running record, the attempt and a cancel request."""
    first, second = deliver(store, "r@1", "r@2")
    store.claim([request(first, "r", "replace"), request(second, "r", "replace")], WORKER, NOW)
    store.client.hset(store.keys.cancel, "r@1#1", "replaced by r@2")
    undone = store.unclaim([("r", "default", first.entry_id, "r@1#1"), ("r", "other", "0-0", "r@9#1")], WORKER)
    keys, client = store.keys, store.client
    assert undone == 1
    assert (
        client.hget(keys.active("r"), "r@1#1") is None and client.hget(keys.leases("default"), first.entry_id) is None
    )
    assert client.hget(keys.runs("r"), "r@1#1") is None and client.zscore(keys.runs_by_time("r"), "r@1#1") is None
    assert client.hget(keys.attempts, "r@1") is None and client.hget(keys.cancel, "r@1#1") is None
    assert client.hget(keys.attempts, "r@2") == "1"  # the other claim stands


def test_renewing_extends_only_runs_still_registered_to_the_worker(store: RunStore) -> None:
    """A lease renewal that comes after a run's end was written does not bring the run back."""
    first, second = deliver(store, "a@1", "a@2")
    store.claim([request(first, "a", "allow"), request(second, "a", "allow")], WORKER, NOW)
    assert store.finish([end(first, "a", "a@1#1")], NOW) == {}
    extended = store.renew([("a", "default", first.entry_id, "a@1#1"), ("a", "default", second.entry_id, "a@2#1")],
                           WORKER, NOW + 60_000)  # fmt: skip
    assert extended == 1
    assert set(store.client.hkeys(store.keys.active("a"))) == {"a@2#1"}
    assert store.client.hget(store.keys.leases("default"), second.entry_id) == str(NOW + 60_000)
    assert store.client.hget(store.keys.leases("default"), first.entry_id) is None
    assert store.renew([("a", "default", second.entry_id, "a@2#1")], "another-worker", NOW + 90_000) == 0


def test_a_refused_end_leaves_its_entry_pending_and_the_rest_of_the_batch_is_written(store: RunStore) -> None:
    """When Redis refuses an end's record (a key of the wrong type), that end is reported and its entry stays
    pending, to be reclaimed; the other ends of the batch are written and acknowledged."""
    first, second = deliver(store, "bad@1", "good@1")
    store.claim([request(first, "bad", "allow"), request(second, "good", "allow")], WORKER, NOW)
    store.client.delete(store.keys.runs("bad"))
    store.client.set(store.keys.runs("bad"), "not a hash")
    refused = store.finish([end(first, "bad", "bad@1#1"), end(second, "good", "good@1#1")], NOW)
    assert list(refused) == ["bad@1#1"] and "WRONGTYPE" in refused["bad@1#1"]
    pending = store.client.xpending_range(store.keys.queue("default"), "workers", min="-", max="+", count=10)
    assert [item["message_id"] for item in pending] == [first.entry_id]
    assert json.loads(store.client.hget(store.keys.runs("good"), "good@1#1"))["status"] == "succeeded"


def test_the_finisher_writes_ends_submitted_while_redis_was_down(own_redis: RedisServer, namespace: str) -> None:
    """Ends handed to the finisher while Redis is unreachable are written once it is back, not dropped."""
    store = RunStore(connect(own_redis.url), Keys(namespace))
    store.ensure_groups(["default"])
    [delivery] = deliver(store, "a@1")
    store.claim([request(delivery, "a", "allow")], WORKER, NOW)
    failed = threading.Event()
    finisher = Finisher(store, SystemClock(), written=lambda: None, failed=failed.set)
    finisher.start()
    own_redis.stop()
    finisher.submit(end(delivery, "a", "a@1#1"))
    assert failed.wait(10), "the finisher never tried"
    own_redis.start()
    finisher.close()
    assert json.loads(store.client.hget(store.keys.runs("a"), "a@1#1"))["status"] == "succeeded"
    assert store.client.xlen(store.keys.queue("default")) == 0
