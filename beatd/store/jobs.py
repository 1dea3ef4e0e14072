"""Runtime jobs in Redis: the jobs hash, its version key and change stream (``lua/put_jobs.lua``).

Writers (``beatd job put``, ``client.jobs``) put validated specs; readers (the beat, workers) follow the change
stream from where they left off, so a change costs a reader the changed entries only; a reader with no cursor
(or one trimmed away) reads every entry page by page (:meth:`JobStore.scan`). A stored entry is JSON
``{"version": N, "spec": {...}, "by": user, "at": instant}``; readers validate the spec again with their own
config (an entry may have been forged straight into Redis).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from beatd import defaults
from beatd.keys import Keys
from beatd.store.base import AUDIT_MAXLEN, is_cluster, reachable, script
from beatd.store.codec import BatchScript

__all__ = ["Changes", "JobChange", "JobStore", "StoredJob"]

START = "0-0"
"""The change stream cursor of a reader that has read nothing yet."""


@dataclass(frozen=True)
class JobChange:
    """One runtime job to put or delete, an item of ``lua/put_jobs.lua``."""

    job: str
    body: str
    """The entry's JSON after its opening brace (the script prepends the version); empty to delete."""

    @classmethod
    def put(cls, job: str, spec: dict[str, Any], by: str, at: str) -> JobChange:
        """Put ``spec`` (a job mapping, JSON values) as ``job``, written by ``by`` at ``at``."""
        return cls(job, json.dumps({"spec": spec, "by": by, "at": at}, separators=(",", ":"))[1:])

    @classmethod
    def delete(cls, job: str) -> JobChange:
        """Delete ``job``."""
        return cls(job, "")


@dataclass(frozen=True)
class StoredJob:
    """A runtime job entry as read back: its version, spec (unvalidated), who wrote it and when."""

    name: str
    version: int
    spec: Any
    by: str
    at: str
    unreadable: str | None = None
    """Why the stored value is not an entry (a forged or corrupt value; ``version`` 0, ``spec`` None), or None."""

    @classmethod
    def parse(cls, name: str, raw: str) -> StoredJob:
        """Read an entry; raise ValueError when it is not one (a forged or corrupt value)."""
        try:
            entry = json.loads(raw)
        except ValueError as error:
            raise ValueError(f"not JSON: {error}") from error
        except RecursionError as error:  # a forged entry nested deeper than the parser recurses
            raise ValueError("not JSON: nested too deep") from error
        if not isinstance(entry, dict) or not isinstance(entry.get("version"), int) or "spec" not in entry:
            raise ValueError("expected an object with version and spec")
        return cls(name, entry["version"], entry["spec"], str(entry.get("by", "")), str(entry.get("at", "")))


@dataclass(frozen=True)
class Changes:
    """What a reader learns in one poll: the entries of the changed jobs (None: deleted), whether they are the
    whole set (``full``: the reader's cursor had been trimmed away, or it had none), and the new cursor."""

    entries: Mapping[str, str | None]
    full: bool
    """The reader must read every entry (:meth:`JobStore.scan`, page by page; ``entries`` is empty): its cursor
    had been trimmed away, or it had none. ``cursor`` and ``version`` are where to go on from once it has."""
    cursor: str
    version: int
    more: bool = False
    """More changes are left to read after these (the next poll reads them)."""


