"""Read a YAML document straight into plain Python values from the parser's events, keeping no node tree.

This is the fast path of :mod:`beatd.config.yamlsource`: composing a 100,000-job file into nodes (each with
two Marks) takes ~300 MB and most of the read; building values from the event stream holds one event at a
time. It reads only what needs no position to judge: anything that could be a problem or needs the node tree
(an anchor or alias, a merge key, a duplicate key, a tag, a non-string key, a missing ``${VAR}``, nesting past
``CONFIG_MAX_DEPTH``, more than one document, a parse error) makes it give up (``None``), and the caller
composes the file with positions as before, so every problem is found and located exactly as by the slow
path. The values are the slow path's: the same resolver and constructor decide each scalar.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from yaml.events import (
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)
from yaml.nodes import ScalarNode

from beatd import defaults
from beatd.config.envsubst import MissingVariable, substitute

__all__ = ["GAVE_UP", "plain_values"]

GAVE_UP: Any = object()
"""Returned when the document needs the positioned path (see the module docstring)."""

_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_PLAIN_TAGS = frozenset(
    {_STR, "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"}
)
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_PLAIN = (True, False)


class _GiveUp(Exception):
    pass


def plain_values(text: str, environ: Mapping[str, str], loader: type[Any]) -> Any:
    """The document's value (None for an empty one), or ``GAVE_UP``."""
    parser = loader(text)
    try:
        return _Builder(environ).build(parser)
    except (_GiveUp, yaml.YAMLError):
        return GAVE_UP
    finally:
        parser.dispose()


class _Builder:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.resolver = yaml.SafeLoader("")
        self.constructor = yaml.SafeLoader("")
        # Scalars repeat (every job's "10s", "true", its queue): resolve and construct each text once, which
        # also makes equal strings one object.
        self.resolved: dict[tuple[str, tuple[bool, bool]], str] = {}
        self.constructed: dict[tuple[str, str], Any] = {}

    def build(self, parser: Any) -> Any:
        get = parser.get_event
        if not isinstance(get(), StreamStartEvent):
            raise _GiveUp
        event = get()
        if isinstance(event, StreamEndEvent):
            return None
        if not isinstance(event, DocumentStartEvent):
            raise _GiveUp
        value = self._document(get)
        if not isinstance(get(), DocumentEndEvent) or not isinstance(get(), StreamEndEvent):
            raise _GiveUp  # a second document: the slow path says why
        return value

    def _document(self, get: Any) -> Any:
        # Containers being filled, innermost last; for a mapping, the key waiting for its value (None: a key next).
        stack: list[Any] = []
        keys: list[str | None] = []
        max_depth = defaults.CONFIG_MAX_DEPTH
        while True:
            event = get()
            kind = type(event)
            if kind is ScalarEvent:
                if event.anchor is not None:
                    raise _GiveUp
                if stack and keys[-1] is None and type(stack[-1]) is dict:  # a mapping key
                    tagged = event.tag is not None and event.tag != "!"
                    if tagged or event.value == "<<" or event.value in stack[-1]:
                        raise _GiveUp
                    keys[-1] = event.value
                    continue
                value = self._scalar(event)
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                own_tag = _MAP_TAG if kind is MappingStartEvent else _SEQ_TAG
                if event.anchor is not None or event.tag not in (None, "!", own_tag):
                    raise _GiveUp
                if stack and keys[-1] is None and type(stack[-1]) is dict:
                    raise _GiveUp  # a mapping or list as a key
                if len(stack) >= max_depth:
                    raise _GiveUp
                stack.append({} if kind is MappingStartEvent else [])
                keys.append(None)
                continue
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                value = stack.pop()
                keys.pop()
            else:  # an alias (or anything unexpected)
                raise _GiveUp
            if not stack:
                return value
            container = stack[-1]
            if type(container) is dict:
                container[keys[-1]] = value
                keys[-1] = None
            else:
                container.append(value)

    def _scalar(self, event: ScalarEvent) -> Any:
        value, tag = event.value, event.tag
        if tag is None or tag == "!":
            implicit = event.implicit
            probe = (value, implicit)
            resolved = self.resolved.get(probe)
            if resolved is None:
                resolved = self.resolved[probe] = self.resolver.resolve(ScalarNode, value, implicit)  # type: ignore[no-untyped-call]
            tag = resolved
        if tag == _STR and "$" in value:
            try:
                value = substitute(value, self.environ)
            except MissingVariable:
                raise _GiveUp from None
            if event.style is None:  # plain scalar: type it as YAML would have typed the substituted text
                tag = self.resolver.resolve(ScalarNode, value, _PLAIN)  # type: ignore[no-untyped-call]
        if tag == _TIMESTAMP:
            return value
        if tag not in _PLAIN_TAGS:
            raise _GiveUp
        probe_value = (tag, value)
        found = self.constructed.get(probe_value, _MISSING)
        if found is _MISSING:
            found = self.constructed[probe_value] = self.constructor.construct_object(ScalarNode(tag, value))
        return found


_MISSING = object()
