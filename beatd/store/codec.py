"""One typed codec per batched Lua script: the order of a script's per-item values is declared once.

A batched script takes some fixed KEYS and ARGV, then a run of items, each the same values in the same order.
That order is the field order of the item's dataclass, and nowhere else in Python. The script names the same
fields in one line, ``local ITEM = {'field', ...}``, and reads each item by name through the prelude's
``items()`` (``store/lua/_prelude.lua``); ``tests/unit/test_script_layouts.py`` checks that the two agree. A
field whose name ends in ``_key`` holds a full Redis key (from :class:`~beatd.keys.Keys`): it travels as its
index in KEYS, so each distinct key is sent once per call; an empty one (a field the item's kind does not
use) travels as 0 and reads as nil in Lua.

Long batches are cut into calls of at most ``batch_limit`` items; each call is atomic on its own.

A *packed* script (``packed=True``; emit.lua, the hot path of a burst) takes its items as one ARGV value instead:
values separated by ``\x1f``, row after row, each row its width and then the item's values in layout order;
the first row holds the layout's defaults (a field without one: ''). A row stops at its last value that
differs from the field's default, so an unsigned ``emit`` write sends 5 of LeaderWrite's 20 fields; the
prelude's ``packed_items()`` reads a missing field as its default. Values are JSON texts, keys, names, digests
and numbers, which hold no control characters; a batch in which one holds ``\x1f`` is sent as a JSON array of
rows instead (the next ARGV value says ``json``). Calls can be sent before the previous one's reply is read
(:meth:`BatchScript.send`), so the caller builds the next batch while Redis runs this one; they are sent as
EVAL (never NOSCRIPT, so a call never has to be sent again behind a later one). On a Redis Cluster, which has
no pool of its own, the first call is sent to the node that holds the slot of their keys and each later one only
once the one before has run (a migrating slot refuses calls unevenly); a call that node refuses without running
it (its slot moved in a fail-over) is made again through the cluster client.
"""

from __future__ import annotations

import dataclasses
import json
import operator
import re
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import redis
import redis.exceptions

from beatd.store.base import KeyTable, is_cluster, script

_ResponseError = redis.exceptions.ResponseError

__all__ = ["UNPACK_LIMIT", "BatchScript", "Sent", "decode_items", "item_fields", "lua_item_fields"]

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


FIELD = "\x1f"
"""Separates the values of a packed batch (each row starts with its width)."""


def _defaults(item: type[Any], fields: tuple[str, ...]) -> tuple[Any, ...]:
    if dataclasses.is_dataclass(item):
        found = {field.name: field.default for field in dataclasses.fields(item)}
        return tuple("" if found[name] is dataclasses.MISSING else found[name] for name in fields)
    return tuple(item._field_defaults.get(name, "") for name in fields)


_NOT_RUN = (
    redis.exceptions.AskError,  # MovedError too
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,  # MasterDownError too
    redis.exceptions.BusyLoadingError,
)
"""Error replies of a cluster node that refused a script before running it (its slot is elsewhere now, moving,
or not served yet): the call is made again through the cluster client, which follows the cluster."""


@dataclasses.dataclass
class Sent:
    """Calls of a batched script sent on ``connection`` whose replies are not read yet (:meth:`BatchScript.send`).

    On a Redis Cluster only the first call is sent (``calls`` 1): ``pool`` is the connection pool of the node it
    went to and ``calls_made`` the KEYS and ARGV of every call (receive() makes the rest, in turn, and a refused
    one again); ``replies`` is set when the calls were already made through the cluster client (``connection``
    None)."""

    connection: Any
    calls: int
    pool: Any = None
    calls_made: list[tuple[list[str], list[Any]]] = dataclasses.field(default_factory=list)
    replies: list[Any] | None = None


