"""One typed codec per batched Lua script: the order of a script's per-item values is declared once.

A batched script takes some fixed KEYS and ARGV, then a run of items, each the same values in the same order.
That order is the field order of the item's dataclass, and nowhere else in Python. The script names the same
fields in one line, ``local ITEM = {'field', ...}``, and reads each item by name through the prelude's
``items()`` (``store/lua/_prelude.lua``); ``tests/unit/test_script_layouts.py`` checks that the two agree. A
field whose name ends in ``_key`` holds a full Redis key (from :class:`~beatd.keys.Keys`): it travels as its
index in KEYS, so each distinct key is sent once per call; an empty one (a field the item's kind does not
use) travels as 0 and reads as nil in Lua.

Long batches are cut into calls of at most ``batch_limit`` items; each call is atomic on its own.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from beatd.store.base import KeyTable, script

__all__ = ["UNPACK_LIMIT", "BatchScript", "item_fields", "lua_item_fields"]

UNPACK_LIMIT = 1000
"""Most values a script hands to one ``unpack()`` (the prelude's ``UNPACK_LIMIT``; Redis's Lua stack takes
about 8,000): longer lists go in pieces, through the prelude's ``call_chunked``."""

Item = TypeVar("Item")

_ITEM_LINE = re.compile(r"^local ITEM = \{(?P<names>[^}]*)\}", re.MULTILINE)


def item_fields(item: type[Any]) -> tuple[str, ...]:
    """The wire order of an item dataclass: its fields, in declaration order."""
    return tuple(field.name for field in dataclasses.fields(item))


def lua_item_fields(name: str) -> tuple[str, ...]:
    """The item layout declared by ``store/lua/NAME.lua`` in its ``local ITEM = {...}`` line."""
    found = _ITEM_LINE.search(script(name, prelude=False))
    if found is None:
        raise ValueError(f"store/lua/{name}.lua declares no `local ITEM = {{...}}` line")
    return tuple(part.strip().strip("'\"") for part in found["names"].split(",") if part.strip())


class BatchScript(Generic[Item]):
    """A registered batched script and the codec of its items."""

    def __init__(self, client: Any, name: str, item: type[Item], batch_limit: int) -> None:
        self.name = name
        self.batch_limit = batch_limit
        self._script = client.register_script(script(name))
        fields = item_fields(item)
        self._values: Callable[[Item], tuple[Any, ...]] = operator.attrgetter(*fields)
        self._key_positions = tuple(index for index, field in enumerate(fields) if field.endswith("_key"))

    def __call__(self, keys: Sequence[str], args: Sequence[Any], items: Sequence[Item]) -> list[Any]:
        """Run the script over ``items`` in calls of at most ``batch_limit``; one reply per call, in order.

        ``keys`` and ``args`` are the fixed KEYS and ARGV every call starts with."""
        replies = []
        for start in range(0, len(items), self.batch_limit):
            table = KeyTable(*keys)
            values: list[Any] = list(args)
            for item in items[start : start + self.batch_limit]:
                row = list(self._values(item))
                for index in self._key_positions:
                    row[index] = table.position(row[index]) if row[index] else 0
                values.extend(row)
            replies.append(self._script(keys=table.keys, args=values))
        return replies
