"""Reading alerts back: the alerts log folded into one row per alert with each sink's delivery state."""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from beatd.messages import format_utc
from beatd.store.alerts import AlertStore
from beatd.store.base import entry_order

__all__ = ["recent_alerts", "test_payload"]


def recent_alerts(stores: Sequence[AlertStore], limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` alerts (a first message or a summary), newest first: id, rule, subject, summary,
    raised_at, and per sink its state (``delivered``, ``retrying``, ``gave_up``), attempts and last error. With
    several shards (a store each: every shard's leader alerts for its jobs) the logs are merged by entry id."""
    found: dict[str, dict[str, Any]] = {}
    logs = [store.log(limit * 20) for store in stores]
    merged = logs[0] if len(logs) == 1 else heapq.merge(*logs, key=lambda item: entry_order(item[0]), reverse=True)
    for _, entry in merged:
        key = str(entry.get("id", ""))
        if not key:
            continue
        alert = found.setdefault(key, {"id": key, "rule": entry.get("rule"), "subject": entry.get("subject"),
                                       "kind": entry.get("kind", "alert"), "summary": "", "raised_at": None,
                                       "sinks": {}})  # fmt: skip
        if entry.get("event") == "raised":
            alert["summary"], alert["raised_at"] = entry.get("summary", ""), entry.get("at")
            continue
        sink = alert["sinks"].setdefault(entry.get("sink", ""), None)
        if sink is None:  # the newest entry of a sink (the log is read newest first) says its state
            state = {"delivered": "delivered", "failed": "retrying", "gave_up": "gave_up"}.get(entry["event"], "?")
            alert["sinks"][entry.get("sink", "")] = {"state": state, "attempts": entry.get("attempt"),
                                                     "error": entry.get("error", "")}  # fmt: skip
            if entry.get("kind") == "summary":
                alert["kind"] = "summary"
        if len(found) > limit:
            break
    return list(found.values())[:limit]


def test_payload(namespace: str, sink: str, now: datetime) -> dict[str, Any]:
    """The alert ``beatd alerts test`` sends: shaped like a real one, rule ``test``."""
    key = f"{namespace}:test:{uuid.uuid4().hex}"
    return {
        "v": 1, "id": key, "kind": "test", "namespace": namespace, "rule": "test", "job": None, "subject": "-",
        "count": 1, "window": None, "summary": f"test alert from beatd to sink {sink}", "at": format_utc(now),
        "event": {},
    }  # fmt: skip
