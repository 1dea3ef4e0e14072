"""The pure rules of alerting: which run records are events, how events group into messages, when a delivery
is retried, when a deadline was missed and when a job fell silent. No Redis, no clock of their own: instants
(epoch ms, Redis's clock) come in, decisions go out, so each is table-tested.

Grouping (one message per job, rule and window): windows are aligned to the epoch, ``window`` long. The first
event of a job and rule in a window opens a *group* and is told at once (one delivery per sink); the later ones
only count. When the window closes, a group that counted more than one event is told once more, as a summary
("9,999 more dead in the last 10m", with the last event). So a storm of 10,000 failures in a minute is two
messages per sink, and a steady failure every minute is two per window.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from beatd.config.alerts import AlertRule
from beatd.messages import from_ms, to_ms
from beatd.triggers import Trigger

__all__ = [
    "OPENING_RULES",
    "Delivery",
    "Event",
    "Group",
    "Grouped",
    "closable",
    "deadline_fires",
    "event_of_record",
    "group_events",
    "payload",
    "retry_delay",
    "silence_threshold",
    "wants_event",
    "window_of",
]

RULE_OF_STATUS = {
    "failed": "failed",
    "timeout": "failed",
    "lost": "failed",
    "dead": "dead",
    "missed": "missed",
    "expired": "expired",
}
"""The rule a run record of each status raises; ``succeeded`` raises none but may recover."""

OPENING_RULES = frozenset({"dead", "failed", "missed", "expired", "deadline", "silence"})
"""Rules whose alert stays open until the job's next success (which then raises ``recovered``)."""

PAYLOAD_VERSION = 1


def wants_event(rules: Iterable[AlertRule], status: str) -> bool:
    """Whether a run record of ``status`` of a job with ``rules`` is worth noting as an alert event."""
    ons = {rule.on for rule in rules}
    if not ons:
        return False
    if status == "succeeded":
        return bool(ons & {"recovered", "silence"})
    rule = RULE_OF_STATUS.get(status)
    return rule is not None and rule in ons


@dataclass(frozen=True)
class Event:
    """Something to tell: ``rule`` about ``subject`` (a job, ``queue:NAME``, or ``-`` for the deployment) at
    ``at_ms``; ``details`` go into the payload as ``event``."""

    subject: str
    rule: str
    at_ms: int
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)


def event_of_record(record: Mapping[str, Any], at_ms: int) -> tuple[str, str] | tuple[str, Event]:
    """The event a noted run record raises: ``("succeeded", job)`` for a success (it may recover), else
    ``("raise", Event)``; ``("", "")`` for a record that raises nothing."""
    status, job = str(record.get("status", "")), str(record.get("job", ""))
    if status == "succeeded":
        return "succeeded", job
    rule = RULE_OF_STATUS.get(status)
    if rule is None or not job:
        return "", ""
    error = record.get("error") or {}
    what = f"{error.get('type', '')}: {error.get('message', '')}" if error else str(record.get("reason") or status)
    title = {
        "dead": "out of retries",
        "failed": f"attempt {record.get('attempt')} {status}",
        "missed": "fire missed",
        "expired": "fire expired unstarted",
    }[rule]
    details = {
        key: record[key]
        for key in (
            "run_id",
            "fire_id",
            "scheduled_at",
            "status",
            "attempt",
            "reason",
            "error",
            "worker",
            "finished_at",
        )
        if record.get(key) is not None
    }
    return "raise", Event(job, rule, at_ms, f"{job}: {title} (fire {record.get('fire_id')}): {what}"[:500], details)


def window_of(at_ms: int, window: timedelta) -> tuple[int, int]:
    """The grouping window (start ms, end ms) holding ``at_ms``: windows are aligned to the epoch."""
    length = max(1, int(window.total_seconds() * 1000))
    start = at_ms - at_ms % length
    return start, start + length


