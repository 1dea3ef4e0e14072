"""Alerting's side of Redis: reading events, groups, due deliveries and state; the fenced apply
(``lua/alerts_apply.lua``); the standby claim; the log ``beatd alerts`` reads."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from beatd import defaults
from beatd.keys import Keys
from beatd.store.base import AUDIT_MAXLEN, reachable, script

__all__ = ["AlertChanges", "AlertStore", "Fence"]


@dataclass
class AlertChanges:
    """What one alerting step writes, applied in one fenced script call (the layout of its ARGV[5])."""

    events: list[str] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)
    groups_gone: list[str] = field(default_factory=list)
    deliveries: dict[str, str] = field(default_factory=dict)
    due: dict[str, int] = field(default_factory=dict)
    deliveries_gone: list[str] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)
    state_gone: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    audit: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        """Whether there is nothing to write."""
        return not any(asdict(self).values())

    def to_json(self) -> str:
        """ARGV[5] of the script: every list and map, empty ones as ``[]`` (Lua reads both as a table)."""
        return json.dumps({name: value or [] for name, value in asdict(self).items()}, separators=(",", ":"))


@dataclass(frozen=True)
class Fence:
    """Who may write: the leader (``mode`` leader, its lease token) or, while no beat leads, the standby that
    holds the standby claim (``mode`` standby, its claim token)."""

    mode: str
    token: str


class AlertStore:
    """The alert keys of one namespace."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client: Any = client
        self.keys = keys
        self._apply = client.register_script(script("alerts_apply"))

    def events(self, count: int) -> list[tuple[str, str]]:
        """The oldest ``count`` alert events: (entry id, run record JSON)."""
        with reachable():
            entries = self.client.xrange(self.keys.alert_events, count=count)
        return [(entry_id, fields.get("record", "")) for entry_id, fields in entries]

    def oldest_event_ms(self) -> int | None:
        """When (ms, Redis's clock: its entry id) the oldest alert event still waiting was noted; None if none."""
        with reachable():
            entries = self.client.xrange(self.keys.alert_events, count=1)
        return int(entries[0][0].split("-")[0]) if entries else None

    def groups(self, ids: Sequence[str]) -> dict[str, str]:
        """The stored groups among ``ids``."""
        if not ids:
            return {}
        with reachable():
            values = self.client.hmget(self.keys.alert_groups, list(ids))
        return {gid: value for gid, value in zip(ids, values, strict=True) if value is not None}

    def state(self, names: Sequence[str]) -> dict[str, str]:
        """The alert state fields among ``names`` that are set."""
        if not names:
            return {}
        with reachable():
            values = self.client.hmget(self.keys.alert_state, list(names))
        return {name: value for name, value in zip(names, values, strict=True) if value is not None}

    def state_fields(self) -> list[str]:
        """Every alert state field (a few per job with alert rules)."""
        with reachable():
            return list(self.client.hkeys(self.keys.alert_state))

    def due(self, now_ms: int, count: int) -> list[str]:
        """Deliveries due at ``now_ms``, the longest due first, at most ``count`` (their JSON)."""
        with reachable():
            ids = self.client.zrangebyscore(self.keys.alert_due, "-inf", now_ms, start=0, num=count)
            if not ids:
                return []
            values = self.client.hmget(self.keys.alert_deliveries, ids)
        return [value for value in values if value is not None]

    def paused(self) -> set[str]:
        """The jobs paused now (their deadlines and silence are not judged)."""
        with reachable():
            return set(self.client.hkeys(self.keys.paused))

    def succeeded(self, job: str, fire_id: str, attempts: int) -> bool:
        """Whether one of the first ``attempts`` attempts of fire ``fire_id`` of ``job`` succeeded (its records)."""
        runs = [f"{fire_id}#{attempt}" for attempt in range(1, attempts + 1)]
        with reachable():
            records = self.client.hmget(self.keys.runs(job), runs)
        return any(text is not None and json.loads(text).get("status") == "succeeded" for text in records)

    def waiting(self) -> int:
        """Deliveries waiting (due or not)."""
        with reachable():
            return int(self.client.hlen(self.keys.alert_deliveries))

    def apply(self, fence: Fence, changes: AlertChanges) -> bool:
        """Write ``changes`` if ``fence`` still holds; whether it did."""
        keys = self.keys
        script_keys = [
            keys.leader,
            keys.alert_standby,
            keys.alert_events,
            keys.alert_groups,
            keys.alert_deliveries,
            keys.alert_due,
            keys.alert_state,
            keys.alert_log,
            keys.audit,
        ]
        args: list[str | int] = [fence.mode, fence.token, defaults.ALERT_LOG_MAXLEN, AUDIT_MAXLEN, changes.to_json()]
        with reachable():
            return int(self._apply(keys=script_keys, args=args)) == 1

    def leader_absent(self) -> bool:
        """Whether no beat holds the lease now."""
        with reachable():
            return not self.client.exists(self.keys.leader)

    def claim_standby(self, token: str, ttl_ms: int) -> bool:
        """Take (or keep) the standby claim for ``ttl_ms``: whether ``token`` holds it now."""
        with reachable():
            if self.client.set(self.keys.alert_standby, token, nx=True, px=ttl_ms):
                return True
            if self.client.get(self.keys.alert_standby) == token:
                self.client.pexpire(self.keys.alert_standby, ttl_ms)
                return True
        return False

    def log(self, count: int) -> list[tuple[str, dict[str, Any]]]:
        """The newest ``count`` entries of the alerts log, newest first: (entry id, entry)."""
        with reachable():
            entries = self.client.xrevrange(self.keys.alert_log, count=count)
        return [(entry_id, json.loads(fields.get("entry", "{}"))) for entry_id, fields in entries]

    def append_log(self, entry: dict[str, Any]) -> None:
        """Append one entry to the alerts log (``beatd alerts test``: not part of a fenced step)."""
        with reachable():
            self.client.xadd(self.keys.alert_log, {"entry": json.dumps(entry)}, maxlen=defaults.ALERT_LOG_MAXLEN)
