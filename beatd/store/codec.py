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

__all__ = ["UNPACK_LIMIT", "BatchScript", "decode_items", "item_fields", "lua_item_fields"]

UNPACK_LIMIT = 1000
"""Most values a script hands to one ``unpack()`` (the prelude's ``UNPACK_LIMIT``; Redis's Lua stack takes
about 8,000): longer lists go in pieces, through the prelude's ``call_chunked``."""

Item = TypeVar("Item")


def item_fields(item: type[Any]) -> tuple[str, ...]:
    """The wire order of an item dataclass (or named tuple): its fields, in declaration order."""
    if not dataclasses.is_dataclass(item):
        return tuple(item._fields)
    return tuple(field.name for field in dataclasses.fields(item))


def lua_item_fields(name: str, line: str = "ITEM") -> tuple[str, ...]:
    """The layout declared by ``store/lua/NAME.lua`` in its ``local ITEM = {...}`` line (``line``: another
    layout's name, e.g. ``REPLY_ITEM`` for the items of a reply)."""
    found = re.search(rf"^local {line} = \{{(?P<names>[^}}]*)\}}", script(name, prelude=False), re.MULTILINE)
    if found is None:
        raise ValueError(f"store/lua/{name}.lua declares no `local {line} = {{...}}` line")
    return tuple(part.strip().strip("'\"") for part in found["names"].split(",") if part.strip())


def decode_items(item: Callable[..., Item], values: Sequence[Any]) -> list[Item]:
    """The items of a flat reply (``REPLY_ITEM`` layout), each built from the next len(fields) values as str."""
    width = len(item_fields(item))  # type: ignore[arg-type]
    return [item(*(str(value) for value in values[i : i + width])) for i in range(0, len(values), width)]


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