@dataclass
class Group:
    """The events of one subject and rule in one window: the first told at once, the rest counted."""

    subject: str
    rule: str
    start_ms: int
    end_ms: int
    count: int
    sinks: tuple[str, ...]
    last: dict[str, Any]

    @property
    def id(self) -> str:
        """``{subject}|{rule}|{window start ms}``."""
        return group_id(self.subject, self.rule, self.start_ms)

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps(
            {
                "subject": self.subject,
                "rule": self.rule,
                "start_ms": self.start_ms,
                "end_ms": self.end_ms,
                "count": self.count,
                "sinks": list(self.sinks),
                "last": self.last,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Group:
        """Read the stored form."""
        body = json.loads(text)
        return cls(
            body["subject"],
            body["rule"],
            int(body["start_ms"]),
            int(body["end_ms"]),
            int(body["count"]),
            tuple(body["sinks"]),
            dict(body["last"]),
        )


def group_id(subject: str, rule: str, start_ms: int) -> str:
    """The id of a group."""
    return f"{subject}|{rule}|{start_ms}"


@dataclass
class Delivery:
    """One message to one sink (``sink`` '' with kind ``close``: the group's window closing, which becomes the
    summary deliveries if the group counted more than one event). ``key`` is the idempotency key."""

    id: str
    key: str
    sink: str
    kind: str
    payload: dict[str, Any]
    attempts: int = 0
    error: str = ""
    group: str = ""

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps(self.__dict__, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Delivery:
        """Read the stored form."""
        return cls(**json.loads(text))


def payload(namespace: str, key: str, kind: str, group: Group, event: Mapping[str, Any], count: int) -> dict[str, Any]:
    """What a sink receives (JSON): versioned, with its idempotency key, rule, subject, window and counts."""
    job = group.subject if "|" not in group.subject and not group.subject.startswith(("queue:", "-")) else None
    return {
        "v": PAYLOAD_VERSION,
        "id": key,
        "kind": kind,
        "namespace": namespace,
        "rule": group.rule,
        "job": job,
        "subject": group.subject,
        "count": count,
        "window": {"start": _iso(group.start_ms), "end": _iso(group.end_ms)},
        "summary": event.get("summary", ""),
        "at": event.get("at", ""),
        "event": event.get("details", {}),
    }


def _iso(ms: int) -> str:
    return from_ms(ms).isoformat().replace("+00:00", "Z")


@dataclass
class Grouped:
    """What grouping decided: groups to write, deliveries to queue (with when they are due, ms), raised events."""

    groups: dict[str, Group] = field(default_factory=dict)
    deliveries: list[tuple[Delivery, int]] = field(default_factory=list)
    raised: list[tuple[Event, str]] = field(default_factory=list)
    """(event, how: ``told`` opened a group, ``counted`` joined one)."""


def group_events(
    namespace: str,
    events: Iterable[tuple[Event, AlertRule]],
    known: Mapping[str, Group],
    window: timedelta,
) -> Grouped:
    """Group ``events`` (each with the rule that routes it) into ``known`` groups (id -> group, as read) and
    new ones. A new group queues one delivery per sink, due at once, and one ``close`` due at its window's
    end. An event routed by several rules (two ``dead`` rules selecting a job, by name and by tag) counts once;
    a rule's sinks that its group has not told yet are told at once (one message each), so every rule's sinks
    hear of the window's first event that reached them."""
    grouped = Grouped()
    counted: set[int] = set()
    for event, rule in events:
        start, end = window_of(event.at_ms, rule.grouping(window))
        gid = group_id(event.subject, event.rule, start)
        last = {"summary": event.summary, "at": _iso(event.at_ms), "details": dict(event.details)}
        again = id(event) in counted
        counted.add(id(event))
        group = grouped.groups.get(gid) or known.get(gid)
        how = "counted"
        if group is None:
            group = Group(event.subject, event.rule, start, end, 1, (), last)
            grouped.deliveries.append(
                (Delivery(f"{gid}|close", f"{namespace}:{gid}:summary", "", "close", {}, group=gid), end)
            )
            how = "told"
        elif not again:
            group.count += 1
            group.last = last
        grouped.groups[gid] = group
        fresh = [sink for sink in rule.sinks if sink not in group.sinks]
        group.sinks = (*group.sinks, *fresh)
        key = f"{namespace}:{gid}:first"
        for sink in fresh:
            body = payload(namespace, key, "alert", group, last, 1)
            grouped.deliveries.append(
                (Delivery(f"{gid}|first|{sink}", key, sink, "alert", body, group=gid), event.at_ms)
            )
        if not again:
            grouped.raised.append((event, how))
    return grouped


def closable(group: Group | None, oldest_waiting_ms: int | None) -> bool:
    """Whether a group whose window has ended may close now, given the instant (ms) of the oldest alert event
    still waiting to be grouped (None: none waits). Not while an event of its window waits: the events
    stream is read oldest first, so a backlog (a leader behind, or back after none led) is counted into its
    group before the summary is told; closing earlier would open a second group for the same window, with the
    same idempotency keys, and tell the storm again every batch."""
    return group is None or oldest_waiting_ms is None or oldest_waiting_ms >= group.end_ms


def summaries(namespace: str, close: Delivery, group: Group | None) -> list[Delivery]:
    """The deliveries a group's closing window makes: a summary per sink when it counted more than one event."""
    if group is None or group.count <= 1:
        return []
    body_of = {
        "summary": f"{group.count - 1} more {group.rule} of {group.subject} in this window "
        f"({group.count} in all); the last: {group.last.get('summary', '')}"[:600],
        "at": group.last.get("at", ""),
        "details": group.last.get("details", {}),
    }
    return [
        Delivery(
            f"{group.id}|summary|{sink}",
            close.key,
            sink,
            "summary",
            payload(namespace, close.key, "summary", group, body_of, group.count - 1),
            group=group.id,
        )
        for sink in group.sinks
    ]


def retry_delay(
    attempts: int, first: timedelta, longest: timedelta, draw: Callable[[float, float], float] = random.uniform
) -> timedelta:
    """The wait before the next attempt after ``attempts`` failed ones: doubling from ``first``, capped at
    ``longest``, with "equal jitter" (half fixed, half drawn) so many sinks' retries spread out."""
    ceiling = min(longest.total_seconds(), first.total_seconds() * 2 ** max(0, attempts - 1))
    return timedelta(seconds=ceiling / 2 + draw(0.0, ceiling / 2))


def deadline_fires(
    trigger: Trigger, after: timedelta, judged_ms: int | None, now: datetime, limit: int = 100
) -> tuple[list[datetime], int]:
    """The fire instants whose deadline (instant + ``after``) has passed at ``now`` and that were not judged
    yet (after ``judged_ms``; None: nothing judged yet, start from now, never judging the past), at most
    ``limit``; and the new judged mark (ms)."""
    horizon = now - after
    start = from_ms(judged_ms) if judged_ms is not None else horizon
    fires: list[datetime] = []
    instant = trigger.next_after(start)
    while instant is not None and instant <= horizon and len(fires) < limit:
        fires.append(instant)
        instant = trigger.next_after(instant)
    mark = to_ms(fires[-1]) if fires else to_ms(start)
    return fires, mark


def silence_threshold(trigger: Trigger, rule: AlertRule, base: datetime) -> datetime | None:
    """When a job whose last success (or first sight) was ``base`` counts as silent: ``after`` later, or at the
    ``intervals``-th fire instant after it; None when its schedule has no such instant."""
    if rule.after is not None:
        return base + rule.after
    instant: datetime | None = base
    for _ in range(rule.intervals or 1):
        assert instant is not None
        instant = trigger.next_after(instant)
        if instant is None:
            return None
    return instant
