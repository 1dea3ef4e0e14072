"""Dead letters (messages not run, fires out of attempts): listed, retried or dropped with an audit record
(``Client.dead_letters``, ``retry_dead``, ``drop_dead``; ``beatd dead``).

A dead letter's id is its stream entry id, ``MS-SEQ`` (``MS``: when it died, epoch ms). With several shards each
shard has its dead letters (those of its jobs' fires and of entries of its queues): the list merges them by id
and gives each its ``shard``; retry and drop take ``SHARD:MS-SEQ``, or ``MS-SEQ`` when only one shard has that
id. The list leaves out the dead letters of fires that succeeded later unless asked for all.
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

_ENTRY_ID = re.compile(r"(?:(?P<shard>[0-9]{1,5}):)?(?P<ms>[0-9]{1,20})-(?P<seq>[0-9]{1,20})", re.ASCII)
"""A dead letter's id, ``MS-SEQ`` (a stream entry id), or ``SHARD:MS-SEQ``, matched whole (``fullmatch``: no
trailing newline, ASCII digits only: Redis and ``int`` read other digits differently); each part of the entry id
must also be below 2**64 (Redis refuses more)."""

_PAGE = 200
"""Dead letters read at once while listing."""


def settle_dead(store: RunStore, entry_id: str, action: str, now: datetime, actor: str | None = None) -> dict[str, Any]:
    """Retry (put back into its queue: it runs as the fire's next attempt) or drop dead letter ``entry_id``, with
    its ``dead-{action}`` audit record, in one step; returns the dead letter. UsageProblem when the id is not
    one, names none, or another operator settled it meanwhile."""
    entry = dead_letter(store, entry_id, action)
    details = _audited(entry) | ({"actor": actor} if actor is not None else {})
    record = audit_record(f"dead-{action}", now, **details)
    bare, shard = entry["id"], int(entry.get("shard", 0))
    done = (
        store.dead_letters.retry(bare, entry["queue"], record, shard)
        if action == "retry"
        else store.dead_letters.drop(bare, record, shard)
    )
    if not done:
        raise UsageProblem(f"dead {action}: no dead letter {entry_id!r} (another operator took it meanwhile)")
    return entry


def dead_letters(store: RunStore, limit: int, show_all: bool) -> list[dict[str, Any]]:
    """The newest ``limit`` dead letters shown: read back page by page, those of fires that succeeded later
    left out first (unless ``show_all``), so the limit counts only what is shown."""
    shown: list[dict[str, Any]] = []
    before, before_shard = "+", None
    while len(shown) < limit:
        entries = store.dead_letters.newest(max(limit - len(shown), _PAGE), before, before_shard)
        page = [_described(entry) for entry in entries]
        if not page:
            break
        before, before_shard = page[-1]["id"], (int(page[-1]["shard"]) if "shard" in page[-1] else None)
        shown.extend(page if show_all else _without_later_successes(store, page))
    return shown[:limit]


def dead_letter(store: RunStore, entry_id: str, action: str) -> dict[str, Any]:
    """The dead letter ``entry_id`` (``MS-SEQ``, or ``SHARD:MS-SEQ``), or a UsageProblem saying what an id looks
    like and where to find one."""
    matched = _ENTRY_ID.fullmatch(entry_id)
    shard, bare = (matched["shard"] or "", f"{matched['ms']}-{matched['seq']}") if matched else ("", "")
    if (
        matched is None
        or any(int(part) >= 2**64 for part in (matched["ms"], matched["seq"]))
        or (shard and int(shard) >= len(store.shards))
    ):
        sharded = f", or SHARD:MS-SEQ with SHARD below {len(store.shards)}" if len(store.shards) > 1 else ""
        raise UsageProblem(
            f"dead {action}: {entry_id!r} is not a dead-letter id (expected MS-SEQ such as 1764680000000-0"
            f"{sharded}; `beatd dead` lists them)"
        )
    if shard:
        entry = store.dead_letters.get(bare, int(shard))
        tag = {"shard": str(int(shard))} if len(store.shards) > 1 else {}  # one shard: as a bare MS-SEQ
        found = [{**entry, **tag}] if entry is not None else []
    else:
        found = store.dead_letters.with_id(bare)
    if not found:
        raise UsageProblem(f"dead {action}: no dead letter {entry_id!r} (`beatd dead` lists them)")
    if len(found) > 1:
        named = ", ".join(f"{entry['shard']}:{bare}" for entry in found)
        raise UsageProblem(f"dead {action}: {bare!r} names a dead letter in several shards: give one of {named}")
    return _described(found[0])


def _described(entry: dict[str, str]) -> dict[str, Any]:
    """A dead letter with what the list shows: when it died (UTC), its job and fire, attempts made."""
    described: dict[str, Any] = dict(entry)
    described["died_at"] = format_utc(from_ms(int(entry["id"].split("-", 1)[0])))
    if "shard" in entry:  # with several shards: the id that names it alone, for retry and drop
        described["ref"] = f"{entry['shard']}:{entry['id']}"
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
    keys = ("id", "shard", "job", "fire_id", "run_id", "queue", "reason", "died_at")
    return {("entry_id" if key == "id" else key): entry[key] for key in keys if entry.get(key) is not None}


def _without_later_successes(store: RunStore, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``entries`` less those whose fire has a succeeded run (retried by hand, or redelivered and run)."""
    by_job: dict[str, list[str]] = defaultdict(list)
    for entry in entries:
        if entry["job"] and entry["fire_id"]:
            by_job[entry["job"]].append(entry["fire_id"])
    succeeded = {(job, fire) for job, fires in by_job.items() for fire in store.succeeded_runs(job, fires)}
    return [entry for entry in entries if (entry["job"], entry["fire_id"]) not in succeeded]
