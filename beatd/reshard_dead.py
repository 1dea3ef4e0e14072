"""Where a reshard puts each dead letter (pure; :mod:`beatd.reshard` reads and writes the streams).

A dead letter names the queue stream it came from (``queue``), and ``beatd dead retry`` puts it back there,
in the dead letter's own shard. After a reshard a job's fires must go to its new shard's queues, so each dead
letter moves to its job's new shard's dead-letter stream, its ``queue`` renamed to that shard's stream of the
same queue. Done in two passes, each safe to repeat: :func:`merged` gives every shard's stream with the dead
letters it receives added (written whole: a temporary key, then ``RENAME`` within the slot), then
:func:`leaving` the ids each shard deletes. A moved entry carries ``moved_from`` (``SHARD:MS-SEQ`` where it
was): one already received (same fields, that included) is not added twice, so a rerun after a crash between the
passes adds nothing, and two entries with the same content both move.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from beatd.store.base import entry_order

__all__ = ["Entry", "leaving", "merged", "owner"]

Entry = tuple[str, dict[str, str]]
"""A stream entry: its id (``MS-SEQ``) and fields."""
TargetOf = Callable[[str | None, int], int]
"""(the dead letter's job or None, the shard holding it) -> the shard it belongs to."""
QueueKey = Callable[[int, str], str]
"""(shard, queue name) -> that shard's queue stream key."""


def owner(fields: Mapping[str, str]) -> str | None:
    """The job a dead letter is a fire of (its message's ``job``, else its run id's), or an alert event is of
    (its run record's ``job``); None when unreadable."""
    try:
        job = json.loads(fields.get("message", fields.get("record", ""))).get("job")
    except (ValueError, AttributeError):
        job = None
    if isinstance(job, str) and job:
        return job
    run = fields.get("run_id", "")
    return run.partition("@")[0] or None if "@" in run else None


def _placed(shard: int, fields: dict[str, str], target_of: TargetOf, queue_key: QueueKey) -> tuple[int, dict[str, str]]:
    """The shard a dead letter of ``shard`` belongs to, and its fields with ``queue`` naming that shard's stream."""
    target = target_of(owner(fields), shard)
    queue = fields.get("queue", "")
    name = queue.rpartition(":queue:")[2] if ":queue:" in queue else None
    return target, ({**fields, "queue": queue_key(target, name)} if name is not None else dict(fields))


def merged(
    streams: Mapping[int, Sequence[Entry]],
    target_of: TargetOf,
    queue_key: QueueKey,
) -> dict[int, list[Entry]]:
    """Every target shard's stream after pass one: what it holds (each entry's ``queue`` renamed if it stays)
    and what it receives, in id order (an id taken already gets the next free sequence number)."""
    result: dict[int, list[Entry]] = {}
    incoming: dict[int, list[Entry]] = {}
    for shard, entries in streams.items():
        result[shard] = []
        for entry_id, fields in entries:
            target, moved = _placed(shard, fields, target_of, queue_key)
            result[shard].append((entry_id, moved if target == shard else fields))
            if target != shard:  # named by where it came from: identical entries stay two, a rerun adds none
                incoming.setdefault(target, []).append((entry_id, {**moved, "moved_from": f"{shard}:{entry_id}"}))
    for target, entries in incoming.items():
        held = result.setdefault(target, [])
        seen = {tuple(sorted(fields.items())) for _, fields in held}
        used = {entry_id for entry_id, _ in held}
        for entry_id, fields in entries:
            key = tuple(sorted(fields.items()))
            if key in seen:
                continue
            seen.add(key)
            held.append((_free(entry_id, used), fields))
        held.sort(key=lambda entry: entry_order(entry[0]))
    return result


def leaving(
    streams: Mapping[int, Sequence[Entry]],
    target_of: TargetOf,
    queue_key: QueueKey,
) -> dict[int, list[str]]:
    """Each shard's dead-letter ids that belong to another shard (deleted in pass two)."""
    return {
        shard: ids
        for shard, entries in streams.items()
        if (ids := [i for i, fields in entries if _placed(shard, fields, target_of, queue_key)[0] != shard])
    }


def _free(entry_id: str, used: set[str]) -> str:
    ms, seq = entry_order(entry_id)
    while f"{ms}-{seq}" in used:
        seq += 1
    used.add(f"{ms}-{seq}")
    return f"{ms}-{seq}"
