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
| ``{ns}:runs:{job}`` | stream, capped | run records of one job (the beat writes ``missed`` ones) |
| ``{ns}:audit`` | stream, capped | leader changes, reloads, pause/resume/trigger/backfill |
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Keys"]


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
        """Stream of run records of ``job``."""
        return f"{self.namespace}:runs:{job}"
