"""Dead letters (messages not run, fires out of attempts): listed, retried or dropped with an audit record
(``Client.dead_letters``, ``retry_dead``, ``drop_dead``; ``beatd dead``).

A dead letter's id is its stream entry id, ``MS-SEQ`` (``MS``: when it died, epoch ms). The list leaves out
the dead letters of fires that succeeded later unless asked for all.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import datetime
from typing import Any

from beatd.audit import audit_record
from beatd.errors import UsageProblem
from beatd.messages import format_utc, from_ms
from beatd.store import RunStore

__all__ = ["dead_letter", "dead_letters", "settle_dead"]

_ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
"""A stream entry id, ``MS-SEQ``; each part must also be below 2**64 (Redis refuses more)."""

_PAGE = 200
"""Dead letters read at once while listing."""


def settle_dead(store: RunStore, entry_id: str, action: str, now: datetime, actor: str | None = None) -> dict[str, Any]:
    """Retry (put back into its queue: it runs as the fire's next attempt) or drop dead letter ``entry_id``, with
    its ``dead-{action}`` audit record, in one step; returns the dead letter. UsageProblem when the id is not
    one, names none, or another operator settled it meanwhile."""
    entry = dead_letter(store, entry_id, action)
    details = _audited(entry) | ({"actor": actor} if actor is not None else {})
    record = audit_record(f"dead-{action}", now, **details)
    done = (
        store.retry_dead(entry_id, entry["queue"], record) if action == "retry" else store.drop_dead(entry_id, record)
    )
    if not done:
        raise UsageProblem(f"dead {action}: no dead letter {entry_id!r} (another operator took it meanwhile)")
    return entry


def dead_letters(store: RunStore, limit: int, show_all: bool) -> list[dict[str, Any]]:
    """The newest ``limit`` dead letters shown: read back page by page, those of fires that succeeded later
    left out first (unless ``show_all``), so the limit counts only what is shown."""
    shown: list[dict[str, Any]] = []
    before = "+"
    while len(shown) < limit:
        page = [_described(entry) for entry in store.dead(max(limit - len(shown), _PAGE), before)]
        if not page:
            break
        before = page[-1]["id"]
        shown.extend(page if show_all else _without_later_successes(store, page))
    return shown[:limit]


def dead_letter(store: RunStore, entry_id: str, action: str) -> dict[str, Any]:
    """The dead letter ``entry_id``, or a UsageProblem saying what an id looks like and where to find one."""
    if not _ENTRY_ID.match(entry_id) or any(int(part) >= 2**64 for part in entry_id.split("-")):
        raise UsageProblem(
            f"dead {action}: {entry_id!r} is not a dead-letter id (expected MS-SEQ such as 1764680000000-0; "
            "`beatd dead` lists them)"
        )
    entry = store.dead_letter_entry(entry_id)
    if entry is None:
        raise UsageProblem(f"dead {action}: no dead letter {entry_id!r} (`beatd dead` lists them)")
    return _described(entry)


def _described(entry: dict[str, str]) -> dict[str, Any]:
    """A dead letter with what the list shows: when it died (UTC), its job and fire, attempts made."""
    described: dict[str, Any] = dict(entry)
    described["died_at"] = format_utc(from_ms(int(entry["id"].split("-", 1)[0])))
    try:
        message = json.loads(entry.get("message", ""))
    except ValueError:
        message = None
    message = message if isinstance(message, dict) else {}
    described["job"] = message.get("job") if isinstance(message.get("job"), str) else None
    described["fire_id"] = message.get("fire_id") if isinstance(message.get("fire_id"), str) else None
    tail = entry.get("run_id", "").rsplit("#", 1)[-1]
    described["attempts"] = int(tail) if tail.isdigit() else 0
    return described


def _audited(entry: dict[str, Any]) -> dict[str, Any]:
    """What a settling's audit record says of the dead letter."""
    keys = ("id", "job", "fire_id", "run_id", "queue", "reason", "died_at")
    return {("entry_id" if key == "id" else key): entry[key] for key in keys if entry.get(key) is not None}


def _without_later_successes(store: RunStore, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``entries`` less those whose fire has a succeeded run (retried by hand, or redelivered and run)."""
    by_job: dict[str, list[str]] = defaultdict(list)
    for entry in entries:
        if entry["job"] and entry["fire_id"]:
            by_job[entry["job"]].append(entry["fire_id"])
    succeeded = {(job, fire) for job, fires in by_job.items() for fire in store.succeeded_runs(job, fires)}
    return [entry for entry in entries if (entry["job"], entry["fire_id"]) not in succeeded]
