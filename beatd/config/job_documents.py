"""One job written on its own (a runtime job's spec): a YAML file, a JSON text or a mapping, read into a
:class:`Located` document whose job sits at ``jobs.NAME``, so it is validated, and its problems worded and
located, exactly as a job of a config file (``FILE:LINE:COL: jobs.NAME.KEY: message``).

No ``${VAR}`` substitution: a runtime job is stored and run elsewhere, the writer's environment means nothing there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from beatd import defaults
from beatd.config.bounds import read_text
from beatd.config.yamlsource import KeyPath, Located, parse_yaml
from beatd.errors import ConfigError, Problem

__all__ = ["job_from_file", "job_from_json", "job_from_mapping"]

_NO_ENVIRONMENT: Mapping[str, str] = {}


def job_from_file(name: str, path: Path) -> Located:
    """The job in YAML (or JSON) file ``path``, as ``jobs.NAME``; ConfigError when it cannot be read."""
    text = read_text(path)
    if isinstance(text, Problem):
        raise ConfigError([text])
    return _parsed(name, str(path), text)


def job_from_json(name: str, text: str, label: str = "--json") -> Located:
    """The job in JSON ``text`` (positions are line and column in the text), as ``jobs.NAME``."""
    try:
        json.loads(text)
    except ValueError as error:
        line, column = getattr(error, "lineno", 1), getattr(error, "colno", 1)
        message = f"malformed JSON: {getattr(error, 'msg', error)}"
        raise ConfigError([Problem(label, line, column, "", message)]) from None
    return _parsed(name, label, text)


def job_from_mapping(name: str, spec: Any, label: str) -> Located:
    """The job given as Python values (``client.jobs.put``), as ``jobs.NAME``; it has no positions, so its
    problems name ``label`` and the key path only. The values must be JSON's (they are stored as JSON)."""
    try:
        text = json.dumps(spec, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ConfigError([Problem(label, 0, 0, f"jobs.{name}", f"expected JSON values: {error}")]) from None
    _check_size(label, text)
    return Located(label, {"jobs": {name: json.loads(text)}})


def _parsed(name: str, label: str, text: str) -> Located:
    _check_size(label, text)
    document, problems = parse_yaml(label, text, _NO_ENVIRONMENT)
    if problems or document.value is None:
        raise ConfigError(problems or [Problem(label, 1, 1, "", "empty: expected a job mapping")])
    prefix: KeyPath = ("jobs", name)
    return Located(
        label,
        {"jobs": {name: document.value}},
        {(*prefix, *path): node for path, node in document.value_nodes.items()},
        {(*prefix, *path): node for path, node in document.key_nodes.items()},
    )


def _check_size(label: str, text: str) -> None:
    if len(text.encode()) > defaults.RUNTIME_SPEC_MAX_BYTES:
        message = f"larger than {defaults.RUNTIME_SPEC_MAX_BYTES // 1024} KiB, the most a runtime job spec may be"
        raise ConfigError([Problem(label, 0, 0, "", message)])
