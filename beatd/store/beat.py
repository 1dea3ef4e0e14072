"""The beat's side of Redis: the lease, fenced emission, progress, pause state, heartbeats, the audit log."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

import redis

from beatd.keys import Keys
from beatd.messages import format_utc, from_ms, scheduled_fire_id
from beatd.store.base import (
    AUDIT_MAXLEN,
    Heartbeats,
    append_audit,
    is_cluster,
    queue_lengths,
    reachable,
    redis_now,
    script,
)
from beatd.store.codec import BatchScript, Sent
from beatd.store.runs import tally_bucket
from beatd.store.upkeep import UpkeepStore

__all__ = [
    "ApplyResult",
    "Corrupt",
    "InFlight",
    "LeaderWrite",
    "Store",
    "claim_layout",
    "last_text",
    "read_last",
    "read_layout",
    "read_leases",
]

BATCH_LIMIT = 1000
"""Most writes sent in one atomic script call."""


class LeaderWrite(NamedTuple):
    """One fenced write of the leader, an item of ``lua/emit.lua`` (the field order is its wire layout; a named
    tuple, as a burst builds one per fire).

    Build one with :meth:`emit`, :meth:`miss`, :meth:`celery` or :meth:`base`; each field has one meaning,
    and a field the kind does not use stays empty. ``*_key`` fields are full keys from
    :class:`~beatd.keys.Keys`.
    """

    kind: Literal["emit", "miss", "celery", "base"]
    job: str
    scheduled_ms: int = 0
    """emit, miss, celery: the fire's scheduled instant (epoch ms); the write applies only past the job's
    progress."""
    queue_key: str = ""
    """emit: the queue stream."""
    message: str = ""
    """emit: beatd's fire message JSON, the stream entry."""
    signature: str = ""
    """emit: the message's signature ('' when unsigned)."""
    last_text: str = ""
    """emit, celery: what ``{ns}:last`` keeps of the fire (:func:`last_text`), not the whole message."""
    runs_key: str = ""
    """miss, celery: the job's run-record hash."""
    runs_index_key: str = ""
    """miss, celery: the job's run-record index (sorted set)."""
    run_id: str = ""
    """miss, celery: the id of the record written (``missed``, ``sent``)."""
    record: str = ""
    """miss, celery: the run record JSON."""
    written_ms: int = 0
    """miss, celery: when the record was written (its index score, epoch ms)."""
    keep: int = 0
    """miss, celery: records of the job kept (the oldest beyond are dropped)."""
    celery_queue_key: str = ""
    """celery: the Celery queue's Redis list (kombu's name for it, in the broker's database)."""
    celery_message: str = ""
    """celery: the task message envelope JSON, LPUSHed onto ``celery_queue_key``."""
    celery_db: int = 0
    """celery: the broker's database number on beatd's Redis server (the script SELECTs it for the push)."""
    base_ms: int = 0
    """base: the job's progress moves here unless it is already later."""
    schedule_digest: str = ""
    """base: the schedule digest the job's progress now belongs to."""
    outbox_key: str = ""
    """celery, for a broker on another server: the outbox stream the message goes to instead of
    ``celery_queue_key`` (the relay publishes it); '' pushes into the broker's database directly."""
    outbox_limit: int = 0
    """celery with ``outbox_key``: the fire is refused while the outbox holds this many entries."""
    alerts_key: str = ""
    """miss: the alert events stream the record is noted in (the job has a ``missed`` rule), else ''."""
    celery_queue: str = ""
    """celery with ``outbox_key``: the Celery queue's list name, as a value (the relay pushes there); no key of
    the script, so it may hash to any slot of a Redis Cluster (``celery_queue_key`` is then '')."""

    @classmethod
    def emit(cls, job: str, scheduled_ms: int, queue_key: str, message: str, signature: str, last: str) -> LeaderWrite:
        """Append ``message`` to ``queue_key``, advance the job's progress to ``scheduled_ms`` and keep ``last``
        (:func:`last_text`) as its last emission."""
        return _new_write(cls, ("emit", job, scheduled_ms, queue_key, message, signature, last, *_EMIT_UNUSED))

    @classmethod
    def miss(
        cls, job: str, scheduled_ms: int, runs_key: str, runs_index_key: str, run_id: str, record: str,
        written_ms: int, keep: int, alerts_key: str = "",
    ) -> LeaderWrite:  # fmt: skip
        """Write a ``missed`` run record (keeping ``keep``; noted as an alert event in ``alerts_key`` if given)
        and advance the job's progress to ``scheduled_ms``."""
        return cls(
            "miss", job, scheduled_ms, runs_key=runs_key, runs_index_key=runs_index_key, run_id=run_id,
            record=record, written_ms=written_ms, keep=keep, alerts_key=alerts_key,
        )  # fmt: skip

    @classmethod
    def celery(
        cls, job: str, scheduled_ms: int, *, celery_queue_key: str, celery_message: str, celery_db: int,
        last: str, runs_key: str, runs_index_key: str, run_id: str, record: str, written_ms: int, keep: int,
        outbox_key: str = "", outbox_limit: int = 0,
    ) -> LeaderWrite:  # fmt: skip
        """Push a Celery task message onto ``celery_queue_key`` in database ``celery_db`` (or, with
        ``outbox_key``, append it to the outbox for the relay), write its ``sent`` record (keeping ``keep``),
        keep ``last`` (:func:`last_text`) as the last emission and advance progress to ``scheduled_ms``."""
        # For the outbox the queue's name is a value, no key: on a Redis Cluster a script's keys share one slot.
        queue_key, queue = ("", celery_queue_key) if outbox_key else (celery_queue_key, "")
        return cls(
            "celery", job, scheduled_ms, last_text=last, runs_key=runs_key, runs_index_key=runs_index_key,
            run_id=run_id, record=record, written_ms=written_ms, keep=keep, celery_queue_key=queue_key,
            celery_message=celery_message, celery_db=celery_db, outbox_key=outbox_key, outbox_limit=outbox_limit,
            celery_queue=queue,
        )  # fmt: skip

    @classmethod
    def base(cls, job: str, base_ms: int, schedule_digest: str) -> LeaderWrite:
        """Start the job from ``base_ms`` (progress never moves back) under ``schedule_digest``."""
        return cls("base", job, base_ms=base_ms, schedule_digest=schedule_digest)


