"""A reader's view of the runtime jobs (the beat's and each worker's), kept in step with Redis.

``poll`` costs one GET of the version key when nothing changed; after a change it reads the change stream from
where it left off and the changed entries only, and judges each against the reader's own config
(:class:`beatd.runtime_judge.Judge`: the full validation once per shape of job): an entry that is not a valid,
allowed runtime job of this config is refused, logged and audited, never scheduled or run. A full read (the
first, after a reload, or when the change stream lost the reader's place) goes page by page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from beatd import defaults
from beatd.audit import audit_record
from beatd.clock import Clock
from beatd.config import Config, JobSpec
from beatd.config.compact import CompactJob, JobSpecs
from beatd.runtime_jobs import allow_problem
from beatd.runtime_judge import Judge, same_rules
from beatd.sharding import shard_of
from beatd.store.jobs import START, JobStore

__all__ = ["RuntimeFollower", "ShardedFollower", "follow_runtime_jobs"]

log = logging.getLogger("beatd.runtime")

Changed = dict[str, CompactJob | None]
"""Runtime jobs changed by a poll: the new job, or None for a job gone (deleted or refused)."""


@dataclass
class FullRead:
    """A full read under way: the HSCAN cursor of its next page, the names met so far, and the change stream
    cursor and version taken before it began (a change made during it is read again after it)."""

    cursor: str
    version: int
    scan_cursor: int = 0
    seen: set[str] = field(default_factory=set)
    server: str | None = None
    """The Redis process that answered the first page: its cursors mean nothing to another."""


class RuntimeFollower:
    """The valid runtime jobs of one reader (``role`` names it in logs and audit records)."""

    def __init__(
        self, store: JobStore, config: Config, clock: Clock, role: str, audit: Callable[[dict[str, Any]], None]
    ) -> None:
        self.store = store
        self.judge = Judge(config)
        self.clock = clock
        self.role = role
        self.audit = audit
        self.compact: dict[str, CompactJob] = {}
        """The valid runtime jobs as the beat keeps them (:mod:`beatd.config.compact`)."""
        self.jobs: Mapping[str, JobSpec] = JobSpecs(self.compact)
        """The same jobs as full JobSpecs (each made when asked for: a worker's run, a reload's allow check)."""
        self.refused: dict[str, str] = {}
        self.cursor = START
        self.version = -1
        self.behind = False
        """More changes wait to be read (or a full read is under way): poll again at once."""
        self._full: FullRead | None = None

    @property
    def config(self) -> Config:
        """The config runtime jobs are judged by."""
        return self.judge.config

    @property
    def reading(self) -> bool:
        """A full read is under way: ``jobs`` may still lack jobs that exist (a beat leads only once it is done)."""
        return self._full is not None

    def poll(self) -> Changed:
        """Read what changed since the last poll; return the runtime jobs whose spec changed (empty: none). A
        full read (the first, after a reload, or when the change stream lost the cursor) takes one page of
        ``RUNTIME_CHANGES_PER_POLL`` entries per poll, with ``behind`` set until it is complete, so a caller
        that polls between other work (the leader renewing its lease) is never held up by 100,000 jobs."""
        if self._full is not None:
            return self._read_page(self._full)
        changes = self.store.changes(self.cursor, self.version, defaults.RUNTIME_CHANGES_PER_POLL)
        if changes is None:
            self.behind = False
            return {}
        if changes.full:
            self._full = FullRead(changes.cursor, changes.version)
            return self._read_page(self._full)
        self.behind = changes.more
        changed: Changed = {}
        for name, raw in changes.entries.items():
            changed.update(self._take(name, raw))
        self.cursor, self.version = changes.cursor, changes.version
        return changed

    def poll_all(self) -> Changed:
        """Poll until nothing is left to read (a worker before it runs a delivery; a beat before it leads)."""
        changed = self.poll()
        while self.behind:
            changed.update(self.poll())
        return changed

    def set_config(self, config: Config) -> Changed:
        """Judge every runtime job again under ``config`` (a reload: the allow-list or the YAML may have
        changed): a full read, page by page. Shapes judged under the old config are kept when the verdict
        cannot differ (:func:`beatd.runtime_judge.same_rules`). A job the new allow-lists refuse is dropped at
        once, not when its page comes (the full read words and audits the refusal)."""
        changed: Changed = {}
        if not same_rules(self.judge.config, config):
            # A job's queue may come from the defaults: refused on it, the job is dropped at once only when the
            # default queue is unchanged (else its page judges it: dropped and met again, it would start anew).
            same_queue = self.judge.config.settings.defaults.get("queue") == config.settings.defaults.get("queue")
            self.judge = Judge(config)
            for name, job in list(self.compact.items()):
                refused = allow_problem(config.settings.runtime_jobs, job.spec())
                if refused is not None and (refused[0] != "queue" or same_queue):
                    del self.compact[name]
                    changed[name] = None
        else:
            self.judge.config = config
        self.version = -1
        self._full = None
        changed.update(self.poll())
        return changed

    def _read_page(self, full: FullRead) -> Changed:
        after, page, server = self.store.scan(full.scan_cursor, defaults.RUNTIME_CHANGES_PER_POLL)
        if full.server is None or full.scan_cursor == 0:
            full.server = server
        elif server != full.server:
            # Redis restarted or failed over since the last page: the cursor would skip entries of the new
            # process's hash, which the read's end would then take for deleted jobs. Read again from the start.
            log.warning("runtime jobs: Redis changed (run_id %s, was %s) during a full read: reading again",
                        server, full.server)  # fmt: skip
            self._full, self.version, self.behind = None, -1, True
            return {}
        changed: Changed = {}
        for name, raw in page.items():
            full.seen.add(name)
            changed.update(self._take(name, raw))
        full.scan_cursor = after
        self.behind = after != 0
        if after == 0:  # complete: what the read did not meet is gone
            for name in [name for name in self.compact if name not in full.seen]:
                del self.compact[name]
                changed[name] = None
            self.refused = {name: why for name, why in self.refused.items() if name in full.seen}
            self.cursor, self.version, self._full = full.cursor, full.version, None
        return changed

    def _take(self, name: str, raw: str | None) -> Changed:
        if raw is None:
            self.refused.pop(name, None)
            return {name: None} if self.compact.pop(name, None) is not None else {}
        try:
            job, why = self.judge.compact(name, raw)
        except Exception as error:  # an entry that breaks the judge is refused; the others are still read
            job, why = None, f"unreadable entry: {type(error).__name__}: {error}"
        if job is None:
            self._refuse(name, why)
            return {name: None} if self.compact.pop(name, None) is not None else {}
        self.refused.pop(name, None)
        if (before := self.compact.get(name)) is not None and before.digest == job.digest:
            return {}
        self.compact[name] = job
        return {name: job}

    def _refuse(self, name: str, why: str) -> None:
        if self.refused.get(name) == why:
            return
        self.refused[name] = why
        log.error("runtime job %s refused by the %s: %s", name, self.role, why)
        try:
            self.audit(audit_record("runtime-job-refused", self.clock.now(), job=name, by=self.role, reason=why))
        except Exception:  # the audit is best effort here: the refusal itself stands
            log.exception("audit record of the refusal of runtime job %s not written", name)


class _ByShard(Mapping[str, Any]):
    """One mapping attribute (``compact``, ``jobs``, ``refused``) of every shard's follower, a name looked up
    in its own shard's (read at each call: a follower may replace the mapping)."""

    def __init__(self, followers: tuple[RuntimeFollower, ...], attribute: str) -> None:
        self._followers = followers
        self._attribute = attribute

    def _of(self, follower: RuntimeFollower) -> Mapping[str, Any]:
        mapping: Mapping[str, Any] = getattr(follower, self._attribute)
        return mapping

    def __getitem__(self, name: str) -> Any:
        return self._of(self._followers[shard_of(name, len(self._followers))])[name]

    def __iter__(self) -> Iterator[str]:
        for follower in self._followers:
            yield from self._of(follower)

    def __len__(self) -> int:
        return sum(len(self._of(follower)) for follower in self._followers)


