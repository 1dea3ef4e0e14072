"""A reader's view of the runtime jobs (the beat's and each worker's), kept in step with Redis.

``poll`` costs one GET of the version key when nothing changed; after a change it reads the change stream from
where it left off and the changed entries only, and judges each against the reader's own config
(:func:`beatd.runtime_jobs.judge`): an entry that is not a valid, allowed runtime job of this config is refused,
logged and audited, never scheduled or run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from beatd import defaults
from beatd.audit import audit_record
from beatd.clock import Clock
from beatd.config import Config, JobSpec
from beatd.runtime_jobs import judge
from beatd.store.jobs import START, JobStore

__all__ = ["RuntimeFollower"]

log = logging.getLogger("beatd.runtime")

Changed = dict[str, JobSpec | None]
"""Runtime jobs changed by a poll: the new spec, or None for a job gone (deleted or refused)."""


class RuntimeFollower:
    """The valid runtime jobs of one reader (``role`` names it in logs and audit records)."""

    def __init__(
        self, store: JobStore, config: Config, clock: Clock, role: str, audit: Callable[[dict[str, Any]], None]
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.role = role
        self.audit = audit
        self.jobs: dict[str, JobSpec] = {}
        self.refused: dict[str, str] = {}
        self.cursor = START
        self.version = -1
        self.behind = False
        """More changes wait to be read: poll again at once."""

    def poll(self) -> Changed:
        """Read what changed since the last poll; return the runtime jobs whose spec changed (empty: none)."""
        changes = self.store.changes(self.cursor, self.version, defaults.RUNTIME_CHANGES_PER_POLL)
        if changes is None:
            self.behind = False
            return {}
        self.behind = changes.more
        changed: Changed = {}
        if changes.full:
            for name in [name for name in self.jobs if name not in changes.entries]:
                del self.jobs[name]
                changed[name] = None
            self.refused = {name: why for name, why in self.refused.items() if name in changes.entries}
        for name, raw in changes.entries.items():
            changed.update(self._take(name, raw))
        self.cursor, self.version = changes.cursor, changes.version
        return changed

    def set_config(self, config: Config) -> Changed:
        """Judge every runtime job again under ``config`` (a reload: the allow-list or the YAML may have changed)."""
        self.config = config
        self.version = -1
        return self.poll()

    def _take(self, name: str, raw: str | None) -> Changed:
        if raw is None:
            self.refused.pop(name, None)
            return {name: None} if self.jobs.pop(name, None) is not None else {}
        spec, why = judge(self.config, name, raw)
        if spec is None:
            self._refuse(name, why)
            return {name: None} if self.jobs.pop(name, None) is not None else {}
        self.refused.pop(name, None)
        if (before := self.jobs.get(name)) is not None and before.digest == spec.digest:
            return {}
        self.jobs[name] = spec
        return {name: spec}

    def _refuse(self, name: str, why: str) -> None:
        if self.refused.get(name) == why:
            return
        self.refused[name] = why
        log.error("runtime job %s refused by the %s: %s", name, self.role, why)
        try:
            self.audit(audit_record("runtime-job-refused", self.clock.now(), job=name, by=self.role, reason=why))
        except Exception:  # the audit is best effort here: the refusal itself stands
            log.exception("audit record of the refusal of runtime job %s not written", name)
