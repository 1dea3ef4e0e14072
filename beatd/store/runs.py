"""The workers' side of Redis: consuming queue streams, run leases, overlap, retries, history (dead letters:
:mod:`beatd.store.dead_letters`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import redis
import redis.exceptions

from beatd import defaults
from beatd.keys import GROUP, Keys
from beatd.sharding import shard_of
from beatd.store.base import (
    AUDIT_MAXLEN,
    Heartbeats,
    StoreError,
    append_audit,
    queue_lengths,
    reachable,
    redis_now,
    script,
)
from beatd.store.codec import BatchScript
from beatd.store.dead_letters import DeadLetters

__all__ = [
    "Claim",
    "ClaimItem",
    "ClaimRequest",
    "Delivery",
    "Finish",
    "FinishItem",
    "LostRun",
    "PartlyApplied",
    "RunLease",
    "RunStore",
    "job_of_fire",
    "sum_queue_lengths",
]

Result = TypeVar("Result")

BATCH_LIMIT = 500
"""Most items sent in one call of a worker's batched script, so one call stays short."""

RECLAIM_SCAN = 100
"""Most pending entries of a queue one reclaim looks at."""

OUTPUT_READ_COUNT = 1000
"""Entries of a live output stream read per call (a whole stream, about ``OUTPUT_STREAM_MAXLEN``, in one or two)."""


class PartlyApplied(StoreError):
    """A batch over several shards of which some shards' calls went through and at least one failed.

    ``error`` is the first failure (StoreUnavailable or StoreRejected; this error says what it says);
    ``applied`` holds the batch positions whose shard's call went through, each with its result (a
    :class:`Claim`; for :meth:`RunStore.finish`, the error of an end Redis refused, '' for one written). The
    other positions were not applied: only they may be sent again (an end sent twice is written twice: a second
    dead letter, tally count and alert event; a claim made is a run to start, its attempt counted)."""

    def __init__(self, error: StoreError, applied: dict[int, Any]) -> None:
        super().__init__(str(error))
        self.error = error
        self.applied = applied


@dataclass(frozen=True)
class Delivery:
    """One stream entry handed to this worker: the raw message text, its signature, how often delivered."""

    queue: str
    entry_id: str
    message: str
    signature: str
    deliveries: int = 1
    shard: int = 0
    """The shard whose queue stream holds the entry (0 with one shard)."""


@dataclass(frozen=True)
class LostRun:
    """A redelivered fire's previous attempt, to be recorded ``lost`` by the claim unless its record changed
    since it was read (a slow former owner wrote its end meanwhile)."""

    run_id: str
    expect: str
    record: str
    alerts: bool = False
    """Whether the ``lost`` record is noted as an alert event when written (the job has a rule about it)."""


@dataclass(frozen=True)
class ClaimRequest:
    """A fire a worker wants to run: its delivery, its job's overlap policy and lease, its ``running`` record
    (JSON without run_id and attempt: the claim numbers the attempt)."""

    job: str
    delivery: Delivery
    fire_id: str
    overlap: str
    lease_end_ms: int
    record: str
    score_ms: int
    requested: bool = False
    scheduled_ms: int = 0
    busy_here: bool = False
    lost: LostRun | None = None
    deadline_ms: int = 0
    """The latest instant (epoch ms) the fire may start, from its job's ``expires``; 0: no deadline."""