_new_write = tuple.__new__  # a burst makes one write per fire: skip the named tuple's argument parsing
_EMIT_UNUSED = tuple(LeaderWrite._field_defaults[name] for name in LeaderWrite._fields[7:])
"""The fields an ``emit`` write leaves at their defaults (all after ``last_text``)."""


def read_leases(client: Any, lease_keys: Sequence[str]) -> list[tuple[str, int] | None]:
    """Each lease key's fencing token and remaining ms (None: nobody holds it), in one pipeline."""
    with reachable():
        pipe = client.pipeline(transaction=False)
        for key in lease_keys:
            pipe.get(key)
            pipe.pttl(key)
        replies = pipe.execute()
    return [(str(token), int(ttl)) if token else None for token, ttl in zip(replies[::2], replies[1::2], strict=True)]


def read_layout(client: Any, key: str) -> dict[str, Any] | None:
    """A deployment's layout record (``{ns:0}:layout``: ``{version, shards, state}``); None when absent,
    ``{"unreadable": text}`` when it is not a JSON object."""
    with reachable():
        text = client.get(key)
    if text is None:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    return record if isinstance(record, dict) else {"unreadable": str(text)[:80]}


def claim_layout(client: Any, key: str, record: dict[str, Any], plain: Sequence[str]) -> dict[str, Any] | None:
    """Write the layout ``record`` at ``key`` unless one is there; None when written, else the one there. When a
    key of ``plain`` exists (a plain deployment's progress or leader epoch) nothing is written and the answer is
    ``{"shards": 1, "state": "plain"}``: that deployment's progress lives under keys a tagged layout never reads."""
    with reachable():
        if client.exists(*plain):
            return {"shards": 1, "state": "plain"}
        if client.set(key, json.dumps(record), nx=True):
            return None
    return read_layout(client, key)


