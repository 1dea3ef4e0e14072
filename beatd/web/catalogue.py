"""The jobs ``beatd web`` shows: the YAML jobs of its config and the runtime jobs valid under it, kept in
memory and read again only when the runtime jobs' version changes; search, filter and paging over them."""

from __future__ import annotations

import threading
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
RUNTIME = "runtime"


@dataclass(frozen=True)
class Selection:
    """One page of the jobs that match a search: ``total`` matched, ``offset`` of the first shown."""

    specs: list[JobSpec]
    total: int
    offset: int
    limit: int


class Catalogue:
    """Every job of the deployment as ``client`` sees it; thread-safe (pages are served from a thread pool)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._version: int | None = None
        self._specs: list[JobSpec] = list(client.config.jobs.values())
        self._by_name: dict[str, JobSpec] = dict(client.config.jobs)
        self._sources: dict[str, str] = dict.fromkeys(client.config.jobs, YAML)

    def refresh(self) -> None:
        """Read the runtime jobs again if their version changed since the last read (one GET otherwise)."""
        config = self.client.config
        if config.settings.runtime_jobs is None:
            return
        store = self.client.jobs.runtime.store
        version = store.version()
        with self._lock:
            if version == self._version:
                return
            listed = self.client.jobs.sourced()  # the YAML's, then the runtime jobs valid under the config
            self._specs = [spec for spec, _ in listed]
            self._by_name = {spec.name: spec for spec in self._specs}
            self._sources = {spec.name: source for spec, source in listed}
            self._version = version

    @property
    def specs(self) -> Sequence[JobSpec]:
        """Every job: the YAML ones in config order, then the runtime ones by name."""
        return self._specs

    @property
    def sources(self) -> Mapping[str, str]:
        """Job -> ``yaml`` or ``runtime``."""
        return self._sources

    def get(self, name: str) -> JobSpec | None:
        """The job ``name``, or None."""
        return self._by_name.get(name)

    def select(
        self, *, query: str = "", tag: str = "", queue: str = "", status: str = "", failing: Mapping[str, str],
        paused: Mapping[str, object], offset: int = 0, limit: int = PAGE_SIZE,
    ) -> Selection:  # fmt: skip
        """The page of jobs matching every filter given: ``query`` in the name or description (any case),
        ``tag``, ``queue``, ``status`` (one of STATUS_FILTERS, judged with ``failing`` and ``paused``)."""
        needle = query.strip().lower()
        matched = []
        for spec in self._specs:
            if needle and needle not in spec.name.lower() and needle not in spec.description.lower():
                continue
            if tag and tag not in spec.tags:
                continue
            if queue and spec.queue != queue:
                continue
            if status and _status_of(spec, failing, paused) != status:
                continue
            matched.append(spec)
        offset = max(0, min(offset, max(len(matched) - 1, 0)))
        return Selection(matched[offset : offset + limit], len(matched), offset, limit)


def _status_of(spec: JobSpec, failing: Mapping[str, str], paused: Mapping[str, object]) -> str:
    if spec.name in failing:
        return "failing"
    if spec.name in paused:
        return "paused"
    if not spec.enabled:
        return "disabled"
    return "ok"
