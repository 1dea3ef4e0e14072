"""Read YAML into plain Python values while remembering where each value was written.

PyYAML's constructor forgets positions, so we compose the node tree and convert it ourselves: every value
gets the (line, column) of its node and every mapping key the position of the key, both 1-based, keyed by the
path of keys from the document root. ``${VAR}`` substitution happens here, on string scalars, so that a
substituted value keeps the position of the text it replaced. Timestamps stay strings: beatd parses instants
itself, in the job's time zone.

A file is first read by the fast path (:mod:`beatd.config.plainyaml`: values only, no node tree); the nodes
are composed only when the file needs them (a problem the fast path cannot judge, or a position asked for).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from beatd import defaults
from beatd.config.bounds import alias_problem, byte_position, read_text
from beatd.config.envsubst import MissingVariable, substitute
from beatd.config.plainyaml import GAVE_UP, plain_values
from beatd.errors import Problem

__all__ = ["KeyPath", "Located", "dotted", "parse_yaml", "read_yaml"]

KeyPath = tuple[str | int, ...]

# libyaml's parser is about five times faster (100,000 jobs parse in seconds) and keeps positions.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_PLAIN_TAGS = {
    _STR,
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}


def dotted(path: KeyPath) -> str:
    """Render a key path as users read it: ``jobs.daily_signups.at[2]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


PACK_ABOVE = 1 << 16
"""A fast-path document's text longer than this (characters) is kept compressed (zlib level 1: a 5 MiB file of
100,000 jobs keeps ~0.3 MiB, packed in ~20 ms) until a position is asked for."""


