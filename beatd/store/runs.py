"""The workers' side of Redis: consuming queue streams, run leases, overlap, retries, dead letters, history."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
import redis.exceptions

from beatd import defaults
from beatd.keys import GROUP, Keys
from beatd.store.base import AUDIT_MAXLEN, Heartbeats, append_audit, queue_lengths, reachable, redis_now, script
from beatd.store.codec import BatchScript

__all__ = [
    "Claim",
    "ClaimItem",
    "ClaimRequest",
    "DeadLetter",
    "DeadLetterAction",
    "Delivery",
    "Finish",
    "FinishItem",
    "LostRun",
    "RunLease",
    "RunStore",
]

BATCH_LIMIT = 500
"""Most items sent in one call of a worker's batched script, so one call stays short."""

RECLAIM_SCAN = 100
"""Most pending entries of a queue one reclaim looks at."""

OUTPUT_READ_COUNT = 1000
"""Entries of a live output stream read per call (a whole stream, about ``OUTPUT_STREAM_MAXLEN``, in one or two)."""


@dataclass(frozen=True)
class Delivery:
    """One stream entry handed to this worker: the raw message text, its signature, how often delivered."""

    queue: str
    entry_id: str
    message: str
    signature: str
    deliveries: int = 1


@dataclass(frozen=True)
class LostRun:
    """A redelivered fire's previous attempt, to be recorded ``lost`` by the claim unless its record changed
    since it was read (a slow former owner wrote its end meanwhile)."""

    run_id: str
    expect: str
    record: str


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
class DeadLetter:
    """The wire layout of one entry in ``lua/dead_letter.lua``."""

    entry_id: str
    message: str
    signature: str
    reason: str
    fire_id: str
    lost_run: str
    lost_expect: str
    lost_record: str
    stream_key: str
    leases_key: str
    active_key: str
    records_key: str


@dataclass(frozen=True)
class RunLease:
    """The wire layout of one run in ``lua/unclaim.lua`` and ``lua/extend.lua``: what names a run's lease."""

    run_id: str
    entry_id: str
    active_key: str
    leases_key: str
    records_key: str
    index_key: str


@dataclass(frozen=True)
class DeadLetterAction:
    """The wire layout of one dead letter in ``lua/settle_dead.lua``: retry or drop it, with its audit record."""

    entry_id: str
    action: str  # retry | drop
    event: str
    audit: str
    queue_key: str


