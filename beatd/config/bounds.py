"""What one config file may cost to read: its size, its encoding, how far its aliases expand.

Each check turns hostile or accidental input (a log file passed by mistake, Latin-1 bytes, a "billion
laughs" alias bomb, an alias inside its own anchor) into one located :class:`Problem` before any of it is
converted into Python values, so ``beatd check`` answers at once instead of filling memory.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    ScalarEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode

from beatd import defaults
from beatd.errors import Problem

__all__ = ["alias_problem", "byte_position", "read_text"]

_SHORT_SCALAR = 33
"""Written size (32 characters and a separator) up to which an aliased scalar is not counted: ``*a,`` costs 3
characters, so such aliases add at most about ``CONFIG_ALIAS_AMPLIFICATION`` times what they take to write."""


def read_text(path: Path) -> str | Problem:
    """The file's text, or the Problem that stops it being read: missing, too large, not UTF-8."""
    name = str(path)
    limit = defaults.CONFIG_MAX_BYTES
    try:
        with path.open("rb") as file:
            data = file.read(limit + 1)  # never more, even from a device or a pipe
    except FileNotFoundError:
        return Problem(name, 0, 0, "", "no such file")
    except OSError as error:
        return Problem(name, 0, 0, "", f"cannot read file: {error.strerror or error}")
    if len(data) > limit:
        return Problem(name, 0, 0, "", f"file is larger than {limit // 2**20} MiB, the most a config may be")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line, column = byte_position(data, error.start)
        return Problem(
            name,
            line,
            column,
            "",
            f"not UTF-8: byte 0x{data[error.start]:02x} cannot be decoded; save the file as UTF-8",
        )


def byte_position(data: bytes, offset: int) -> tuple[int, int]:
    """(line, column), 1-based, of the byte at ``offset`` of UTF-8 ``data``; the column counts characters, as
    YAML marks do."""
    start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, len(data[start:offset].decode("utf-8", errors="replace")) + 1


def alias_problem(file: str, text: str, root: Node, loader: type[yaml.SafeLoader]) -> Problem | None:
    """A Problem at the first alias that refers to a node containing it, or past which aliases have added more
    than allowed to ``text`` (``root``, composed): ``CONFIG_ALIAS_BYTES``, or ``CONFIG_ALIAS_AMPLIFICATION``
    times the file when that is more, and never past ``CONFIG_MAX_BYTES`` in all. None when within bounds."""
    if "&" not in text:  # no anchor, so no alias (an undefined alias does not compose)
        return None
    limit = max(defaults.CONFIG_ALIAS_BYTES, defaults.CONFIG_ALIAS_AMPLIFICATION * len(text))
    limit = min(limit, defaults.CONFIG_MAX_BYTES - len(text))
    added = _added_size(root)
    if added is not None and added <= limit:
        return None
    return _locate(file, text, loader, limit)


def _added_size(root: Node) -> int | None:
    """What aliases add to the document, as the characters each aliased value would take written out (a
    scalar its length plus one, a collection two plus its contents); None when an alias refers to a
    collection that contains it. Each collection is walked once, whatever refers to it. Aliases of short
    scalars are not counted (see ``_SHORT_SCALAR``): tracking every scalar would double the walk's time."""
    if isinstance(root, ScalarNode):
        return 0
    expanded: dict[int, int] = {}  # id of a collection node -> its size with every alias written out
    open_ids: set[int] = set()  # collections whose contents are being walked
    seen_scalars: set[int] = set()  # long scalars met so far
    added = 0
    stack: list[tuple[Node, list[Node] | None]] = [(root, None)]  # (node, its children once entered)
    while stack:
        node, entered = stack.pop()
        if entered is not None:  # every child is done
            size = 2
            for child in entered:
                if isinstance(child, ScalarNode):
                    child_size = len(child.value) + 1
                    if child_size <= _SHORT_SCALAR:
                        pass
                    elif id(child) in seen_scalars:
                        added += child_size
                    else:
                        seen_scalars.add(id(child))
                else:
                    child_size = expanded[id(child)]
                size += child_size
            expanded[id(node)] = size
            open_ids.discard(id(node))
            continue
        if id(node) in open_ids:
            return None  # reached again while its own contents are being walked
        if id(node) in expanded:
            added += expanded[id(node)]
            continue
        children = [part for pair in node.value for part in pair] if isinstance(node, MappingNode) else node.value
        open_ids.add(id(node))
        stack.append((node, children))
        stack.extend((child, None) for child in children if not isinstance(child, ScalarNode))
    return added


def _locate(file: str, text: str, loader: type[yaml.SafeLoader], limit: int) -> Problem:
    """Replay the document's events to find the alias that closes a loop or crosses ``limit``."""
    sizes: dict[str, tuple[int, bool]] = {}  # anchor -> (size with every alias written out, counted when aliased)
    open_collections: list[tuple[str | None, int]] = []  # (anchor, size so far), innermost last
    added = 0
    last_alias = None
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, CollectionStartEvent):
            open_collections.append((event.anchor, 2))
            continue
        if isinstance(event, CollectionEndEvent):
            anchor, size = open_collections.pop()
            if anchor is not None:
                sizes[anchor] = (size, True)
        elif isinstance(event, AliasEvent):
            mark = event.start_mark
            line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            last_alias = (line, column)
            if any(anchor == event.anchor for anchor, _ in open_collections):
                return Problem(file, line, column, "", f"alias *{event.anchor} refers to a node that contains it")
            size, counted = sizes[str(event.anchor)]
            added += size if counted else 0
            if added > limit:
                return Problem(file, line, column, "", _too_many(limit))
        elif isinstance(event, ScalarEvent):
            size = len(event.value) + 1
            if event.anchor is not None:
                sizes[event.anchor] = (size, size > _SHORT_SCALAR)
        else:
            continue
        if open_collections:
            anchor, so_far = open_collections[-1]
            open_collections[-1] = (anchor, so_far + size)
    line, column = last_alias or (1, 1)  # not reached: the events agree with the composed nodes
    return Problem(file, line, column, "", _too_many(limit))


def _too_many(limit: int) -> str:
    return (
        f"aliases expand the file by more than {limit / 2**20:.1f} MiB (a YAML alias bomb?); "
        "write the values out, or share them through defaults"
    )
