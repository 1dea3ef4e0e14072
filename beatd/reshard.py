"""``beatd reshard --to M``: change a deployment's shard count offline, keeping every job's progress and history
(docs/sharding.md section 9).

The deployment must be stopped and drained: no beat leads any shard, no beat replica or worker heartbeat is
fresh, and no shard holds a fire in a queue, a retry, a run in progress, a buffered fire or a Celery outbox
entry (each refusal names what is left; the CLI exits 2). Then:

1. ``{ns:0}:layout`` becomes ``{"state": "resharding", "from": N, "to": M, ...}`` (the journal: a beat started
   meanwhile refuses, and a rerun after a crash carries on from it), and every lease key of both layouts is
   taken under a reshard token (renewed while moving): no beat can lead anything until it is done.
2. Plain -> tagged: every key of the plain layout moves to shard 0's tagged name (``ns:x`` -> ``{ns:0}:x``;
   the heartbeats, all stale, are dropped). Then every job found in a shard other than ``shard_of(job, M)``
   moves there: its fields of progress, schedules, last, paused, failing, alerts:state (``open:``,
   ``success:``, ``mark:deadline:``, ``mark:silence:``), its runtime job entry (re-versioned in its new shard,
   announced on both shards' change streams) and deleted mark, and its keys runs, runs by-time, ended,
   backfill-lock and its runs' output streams. Tagged -> plain (``--to 1`` on one server) is the reverse: every
   job to shard 0, then shard 0's keys to the plain names. Dead letters and alert events not grouped yet go
   to their job's new shard; a dropped shard's alert groups, deliveries and due times to shard 0.
3. Every new shard's leader epoch is raised to the highest epoch of the old layout (fencing tokens never
   repeat); the empty queue streams of shards no longer used are deleted.
4. ``{ns:0}:layout`` = ``{"version": 1, "shards": M, "state": "ready", "tagged": ..., "retired": [...]}``,
   a ``reshard`` audit record in shard 0, the leases released.

Streams that are per shard and not per job (audit, dead letters, alerts log, celery-outbox-dead) and the
dashboard tallies stay in their shard; a shard no longer used (``M < N``) is listed in the layout's
``retired`` with what it kept there (read with a client of ``shards=N``, e.g. ``beatd audit --redis-url``
against a config of the old count). Every step is a copy then a delete of what was copied, so a crashed
reshard is finished by running the same command again.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from beatd import defaults, reshard_dead
from beatd.audit import audit_record
from beatd.errors import UsageProblem
from beatd.keys import Keys
from beatd.layout import LAYOUT_VERSION
from beatd.leader import holder_of
from beatd.messages import from_ms, parse_utc
from beatd.sharding import shard_of, tagged_layout
from beatd.store.base import AUDIT_MAXLEN
from beatd.store.beat import read_layout
from beatd.store.reshard import JOB_HASHES, ReshardStore, alert_job

__all__ = ["Layout", "Reshard", "ReshardRefused", "Summary"]

log = logging.getLogger("beatd.reshard")

LEASE_MS = 60_000
"""The reshard's hold on every lease key; renewed every :data:`RENEW_EVERY` seconds while it moves."""
RENEW_EVERY = 10.0
CHUNK = 500
"""Jobs (or keys) moved per round of commands."""
TOKEN_HOLDER = "reshard-"
"""How the holder part of a reshard's lease token starts (``0:reshard-HOST-PID-RANDOM``)."""


class ReshardRefused(UsageProblem):
    """The deployment is not in a state to reshard (running, not drained, nothing to change): exit 2."""


@dataclass(frozen=True)
class Layout:
    """A key layout: how many shards, and whether their keys carry hash tags (else the plain, one-shard one)."""

    shards: int
    tagged: bool

    def keys(self, namespace: str, shard: int = 0) -> Keys:
        """Shard ``shard``'s keys in this layout."""
        return Keys(namespace, shard, self.tagged)

    def __str__(self) -> str:
        return f"{self.shards} shard{'s' if self.shards != 1 else ''} ({'tagged' if self.tagged else 'plain'})"


