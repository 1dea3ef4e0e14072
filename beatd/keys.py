"""Every Redis key of beatd, built in one place. Lua scripts receive them through ``KEYS[]``.

| key | type | holds |
|---|---|---|
| ``{ns}:leader`` | string, PX TTL | the lease: fencing token ``"{epoch}:{replica}"``; expires unless renewed |
| ``{ns}:leader:epoch`` | integer | fencing counter, INCR on every acquisition |
| ``{ns}:progress`` | hash | job -> last emitted (or deliberately passed) scheduled instant, epoch ms |
| ``{ns}:schedules`` | hash | job -> digest of the schedule its progress belongs to |
| ``{ns}:last`` | hash | job -> JSON of the last message emitted for it (for ``beatd status``) |
| ``{ns}:paused`` | hash | job -> JSON ``{reason, user, host, at}`` while paused |
| ``{ns}:replicas`` | hash | replica id -> JSON heartbeat (host, pid, role, config digest, config error) |
| ``{ns}:queue:{queue}`` | stream | fire messages, one field ``message`` (versioned JSON) |
| ``{ns}:runs:{job}`` | hash | run id -> RunRecord JSON (the beat writes ``missed`` ones, workers the rest) |
| ``{ns}:runs:{job}:by-time`` | sorted set | run id scored by scheduled instant (ms): newest first, retention |
| ``{ns}:active:{job}`` | hash | run id -> JSON lease of a run in progress (worker, lease end ms) |
| ``{ns}:buffer:{job}`` | string | the one fire held back by ``overlap: buffer_one`` (JSON: message, sig) |
| ``{ns}:leases:{queue}`` | hash | stream entry id -> lease end (ms) of the run processing it |
| ``{ns}:retry:{queue}`` | sorted set | JSON (message, sig) of a fire to retry, scored by when (ms) |
| ``{ns}:attempts`` | hash | fire id -> attempts started so far |
| ``{ns}:cancel`` | hash | run id -> why, for runs that ``overlap: replace`` asked to stop |
| ``{ns}:dead`` | stream | dead letters: messages not run (unknown job, bad JSON, forged) and runs out of retries |
| ``{ns}:output:{run_id}`` | stream, capped, TTL | a run's live output, field ``chunk`` (JSON); see below |
| ``{ns}:workers`` | hash | worker id -> JSON heartbeat (host, pid, queues, current runs) |
| ``{ns}:backfill-lock:{job}`` | string, PX TTL | JSON (token, user) of the backfill emitting ``job``'s fires now |
| ``{ns}:audit`` | stream, capped | leader changes, reloads, pause/resume/trigger/backfill |

Every queue stream has one consumer group, :data:`GROUP`.

A run's live output stream (written by its worker, read by ``beatd logs``) holds chunks ``{stream, text}``
(``stream``: ``stdout``, ``stderr``, ``log``) and last ``{end, status}``. Its bound: about
``defaults.OUTPUT_STREAM_MAXLEN`` entries of at most ``OUTPUT_CHUNK_CHARS`` characters; it expires
``OUTPUT_STREAM_TTL`` after its last write, ``OUTPUT_STREAM_TTL_ENDED`` once its run ended.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GROUP", "Keys"]

GROUP = "workers"
"""The consumer group of every queue stream."""


@dataclass(frozen=True)
class Keys:
    """The keys of one namespace (one deployment); see the module docstring for the table."""

    namespace: str

    @property
    def leader(self) -> str:
        """The lease holder's fencing token, with a TTL."""
        return f"{self.namespace}:leader"

    @property
    def epoch(self) -> str:
        """Fencing counter."""
        return f"{self.namespace}:leader:epoch"

    @property
    def progress(self) -> str:
        """Hash: job -> last scheduled instant passed, epoch ms."""
        return f"{self.namespace}:progress"

    @property
    def schedules(self) -> str:
        """Hash: job -> schedule digest its progress belongs to."""
        return f"{self.namespace}:schedules"

    @property
    def last(self) -> str:
        """Hash: job -> last message emitted."""
        return f"{self.namespace}:last"

    @property
    def paused(self) -> str:
        """Hash: job -> pause record."""
        return f"{self.namespace}:paused"

    @property
    def replicas(self) -> str:
        """Hash: replica id -> heartbeat."""
        return f"{self.namespace}:replicas"

    @property
    def audit(self) -> str:
        """Stream: the audit log."""
        return f"{self.namespace}:audit"

    def queue(self, name: str) -> str:
        """Stream of fire messages of queue ``name``."""
        return f"{self.namespace}:queue:{name}"

    def runs(self, job: str) -> str:
        """Hash of run records of ``job``."""
        return f"{self.namespace}:runs:{job}"

    def runs_by_time(self, job: str) -> str:
        """Sorted set of ``job``'s run ids by scheduled instant."""
        return f"{self.namespace}:runs:{job}:by-time"

    def runs_pattern(self) -> str:
        """SCAN pattern matching every job's run-record hash (and its index)."""
        return f"{self.namespace}:runs:*"

    def active(self, job: str) -> str:
        """Hash of ``job``'s runs in progress."""
        return f"{self.namespace}:active:{job}"

    def buffer(self, job: str) -> str:
        """The fire held back for ``job`` by ``overlap: buffer_one``."""
        return f"{self.namespace}:buffer:{job}"

    def leases(self, queue: str) -> str:
        """Hash of run leases of ``queue``'s stream entries."""
        return f"{self.namespace}:leases:{queue}"

    def retry(self, queue: str) -> str:
        """Sorted set of fires of ``queue`` waiting to be retried."""
        return f"{self.namespace}:retry:{queue}"

    @property
    def attempts(self) -> str:
        """Hash: fire id -> attempts started."""
        return f"{self.namespace}:attempts"

    @property
    def cancel(self) -> str:
        """Hash: run id -> reason, for runs asked to stop."""
        return f"{self.namespace}:cancel"

    @property
    def dead(self) -> str:
        """Stream of dead letters."""
        return f"{self.namespace}:dead"

    def output(self, run: str) -> str:
        """Stream of run ``run``'s live output (capped, with a TTL; see the table)."""
        return f"{self.namespace}:output:{run}"

    def backfill_lock(self, job: str) -> str:
        """The lock one backfill of ``job`` holds while it reads what is done and emits; its bound is its PX
        TTL, ``defaults.BACKFILL_LOCK_TTL``, and the backfill frees it when done (token-checked)."""
        return f"{self.namespace}:backfill-lock:{job}"

    def queue_name(self, key: str) -> str:
        """The queue name of queue stream key ``key`` (the inverse of :meth:`queue`)."""
        return key.removeprefix(self.queue(""))

    @property
    def workers(self) -> str:
        """Hash: worker id -> heartbeat."""
        return f"{self.namespace}:workers"