class ShardedFollower:
    """A worker's runtime jobs of every shard: each job lives in its own shard's keys (``beatd job put`` writes
    it there), so one :class:`RuntimeFollower` per shard reads them, and a name is looked up in its shard's."""

    def __init__(self, followers: list[RuntimeFollower]) -> None:
        self.followers = tuple(followers)
        self.compact: Mapping[str, CompactJob] = _ByShard(self.followers, "compact")
        self.jobs: Mapping[str, JobSpec] = _ByShard(self.followers, "jobs")
        self.refused: Mapping[str, str] = _ByShard(self.followers, "refused")

    def poll_all(self) -> Changed:
        """:meth:`RuntimeFollower.poll_all` of every shard."""
        changed: Changed = {}
        for follower in self.followers:
            changed.update(follower.poll_all())
        return changed

    def set_config(self, config: Config) -> Changed:
        """:meth:`RuntimeFollower.set_config` of every shard."""
        changed: Changed = {}
        for follower in self.followers:
            changed.update(follower.set_config(config))
        return changed


def follow_runtime_jobs(
    client: Any, config: Config, clock: Clock, role: str, audit: Callable[[dict[str, Any]], None]
) -> RuntimeFollower | ShardedFollower:
    """The runtime jobs a worker may run, followed from every shard of ``config`` (one shard: one follower)."""
    followers = [RuntimeFollower(JobStore(client, keys), config, clock, role, audit) for keys in config.shard_keys()]
    return followers[0] if len(followers) == 1 else ShardedFollower(followers)