class RunStore:
    """Queues, runs and history in one Redis namespace."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client: Any = client  # see Store: replies are decoded str
        self.keys = keys
        self._claim = BatchScript(client, "claim", ClaimItem, BATCH_LIMIT)
        self._finish = BatchScript(client, "finish", FinishItem, BATCH_LIMIT)
        self._unclaim = BatchScript(client, "unclaim", RunLease, BATCH_LIMIT)
        self._extend = BatchScript(client, "extend", RunLease, BATCH_LIMIT)
        self._settle = BatchScript(client, "settle_dead", DeadLetterAction, BATCH_LIMIT)
        self._requeue = client.register_script(script("requeue"))
        self._reclaim = client.register_script(script("reclaim"))
        self._dead_letter = BatchScript(client, "dead_letter", DeadLetter, BATCH_LIMIT)
        self._heartbeats = Heartbeats(self.client, keys.workers)

    # -- consuming ---------------------------------------------------------------------------------------
    def ensure_groups(self, queues: Sequence[str]) -> None:
        """Create the consumer group of each queue (reading from the start, so no fire is skipped)."""
        with reachable():
            for queue in queues:
                try:
                    self.client.xgroup_create(self.keys.queue(queue), GROUP, id="0", mkstream=True)
                except redis.exceptions.ResponseError as error:
                    if "BUSYGROUP" not in str(error):
                        raise

    def read(self, queues: Sequence[str], consumer: str, count: int, block_ms: int) -> list[Delivery]:
        """New entries for ``consumer``, at most ``count``, waiting up to ``block_ms`` for the first."""
        streams = {self.keys.queue(queue): ">" for queue in queues}
        with reachable():
            try:
                reply = self.client.xreadgroup(GROUP, consumer, streams, count=count, block=block_ms)
            except redis.exceptions.ResponseError as error:
                if "NOGROUP" not in str(error):
                    raise
                # The stream or group is gone (deleted, or a failover to a replica that had not synced it).
                self.ensure_groups(queues)
                reply = self.client.xreadgroup(GROUP, consumer, streams, count=count, block=block_ms)
        names = {self.keys.queue(queue): queue for queue in queues}
        return [
            Delivery(names[stream], entry_id, fields.get("message", ""), fields.get("sig", ""))
            for stream, entries in reply or []
            for entry_id, fields in entries
            if fields is not None
        ]

    def reclaim(self, queue: str, consumer: str, now_ms: int, min_idle_ms: int) -> list[Delivery]:
        """Take over entries of ``queue`` whose run lease has ended (their worker died or gave them up), checked
        and taken in one step (``lua/reclaim.lua``)."""
        with reachable():
            reply = self._reclaim(
                keys=[self.keys.queue(queue), self.keys.leases(queue)],
                args=[GROUP, consumer, now_ms, min_idle_ms, RECLAIM_SCAN],
            )
        return [
            Delivery(queue, str(entry_id), str(message), str(signature), int(delivered) + 1)
            for entry_id, delivered, message, signature in zip(*[iter(reply)] * 4, strict=True)
        ]

    def requeue_due_retries(self, queue: str, now_ms: int) -> int:
        """Move retries whose time has come back into the queue; return how many."""
        with reachable():
            return int(self._requeue(keys=[self.keys.retry(queue), self.keys.queue(queue)], args=[now_ms, 100]))

    def queue_lengths(self, queues: Sequence[str]) -> dict[str, int]:
        """Entries in each queue stream (read but not yet acknowledged ones included)."""
        return queue_lengths(self.client, {queue: self.keys.queue(queue) for queue in queues})

    # -- runs --------------------------------------------------------------------------------------------
    def claim(self, requests: Sequence[ClaimRequest], worker: str, now_ms: int) -> list[Claim]:
        """Apply each fire's overlap policy and, when it may run, register the run with its lease and write its
        ``running`` record; each fire atomic (``lua/claim.lua``). ``worker`` is also the consumer name."""
        keys = self.keys
        items = []
        for request in requests:
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
            ))  # fmt: skip
        with reachable():
            replies = self._claim([keys.attempts, keys.cancel], [worker, now_ms, GROUP], items)
        return [_claim(reply) for batch in replies for reply in batch]

    def _leases(self, runs: Sequence[tuple[str, str, str, str]]) -> list[RunLease]:
        keys = self.keys
        return [
            RunLease(run, entry_id, keys.active(job), keys.leases(queue), keys.runs(job), keys.runs_by_time(job))
            for job, queue, entry_id, run in runs
        ]

    def unclaim(self, runs: Sequence[tuple[str, str, str, str]], worker: str) -> int:
        """Undo claims of fires not started: (job, queue, entry id, run id) each (``lua/unclaim.lua``)."""
        with reachable():
            return sum(
                int(done)
                for done in self._unclaim([self.keys.attempts, self.keys.cancel], [worker], self._leases(runs))
            )

    def attempts(self, fire_id: str) -> int:
        """Attempts of ``fire_id`` started so far."""
        with reachable():
            return int(self.client.hget(self.keys.attempts, fire_id) or 0)

    def write_record(self, job: str, run: str, record: str, score_ms: int) -> None:
        """Write (or overwrite) one run record, e.g. ``running`` at start or ``lost`` for a reclaimed run."""
        with reachable():
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(self.keys.runs(job), run, record)
            pipe.zadd(self.keys.runs_by_time(job), {run: score_ms})
            pipe.execute()

    def forget_run(self, job: str, run: str) -> None:
        """Drop a run from the job's active runs (its worker is gone)."""
        with reachable():
            self.client.hdel(self.keys.active(job), run)

    def renew(self, runs: Sequence[tuple[str, str, str, str]], worker: str, lease_end_ms: int) -> int:
        """Extend the leases of this worker's runs still registered to it: (job, queue, entry id, run id) each
        (``lua/extend.lua``: a run whose end was written meanwhile is not brought back). Returns how many."""
        with reachable():
            return sum(int(done) for done in self._extend([], [worker, lease_end_ms], self._leases(runs)))

    def release(self, queue: str, entry_id: str, job: str, run: str) -> None:
        """Give a run up at once (shutdown): its entry becomes reclaimable without waiting for the lease."""
        with reachable():
            pipe = self.client.pipeline(transaction=True)
            pipe.hdel(self.keys.leases(queue), entry_id)
            pipe.hdel(self.keys.active(job), run)
            pipe.hdel(self.keys.cancel, run)
            pipe.execute()

    def cancel_requests(self, runs: Sequence[str]) -> dict[str, str]:
        """Which of ``runs`` were asked to stop (overlap: replace), with the reason."""
        if not runs:
            return {}
        with reachable():
            reasons = self.client.hmget(self.keys.cancel, list(runs))
        return {run: str(reason) for run, reason in zip(runs, reasons, strict=True) if reason is not None}

    def finish(self, ends: Sequence[Finish], now_ms: int) -> dict[str, str]:
        """Record the ends of runs and acknowledge their entries; each end atomic (``lua/finish.lua``). Returns
        run id -> error for ends Redis refused (their entries stay pending)."""
        keys = self.keys
        items = []
        for end in ends:
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
        return {
            str(run): str(error) for refused in replies for run, error in zip(refused[::2], refused[1::2], strict=True)
        }

    def dead_letter(
        self,
        delivery: Delivery,
        consumer: str,
        reason: str,
        fire_id: str = "",
        job: str = "",
        lost: LostRun | None = None,
    ) -> bool:
        """Move an entry that must not run (unknown job, bad JSON, forged) to the dead-letter stream; when its
        message names a fire (``fire_id`` of ``job``), what earlier attempts of the fire left goes too, and a
        redelivered fire's previous attempt is recorded ``lost`` as a claim would (``lua/dead_letter.lua``).
        False (nothing done) when the entry is no longer pending for ``consumer``: a reclaimer took it over."""
        keys = self.keys
        item = DeadLetter(
            delivery.entry_id, delivery.message, delivery.signature, reason, fire_id if job else "",
            lost.run_id if lost else "", lost.expect if lost else "", lost.record if lost else "",
            keys.queue(delivery.queue), keys.leases(delivery.queue), keys.active(job) if job else "",
            keys.runs(job) if job else "",
        )  # fmt: skip
        with reachable():
            (replies,) = self._dead_letter(
                [keys.attempts, keys.cancel, keys.dead], [GROUP, defaults.DEAD_MAXLEN, consumer], [item]
            )
        return bool(replies == ["dead"])

    # -- dead letters ------------------------------------------------------------------------------------
    def dead(self, count: int, before: str = "+") -> list[dict[str, str]]:
        """Dead letters, newest first, each with its ``id``: at most ``count``, older than entry id ``before``
        ("+": from the newest), so a caller can page back through them."""
        with reachable():
            entries = self.client.xrevrange(self.keys.dead, before if before == "+" else f"({before}", count=count)
        return [{"id": entry_id, **fields} for entry_id, fields in entries]

    def dead_since(self, after: str) -> list[dict[str, str]]:
        """Dead letters newer than entry id ``after`` (``MS-SEQ``; or ``MS``: from that ms on), oldest first,
        each with its ``id``."""
        start = f"({after}" if "-" in after else after
        with reachable():
            entries = self.client.xrange(self.keys.dead, start, "+", count=defaults.DEAD_MAXLEN)
        return [{"id": entry_id, **fields} for entry_id, fields in entries]

    def dead_letter_entry(self, entry_id: str) -> dict[str, str] | None:
        """One dead letter by stream entry id (``MS-SEQ``), with its ``id``; None when there is none."""
        with reachable():
            entries = self.client.xrange(self.keys.dead, entry_id, entry_id)
        return {"id": entries[0][0], **entries[0][1]} if entries else None

    def retry_dead(self, entry_id: str, queue_key: str, audit: dict[str, Any]) -> bool:
        """Put a dead letter back into ``queue_key`` (the queue stream it names) and append ``audit``, in one
        step (``lua/settle_dead.lua``); False when it is gone (another operator took it): nothing is written. A
        fire that ran out of retries gets its attempt count back (from the dead letter's run id), so it runs as
        the next attempt."""
        return self._settle_dead(DeadLetterAction(entry_id, "retry", audit["event"], json.dumps(audit), queue_key))

    def drop_dead(self, entry_id: str, audit: dict[str, Any]) -> bool:
        """Delete a dead letter and append ``audit``, in one step; False when it is gone (nothing is audited)."""
        return self._settle_dead(DeadLetterAction(entry_id, "drop", audit["event"], json.dumps(audit), ""))

    def _settle_dead(self, action: DeadLetterAction) -> bool:
        with reachable():
            replies = self._settle([self.keys.dead, self.keys.audit, self.keys.attempts], [AUDIT_MAXLEN], [action])
        return bool(replies[0][0])

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
        with reachable():
            pipe = self.client.pipeline(transaction=True)
            pipe.xrange(self.keys.queue(queue))
            pipe.zrange(self.keys.retry(queue), 0, -1)
            pipe.hget(self.keys.buffer(job), "message")
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
                key = self.keys.output(run)
                for text in texts:
                    pipe.xadd(key, {"chunk": text}, maxlen=maxlen, approximate=True)
                pipe.pexpire(key, int((done if run in ended else live).total_seconds() * 1000))
            pipe.execute()

    def read_output(self, run: str, after: str = "0", block_ms: int | None = None) -> list[tuple[str, str]]:
        """Chunks of ``run``'s live output after entry id ``after`` ("0": from the first kept), as (entry id,
        JSON): without ``block_ms`` every one there is now (the stream's cap is approximate: it may hold more
        than ``OUTPUT_STREAM_MAXLEN``); with it, the next at most ``OUTPUT_READ_COUNT``, waiting up to that long
        for the first."""
        key, count = self.keys.output(run), OUTPUT_READ_COUNT
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
        """Redis's clock now (:func:`~beatd.store.base.redis_now`): what commands judge heartbeats by."""
        return redis_now(self.client)

    def workers(self) -> dict[str, dict[str, Any]]:
        """Every worker's last heartbeat."""
        return self._heartbeats.read()

    def forget_workers(self, workers: Sequence[str]) -> None:
        """Drop heartbeats of workers that are gone."""
        self._heartbeats.forget(workers)

    # -- history -----------------------------------------------------------------------------------------
    def run_records(self, job: str, limit: int, since_ms: int | None = None) -> list[str]:
        """RunRecord JSON of ``job``, newest scheduled instant first, at most ``limit``."""
        with reachable():
            ids = self.client.zrevrangebyscore(
                self.keys.runs_by_time(job), "+inf", since_ms if since_ms is not None else "-inf", start=0, num=limit
            )
            if not ids:
                return []
            return [record for record in self.client.hmget(self.keys.runs(job), ids) if record is not None]

    def run_record(self, job: str, run: str) -> str | None:
        """One RunRecord JSON by run id."""
        with reachable():
            value = self.client.hget(self.keys.runs(job), run)
        return str(value) if value is not None else None

    def fire_records(self, job: str, fire_id: str) -> list[str]:
        """Every RunRecord JSON of one fire, by attempt (the fire's ``dead`` record last)."""
        records = self.records_of_fires(job, [fire_id]).get(fire_id, [])
        return sorted(records, key=lambda text: (json.loads(text)["attempt"], '"status":"dead"' in text))

    def records_of_fires(self, job: str, fire_ids: Sequence[str], since_ms: int | None = None) -> dict[str, list[str]]:
        """Fire id -> its kept RunRecord JSON (in no order), for each of ``fire_ids`` (all of ``job``) that has
        some. With ``since_ms``, only records placed in history at or after it (epoch ms: when their run
        started, else when they were written): that reads only the recent end of the job's index."""
        wanted = set(fire_ids)
        with reachable():
            if since_ms is None:
                ids = self.client.hkeys(self.keys.runs(job))
            else:
                ids = self.client.zrangebyscore(self.keys.runs_by_time(job), since_ms, "+inf")
            ids = [str(run) for run in ids if str(run).rsplit("#", 1)[0] in wanted]
            texts = self.client.hmget(self.keys.runs(job), ids) if ids else []
        found: dict[str, list[str]] = {}
        for run, text in zip(ids, texts, strict=True):
            if text:
                found.setdefault(run.rsplit("#", 1)[0], []).append(str(text))
        return found

    def job_records(self, job: str) -> list[str]:
        """Every RunRecord JSON of ``job``, in no order (bounded by its ``history.keep``)."""
        with reachable():
            return [str(text) for text in self.client.hvals(self.keys.runs(job))]

    def history_size(self, job: str) -> int:
        """How many run records of ``job`` are kept now."""
        with reachable():
            return int(self.client.zcard(self.keys.runs_by_time(job)))

    def jobs_with_history(self) -> list[str]:
        """Every job that has run records, including jobs no longer in the config."""
        prefix = self.keys.runs_pattern()[:-1]
        names = set()
        with reachable():
            for key in self.client.scan_iter(match=self.keys.runs_pattern(), count=1000):
                name = str(key)[len(prefix) :]
                if not name.endswith(":by-time"):
                    names.add(name)
        return sorted(names)


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
    texts = [str(fields.get("message", "")) for _, fields in entries]
    for member in retries:
        try:
            item = json.loads(member)
        except ValueError:
            continue
        if isinstance(item, dict) and isinstance(item.get("message"), str):
            texts.append(item["message"])
    return texts + ([str(held)] if held else [])