class Located:
    """A YAML document as plain values plus the position of every value and mapping key.

    A document read by the fast path (:mod:`beatd.config.plainyaml`) keeps its text instead of its nodes and
    composes them the first time a position is asked for (only when there is a problem to report), so a
    config that is valid costs no node tree; the positions are the same either way."""

    def __init__(
        self,
        file: str,
        value: Any,
        value_nodes: dict[KeyPath, Node] | None = None,
        key_nodes: dict[KeyPath, Node] | None = None,
        *,
        text: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.file = file
        self.value = value
        self._value_nodes = value_nodes
        self._key_nodes = key_nodes
        self._text: str | bytes | None = text
        if text is not None and len(text) > PACK_ABOVE:  # asked for only to report a problem: kept packed
            self._text = zlib.compress(text.encode(), 1)
        self._environ = environ

    def __repr__(self) -> str:
        return f"Located(file={self.file!r}, value={self.value!r})"

    @property
    def value_nodes(self) -> dict[KeyPath, Node]:
        """The node of every value, by key path (composed on first use for a fast-path document)."""
        if self._value_nodes is None:
            self._compose()
        assert self._value_nodes is not None
        return self._value_nodes

    @property
    def key_nodes(self) -> dict[KeyPath, Node]:
        """The node of every mapping key, by the key path it leads to."""
        if self._key_nodes is None:
            self._compose()
        assert self._key_nodes is not None
        return self._key_nodes

    def _compose(self) -> None:
        self._value_nodes, self._key_nodes = {}, {}
        if self._text is not None:
            text = self._text if isinstance(self._text, str) else zlib.decompress(self._text).decode()
            positioned, _ = _parse_positioned(self.file, text, self._environ or {})
            self._value_nodes, self._key_nodes = positioned.value_nodes, positioned.key_nodes
            self._text = self._environ = None

    def position(self, path: KeyPath, *, at_key: bool = False) -> tuple[int, int] | None:
        """(line, column), 1-based, of the value (or key) at ``path``; None when nothing is there."""
        node = (self.key_nodes if at_key else self.value_nodes).get(path)
        return _position(node) if node is not None else None

    def problem(self, path: KeyPath, message: str, *, at_key: bool = False, shown: KeyPath | None = None) -> Problem:
        """A Problem located at ``path`` (its key with ``at_key``), or at its nearest located ancestor."""
        probe = path
        value_nodes, key_nodes = self.value_nodes, self.key_nodes
        while probe and probe not in value_nodes and (not at_key or probe not in key_nodes):
            probe = probe[:-1]
        line, column = self.position(probe, at_key=at_key) or self.position(probe) or (1, 1)
        return Problem(self.file, line, column, dotted(path if shown is None else shown), message)


def read_yaml(path: Path, environ: Mapping[str, str]) -> tuple[Located, list[Problem]]:
    """Read one YAML file; return its located value and every problem found (the value is ``None`` when
    the file cannot be read or parsed at all)."""
    name = str(path)
    text = read_text(path)
    if isinstance(text, Problem):
        return Located(name, None), [text]
    return parse_yaml(name, text, environ)


def parse_yaml(name: str, text: str, environ: Mapping[str, str]) -> tuple[Located, list[Problem]]:
    """:func:`read_yaml` of ``text`` already read, named ``name`` in problems (JSON is YAML too)."""
    value = plain_values(text, environ, _LOADER)
    if value is not GAVE_UP:
        return Located(name, value, text=text, environ=environ), []
    return _parse_positioned(name, text, environ)


def _parse_positioned(name: str, text: str, environ: Mapping[str, str]) -> tuple[Located, list[Problem]]:
    """The slow path: compose the node tree, convert it and keep every node's position."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        detail = " ".join(part for part in (error.context, error.problem) if part)
        return Located(name, None), [Problem(name, line, column, "", f"malformed YAML: {detail}")]
    except yaml.reader.ReaderError as error:  # a character YAML does not allow, such as NUL
        return Located(name, None), [_reader_problem(name, text, error)]
    except yaml.YAMLError as error:
        return Located(name, None), [Problem(name, 1, 1, "", f"malformed YAML: {error}")]
    if root is not None and (problem := alias_problem(name, text, root, _LOADER)) is not None:
        return Located(name, None), [problem]
    located = Located(name, None, {}, {})
    problems: list[Problem] = []
    if root is not None:
        converter = _Converter(located, problems, environ)
        located.value = converter.convert(root, ())
        if converter.too_deep is not None:  # the rest of the file cannot be judged without its deepest part
            return Located(name, None), [converter.too_deep]
    return located, problems


class _Converter:
    def __init__(self, located: Located, problems: list[Problem], environ: Mapping[str, str]) -> None:
        self.located = located
        self.problems = problems
        self.environ = environ
        self.constructor = yaml.SafeLoader("")
        self.resolver = yaml.SafeLoader("")
        self.too_deep: Problem | None = None

    def convert(self, node: Node, path: KeyPath) -> Any:
        self.located.value_nodes.setdefault(path, node)  # positions are computed only when reported
        if len(path) > defaults.CONFIG_MAX_DEPTH and not isinstance(node, ScalarNode):
            if self.too_deep is None:  # named by its first keys: the whole path is too long to read
                line, column = _position(node)
                message = f"nested deeper than {defaults.CONFIG_MAX_DEPTH} levels"
                self.too_deep = Problem(self.located.file, line, column, dotted(path[:2]), message)
            return None
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            return [self.convert(item, (*path, index)) for index, item in enumerate(node.value)]
        assert isinstance(node, ScalarNode)
        return self._scalar(node, path)

    def _mapping(self, node: MappingNode, path: KeyPath) -> dict[str, Any]:
        seen: dict[str, Node] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value != "<<" and key_node.value in seen:
                first = seen[key_node.value].start_mark.line + 1
                self.problems.append(
                    self._at(key_node, (*path, key_node.value), f"duplicate key (first written on line {first})")
                )
            if isinstance(key_node, ScalarNode):
                seen.setdefault(key_node.value, key_node)
        try:
            self.constructor.flatten_mapping(node)  # resolves "<<: *anchor" merge keys
        except yaml.MarkedYAMLError as error:
            self.problems.append(self._at(node, path, f"malformed merge key: {error.problem}"))
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.problems.append(self._at(key_node, path, "a mapping key must be a plain string"))
                continue
            key = str(key_node.value)
            key_path = (*path, key)
            self.located.key_nodes.setdefault(key_path, key_node)
            result[key] = self.convert(value_node, key_path)
        return result

    def _scalar(self, node: ScalarNode, path: KeyPath) -> Any:
        value, tag = node.value, node.tag
        if tag == _STR and "$" in value:
            try:
                value = substitute(value, self.environ)
            except MissingVariable as error:
                self.problems.append(self._at(node, path, str(error)))
                return None
            if node.style is None:  # plain scalar: type it as YAML would have typed the substituted text
                tag = self.resolver.resolve(ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
        if tag == _TIMESTAMP:
            return value
        if tag not in _PLAIN_TAGS:
            self.problems.append(self._at(node, path, f"unsupported YAML tag {tag!r}"))
            return None
        return self.constructor.construct_object(ScalarNode(tag, value, style=node.style))

    def _at(self, node: Node, path: KeyPath, message: str) -> Problem:
        line, column = _position(node)
        return Problem(self.located.file, line, column, dotted(path), message)


def _reader_problem(file: str, text: str, error: yaml.reader.ReaderError) -> Problem:
    data = text.encode("utf-8")
    # libyaml reports a byte offset into the UTF-8 text, the pure-Python reader a character offset
    offset = error.position if _LOADER is not yaml.SafeLoader else len(text[: error.position].encode("utf-8"))
    line, column = byte_position(data, offset)
    character = f"#x{error.character:04x}" if isinstance(error.character, int) else repr(error.character)
    return Problem(file, line, column, "", f"malformed YAML: unacceptable character {character}: {error.reason}")


def _position(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1