@dataclass(frozen=True)
class Claim:
    """The decision for a fire: ``run`` (with the attempt number), ``skip``, ``buffered``, ``defer`` (a run of
    its job on another worker started after the fire was due: try again soon), ``expired`` (past its
    deadline with no attempt started: not run), ``replaced`` (a redelivered fire whose previous attempt
    ``overlap: replace`` had asked to stop: not run again), ``taken`` (the entry
    is no longer this worker's: a reclaimer took it over), or ``error`` (Redis refused a write; ``error`` says
    why)."""

    decision: str
    attempt: int = 0
    replaced: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class Finish:
    """What to write when a run ends (see ``lua/finish.lua``); ``dead_record``: the fire-level record of a
    fire out of attempts, stored under ``dead_run_id``."""

    job: str
    queue: str
    run_id: str
    entry_id: str
    record: str
    score_ms: int
    keep: int
    oldest_ms: int
    then: str = "none"  # none | retry | dead
    message: str = ""
    signature: str = ""
    retry_at_ms: int = 0
    reason: str = ""
    fire_id: str = ""
    fire_done: bool = False
    dead_record: str = ""
    dead_run_id: str = ""
    status: str = ""
    """The status of ``record`` (``then: dead`` ends the fire ``dead``); with ``fire_done``, the fire's end,
    appended to the job's ended stream for waiters."""
    alerts: bool = False
    """Whether the records written are noted as alert events (the job has rules about them)."""


@dataclass(frozen=True)
class ClaimItem:
    """The wire layout of one fire in ``lua/claim.lua`` (field order = argument order; see beatd.store.codec)."""

    fire_id: str
    entry_id: str
    lease_end_ms: int
    overlap: str
    message: str
    signature: str
    record: str
    score_ms: int
    origin: str
    scheduled_ms: int
    busy_here: str
    lost_run: str
    lost_expect: str
    lost_record: str
    stream_key: str
    active_key: str
    leases_key: str
    buffer_key: str
    records_key: str
    index_key: str
    deadline_ms: int
    alerts_key: str


@dataclass(frozen=True)
class FinishItem:
    """The wire layout of one end in ``lua/finish.lua``."""

    run_id: str
    entry_id: str
    record: str
    score_ms: int
    keep: int
    oldest_ms: int
    then_: str
    message: str
    signature: str
    retry_at_ms: int
    reason: str
    fire_id: str
    fire_done: str
    end_status: str
    dead_record: str
    dead_run_id: str
    active_key: str
    leases_key: str
    stream_key: str
    records_key: str
    index_key: str
    buffer_key: str
    retry_key: str
    ended_key: str
    alerts_key: str
    job: str
    run_status: str
    tally_key: str
    tally_ttl_ms: int
    failing_key: str


@dataclass(frozen=True)
class RunLease:
    """The wire layout of one run in ``lua/unclaim.lua`` and ``lua/extend.lua``: what names a run's lease."""

    run_id: str
    entry_id: str
    active_key: str
    leases_key: str
    records_key: str
    index_key: str


