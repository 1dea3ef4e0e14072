"""Every Redis key of beatd, built in one place. Lua scripts receive them through ``KEYS[]``.

| key | type | holds |
|---|---|---|
| ``{ns}:leader`` | string, PX TTL | the lease: fencing token ``"{epoch}:{replica}"``; expires unless renewed |
| ``{ns}:leader:epoch`` | integer | fencing counter, INCR on every acquisition |
| ``{ns}:progress`` | hash | job -> last emitted (or deliberately passed) scheduled instant, epoch ms |
| ``{ns}:schedules`` | hash | job -> digest of the schedule its progress belongs to |
| ``{ns}:last`` | hash | job -> ``"{scheduled_ms} {trigger} {config_digest}"`` of its last emitted fire (status) |
| ``{ns}:paused`` | hash | job -> JSON ``{reason, user, host, at}`` while paused |
| ``{ns}:replicas`` | hash | replica id -> JSON heartbeat (host, pid, role, config digest, config error) |
| ``{ns}:queue:{queue}`` | stream | fire messages, one field ``message`` (versioned JSON) |
| ``{ns}:runs:{job}`` | hash | run id -> RunRecord JSON (the beat writes ``missed``, ``expired``; workers the rest) |
| ``{ns}:runs:{job}:by-time`` | sorted set | run id scored by scheduled instant (ms): newest first, retention |
| ``{ns}:active:{job}`` | hash | run id -> JSON lease of a run in progress (worker, lease end ms) |
| ``{ns}:buffer:{job}`` | string | the one fire held back by ``overlap: buffer_one`` (JSON: message, sig) |
| ``{ns}:leases:{queue}`` | hash | stream entry id -> lease end (ms) of the run processing it |
| ``{ns}:retry:{queue}`` | sorted set | JSON (message, sig) of a fire to retry, scored by when (ms) |
| ``{ns}:attempts`` | hash | fire id -> attempts started so far |
| ``{ns}:cancel`` | hash | run id -> why, for runs that ``overlap: replace`` asked to stop |
| ``{ns}:dead`` | stream | dead letters: messages not run (unknown job, bad JSON, forged) and runs out of retries |
| ``{ns}:ended:{job}`` | stream, capped, TTL | ends of ``job``'s fires (fire_id, run_id, status), for waiters |
| ``{ns}:output:{run_id}`` | stream, capped, TTL | a run's live output, field ``chunk`` (JSON); see below |
| ``{ns}:tally:{bucket_ms}`` | hash | status -> runs ended, fires missed or expired, in the 5 min from ``bucket_ms`` |
| ``{ns}:failing`` | hash | job -> fire id, while the job's last ended fire ended ``dead`` (the dashboard's "failing") |
| ``{ns}:workers`` | hash | worker id -> JSON heartbeat (host, pid, queues, current runs) |
| ``{ns}:backfill-lock:{job}`` | string, PX TTL | JSON (token, user) of the backfill emitting ``job``'s fires now |
| ``{ns}:audit`` | stream, capped | leader changes, reloads, pause/resume/trigger/backfill, runtime job changes |
| ``{ns}:runtime-jobs`` | hash | runtime job name -> JSON ``{version, spec, by, at}`` (``beatd job put``) |
| ``{ns}:runtime-jobs:version`` | integer | INCR on every runtime job change: the version of the latest |
| ``{ns}:runtime-jobs:changes`` | stream, capped | one entry ``{job, version}`` per change, read on from a cursor |
| ``{ns}:runtime-jobs:deleted`` | set | deleted runtime jobs whose per-job fields wait for the leader's upkeep |
| ``{ns}:celery-outbox`` | stream | Celery task messages for a broker on another server: ``queue``, ``envelope`` |
| ``{ns}:celery-outbox-dead`` | stream | outbox entries the broker kept refusing: ``entry_id``, ``reason``, ... |
| ``{ns}:alerts:events`` | stream | alert events: run records (``record``) noted in the step that wrote them |
| ``{ns}:alerts:groups`` | hash | group id ``{job}|{rule}|{window start ms}`` -> JSON: count, sinks, last event |
| ``{ns}:alerts:deliveries`` | hash | delivery id -> JSON: idempotency key, sink, payload, attempts, last error |
| ``{ns}:alerts:due`` | sorted set | delivery id scored by its next attempt (ms; a summary: its window's end) |
| ``{ns}:alerts:state`` | hash | ``open:{job}`` -> rule, ``success:{job}`` -> ms, ``mark:{rule}:{subject}`` -> JSON |
| ``{ns}:alerts:log`` | stream, capped | raised, attempted, delivered, given up: what ``beatd alerts`` shows |
| ``{ns}:alerts:standby`` | string, PX TTL | the token of the standby that delivers alerts while no beat leads |
| ``{ns}:layout`` | string | JSON ``{version, shards, state}`` (+ ``tagged``, ``retired`` by ``beatd reshard``) |

Every key has a bound (a count, a TTL, or a path that always deletes what was added):

- ``{ns}:leader``: its TTL, ``leader.lease``.
- ``{ns}:leader:epoch``: one integer.
- ``{ns}:progress`` / ``{ns}:schedules`` / ``{ns}:last``: a field per job ever configured: kept when a job leaves
  the config, so a replica still running it during a rolling change judges it from its progress.
- ``{ns}:paused``: jobs paused; ``resume`` deletes.
- ``{ns}:replicas`` / ``{ns}:workers``: the leader's upkeep deletes a heartbeat unchanged for
  ``HEARTBEAT_FORGET_AFTER`` (judged on the leader's monotonic clock, not by the time written in it); a clean
  shutdown deletes its own. Read commands no longer need to prune them.
- ``{ns}:queue:{queue}``: an entry is deleted in the step that acknowledges it (run end, dead letter). One no worker
  takes is recorded ``expired`` and deleted by the leader's upkeep once past its job's ``expires``; without
  ``expires`` it waits (never dropped unrecorded), counted by ``beatd_queue_waiting`` and warned of by ``beatd
  status``.
- ``{ns}:runs:{job}`` / ``{ns}:runs:{job}:by-time``: ``history.keep`` and ``history.max_age``, applied as runs end
  and, for every job in the leader's config, by its upkeep (records written without a prune, jobs that stopped).
- ``{ns}:active:{job}``: runs in progress: deleted by the run's end, give-back or release; a dead worker's by the
  reclaiming claim or dead letter, and a claim prunes any whose lease ended.
- ``{ns}:buffer:{job}``: one per job; requeued and deleted when the job's last run ends.
- ``{ns}:leases:{queue}``: pending entries: deleted with the run's end, give-back, release or dead letter; a reclaim
  deletes every ended one (its entry may be gone), and a renewal never writes back one a reclaimer removed.
- ``{ns}:retry:{queue}``: fires between attempts: each moved back to its queue when due.
- ``{ns}:attempts``: fires in flight: deleted when the fire ends (succeeded, failed for good, dead, skipped,
  expired, cancelled), is dead-lettered, or its claim is given back. A dead letter carries the count in its run id,
  for ``beatd dead retry``.
- ``{ns}:cancel``: deleted with the run's end or release, or once the run is found dead (lease ended: reclaimed
  or dead-lettered; pruned by another fire's claim only once its entry is no longer pending).
- ``{ns}:dead``: ``DEAD_MAXLEN`` entries (approximate MAXLEN).
- ``{ns}:ended:{job}``: ``ENDED_MAXLEN`` entries (approximate MAXLEN), only those of the last ``ENDED_TTL`` by
  Redis's clock (approximate MINID), and ``ENDED_TTL`` after its last write.
- ``{ns}:tally:{bucket_ms}``: a field per status; expires ``TALLY_TTL`` after its last write.
- ``{ns}:failing``: a field per failing job; the job's next fire that ends otherwise deletes it.
- ``{ns}:audit``: ``AUDIT_MAXLEN`` entries (approximate MAXLEN).
- ``{ns}:runtime-jobs``: a field per runtime job; ``beatd job rm`` deletes. ``{ns}:runtime-jobs:version``: one
  integer. ``{ns}:runtime-jobs:changes``: ``defaults.RUNTIME_CHANGES_MAXLEN`` entries (approximate MAXLEN); a
  reader that finds the entries after its own trimmed away reads the whole hash once instead.
  ``{ns}:runtime-jobs:deleted``: a name per runtime job deleted since the leader's upkeep last ran; the upkeep
  deletes its fields of ``{ns}:progress``, ``{ns}:schedules``, ``{ns}:last``, ``{ns}:paused``, ``{ns}:failing``
  and ``{ns}:alerts:state`` (``open:``, ``success:``, ``mark:deadline:`` and ``mark:silence:`` of the job;
  ``RUNTIME_FORGET_BATCH`` names a step), then the name; a put of the name takes it out. So runtime job churn
  leaves none of those fields behind (the job's history stays, as for a YAML job).
- ``{ns}:output:{run_id}``: capped and with a TTL (below).
- ``{ns}:celery-outbox``: the relay deletes an entry once the broker confirmed it; the fenced script refuses a
  celery fire while it holds ``celery.outbox_limit`` entries (``defaults.CELERY_OUTBOX_LIMIT``): the fire is not
  dropped, its job's progress stays (counted in ``beatd_celery_outbox_depth``, logged as refused).
- ``{ns}:celery-outbox-dead``: ``CELERY_OUTBOX_DEAD_LIMIT`` entries (approximate MAXLEN).
- ``{ns}:alerts:events``: the leader's alerting deletes each event in the fenced step that groups it; a writer
  writes none while it holds ``ALERT_EVENTS_LIMIT`` (no leader for long).
- ``{ns}:alerts:groups``: one per job, rule and window with events: deleted when its summary is due (the window's
  end). ``{ns}:alerts:deliveries`` / ``{ns}:alerts:due``: deleted once delivered or given up (after
  ``ALERT_ATTEMPTS``); past ``ALERT_DELIVERIES_LIMIT`` a new group queues none (logged, counted).
- ``{ns}:alerts:state``: a few fields per job ever given alert rules (and per queue for ``no_worker``), kept
  like ``{ns}:progress`` when a job leaves the config.
- ``{ns}:alerts:log``: ``ALERT_LOG_MAXLEN`` entries (approximate MAXLEN). ``{ns}:alerts:standby``: its TTL.
- ``{ns}:layout``: one string (shard 0's slot), written once by the first beat of a tagged deployment, and by
  ``beatd reshard``.

Every queue stream has one consumer group, :data:`GROUP`. Its consumers (one per worker process, named by its
id) are deleted by the leader's upkeep once they hold no pending entry and have been idle past
``HEARTBEAT_FORGET_AFTER``.

A run's live output stream (written by its worker, read by ``beatd logs``) holds chunks ``{stream, text}``
(``stream``: ``stdout``, ``stderr``, ``log``) and last ``{end, status}``. Its bound: about
``defaults.OUTPUT_STREAM_MAXLEN`` entries of at most ``OUTPUT_CHUNK_CHARS`` characters; it expires
``OUTPUT_STREAM_TTL`` after its last write, ``OUTPUT_STREAM_TTL_ENDED`` once its run ended.

Celery's keys (not in the namespace: they are the Celery app's, named as kombu and Celery name them, in the
broker's or result backend's database). The beat LPUSHes task envelopes (JSON) onto a queue's list, Celery
workers BRPOP them; messages of priority step 3, 6 or 9 go to that step's own list.

| key | type | holds |
|---|---|---|
| ``{queue}``, ``{queue}\x06\x16{step}`` | list | a Celery queue (kombu's Redis transport): task envelopes |
| ``celery-task-meta-{task_id}`` | string | a task's result in a Redis result backend (read by ``beatd show``) |

RedBeat's keys (only read, by ``beatd import redbeat``; ``{prefix}`` is its ``redbeat_key_prefix``, ``redbeat:``):

| key | type | holds |
|---|---|---|
| ``{prefix}:schedule`` | sorted set | entry keys scored by next run time (Unix s) |
| ``{prefix}{name}`` | hash | ``definition`` (JSON: name, task, schedule, args, kwargs, options, enabled), ``meta`` |
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from beatd.sharding import shard_prefix

__all__ = ["CELERY_PRIORITY_STEPS", "GROUP", "Keys", "celery_queue", "celery_result", "redbeat_schedule"]

GROUP = "workers"
"""The consumer group of every queue stream."""

CELERY_PRIORITY_STEPS = (0, 3, 6, 9)
"""kombu's Redis transport default ``priority_steps``: a message's priority is rounded down to one of these."""

_KOMBU_SEPARATOR = "\x06\x16"


def celery_queue(queue: str, priority: int | None) -> str:
    """The Redis list of Celery queue ``queue`` for a message of ``priority`` (kombu's ``_q_for_pri``: step 0
    is the queue's own name, other steps get ``\x06\x16{step}`` appended)."""
    step = max(value for value in CELERY_PRIORITY_STEPS if value <= (priority or 0))
    return f"{queue}{_KOMBU_SEPARATOR}{step}" if step else queue


def celery_result(task_id: str) -> str:
    """A task's result in a Redis result backend (Celery's default key prefix)."""
    return f"celery-task-meta-{task_id}"


def redbeat_schedule(prefix: str) -> str:
    """RedBeat's sorted set of entry keys (``{prefix}:schedule``); its members are the entries' hash keys."""
    return f"{prefix}:schedule"


@dataclass(frozen=True)
class Keys:
    """The keys of one shard of one namespace (one deployment); see the module docstring for the table.

    In the plain layout (one shard on one server: the default) every key starts ``{namespace}:`` as above. In the
    tagged layout (:func:`beatd.sharding.tagged_layout`) shard ``s``'s keys start ``{namespace:s}``, a Redis
    Cluster hash tag, so every script touches one slot; the deployment-wide keys (``replicas``, ``workers``) live
    with shard 0, whose lease fences their upkeep."""

    namespace: str
    """The deployment's namespace, as configured (what messages carry)."""
    shard: int = 0
    tagged: bool = False

    @cached_property
    def prefix(self) -> str:
        """What this shard's keys start with: the namespace, or ``{namespace:shard}`` tagged."""
        return shard_prefix(self.namespace, self.shard, tagged=self.tagged)

    @cached_property
    def home(self) -> str:
        """What the deployment-wide keys start with: shard 0's prefix."""
        return shard_prefix(self.namespace, 0, tagged=self.tagged)

    def of_shard(self, shard: int) -> Keys:
        """The keys of shard ``shard`` of the same namespace and layout."""
        return Keys(self.namespace, shard, self.tagged)

    @property
    def leader(self) -> str:
        """The lease holder's fencing token, with a TTL."""
        return f"{self.prefix}:leader"

    @property
    def epoch(self) -> str:
        """Fencing counter."""
        return f"{self.prefix}:leader:epoch"

    @property
    def progress(self) -> str:
        """Hash: job -> last scheduled instant passed, epoch ms."""
        return f"{self.prefix}:progress"

    @property
    def schedules(self) -> str:
        """Hash: job -> schedule digest its progress belongs to."""
        return f"{self.prefix}:schedules"

    @property
    def last(self) -> str:
        """Hash: job -> last message emitted."""
        return f"{self.prefix}:last"

    @property
    def paused(self) -> str:
        """Hash: job -> pause record."""
        return f"{self.prefix}:paused"

    @property
    def replicas(self) -> str:
        """Hash: replica id -> heartbeat."""
        return f"{self.home}:replicas"

    @property
    def audit(self) -> str:
        """Stream: the audit log."""
        return f"{self.prefix}:audit"

    def queue(self, name: str) -> str:
        """Stream of fire messages of queue ``name``."""
        return f"{self.prefix}:queue:{name}"

    def runs(self, job: str) -> str:
        """Hash of run records of ``job``."""
        return f"{self.prefix}:runs:{job}"

    def ended(self, job: str) -> str:
        """Stream of the ends of ``job``'s fires (finisher, expiry sweep), for waiters (``FireHandle.wait``)."""
        return f"{self.prefix}:ended:{job}"

    def runs_by_time(self, job: str) -> str:
        """Sorted set of ``job``'s run ids by scheduled instant."""
        return f"{self.prefix}:runs:{job}:by-time"

    def runs_pattern(self) -> str:
        """SCAN pattern matching every job's run-record hash (and its index)."""
        return f"{self.prefix}:runs:*"

    def active(self, job: str) -> str:
        """Hash of ``job``'s runs in progress."""
        return f"{self.prefix}:active:{job}"

    def buffer(self, job: str) -> str:
        """The fire held back for ``job`` by ``overlap: buffer_one``."""
        return f"{self.prefix}:buffer:{job}"

    def leases(self, queue: str) -> str:
        """Hash of run leases of ``queue``'s stream entries."""
        return f"{self.prefix}:leases:{queue}"

    def retry(self, queue: str) -> str:
        """Sorted set of fires of ``queue`` waiting to be retried."""
        return f"{self.prefix}:retry:{queue}"

    @property
    def attempts(self) -> str:
        """Hash: fire id -> attempts started."""
        return f"{self.prefix}:attempts"

    @property
    def cancel(self) -> str:
        """Hash: run id -> reason, for runs asked to stop."""
        return f"{self.prefix}:cancel"

    def tally(self, bucket_ms: int) -> str:
        """Hash of run counts by status of the time bucket starting at ``bucket_ms`` (epoch ms)."""
        return f"{self.prefix}:tally:{bucket_ms}"

    @property
    def failing(self) -> str:
        """Hash: job -> fire id of its last fire, while that ended dead."""
        return f"{self.prefix}:failing"

    @property
    def dead(self) -> str:
        """Stream of dead letters."""
        return f"{self.prefix}:dead"

    def output(self, run: str) -> str:
        """Stream of run ``run``'s live output (capped, with a TTL; see the table)."""
        return f"{self.prefix}:output:{run}"

    def backfill_lock(self, job: str) -> str:
        """The lock one backfill of ``job`` holds while it reads what is done and emits; its bound is its PX
        TTL, ``defaults.BACKFILL_LOCK_TTL``, and the backfill frees it when done (token-checked)."""
        return f"{self.prefix}:backfill-lock:{job}"

    def queue_name(self, key: str) -> str:
        """The queue name of queue stream key ``key`` (the inverse of :meth:`queue`)."""
        return key.removeprefix(self.queue(""))

    @property
    def runtime_jobs(self) -> str:
        """Hash: runtime job name -> JSON entry (version, spec, who, when)."""
        return f"{self.prefix}:runtime-jobs"

    @property
    def runtime_version(self) -> str:
        """Integer: version of the latest runtime job change."""
        return f"{self.prefix}:runtime-jobs:version"

    @property
    def runtime_changes(self) -> str:
        """Stream: one entry per runtime job change (job, version), capped."""
        return f"{self.prefix}:runtime-jobs:changes"

    @property
    def runtime_deleted(self) -> str:
        """Set: runtime jobs deleted whose per-job fields the leader's upkeep has not forgotten yet."""
        return f"{self.prefix}:runtime-jobs:deleted"

    @property
    def celery_outbox(self) -> str:
        """Stream of Celery task messages waiting for the relay (a broker on another server)."""
        return f"{self.prefix}:celery-outbox"

    @property
    def celery_outbox_dead(self) -> str:
        """Stream of outbox entries moved aside after the broker refused them ``defaults.RELAY_POISON_AFTER``
        times (a WRONGTYPE queue key, say), with the reason: they no longer block the ones behind."""
        return f"{self.prefix}:celery-outbox-dead"

    @property
    def alert_events(self) -> str:
        """Stream of alert events (run records noted by the scripts that wrote them), for the leader."""
        return f"{self.prefix}:alerts:events"

    @property
    def alert_groups(self) -> str:
        """Hash: alert group id -> JSON (count of events, sinks, last event) of the window open now."""
        return f"{self.prefix}:alerts:groups"

    @property
    def alert_deliveries(self) -> str:
        """Hash: delivery id -> JSON (idempotency key, sink, payload, attempts so far, last error)."""
        return f"{self.prefix}:alerts:deliveries"

    @property
    def alert_due(self) -> str:
        """Sorted set: delivery id -> when its next attempt is due (ms, Redis's clock)."""
        return f"{self.prefix}:alerts:due"

    @property
    def alert_state(self) -> str:
        """Hash: what alerting remembers per job and rule (open alerts, last success, judged marks)."""
        return f"{self.prefix}:alerts:state"

    @property
    def alert_log(self) -> str:
        """Stream, capped: alerts raised and every delivery attempt, for ``beatd alerts``."""
        return f"{self.prefix}:alerts:log"

    @property
    def alert_standby(self) -> str:
        """The token of the standby delivering alerts while no beat leads (PX TTL)."""
        return f"{self.prefix}:alerts:standby"

    @property
    def workers(self) -> str:
        """Hash: worker id -> heartbeat."""
        return f"{self.home}:workers"

    @property
    def layout(self) -> str:
        """String: JSON ``{version, shards, state}`` of a tagged deployment (absent: plain, one shard)."""
        return f"{self.home}:layout"