@dataclass
class Summary:
    """What a reshard did (or, dry, would do)."""

    source: Layout
    target: Layout
    dry_run: bool = False
    jobs: set[str] = field(default_factory=set)
    """The jobs moved: to another shard, or with all of their shard (plain <-> tagged shard 0)."""
    keys_moved: int = 0
    fields_moved: int = 0
    dead_letters_moved: int = 0
    alert_events_moved: int = 0
    retired: list[int] = field(default_factory=list)

    @property
    def jobs_moved(self) -> int:
        """How many jobs moved."""
        return len(self.jobs)

    def text(self) -> str:
        """One line for the operator."""
        verb = "would move" if self.dry_run else "moved"
        retired = f"; retired shards {self.retired}" if self.retired else ""
        keys = "" if self.dry_run else f", {self.keys_moved} keys, {self.fields_moved} fields"
        keys += "" if self.dry_run else f" and {self.dead_letters_moved} dead letters"
        return f"reshard {self.source} -> {self.target}: {verb} {self.jobs_moved} jobs{keys}{retired}"


class Reshard:
    """One reshard of namespace ``namespace`` to ``to`` shards (``cluster``: the deployment is a Redis Cluster,
    so even one shard is tagged)."""

    def __init__(self, store: ReshardStore, namespace: str, to: int, *, cluster: bool) -> None:
        if to < 1:
            raise ReshardRefused(f"--to must be at least 1, not {to}")
        self.store, self.namespace, self.to, self.cluster = store, namespace, to, cluster
        self.target = Layout(to, tagged_layout(to, cluster))
        self.layout_key = Keys(namespace, 0, tagged=True).layout
        self.token = f"0:{TOKEN_HOLDER}{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self._held: list[str] = []
        self._renewed = 0.0
        self.monotonic: Callable[[], float] = time.monotonic

    # the whole procedure

    def run(self, *, dry_run: bool = False) -> Summary:
        """Reshard (or, ``dry_run``, check and count what would move); raises ReshardRefused."""
        record = read_layout(self.store.client, self.layout_key)
        source, journal = self._source(record)
        summary = Summary(source, self.target, dry_run)
        if journal is None and source == self.target:
            raise ReshardRefused(f"{self.layout_key}: this deployment has {source} already: nothing to change")
        leases = self._lease_keys(source)
        self._refuse_if_busy(source, leases)
        if dry_run:
            if not source.tagged or not self.target.tagged:  # every job of the plain shard or tagged shard 0
                summary.jobs |= self._jobs_in(Keys(self.namespace, 0, tagged=source.tagged))
            summary.jobs.update(job for moves in self._moves(source, read_plain=True).values() for job in moves)
            return summary
        revert: Callable[[], None] | None = None
        if journal is None:
            journal = {
                "version": LAYOUT_VERSION,
                "state": "resharding",
                "from": source.shards,
                "from_tagged": source.tagged,
                "to": self.target.shards,
                "to_tagged": self.target.tagged,
                "epoch": self._highest_epoch(source),
                "retired": list((record or {}).get("retired", [])),
            }
            revert = self._mark(journal)
        try:
            self._take(leases, source, revert)
            self._refuse_if_busy(source, leases, revert)
            self._move(source, journal, summary)
            self._finish(source, journal, summary)
        finally:
            self._release()
        return summary

    def _mark(self, journal: dict[str, Any]) -> Callable[[], None]:
        """Write the journal into the layout key; returns what puts the layout back as it was (a refusal
        before anything moved). An unfinished reshard's journal stays whatever happens."""
        previous = self.store.get(self.layout_key)
        self.store.set(self.layout_key, json.dumps(journal))
        log.info("reshard: %s marked resharding %s -> %s", self.layout_key, journal["from"], journal["to"])

        def revert() -> None:
            if previous is None:
                self.store.delete([self.layout_key])
            else:
                self.store.set(self.layout_key, previous)

        return revert

    def _source(self, record: dict[str, Any] | None) -> tuple[Layout, dict[str, Any] | None]:
        """The layout the keys are in now, and the journal of an unfinished reshard (None when there is none)."""
        if record is None:
            return Layout(1, self.cluster), None  # absent: one plain shard (a cluster's is always tagged)
        if "unreadable" in record:
            raise ReshardRefused(f"{self.layout_key} holds {record['unreadable']!r}, not a layout: fix it by hand")
        state = record.get("state", "ready")
        if state == "resharding":
            if record.get("to") != self.to:
                raise ReshardRefused(
                    f"{self.layout_key}: a reshard from {record.get('from')} to {record.get('to')} shards is "
                    f"unfinished: run `beatd reshard --to {record.get('to')}` again to finish it first"
                )
            return Layout(int(record["from"]), bool(record["from_tagged"])), record
        if state != "ready" or not isinstance(record.get("shards"), int):
            raise ReshardRefused(f"{self.layout_key}: unknown layout {record!r}: fix it by hand")
        return Layout(record["shards"], bool(record.get("tagged", True))), None

    # refusals

    def _lease_keys(self, source: Layout) -> list[str]:
        keys = [source.keys(self.namespace, s).leader for s in range(source.shards)]
        keys += [self.target.keys(self.namespace, s).leader for s in range(self.target.shards)]
        return list(dict.fromkeys(keys))

    def _refuse_if_busy(self, source: Layout, leases: Sequence[str], revert: Callable[[], None] | None = None) -> None:
        reasons = self._leases_held(leases) + self._alive(source) + self._undrained(source)
        if reasons:
            self._release()
            if revert is not None:
                revert()
            raise ReshardRefused(
                "not resharded (nothing was moved):\n  " + "\n  ".join(reasons) + "\nstop every beat and worker "
                "once the queues are drained (`beatd status` shows them), then run it again"
            )

    def _leases_held(self, keys: Sequence[str]) -> list[str]:
        reasons = []
        for key, lease in zip(keys, self.store.leases(keys), strict=True):
            if lease is None or lease[0] == self.token:
                continue
            token, left = lease
            holder = holder_of(token)
            who = "another `beatd reshard`" if holder.startswith(TOKEN_HOLDER) else f"beat replica {holder}"
            reasons.append(f"{key}: led by {who} (lease left {left / 1000:.1f}s)")
        return reasons

    def _alive(self, source: Layout) -> list[str]:
        reasons = []
        homes = {layout.keys(self.namespace) for layout in (source, self.target)}
        for keys in sorted(homes, key=lambda keys: keys.prefix):
            now_ms = self.store.redis_ms(keys.replicas)
            for key, what, stale in (
                (keys.replicas, "beat replica", defaults.REPLICA_STALE_AFTER),
                (keys.workers, "worker", defaults.WORKER_STALE_AFTER),
            ):
                for member, beat in sorted(self.store.heartbeats(key).items()):
                    age = _age_s(beat.get("heartbeat_at"), now_ms)
                    if age is not None and age <= stale.total_seconds():  # an unreadable one counts as gone
                        reasons.append(f"{key}: {what} {member} is alive (heartbeat {age:.1f}s ago)")
        return reasons

    def _undrained(self, source: Layout) -> list[str]:
        reasons = []
        for keys in self._all_shards(source):
            patterns = [keys.queue("*"), keys.retry("*"), keys.active("*"), keys.buffer("*")]
            found = [key for pattern in patterns for key in self._scan(pattern)] + [keys.celery_outbox]
            for key, size in self.store.sizes(found).items():
                if size:
                    reasons.append(f"{key}: {size} left (not drained)")
        return reasons

    def _all_shards(self, source: Layout) -> list[Keys]:
        """Every shard's keys of both layouts (what a rerun may find anywhere)."""
        tagged = max(source.shards if source.tagged else 1, self.target.shards if self.target.tagged else 1)
        shards = [Keys(self.namespace, s, tagged=True) for s in range(tagged)]
        plain = [Keys(self.namespace)] if not (source.tagged and self.target.tagged) else []
        return plain + shards

    # leases

    def _take(self, keys: Sequence[str], source: Layout, revert: Callable[[], None] | None) -> None:
        for key in keys:
            if not self.store.take(key, self.token, LEASE_MS):  # a beat took it since the check
                self._refuse_if_busy(source, keys, revert)
                self._release()
                if revert is not None:
                    revert()
                raise ReshardRefused(f"{key}: taken by a beat while the reshard began: nothing was moved")
            self._held.append(key)
        self._renewed = self.monotonic()

    def _keep(self) -> None:
        """Renew the reshard's leases when due (between chunks of moves)."""
        if self.monotonic() - self._renewed < RENEW_EVERY:
            return
        for key in self._held:  # one that expired during a long step is taken again if still free (no beat
            # leads meanwhile: the layout says resharding); held by another (a second reshard): stop
            if not self.store.take(key, self.token, LEASE_MS):
                raise ReshardRefused(f"{key}: the reshard's lease was lost: run `beatd reshard` again to finish")
        self._renewed = self.monotonic()

    def _scan(self, pattern: str) -> list[str]:
        """SCAN walks every key of the server (a few times per shard, before the first job moves): the leases
        are renewed after each one when due, else a large deployment's reshard loses them before it moves."""
        keys = self.store.scan(pattern)
        self._keep()
        return keys

    def _release(self) -> None:
        for key in self._held:
            self.store.release(key, self.token)
        self._held = []

    # moves

    def _move(self, source: Layout, journal: dict[str, Any], summary: Summary) -> None:
        plain, home = Keys(self.namespace), Keys(self.namespace, 0, tagged=True)
        if not source.tagged:
            summary.jobs |= self._jobs_in(plain)
            summary.keys_moved += self._relabel(plain, home)
        by_shard: dict[int, dict[int, list[str]]] = defaultdict(dict)
        for (shard, target), jobs in self._moves(source, read_plain=False).items():
            by_shard[shard][target] = jobs
        for shard, targets in sorted(by_shard.items()):
            keys = Keys(self.namespace, shard, tagged=True)
            found = _ShardFound(self._all_fields(keys.alert_state), self._scan(keys.output("*")))
            for target, jobs in sorted(targets.items()):
                for start in range(0, len(jobs), CHUNK):
                    self._move_jobs(jobs[start : start + CHUNK], shard, target, found, summary)
                    self._keep()
        self._move_dead_letters(source, summary)
        self._move_retired_alerts(source, summary)
        if not self.target.tagged:
            summary.jobs |= self._jobs_in(home)
            summary.keys_moved += self._relabel(home, plain)

    def _move_dead_letters(self, source: Layout, summary: Summary) -> None:
        """Each dead letter to its job's new shard, naming that shard's queue stream (:mod:`beatd.reshard_dead`),
        so `beatd dead retry` puts it where a worker runs it; and each alert event not grouped yet (noted by a
        worker after the beats stopped) to its job's new shard, whose leader's config view holds the job."""
        summary.dead_letters_moved += self._move_stream(source, "dead")
        summary.alert_events_moved += self._move_stream(source, "alert_events")
        self._keep()

    def _move_retired_alerts(self, source: Layout, summary: Summary) -> None:
        """The alert groups, deliveries and their due times of every shard no longer used, to shard 0: a dropped
        shard has no leader to close a group or deliver (a group stays with the delivery that closes it)."""
        store, ns = self.store, self.namespace
        used = set(range(self.target.shards)) if self.target.tagged else {0}
        home = Keys(ns, 0, tagged=True)
        for keys in self._all_shards(source):
            if not keys.tagged or keys.shard in used:
                continue
            for name in ("alert_groups", "alert_deliveries"):
                summary.fields_moved += store.move_fields(
                    getattr(keys, name), getattr(home, name), self._all_fields(getattr(keys, name))
                )
            summary.fields_moved += store.move_scores(keys.alert_due, home.alert_due, store.scores(keys.alert_due))
            self._keep()

    def _move_stream(self, source: Layout, name: str) -> int:
        """Move each entry of every shard's stream ``name`` (a ``Keys`` attribute) to its job's new shard; how
        many moved."""
        ns, target = self.namespace, self.target
        count = target.shards if target.tagged else 1
        shards = [k for k in self._all_shards(source) if k.tagged]
        streams = {keys.shard: self.store.read_stream(getattr(keys, name)) for keys in shards}

        def target_of(job: str | None, shard: int) -> int:
            if job is None:
                return shard if shard < count else 0
            return shard_of(job, count)

        def queue_key(shard: int, queue: str) -> str:
            return target.keys(ns, shard).queue(queue)

        moved = 0
        for shard, entries in sorted(reshard_dead.merged(streams, target_of, queue_key).items()):
            if entries != list(streams.get(shard, [])):
                self.store.write_stream(getattr(Keys(ns, shard, tagged=True), name), entries)
        for shard, ids in sorted(reshard_dead.leaving(streams, target_of, queue_key).items()):
            self.store.delete_entries(getattr(Keys(ns, shard, tagged=True), name), ids)
            moved += len(ids)
        return moved

    def _moves(self, source: Layout, *, read_plain: bool) -> dict[tuple[int, int], list[str]]:
        """(shard, target shard) -> the jobs found in that tagged shard that belong to the target one. A plain
        source counts as tagged shard 0 (its keys get there first: ``read_plain`` reads them where they are
        still, for a dry run); a plain target as tagged shard 0 (they leave it last)."""
        count = self.target.shards if self.target.tagged else 1
        found = [k for k in self._all_shards(source) if k.tagged]
        if read_plain and not source.tagged:
            found[0] = Keys(self.namespace)
        moves: dict[tuple[int, int], list[str]] = defaultdict(list)
        for keys in found:
            for job in sorted(self._jobs_in(keys)):
                target = shard_of(job, count)
                if target != keys.shard:
                    moves[(keys.shard, target)].append(job)
        return dict(moves)

    def _jobs_in(self, keys: Keys) -> set[str]:
        """Every job with a field or key in shard ``keys``."""
        store = self.store
        jobs: set[str] = set()
        for name in (*JOB_HASHES, "runtime_jobs"):
            jobs.update(store.field_names(getattr(keys, name)))
        jobs.update(store.members(keys.runtime_deleted))
        for pattern, strip in (
            (keys.runs("*"), keys.runs("")),
            (keys.ended("*"), keys.ended("")),
            (keys.backfill_lock("*"), keys.backfill_lock("")),
            (keys.output("*"), keys.output("")),
        ):
            for key in self._scan(pattern):
                jobs.add(key.removeprefix(strip).removesuffix(":by-time").partition("@")[0])
        return jobs

    def _move_jobs(self, jobs: list[str], shard: int, target: int, found: _ShardFound, summary: Summary) -> None:
        store, ns = self.store, self.namespace
        source, into = Keys(ns, shard, tagged=True), Keys(ns, target, tagged=True)
        moved = 0
        for name in JOB_HASHES:
            moved += store.move_fields(getattr(source, name), getattr(into, name), self._fields(source, name, jobs))
        wanted = set(jobs)
        state = {f: v for f, v in found.alert_state.items() if alert_job(f) in wanted}
        moved += store.move_fields(source.alert_state, into.alert_state, state)
        entries = store.read_fields(source.runtime_jobs, jobs)
        moved += store.move_runtime_jobs(source, into, entries, defaults.RUNTIME_CHANGES_MAXLEN)
        deleted = [job for job in store.members(source.runtime_deleted) if job in wanted]
        store.move_members(source.runtime_deleted, into.runtime_deleted, deleted)
        pairs = []
        for job in jobs:
            for name in ("runs", "runs_by_time", "ended", "backfill_lock"):
                pairs.append((getattr(source, name)(job), getattr(into, name)(job)))
        for key in found.outputs:
            run = key.removeprefix(source.output(""))
            if run.partition("@")[0] in wanted:
                pairs.append((key, into.output(run)))
        summary.keys_moved += store.move_keys(pairs)
        summary.fields_moved += moved
        summary.jobs.update(jobs)
        log.info("reshard: %d jobs moved from shard %d to shard %d", len(jobs), shard, target)

    def _fields(self, keys: Keys, name: str, jobs: list[str]) -> dict[str, str]:
        return self.store.read_fields(getattr(keys, name), jobs)

    def _all_fields(self, key: str) -> dict[str, str]:
        names = self.store.field_names(key)
        return self.store.read_fields(key, names)

    def _relabel(self, source: Keys, target: Keys) -> int:
        """Move every key of shard ``source`` to the same name under ``target``'s prefix (one server: plain and
        tagged shard 0); the heartbeats (all stale) are dropped, the leases and the layout stay."""
        skip = {source.leader, self.layout_key}
        drop = [key for key in (source.replicas, source.workers) if key not in skip]
        self.store.delete(drop)
        keys = [key for key in self._scan(f"{source.prefix}:*") if key not in skip and key not in drop]
        moved = 0
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            moved += self.store.move_keys((key, target.prefix + key.removeprefix(source.prefix)) for key in chunk)
            self._keep()
        log.info("reshard: %d keys moved from %s:* to %s:*", moved, source.prefix, target.prefix)
        return moved

    def _highest_epoch(self, source: Layout) -> int:
        keys = [k.epoch for k in self._all_shards(source)]
        return max((int(value) for value in map(self.store.get, keys) if value), default=0)

    # the end

    def _finish(self, source: Layout, journal: dict[str, Any], summary: Summary) -> None:
        store, ns, target = self.store, self.namespace, self.target
        floor = max(int(journal.get("epoch", 0)), self._highest_epoch(source))
        for shard in range(target.shards):
            store.raise_epoch(target.keys(ns, shard).epoch, floor)
        used = set(range(target.shards)) if target.tagged else {0}  # a plain target: shard 0 became the plain keys
        unused = [k for k in self._all_shards(source) if k.tagged and k.shard not in used]
        empty = [key for keys in unused for p in (keys.queue("*"), keys.leases("*")) for key in self._scan(p)]
        store.delete([key for key, size in store.sizes(empty).items() if size == 0])
        old = set(range(source.shards)) if source.tagged else set()
        summary.retired = sorted((set(journal.get("retired", [])) | old) - used)
        layout: dict[str, Any] = {"version": LAYOUT_VERSION, "shards": target.shards, "state": "ready"}
        layout["tagged"] = target.tagged
        if summary.retired:
            layout["retired"] = summary.retired
        record = audit_record(
            "reshard",
            from_ms(store.redis_ms(self.layout_key)),
            **{"from": source.shards, "to": target.shards, "jobs_moved": summary.jobs_moved},
            keys_moved=summary.keys_moved,
            fields_moved=summary.fields_moved,
            dead_letters_moved=summary.dead_letters_moved,
            alert_events_moved=summary.alert_events_moved,
            retired=summary.retired,
        )
        store.audit(target.keys(ns).audit, record, AUDIT_MAXLEN)
        store.set(self.layout_key, json.dumps(layout))
        log.info("reshard %s -> %s done: %s", source, target, self.layout_key)


@dataclass
class _ShardFound:
    """What is read once per source shard rather than per chunk of jobs."""

    alert_state: dict[str, str]
    outputs: list[str]


def _age_s(text: Any, now_ms: int) -> float | None:
    """Seconds from a heartbeat's ``heartbeat_at`` (UTC text) to ``now_ms``; None when unreadable."""
    try:
        at = parse_utc(str(text))
    except (TypeError, ValueError):
        return None
    return now_ms / 1000 - at.timestamp()