class RunStore:
    """Queues, runs and history in one Redis namespace, over all its shards (docs/sharding.md sections 5, 6).

    ``keys`` are shard 0's (the deployment-wide keys: worker heartbeats, the worker's own audit records);
    ``shards`` the keys of every shard, shard 0 first (``Config.shard_keys()``; default: ``keys`` alone). What
    belongs to one job (its records, runs, leases, a fire's attempts) is read and written in the job's shard
    (:func:`beatd.sharding.shard_of`); a batch is split by shard, one script call per shard; queue reads, dead
    letters and history scans go over every shard. With one shard every call is what it was before sharding."""

    def __init__(self, client: redis.Redis, keys: Keys, shards: Sequence[Keys] = ()) -> None:
        self.client: Any = client  # see Store: replies are decoded str
        self.keys = keys
        self.shards: tuple[Keys, ...] = tuple(shards) or (keys,)
        self._rotation = 0
        self._claim = BatchScript(client, "claim", ClaimItem, BATCH_LIMIT)
        self._finish = BatchScript(client, "finish", FinishItem, BATCH_LIMIT)
        self._unclaim = BatchScript(client, "unclaim", RunLease, BATCH_LIMIT)
        self._extend = BatchScript(client, "extend", RunLease, BATCH_LIMIT)
        self._requeue = client.register_script(script("requeue"))
        self._reclaim = client.register_script(script("reclaim"))
        self.dead_letters = DeadLetters(client, self.shards)
        """The dead-letter streams of every shard."""
        self._heartbeats = Heartbeats(self.client, keys.workers)

    # -- shards ------------------------------------------------------------------------------------------
    def shard_of(self, job: str) -> int:
        """The shard job ``job`` belongs to (0 with one shard)."""
        return shard_of(job, len(self.shards)) if len(self.shards) > 1 else 0

    def keys_of(self, job: str) -> Keys:
        """The keys of the shard job ``job`` belongs to."""
        return self.shards[self.shard_of(job)]

    def _by_shard(self, jobs: Sequence[str]) -> dict[int, list[int]]:
        """Positions in ``jobs`` by the shard of the job there (one shard: every position in shard 0)."""
        if len(self.shards) == 1:
            return {0: list(range(len(jobs)))} if jobs else {}
        groups: dict[int, list[int]] = {}
        for position, job in enumerate(jobs):
            groups.setdefault(self.shard_of(job), []).append(position)
        return groups

    def _each_shard(
        self, jobs: Sequence[str], call: Callable[[Keys, list[int]], dict[int, Result]]
    ) -> dict[int, Result]:
        """``call(keys, positions)`` for each shard of ``jobs`` (:meth:`_by_shard`), in shard order, with that
        shard's keys and positions in ``jobs``; their results (position -> result) merged. Every shard's call is
        made even when one fails (shards fail on their own: a cluster node down); then the first failure is
        raised as it is when no call went through (with one shard: always), else as :class:`PartlyApplied` with
        the results of the calls that did."""
        results: dict[int, Result] = {}
        failure: StoreError | None = None
        for shard, positions in self._by_shard(jobs).items():
            try:
                results.update(call(self.shards[shard], positions))
            except StoreError as error:
                failure = failure or error
        if failure is None:
            return results
        if not results:
            raise failure
        raise PartlyApplied(failure, results) from failure

    # -- consuming ---------------------------------------------------------------------------------------
    def ensure_groups(self, queues: Sequence[str]) -> None:
        """Create the consumer group of each queue in every shard (reading from the start, so no fire is
        skipped)."""
        for keys in self.shards:
            self._ensure_groups(keys, queues)

    def _ensure_groups(self, keys: Keys, queues: Sequence[str]) -> None:
        with reachable():
            for queue in queues:
                try:
                    self.client.xgroup_create(keys.queue(queue), GROUP, id="0", mkstream=True)
                except redis.exceptions.ResponseError as error:
                    if "BUSYGROUP" not in str(error):
                        raise

    def read(self, queues: Sequence[str], consumer: str, count: int, block_ms: int) -> list[Delivery]:
        """New entries for ``consumer``, at most ``count``, waiting up to ``block_ms`` for the first. With several
        shards: a read that does not wait of each shard in turn (one command per shard: a command names one
        shard's streams), then, when none had any, one that waits on the next shard in rotation, so a fire in
        another shard waits at most ``block_ms`` longer."""
        if len(self.shards) == 1:
            return self._read(0, queues, consumer, count, block_ms)
        first = self._rotation
        self._rotation = (first + 1) % len(self.shards)
        found: list[Delivery] = []
        for step in range(len(self.shards)):
            found += self._read((first + step) % len(self.shards), queues, consumer, count - len(found), None)
            if len(found) >= count:
                break
        return found or self._read(first, queues, consumer, count, block_ms)

    def _read(
        self, shard: int, queues: Sequence[str], consumer: str, count: int, block_ms: int | None
    ) -> list[Delivery]:
        keys = self.shards[shard]
        streams = {keys.queue(queue): ">" for queue in queues}
        with reachable():
            try:
                reply = self.client.xreadgroup(GROUP, consumer, streams, count=count, block=block_ms)
            except redis.exceptions.ResponseError as error:
                if "NOGROUP" not in str(error):
                    raise
                # The stream or group is gone (deleted, or a failover to a replica that had not synced it).
                self._ensure_groups(keys, queues)
                reply = self.client.xreadgroup(GROUP, consumer, streams, count=count, block=block_ms)
        names = {keys.queue(queue): queue for queue in queues}
        return [
            Delivery(names[stream], entry_id, fields.get("message", ""), fields.get("sig", ""), shard=shard)
            for stream, entries in reply or []
            for entry_id, fields in entries
            if fields is not None
        ]

    def reclaim(self, queue: str, consumer: str, now_ms: int, min_idle_ms: int) -> list[Delivery]:
        """Take over entries of ``queue`` (in every shard) whose run lease has ended (their worker died or gave
        them up), checked and taken in one step per shard (``lua/reclaim.lua``)."""
        taken = []
        for shard, keys in enumerate(self.shards):
            with reachable():
                reply = self._reclaim(
                    keys=[keys.queue(queue), keys.leases(queue)],
                    args=[GROUP, consumer, now_ms, min_idle_ms, RECLAIM_SCAN],
                )
            taken += [
                Delivery(queue, str(entry_id), str(message), str(signature), int(delivered) + 1, shard)
                for entry_id, delivered, message, signature in zip(*[iter(reply)] * 4, strict=True)
            ]
        return taken

    def requeue_due_retries(self, queue: str, now_ms: int) -> int:
        """Move retries whose time has come back into the queue (in every shard); return how many."""
        moved = 0
        for keys in self.shards:
            with reachable():
                moved += int(self._requeue(keys=[keys.retry(queue), keys.queue(queue)], args=[now_ms, 100]))
        return moved

    def queue_lengths(self, queues: Sequence[str]) -> dict[str, int]:
        """Entries in each queue, summed over the shards (read but not yet acknowledged ones included)."""
        return sum_queue_lengths(self.client, self.shards, queues)

    # -- runs --------------------------------------------------------------------------------------------
    def claim(self, requests: Sequence[ClaimRequest], worker: str, now_ms: int) -> list[Claim]:
        """Apply each fire's overlap policy and, when it may run, register the run with its lease and write its
        ``running`` record; each fire atomic (``lua/claim.lua``), one call per shard of the fires' jobs.
        ``worker`` is also the consumer name. When one shard's call fails after another's went through, raises
        :class:`PartlyApplied` with the claims made (position in ``requests`` -> Claim): they are the caller's to
        act on (run); the failed shard's entries are left pending, as after any failed claim."""

        def claim_shard(keys: Keys, positions: list[int]) -> dict[int, Claim]:
            items = []
            for request in (requests[position] for position in positions):
                job, delivery, lost = request.job, request.delivery, request.lost
                held = request.overlap == "buffer_one"
                items.append(ClaimItem(
                    request.fire_id, delivery.entry_id, request.lease_end_ms, request.overlap,
                    delivery.message if held else "", delivery.signature if held else "", request.record,
                    request.score_ms, "requested" if request.requested else "scheduled", request.scheduled_ms,
                    "1" if request.busy_here else "0",
                    lost.run_id if lost else "", lost.expect if lost else "", lost.record if lost else "",
                    keys.queue(delivery.queue), keys.active(job), keys.leases(delivery.queue), keys.buffer(job),
                    keys.runs(job), keys.runs_by_time(job), request.deadline_ms,
                    keys.alert_events if lost and lost.alerts else "",
                ))  # fmt: skip
            with reachable():
                replies = self._claim([keys.attempts, keys.cancel], [worker, now_ms, GROUP], items)
            flat = [reply for batch in replies for reply in batch]
            return dict(zip(positions, (_claim(reply) for reply in flat), strict=True))

        claims = self._each_shard([request.job for request in requests], claim_shard)
        return [claims[position] for position in range(len(requests))]

    @staticmethod
    def _leases(keys: Keys, runs: Sequence[tuple[str, str, str, str]]) -> list[RunLease]:
        return [
            RunLease(run, entry_id, keys.active(job), keys.leases(queue), keys.runs(job), keys.runs_by_time(job))
            for job, queue, entry_id, run in runs
        ]

    def unclaim(self, runs: Sequence[tuple[str, str, str, str]], worker: str) -> int:
        """Undo claims of fires not started: (job, queue, entry id, run id) each (``lua/unclaim.lua``); every
        shard's even when one fails (:meth:`_each_shard`: the failed shard's fires wait out their leases)."""

        def undo(keys: Keys, positions: list[int]) -> dict[int, int]:
            leases = self._leases(keys, [runs[position] for position in positions])
            with reachable():
                replies = self._unclaim([keys.attempts, keys.cancel], [worker], leases)
            return {positions[0]: sum(int(done) for done in replies)}

        return sum(self._each_shard([run[0] for run in runs], undo).values())

    def attempts(self, fire_id: str) -> int:
        """Attempts of ``fire_id`` started so far."""
        with reachable():
            return int(self.client.hget(self.keys_of(job_of_fire(fire_id)).attempts, fire_id) or 0)

    def write_record(self, job: str, run: str, record: str, score_ms: int) -> None:
        """Write (or overwrite) one run record, e.g. ``running`` at start or ``lost`` for a reclaimed run."""
        keys = self.keys_of(job)
        with reachable():
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(keys.runs(job), run, record)
            pipe.zadd(keys.runs_by_time(job), {run: score_ms})
            pipe.execute()

    def forget_run(self, job: str, run: str) -> None:
        """Drop a run from the job's active runs (its worker is gone)."""
        with reachable():
            self.client.hdel(self.keys_of(job).active(job), run)

    def renew(self, runs: Sequence[tuple[str, str, str, str]], worker: str, lease_end_ms: int) -> int:
        """Extend the leases of this worker's runs still registered to it: (job, queue, entry id, run id) each
        (``lua/extend.lua``: a run whose end was written meanwhile is not brought back). Returns how many.
        Every shard's leases are sent even when one shard fails (:meth:`_each_shard`): a node down must not let
        the runs of the others lapse and be reclaimed while they still run here."""

        def extend(keys: Keys, positions: list[int]) -> dict[int, int]:
            leases = self._leases(keys, [runs[position] for position in positions])
            with reachable():
                replies = self._extend([], [worker, lease_end_ms], leases)
            return {positions[0]: sum(int(done) for done in replies)}

        return sum(self._each_shard([run[0] for run in runs], extend).values())

    def release(self, queue: str, entry_id: str, job: str, run: str) -> None:
        """Give a run up at once (shutdown): its entry becomes reclaimable without waiting for the lease."""
        keys = self.keys_of(job)
        with reachable():
            pipe = self.client.pipeline(transaction=True)
            pipe.hdel(keys.leases(queue), entry_id)
            pipe.hdel(keys.active(job), run)
            pipe.hdel(keys.cancel, run)
            pipe.execute()

    def cancel_requests(self, runs: Sequence[str]) -> dict[str, str]:
        """Which of ``runs`` were asked to stop (overlap: replace), with the reason."""
        asked = {}
        for shard, positions in self._by_shard([job_of_fire(run) for run in runs]).items():
            names = [runs[position] for position in positions]
            with reachable():
                reasons = self.client.hmget(self.shards[shard].cancel, names)
            asked.update({run: str(reason) for run, reason in zip(names, reasons, strict=True) if reason is not None})
        return asked

    def finish(self, ends: Sequence[Finish], now_ms: int) -> dict[str, str]:
        """Record the ends of runs and acknowledge their entries; each end atomic (``lua/finish.lua``), one call
        per shard of the runs' jobs. Returns run id -> error for ends Redis refused (their entries stay
        pending). When one shard's call fails after another's went through, raises :class:`PartlyApplied`
        (position in ``ends`` -> '' or the refusal) naming the ends written: only the others may be sent again."""

        def finish_shard(keys: Keys, positions: list[int]) -> dict[int, str]:
            items = []
            for end in (ends[position] for position in positions):
                queued = end.then != "none"
                items.append(FinishItem(
                    end.run_id, end.entry_id, end.record, end.score_ms, end.keep, end.oldest_ms, end.then,
                    end.message if queued else "", end.signature if queued else "", end.retry_at_ms, end.reason,
                    end.fire_id, "1" if end.fire_done else "0", _end_status(end), end.dead_record, end.dead_run_id,
                    keys.active(end.job), keys.leases(end.queue), keys.queue(end.queue), keys.runs(end.job),
                    keys.runs_by_time(end.job), keys.buffer(end.job), keys.retry(end.queue), keys.ended(end.job),
                    keys.alert_events if end.alerts else "",
                    end.job, end.status if end.record else "", keys.tally(tally_bucket(now_ms)),
                    int(defaults.TALLY_TTL.total_seconds() * 1000), keys.failing,
                ))  # fmt: skip
            with reachable():
                replies = self._finish(
                    [keys.attempts, keys.cancel, keys.dead],
                    [
                        GROUP,
                        defaults.DEAD_MAXLEN,
                        now_ms,
                        defaults.ENDED_MAXLEN,
                        int(defaults.ENDED_TTL.total_seconds() * 1000),
                    ],
                    items,
                )
            refused = {
                str(run): str(error) for errors in replies for run, error in zip(errors[::2], errors[1::2], strict=True)
            }
            return {position: refused.get(ends[position].run_id, "") for position in positions}

        written = self._each_shard([end.job for end in ends], finish_shard)
        return {ends[position].run_id: error for position, error in written.items() if error}

    def succeeded_runs(self, job: str, fire_ids: Sequence[str]) -> dict[str, str]:
        """Fire id -> the run id that succeeded, for each of ``fire_ids`` (all of ``job``) that has one."""
        done = {}
        for fire, texts in self.records_of_fires(job, fire_ids).items():
            for text in texts:
                record = json.loads(text)
                if record.get("status") == "succeeded":
                    done[fire] = str(record["run_id"])
        return done

    def waiting_messages(self, queue: str, job: str) -> list[str]:
        """Message JSON of fires not ended yet: in ``queue``'s stream (waiting or being run), in its retry set
        (between attempts, or deferred), and ``job``'s fire held back by ``overlap: buffer_one``; read at one
        instant (a fire moving between these places is seen in one of them)."""
        keys = self.keys_of(job)
        with reachable():
            pipe = self.client.pipeline(transaction=True)
            pipe.xrange(keys.queue(queue))
            pipe.zrange(keys.retry(queue), 0, -1)
            pipe.hget(keys.buffer(job), "message")
            entries, retries, held = pipe.execute()
        return waiting_texts(entries, retries, held)

    def read_streams(self, after: dict[str, str], count: int, block_ms: int | None) -> list[Any]:
        """XREAD of the streams ``after`` names (stream key -> the last entry id read), at most ``count`` entries
        each, blocking up to ``block_ms`` for the first (None: not blocking; the ended streams and dead letters a
        wait follows)."""
        with reachable():
            return list(self.client.xread(after, count=count, block=block_ms) or [])

    # -- live output ---------------------------------------------------------------------------------------
    def append_output(self, chunks: dict[str, list[str]], ended: Sequence[str] = ()) -> None:
        """Append JSON chunks to each run's live output stream (run id -> chunks, oldest first), capped and
        given their TTL; the streams of ``ended`` runs get the shorter TTL of a finished run."""
        maxlen = defaults.OUTPUT_STREAM_MAXLEN
        live, done = defaults.OUTPUT_STREAM_TTL, defaults.OUTPUT_STREAM_TTL_ENDED
        with reachable():
            pipe = self.client.pipeline(transaction=False)
            for run, texts in chunks.items():
                key = self.keys_of(job_of_fire(run)).output(run)
                for text in texts:
                    pipe.xadd(key, {"chunk": text}, maxlen=maxlen, approximate=True)
                pipe.pexpire(key, int((done if run in ended else live).total_seconds() * 1000))
            pipe.execute()

    def read_output(self, run: str, after: str = "0", block_ms: int | None = None) -> list[tuple[str, str]]:
        """Chunks of ``run``'s live output after entry id ``after`` ("0": from the first kept), as (entry id,
        JSON): without ``block_ms`` every one there is now (the stream's cap is approximate: it may hold more
        than ``OUTPUT_STREAM_MAXLEN``); with it, the next at most ``OUTPUT_READ_COUNT``, waiting up to that long
        for the first."""
        key, count = self.keys_of(job_of_fire(run)).output(run), OUTPUT_READ_COUNT
        with reachable():
            if block_ms is not None:
                reply = self.client.xread({key: after}, count=count, block=block_ms)
                entries = reply[0][1] if reply else []
            else:
                entries = []
                while page := self.client.xrange(key, f"({after}" if after != "0" else "-", "+", count=count):
                    entries.extend(page)
                    after = str(page[-1][0])
                    if len(page) < count:
                        break
        return [(str(entry_id), str(fields.get("chunk", ""))) for entry_id, fields in entries]

    # -- workers -----------------------------------------------------------------------------------------
    def audit(self, record: dict[str, Any]) -> None:
        """Append an audit record (a worker's reload)."""
        append_audit(self.client, self.keys.audit, record, AUDIT_MAXLEN)

    def heartbeat(self, worker: str, record: dict[str, Any]) -> None:
        """Publish this worker's heartbeat."""
        self._heartbeats.publish(worker, record)

    def redis_now(self) -> datetime:
        """Redis's clock now (:func:`~beatd.store.base.redis_now`): what commands judge heartbeats by (the clock of the
        master holding this shard on a Redis Cluster)."""
        return redis_now(self.client, self.keys.leader)

    def workers(self) -> dict[str, dict[str, Any]]:
        """Every worker's last heartbeat."""
        return self._heartbeats.read()

    def forget_workers(self, workers: Sequence[str]) -> None:
        """Drop heartbeats of workers that are gone."""
        self._heartbeats.forget(workers)

    # -- history -----------------------------------------------------------------------------------------
    def run_records(self, job: str, limit: int, since_ms: int | None = None) -> list[str]:
        """RunRecord JSON of ``job``, newest scheduled instant first, at most ``limit``."""
        keys = self.keys_of(job)
        with reachable():
            ids = self.client.zrevrangebyscore(
                keys.runs_by_time(job), "+inf", since_ms if since_ms is not None else "-inf", start=0, num=limit
            )
            if not ids:
                return []
            return [record for record in self.client.hmget(keys.runs(job), ids) if record is not None]

    def run_record(self, job: str, run: str) -> str | None:
        """One RunRecord JSON by run id."""
        with reachable():
            value = self.client.hget(self.keys_of(job).runs(job), run)
        return str(value) if value is not None else None

    def fire_records(self, job: str, fire_id: str) -> list[str]:
        """Every RunRecord JSON of one fire, by attempt (the fire's ``dead`` record last)."""
        records = self.records_of_fires(job, [fire_id]).get(fire_id, [])
        return sorted(records, key=lambda text: (json.loads(text)["attempt"], '"status":"dead"' in text))

    def records_of_fires(self, job: str, fire_ids: Sequence[str], since_ms: int | None = None) -> dict[str, list[str]]:
        """Fire id -> its kept RunRecord JSON (in no order), for each of ``fire_ids`` (all of ``job``) that has
        some. With ``since_ms``, only records placed in history at or after it (epoch ms: when their run
        started, else when they were written): that reads only the recent end of the job's index."""
        wanted, keys = set(fire_ids), self.keys_of(job)
        with reachable():
            if since_ms is None:
                ids = self.client.hkeys(keys.runs(job))
            else:
                ids = self.client.zrangebyscore(keys.runs_by_time(job), since_ms, "+inf")
            ids = [str(run) for run in ids if str(run).rsplit("#", 1)[0] in wanted]
            texts = self.client.hmget(keys.runs(job), ids) if ids else []
        found: dict[str, list[str]] = {}
        for run, text in zip(ids, texts, strict=True):
            if text:
                found.setdefault(run.rsplit("#", 1)[0], []).append(str(text))
        return found

    def job_records(self, job: str) -> list[str]:
        """Every RunRecord JSON of ``job``, in no order (bounded by its ``history.keep``)."""
        with reachable():
            return [str(text) for text in self.client.hvals(self.keys_of(job).runs(job))]

    def history_size(self, job: str) -> int:
        """How many run records of ``job`` are kept now."""
        with reachable():
            return int(self.client.zcard(self.keys_of(job).runs_by_time(job)))

    def jobs_with_history(self) -> list[str]:
        """Every job that has run records, including jobs no longer in the config (one SCAN per shard)."""
        names = set()
        for keys in self.shards:
            prefix = keys.runs_pattern()[:-1]
            with reachable():
                for key in self.client.scan_iter(match=keys.runs_pattern(), count=1000):
                    name = str(key)[len(prefix) :]
                    if not name.endswith(":by-time"):
                        names.add(name)
        return sorted(names)