def last_text(scheduled_ms: int, trigger: str, config_digest: str) -> str:
    """What ``{ns}:last`` keeps of a job's last emitted fire: its scheduled instant (epoch ms), trigger and the
    job's config digest, space-separated (about 40 bytes; the whole message was 240). The fire id follows from
    the job and the instant; :meth:`Store.last_emitted` reads it back."""
    return f"{scheduled_ms} {trigger} {config_digest}"


def read_last(job: str, text: str) -> dict[str, Any]:
    """The last emission of ``job`` as ``beatd status`` shows it, from a ``{ns}:last`` value: :func:`last_text`'s
    form, or the whole message JSON an older beatd kept; ``{}`` when unreadable."""
    if text.startswith("{"):
        try:
            message = json.loads(text)
        except ValueError:
            return {}
        return message if isinstance(message, dict) else {}
    scheduled_ms, _, rest = text.partition(" ")
    trigger, _, digest = rest.partition(" ")
    try:
        scheduled_at = format_utc(from_ms(int(scheduled_ms)))
    except (ValueError, OverflowError):
        return {}
    return {
        "fire_id": scheduled_fire_id(job, scheduled_at), "job": job, "scheduled_at": scheduled_at,
        "trigger": trigger, "config_digest": digest,
    }  # fmt: skip


@dataclass(frozen=True)
class StartWrite:
    """A :meth:`LeaderWrite.base` on its own, an item of ``lua/start.lua``."""

    job: str
    base_ms: int
    schedule_digest: str


@dataclass(frozen=True)
class ApplyResult:
    """What Redis did with a list of writes: ``statuses[i]`` is ``applied``, ``duplicate`` (the fire was at or
    behind progress), ``refused`` (Redis refused the write; ``errors[i]`` says why; progress did not move) or
    ``unsent`` (the lease was lost first). ``leader`` False: the lease was lost, later writes were not made."""

    leader: bool
    statuses: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    def count(self, status: str) -> int:
        """How many writes ended with ``status``."""
        return self.statuses.count(status)


@dataclass(frozen=True)
class Corrupt:
    """A value in Redis that beatd cannot read, named by key and job."""

    key: str
    job: str
    value: str
    expected: str

    def __str__(self) -> str:
        return f"field {self.job!r} of {self.key} holds {self.value[:40]!r}, not {self.expected}"


_STATUS = {"a": "applied", "d": "duplicate", "r": "refused"}


class InFlight:
    """Calls of ``lua/emit.lua`` (or ``lua/start.lua``) sent by :meth:`Store.submit`; :meth:`result` reads
    what Redis did."""

    def __init__(self, count: int, script: BatchScript[Any], sent: Sent) -> None:
        self.count = count
        self._script, self._sent = script, sent
        self._replies: list[Any] | None = None

    def result(self) -> ApplyResult:
        """Wait for Redis's replies (once) and say what happened to each write (both scripts reply alike)."""
        if self._replies is None:
            with reachable():
                self._replies = self._script.receive(self._sent)
        return self._emit_result(self._replies)

    def _emit_result(self, replies: list[Any]) -> ApplyResult:
        statuses: list[str] = []
        errors: list[str] = []
        for reply in replies:
            if int(reply[0]) == -1:
                break
            codes = reply[1]
            if "r" not in codes:  # the common case, in C: a burst's replies are thousands of codes
                statuses.extend(map(_STATUS.__getitem__, codes))
                errors.extend(itertools.repeat("", len(codes)))
                continue
            refused = iter(reply[2])
            for code in codes:
                statuses.append(_STATUS[code])
                errors.append(str(next(refused)) if code == "r" else "")
        return self._complete(statuses, errors)

    def _complete(self, statuses: list[str], errors: list[str]) -> ApplyResult:
        unsent = self.count - len(statuses)
        return ApplyResult(unsent == 0, (*statuses, *["unsent"] * unsent), (*errors, *[""] * unsent))


