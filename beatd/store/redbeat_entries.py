"""Read RedBeat's entries (only read: ``beatd import redbeat``). RedBeat keeps each entry in a hash
``{prefix}{name}`` (fields ``definition`` and ``meta``, JSON) listed in the sorted set ``{prefix}:schedule``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from beatd.keys import redbeat_schedule
from beatd.store.base import reachable

__all__ = ["StoredEntry", "read_entries"]

_BATCH = 1000


@dataclass(frozen=True)
class StoredEntry:
    """One member of RedBeat's schedule: its hash key, its raw ``definition`` and ``meta`` (None if absent), and
    Redis's error when the key could not be read as a hash."""

    key: str
    definition: str | None
    meta: str | None
    error: str | None = None


def read_entries(client: Any, prefix: str) -> list[StoredEntry]:
    """Every entry of RedBeat's schedule under ``prefix``, by key. Raises StoreUnavailable or StoreRejected."""
    with reachable():
        keys = sorted(client.zrange(redbeat_schedule(prefix), 0, -1))
        entries = []
        for start in range(0, len(keys), _BATCH):
            pipe = client.pipeline(transaction=False)
            for key in keys[start : start + _BATCH]:
                pipe.hmget(key, ["definition", "meta"])
            for key, fields in zip(keys[start : start + _BATCH], pipe.execute(raise_on_error=False), strict=True):
                if isinstance(fields, Exception):
                    entries.append(StoredEntry(key, None, None, str(fields)))
                else:
                    entries.append(StoredEntry(key, fields[0], fields[1]))
    return entries