class JobStore:
    """The runtime jobs of one namespace."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client: Any = client
        self.keys = keys
        self._put = BatchScript(self.client, "put_jobs", JobChange, defaults.RUNTIME_BATCH)
        self._forget = self.client.register_script(script("forget_jobs"))

    # -- writing -----------------------------------------------------------------------------------------
    def write(self, changes: Sequence[JobChange], audit: dict[str, Any] | None) -> list[int]:
        """Apply ``changes`` in one atomic call (at most ``RUNTIME_BATCH`` of them) with its ``audit`` record;
        return each change's version (0: a delete of a job that was not there)."""
        if len(changes) > defaults.RUNTIME_BATCH:
            raise ValueError(f"at most {defaults.RUNTIME_BATCH} changes in one call")
        keys = [
            self.keys.runtime_jobs,
            self.keys.runtime_version,
            self.keys.runtime_changes,
            self.keys.audit,
            self.keys.runtime_deleted,
        ]
        args = [defaults.RUNTIME_CHANGES_MAXLEN, audit["event"] if audit else "", json.dumps(audit or {}), AUDIT_MAXLEN]
        with reachable():
            (reply,) = self._put(keys, args, changes)
        return [int(version) for version in reply]

    # -- forgetting deleted jobs (the leader's upkeep) ------------------------------------------------------
    def deleted(self, count: int) -> list[str]:
        """Up to ``count`` runtime jobs deleted whose per-job fields are still to be forgotten."""
        with reachable():
            return sorted(self.client.srandmember(self.keys.runtime_deleted, count))

    def forget_names(self, names: Sequence[str]) -> None:
        """Take ``names`` out of the deleted set without touching their fields (names of YAML jobs now)."""
        with reachable():
            self.client.srem(self.keys.runtime_deleted, *names)

    def forget(self, token: str, names: Sequence[str]) -> int:
        """Delete the progress, schedule, last message, pause, failing and alert state fields of the deleted
        runtime jobs ``names`` still absent from the jobs hash, if ``token`` holds the lease
        (``lua/forget_jobs.lua``); return how many were forgotten (-1: not the leader)."""
        if not names:
            return 0
        keys = self.keys
        script_keys = [keys.leader, keys.runtime_jobs, keys.runtime_deleted, keys.progress, keys.schedules,
                       keys.last, keys.paused, keys.failing, keys.alert_state]  # fmt: skip
        with reachable():
            return int(self._forget(keys=script_keys, args=[token, *names]))

    # -- reading -----------------------------------------------------------------------------------------
    def version(self) -> int:
        """The version of the latest change (0: none ever)."""
        with reachable():
            return int(self.client.get(self.keys.runtime_version) or 0)

    def entries(self, names: Sequence[str]) -> dict[str, str | None]:
        """The stored entries of ``names`` (None: not there)."""
        if not names:
            return {}
        with reachable():
            values = self.client.hmget(self.keys.runtime_jobs, list(names))
        return dict(zip(names, values, strict=True))

    def all_entries(self) -> dict[str, str]:
        """Every stored entry, by job name."""
        with reachable():
            return dict(self.client.hscan_iter(self.keys.runtime_jobs, count=5000))

    def scan(self, cursor: int, count: int) -> tuple[int, dict[str, str], str]:
        """One page of a full read (HSCAN from ``cursor``, 0 to begin): about ``count`` entries, the cursor of
        the next page (0: the read is complete) and the id of the Redis process that answered (its ``run_id``,
        asked in the same round trip). An entry present from the first page to the last is in at least one page
        if one process answered them all (a cursor means nothing to another: a restarted or promoted server
        lays its hash out with another seed); one changed meanwhile may be in a page with either value (the
        change stream has it)."""
        with reachable():
            if is_cluster(self.client):  # a cluster pipeline runs no INFO: ask the hash's master, just before
                info, scanned = self._cluster_info(), self.client.hscan(self.keys.runtime_jobs, cursor, count=count)
            else:
                pipe = self.client.pipeline(transaction=False)
                pipe.info("server")
                pipe.hscan(self.keys.runtime_jobs, cursor, count=count)
                info, scanned = pipe.execute(raise_on_error=False)
            if isinstance(scanned, Exception):
                raise scanned
        after, page = scanned
        # A server that refuses INFO (a managed Redis may rename it) gives no id: its cursors are trusted as before.
        server = "" if isinstance(info, Exception) else str(info.get("run_id", ""))
        return int(after), dict(page), server

    def _cluster_info(self) -> Any:
        """``INFO server`` of the cluster node holding the runtime jobs (an exception when it refuses), asked
        before the page so a fail-over in between is seen as another process at the next page."""
        try:
            node = self.client.get_node_from_key(self.keys.runtime_jobs)
            return self.client.info("server", target_nodes=node)
        except redis.exceptions.ResponseError as error:
            return error

    def count(self) -> int:
        """How many runtime jobs are stored."""
        with reachable():
            return int(self.client.hlen(self.keys.runtime_jobs))

    def changes(self, cursor: str, seen_version: int, limit: int) -> Changes | None:
        """What changed after ``cursor`` (a change stream id): the entries of the jobs named by at most ``limit``
        change entries, or None when the version is still ``seen_version`` (one GET: the cost of a poll with
        nothing new). A first read (``seen_version`` -1), or one whose cursor was trimmed away, is told to read
        every entry (``full``). When more changes are left, the returned version is the last one read (below the
        current one)."""
        version = self.version()
        if version == seen_version:
            return None
        with reachable():
            first = self.client.xrange(self.keys.runtime_changes, count=1)
            last = self.client.xrevrange(self.keys.runtime_changes, count=1)
        # Every change is one entry with the next version: the entries after the reader's are all there unless
        # the oldest one left is past the next version it needs, or the stream is gone while the version moved
        # (trimmed or deleted away: read everything).
        if seen_version < 0 or not first or int(first[0][1]["version"]) > seen_version + 1:
            # The cursor is taken before the scan, so a change made during it is read again after it.
            end = last[0][0] if last else START
            return Changes({}, full=True, cursor=end, version=version)
        with reachable():
            batch = self.client.xrange(self.keys.runtime_changes, min=f"({cursor}", count=limit)
        if not batch:
            return Changes({}, full=False, cursor=cursor, version=version)
        names = sorted({fields["job"] for _, fields in batch})
        more = len(batch) == limit and batch[-1][0] != (last[0][0] if last else START)
        reached = int(batch[-1][1]["version"]) if more else version
        return Changes(self.entries(names), full=False, cursor=batch[-1][0], version=reached, more=more)
