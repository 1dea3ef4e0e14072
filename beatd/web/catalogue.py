"""The jobs ``beatd web`` shows: the YAML jobs of its config and the runtime jobs valid under it, kept in
memory and read again only when the runtime jobs' version changes; search, filter and paging over them.

With 100,000 jobs a request must not walk them all in Python more than once: the catalogue keeps, per read,
each job's lower-cased search text and the jobs of each tag, queue and the disabled ones, so a filter starts
from the smallest of those lists (or from the failing or paused jobs) and the unfiltered page is a slice."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from beatd.client import Client
from beatd.config import JobSpec

__all__ = ["PAGE_SIZE", "STATUS_FILTERS", "Catalogue", "Selection"]

PAGE_SIZE = 50
"""Jobs per page of the jobs page (and the default ``limit`` of ``GET /api/v1/jobs``)."""

STATUS_FILTERS = ("failing", "paused", "disabled", "ok")
"""What ``status=`` filters the jobs by: last fire ended dead, paused, not enabled, none of these."""

YAML = "yaml"


@dataclass(frozen=True)
class Selection:
    """One page of the jobs that match a search: ``total`` matched, ``offset`` of the first shown."""

    specs: list[JobSpec]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True)
class _Index:
    """One read of the jobs and what a search needs of them (replaced whole, so a request sees one read)."""

    specs: list[JobSpec]
    by_name: dict[str, JobSpec]
    sources: dict[str, str]
    position: dict[str, int]
    haystacks: list[str]
    """Per job: its name and description, lower-cased."""
    by_tag: dict[str, list[int]]
    by_queue: dict[str, list[int]]
    disabled: list[int]
    queues: tuple[str, ...]
    """The queues of the jobs (Celery jobs have none of beatd's), sorted."""

    @classmethod
    def of(cls, specs: list[JobSpec], sources: dict[str, str]) -> _Index:
        by_tag: defaultdict[str, list[int]] = defaultdict(list)
        by_queue: defaultdict[str, list[int]] = defaultdict(list)
        for position, spec in enumerate(specs):
            for tag in spec.tags:
                by_tag[tag].append(position)
            by_queue[spec.queue].append(position)
        return cls(
            specs, {spec.name: spec for spec in specs}, sources, {spec.name: i for i, spec in enumerate(specs)},
            [f"{spec.name}\n{spec.description}".lower() for spec in specs], dict(by_tag), dict(by_queue),
            [i for i, spec in enumerate(specs) if not spec.enabled],
            tuple(sorted({spec.queue for spec in specs if spec.celery is None})),
        )  # fmt: skip


class Catalogue:
    """Every job of the deployment as ``client`` sees it; thread-safe (pages are served from a thread pool)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._version: tuple[int, ...] | None = None
        self._index = _Index.of(list(client.config.jobs.values()), dict.fromkeys(client.config.jobs, YAML))

    def refresh(self) -> None:
        """Read the runtime jobs again if their version changed since the last read (one GET a shard otherwise)."""
        if self.client.config.settings.runtime_jobs is None:
            return
        # each shard keeps its own runtime jobs and version (a put bumps only its job's shard's)
        version = tuple(store.version() for store in self.client.jobs.runtime.stores())
        with self._lock:
            if version == self._version:
                return
            listed = self.client.jobs.sourced()  # the YAML's, then the runtime jobs valid under the config
            self._index = _Index.of([spec for spec, _ in listed], {spec.name: source for spec, source in listed})
            self._version = version

    @property
    def specs(self) -> Sequence[JobSpec]:
        """Every job: the YAML ones in config order, then the runtime ones by name."""
        return self._index.specs

    @property
    def sources(self) -> Mapping[str, str]:
        """Job -> ``yaml`` or ``runtime``."""
        return self._index.sources

    @property
    def queues(self) -> Sequence[str]:
        """The queues the jobs go to (beatd's queues; a Celery job's broker queue is not one), sorted."""
        return self._index.queues

    def get(self, name: str) -> JobSpec | None:
        """The job ``name``, or None."""
        return self._index.by_name.get(name)

    def select(
        self, *, query: str = "", tag: str = "", queue: str = "", status: str = "", failing: Mapping[str, str],
        paused: Mapping[str, object], offset: int = 0, limit: int = PAGE_SIZE,
    ) -> Selection:  # fmt: skip
        """The page of jobs matching every filter given: ``query`` in the name or description (any case),
        ``tag``, ``queue``, ``status`` (one of STATUS_FILTERS, judged with ``failing`` and ``paused``)."""
        index = self._index
        specs = index.specs
        # a status as the positions it allows (failing first: a failing job that is paused is failing) or excludes
        failing_at = {index.position[name] for name in failing if name in index.position}
        paused_at = {index.position[name] for name in paused if name in index.position} - failing_at
        allowed: set[int] | None = None
        excluded: set[int] | None = None
        if status == "failing":
            allowed = failing_at
        elif status == "paused":
            allowed = paused_at
        elif status == "disabled":
            allowed = set(index.disabled) - failing_at - paused_at
        elif status == "ok":
            excluded = failing_at | paused_at | set(index.disabled)
        starts: list[Sequence[int]] = []  # the jobs each selective filter allows, in catalogue order
        if allowed is not None:
            starts.append(sorted(allowed))
        if tag:
            starts.append(index.by_tag.get(tag, []))
        if queue:
            starts.append(index.by_queue.get(queue, []))
        candidates: Sequence[int] = min(starts, key=len) if starts else range(len(specs))
        needle = query.strip().lower()
        if needle or tag or queue or status:
            haystacks = index.haystacks
            candidates = [
                i for i in candidates
                if (not needle or needle in haystacks[i]) and (not tag or tag in specs[i].tags)
                and (not queue or specs[i].queue == queue)
                and (allowed is None or i in allowed) and (excluded is None or i not in excluded)
            ]  # fmt: skip
        total = len(candidates)
        offset = max(0, min(offset, max(total - 1, 0)))
        return Selection([specs[i] for i in candidates[offset : offset + limit]], total, offset, limit)