class BatchScript(Generic[Item]):
    """A registered batched script and the codec of its items (``packed``: one ARGV value, see the module)."""

    def __init__(self, client: Any, name: str, item: type[Item], batch_limit: int, *, packed: bool = False) -> None:
        self.name = name
        self.batch_limit = batch_limit
        self.packed = packed
        self._client = client
        self._script = client.register_script(script(name))
        self._cluster = is_cluster(client)
        self._heal = False
        """Cluster: the last send failed to reach its node, so the next calls go through the cluster client,
        which finds the slot's master again."""
        fields = item_fields(item)
        self._values: Callable[[Item], tuple[Any, ...]] = operator.attrgetter(*fields)
        self._tuple = not dataclasses.is_dataclass(item)
        self._key_positions = tuple(index for index, field in enumerate(fields) if field.endswith("_key"))
        self._defaults = _defaults(item, fields)
        self._widths: dict[Any, int] = {}  # by the first value (an emit write's kind): the last width sent
        # by row width: the defaults past it, the key fields within it, the width as text
        self._shapes: dict[int, tuple[tuple[Any, ...], tuple[int, ...], str]] = {}
        defaults = ["0" if index in self._key_positions else str(v) for index, v in enumerate(self._defaults)]
        self._defaults_row = FIELD.join([str(len(fields)), *defaults])

    def __call__(self, keys: Sequence[str], args: Sequence[Any], items: Sequence[Item]) -> list[Any]:
        """Run the script over ``items`` in calls of at most ``batch_limit``; one reply per call, in order.

        ``keys`` and ``args`` are the fixed KEYS and ARGV every call starts with."""
        replies = []
        for start in range(0, len(items), self.batch_limit):
            call_keys, values = self._encode(keys, args, items[start : start + self.batch_limit])
            replies.append(self._script(keys=call_keys, args=values))
        return replies

    def send(self, keys: Sequence[str], args: Sequence[Any], items: Sequence[Item]) -> Sent:
        """Send the calls of :meth:`__call__` on a connection of the pool without reading their replies;
        :meth:`receive` reads them (and gives the connection back). Redis runs them in order.

        On a Redis Cluster the first call goes to the master of the slot of ``keys[0]`` (every key of a call
        shares that slot: the shard's hash tag), on a connection of that node's pool; :meth:`receive` makes the
        others, each after the one before."""
        if self._cluster:
            return self._send_to_node(keys, args, items)
        pool = self._client.connection_pool
        connection = pool.get_connection()
        calls = 0
        try:
            for start in range(0, len(items), self.batch_limit):
                call_keys, values = self._encode(keys, args, items[start : start + self.batch_limit])
                connection.send_command("EVAL", self._script.script, len(call_keys), *call_keys, *values)
                calls += 1
        except BaseException:
            connection.disconnect()
            pool.release(connection)
            raise
        return Sent(connection, calls, pool)

    def _send_to_node(self, keys: Sequence[str], args: Sequence[Any], items: Sequence[Item]) -> Sent:
        calls = [
            self._encode(keys, args, items[start : start + self.batch_limit])
            for start in range(0, len(items), self.batch_limit)
        ]
        if not calls:
            return Sent(None, 0, replies=[])
        if self._heal:  # the node of the last send was unreachable: let the cluster client find the master
            replies = [self._script(keys=call_keys, args=values) for call_keys, values in calls]
            self._heal = False
            return Sent(None, 0, replies=replies)
        try:
            node = self._client.get_node_from_key(calls[0][0][0])
            pool = self._client.get_redis_connection(node).connection_pool
            connection = pool.get_connection()
        except BaseException:
            self._heal = True
            raise
        try:  # the first call only: the others are made by receive(), each once the one before it has run
            call_keys, values = calls[0]
            connection.send_command("EVAL", self._script.script, len(call_keys), *call_keys, *values)
        except BaseException:
            self._heal = True
            connection.disconnect()
            pool.release(connection)
            raise
        return Sent(connection, 1, pool, calls)

    def receive(self, sent: Sent) -> list[Any]:
        """The replies of the calls ``sent``, in order (a Redis error reply raises, after all were read)."""
        if sent.replies is not None:
            return sent.replies
        replies: list[Any] = []
        failure: Exception | None = None
        again = sent.calls  # cluster: the first call to make (again) through the cluster client
        try:
            for index in range(sent.calls):
                try:
                    replies.append(sent.connection.read_response())
                except _ResponseError as error:
                    if sent.calls_made and isinstance(error, _NOT_RUN):
                        again = min(again, index)
                    else:
                        failure = failure or error
        except BaseException:
            self._heal = self._cluster
            sent.connection.disconnect()
            raise
        finally:
            sent.pool.release(sent.connection)
        if failure is not None:
            raise failure
        # Cluster: only the first call was sent. The rest are made one after the other, each once the one before
        # has run: a node refuses calls unevenly while the slot migrates (TRYAGAIN for a call naming a key it
        # lacks, the next call run), so calls sent together could run out of order (a fire of the refused call
        # behind its job's progress: lost). A call refused unrun is made again through the cluster client, which
        # follows the redirection (and updates its slot map for the next send); one it cannot place stops the
        # calls behind it.
        for call_keys, values in sent.calls_made[again:]:
            try:
                replies.append(self._script(keys=call_keys, args=values))
            except _ResponseError as error:
                if isinstance(error, _NOT_RUN):
                    raise
                failure = failure or error
        if failure is not None:
            raise failure
        return replies

    def _encode(self, keys: Sequence[str], args: Sequence[Any], items: Sequence[Item]) -> tuple[list[str], list[Any]]:
        table = KeyTable(*keys)
        values: list[Any] = list(args)
        if self.packed:
            values.extend(self._pack(table, items))
            return table.keys, values
        for item in items:
            row = list(self._values(item))
            for index in self._key_positions:
                row[index] = table.position(row[index]) if row[index] else 0
            values.extend(row)
        return table.keys, values

    def _pack(self, table: KeyTable, items: Sequence[Item]) -> tuple[str, str]:
        """The packed rows of ``items`` and how they are encoded (``text`` or ``json``)."""
        defaults, position = self._defaults, table.position
        widths, shapes = self._widths, self._shapes
        values: list[Any] = [self._defaults_row]
        add, extend = values.append, values.extend
        for item in items:
            full: tuple[Any, ...] = item if self._tuple else self._values(item)  # type: ignore[assignment]
            width = widths.get(full[0], 0)  # the width the last item of this kind had: check it in one go
            if not width or full[width:] != shapes[width][0] or full[width - 1] == defaults[width - 1]:
                width = len(full)
                while width > 2 and full[width - 1] == defaults[width - 1]:
                    width -= 1
                widths[full[0]] = width
                if width not in shapes:
                    keys = tuple(index for index in self._key_positions if index < width)
                    shapes[width] = (defaults[width:], keys, str(width))
            _, keys, width_text = shapes[width]
            add(width_text)
            if not keys:
                extend(full[:width])
                continue
            row = list(full[:width])
            for index in keys:
                row[index] = position(row[index]) if row[index] else 0
            extend(row)
        blob = FIELD.join(map(str, values))
        if blob.count(FIELD) == len(values) - 1 + len(defaults):  # no value holds FIELD (the defaults row: one value)
            return blob, "text"
        positions = self._key_positions
        head = ["0" if i in positions else str(v) for i, v in enumerate(defaults)]
        rows, at = [], 1
        while at < len(values):
            width = int(values[at])
            rows.append([str(value) for value in values[at + 1 : at + 1 + width]])
            at += width + 1
        return json.dumps([head, *rows]), "json"