class Store:
    """beatd's state in one Redis namespace."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        # Typed as Any: redis-py types replies as bytes | str for both decode modes; ours decodes to str.
        self.client: Any = client
        self.keys = keys
        self._acquire = client.register_script(script("acquire"))
        self._renew = client.register_script(script("renew"))
        self._release = client.register_script(script("release"))
        self._unlock = client.register_script(script("unlock"))
        self._emit = BatchScript(self.client, "emit", LeaderWrite, BATCH_LIMIT, packed=True)
        self._send = BatchScript(self.client, "send", LeaderWrite, BATCH_LIMIT)
        self._start = BatchScript(self.client, "start", StartWrite, BATCH_LIMIT)
        self._resume = client.register_script(script("resume"))
        self._heartbeats = Heartbeats(self.client, keys.replicas)
        self.upkeep = UpkeepStore(client, keys)
        """The leader's upkeep (heartbeats, backlogs, expired fires)."""
        # The database the connection uses: emit.lua SELECTs it again after pushing into a Celery broker's. A
        # cluster client has no pool of its own (and database 0 only; its Celery fires go through the outbox).
        self.db = 0 if is_cluster(client) else int(client.connection_pool.connection_kwargs.get("db") or 0)
        """The database number of beatd's connection (the Celery push SELECTs back to it)."""

    # -- the lease ---------------------------------------------------------------------------------------
    def acquire(self, replica: str, lease_ms: int, record: dict[str, Any]) -> tuple[str | None, float]:
        """Take the lease if free: the fencing token (None when another replica holds it) and Redis's time
        (epoch seconds) when it answered."""
        with reachable():
            token, seconds, micros = self._acquire(
                keys=[self.keys.leader, self.keys.epoch, self.keys.audit],
                args=[replica, lease_ms, json.dumps(record), AUDIT_MAXLEN],
            )
        return (str(token) or None), int(seconds) + int(micros) / 1e6

    def renew(self, token: str, lease_ms: int) -> tuple[bool, float]:
        """Extend the lease: False when ``token`` no longer holds it; and Redis's time (epoch seconds)."""
        with reachable():
            renewed, seconds, micros = self._renew(keys=[self.keys.leader], args=[token, lease_ms])
        return bool(int(renewed)), int(seconds) + int(micros) / 1e6

    def redis_now(self) -> datetime:
        """Redis's clock now (:func:`~beatd.store.base.redis_now`): a manual or backfill fire's ``emitted_at``,
        so its deadline counts from the clock the workers and the upkeep judge it by (this shard's master's)."""
        return redis_now(self.client, self.keys.leader)

    def release(self, token: str) -> bool:
        """Give the lease up; False when ``token`` did not hold it."""
        with reachable():
            return bool(self._release(keys=[self.keys.leader], args=[token]))

    # -- backfill lock -----------------------------------------------------------------------------------
    def lock_backfill(self, job: str, token: str, record: dict[str, Any], ttl_ms: int) -> dict[str, Any] | None:
        """Take ``job``'s backfill lock (``record``: who holds it, with ``token``) for ``ttl_ms``; None when
        taken, else the record of the backfill that holds it."""
        key = self.keys.backfill_lock(job)
        with reachable():
            if self.client.set(key, json.dumps({**record, "token": token}), nx=True, px=ttl_ms):
                return None
            held = self.client.get(key)
        try:
            holder = json.loads(held) if held else {}
        except ValueError:
            holder = {}
        return holder if isinstance(holder, dict) else {}

    def unlock_backfill(self, job: str, token: str) -> bool:
        """Free ``job``'s backfill lock if ``token`` still holds it (``lua/release.lua``, by the token inside)."""
        with reachable():
            return bool(self._unlock(keys=[self.keys.backfill_lock(job)], args=[token]))

    def leader(self) -> tuple[str, int] | None:
        """The current fencing token and the lease's remaining ms, or None when nobody leads."""
        return read_leases(self.client, [self.keys.leader])[0]

    # -- progress and emission ---------------------------------------------------------------------------
    def progress(self, jobs: Sequence[str] | None = None) -> dict[str, int]:
        """Last passed scheduled instant (epoch ms) per job; all jobs, or only ``jobs``; unreadable values left
        out (:meth:`read_progress` names them)."""
        return self.read_progress(jobs)[0]

    def read_progress(self, jobs: Sequence[str] | None = None) -> tuple[dict[str, int], list[Corrupt]]:
        """Like :meth:`progress`, and the values that are not integers (epoch ms), by job."""
        with reachable():
            if jobs is None:
                raw: dict[str, str] = self.client.hgetall(self.keys.progress)
            else:
                values = self.client.hmget(self.keys.progress, list(jobs)) if jobs else []
                raw = {job: value for job, value in zip(jobs, values, strict=True) if value is not None}
        good, bad = {}, []
        for job, value in raw.items():
            try:
                good[job] = int(value)
            except ValueError:
                bad.append(Corrupt(self.keys.progress, job, value, "an integer (epoch ms)"))
        return good, bad

    def schedule_digests(self, jobs: Sequence[str] | None = None) -> dict[str, str]:
        """The schedule digest each job's progress belongs to; all jobs, or only ``jobs`` (one HMGET)."""
        with reachable():
            if jobs is None:
                return dict(self.client.hgetall(self.keys.schedules))
            values = self.client.hmget(self.keys.schedules, list(jobs)) if jobs else []
        return {job: value for job, value in zip(jobs, values, strict=True) if value is not None}

    def apply(self, token: str, writes: Sequence[LeaderWrite]) -> ApplyResult:
        """Apply ``writes`` in order, fenced by ``token``, in atomic calls of BATCH_LIMIT (see ``lua/emit.lua``)."""
        return self.submit(token, writes).result()

    def submit(self, token: str, writes: Sequence[LeaderWrite]) -> InFlight:
        """Send :meth:`apply`'s calls without waiting for Redis: ``result()`` of the answer waits and reads
        them (the caller prepares its next writes meanwhile). Redis runs calls in the order they were sent."""
        fixed = [self.keys.leader, self.keys.progress, self.keys.schedules, self.keys.last]
        with reachable():
            if all(write.kind == "base" for write in writes):  # many jobs starting: the light script
                starts = [StartWrite(write.job, write.base_ms, write.schedule_digest) for write in writes]
                return InFlight(len(writes), self._start, self._start.send(fixed[:3], [token], starts))
            # missed records are counted in the run-count bucket of now (the dashboard's overview)
            tally = self.keys.tally(tally_bucket(int(time.time() * 1000)))
            return InFlight(len(writes), self._emit, self._emit.send([*fixed, tally], [token, self.db], writes))

    def last_emitted(self) -> dict[str, dict[str, Any]]:
        """The last fire emitted per job (:func:`read_last`): fire id, job, scheduled_at, trigger, config_digest."""
        with reachable():
            raw = self.client.hgetall(self.keys.last)
        return {job: read_last(job, value) for job, value in raw.items()}

    def enqueue(
        self, queue: str, messages: Sequence[tuple[str, str]], audit: dict[str, Any],
        on_chunk: Callable[[int], None] | None = None,
    ) -> None:  # fmt: skip
        """Append manual or backfill messages (text, signature) to ``queue``, in order, and one audit record.

        Each chunk of BATCH_LIMIT messages is one transaction; the audit record goes with the last one.
        ``on_chunk(count)`` is told how many are in the queue so far after each chunk.
        """
        with reachable():
            for start in range(0, max(len(messages), 1), BATCH_LIMIT):
                pipe = self.client.pipeline(transaction=True)
                for message, signature in messages[start : start + BATCH_LIMIT]:
                    pipe.xadd(self.keys.queue(queue), {"message": message, "sig": signature})
                if start + BATCH_LIMIT >= len(messages):
                    pipe.xadd(
                        self.keys.audit, {"event": audit["event"], "record": json.dumps(audit)}, maxlen=AUDIT_MAXLEN
                    )
                pipe.execute()
                if on_chunk is not None:
                    on_chunk(min(start + BATCH_LIMIT, len(messages)))

    def send_celery(self, writes: Sequence[LeaderWrite], audit: dict[str, Any]) -> list[str]:
        """Push manual or backfill Celery task messages (``celery`` writes, in order; their ``sent`` records
        with them) and one audit record (``lua/send.lua``). Each BATCH_LIMIT chunk is atomic; the audit record
        goes with the last one. Returns per write '' when pushed, else why Redis refused it (no record kept)."""
        last = (len(writes) - 1) // BATCH_LIMIT * BATCH_LIMIT if writes else 0  # where the last chunk starts
        fixed = [self.keys.audit]
        replies: list[Any] = []
        with reachable():
            if last:
                replies += self._send(fixed, [self.db, "", AUDIT_MAXLEN], writes[:last])
            if writes:
                replies += self._send(fixed, [self.db, json.dumps(audit), AUDIT_MAXLEN], writes[last:])
        if not writes:
            self.audit(audit)
        return [str(error) for reply in replies for _status, error in reply]

    def queue_lengths(self, queues: Sequence[str]) -> dict[str, int]:
        """Entries in each queue stream."""
        return queue_lengths(self.client, {queue: self.keys.queue(queue) for queue in queues})

    def read_queue(self, queue: str, count: int = 1000) -> list[tuple[str, str]]:
        """The oldest ``count`` entries of a queue as (entry id, message JSON); for tests and tools."""
        with reachable():
            entries = self.client.xrange(self.keys.queue(queue), count=count)
        return [(str(entry_id), str(fields["message"])) for entry_id, fields in entries]

    # -- pause -------------------------------------------------------------------------------------------
    def paused(self) -> dict[str, dict[str, Any]]:
        """Paused jobs and their pause records (an unreadable record reads as ``{"corrupt": description}``)."""
        records, bad = self.read_paused()
        return records | {problem.job: {"corrupt": str(problem)} for problem in bad}

    def read_paused(self) -> tuple[dict[str, dict[str, Any]], list[Corrupt]]:
        """Paused jobs with readable pause records, and the jobs whose record is not a JSON object."""
        with reachable():
            raw = self.client.hgetall(self.keys.paused)
        records, bad = {}, []
        for job, value in raw.items():
            try:
                record = json.loads(value)
            except ValueError:
                record = None
            if isinstance(record, dict):
                records[job] = record
            else:
                bad.append(Corrupt(self.keys.paused, job, value, "a JSON object (the pause record)"))
        return records, bad

    def pause(self, job: str, record: dict[str, Any]) -> bool:
        """Pause ``job``; False when it was already paused. The pause is audited in the same transaction."""
        with reachable():
            pipe = self.client.pipeline(transaction=True)
            pipe.hsetnx(self.keys.paused, job, json.dumps(record))
            pipe.xadd(self.keys.audit, {"event": "pause", "record": json.dumps(record)}, maxlen=AUDIT_MAXLEN)
            added, _ = pipe.execute()
        return bool(added)

    def resume(self, job: str, record: dict[str, Any]) -> bool:
        """Resume ``job`` with no catch-up of the paused period (from now by Redis's clock); False when it was
        not paused."""
        with reachable():
            return bool(
                self._resume(
                    keys=[self.keys.paused, self.keys.progress, self.keys.audit],
                    args=[job, json.dumps(record), AUDIT_MAXLEN],
                )
            )

    # -- audit and replicas ------------------------------------------------------------------------------
    def audit(self, record: dict[str, Any]) -> None:
        """Append an audit record (its ``event`` names what happened)."""
        append_audit(self.client, self.keys.audit, record, AUDIT_MAXLEN)

    def read_audit(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` audit records, newest first, each with its stream ``id``."""
        with reachable():
            entries = self.client.xrevrange(self.keys.audit, count=limit)
        return [
            {"id": entry_id, "event": fields["event"], **json.loads(fields["record"])} for entry_id, fields in entries
        ]

    def heartbeat(self, replica: str, record: dict[str, Any]) -> None:
        """Publish this replica's heartbeat."""
        self._heartbeats.publish(replica, record)

    def replicas(self) -> dict[str, dict[str, Any]]:
        """Every replica's last heartbeat, stale ones included (callers judge by age)."""
        return self._heartbeats.read()

    def forget_replicas(self, replicas: Sequence[str]) -> None:
        """Drop heartbeats of replicas that are long gone."""
        self._heartbeats.forget(replicas)