def job_of_fire(identifier: str) -> str:
    """The job of a fire id or run id (``job@...``; job names hold no ``@``)."""
    return identifier.split("@", 1)[0]


def sum_queue_lengths(client: Any, shards: Sequence[Keys], queues: Sequence[str]) -> dict[str, int]:
    """Entries in each queue stream, summed over ``shards`` (one pipeline)."""
    if len(shards) == 1:
        return queue_lengths(client, {queue: shards[0].queue(queue) for queue in queues})
    lengths = queue_lengths(
        client, {f"{shard}\0{queue}": keys.queue(queue) for shard, keys in enumerate(shards) for queue in queues}
    )
    return {queue: sum(lengths[f"{shard}\0{queue}"] for shard in range(len(shards))) for queue in queues}


def tally_bucket(instant_ms: int) -> int:
    """The start (epoch ms) of the run-count bucket holding ``instant_ms`` (``defaults.TALLY_BUCKET`` long)."""
    size = int(defaults.TALLY_BUCKET.total_seconds() * 1000)
    return instant_ms - instant_ms % size


def _end_status(end: Finish) -> str:
    """The status a done fire ended with, for the ended stream ('' while the fire goes on)."""
    if not end.fire_done or not end.fire_id:
        return ""
    return "dead" if end.then == "dead" else end.status or "ended"


def _claim(reply: list[Any]) -> Claim:
    if reply[0] == "run":
        return Claim("run", int(reply[1]), tuple(str(item) for item in reply[2:]))
    if reply[0] == "error":
        return Claim("error", error=str(reply[1]))
    return Claim(str(reply[0]))


def waiting_texts(entries: list[Any], retries: list[Any], held: Any) -> list[str]:
    """The messages of one read of where fires wait: queue stream entries, retry set members (``{message,
    sig}`` JSON; unreadable ones skipped) and a held ``buffer_one`` message."""
    texts = [str(_fields(fields).get("message", "")) for _, fields in entries]
    for member in retries:
        try:
            item = json.loads(member)
        except ValueError:
            continue
        if isinstance(item, dict) and isinstance(item.get("message"), str):
            texts.append(item["message"])
    return texts + ([str(held)] if held else [])


def _fields(fields: Any) -> dict[str, Any]:
    """A stream entry's fields as a dict: redis-py's cluster transactions leave XRANGE's reply unparsed (a flat
    list of names and values)."""
    if isinstance(fields, dict):
        return fields
    return dict(zip(fields[::2], fields[1::2], strict=True))
