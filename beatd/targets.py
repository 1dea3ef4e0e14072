"""Resolve a job's ``call`` target (``module:attr``) to a Python callable.

Only the CLI's ``check`` and, later, workers import job code; the beat never does. A target is resolved only
from a job declared in the local config, so a queue message can never name code to run.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

from beatd.config import Config
from beatd.errors import BeatdError, Problem

__all__ = ["TargetError", "check_targets", "resolve_call"]


class TargetError(BeatdError):
    """A ``call`` target cannot be imported or is not callable."""


def resolve_call(target: str, pythonpath: Iterable[Path] = ()) -> Callable[..., Any]:
    """Import ``module:attr`` (attr may be dotted) and return the callable; raise TargetError saying why."""
    for entry in reversed(list(pythonpath)):
        if str(entry) not in sys.path:
            sys.path.insert(0, str(entry))
    module_name, _, attribute = target.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise TargetError(f"cannot import {target!r}: no module named {error.name!r} (check pythonpath)") from error
    except BaseException as error:  # job code may raise anything at import, even SystemExit
        where = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
        line = f" ({where[0].filename}:{where[0].lineno})" if where else ""
        raise TargetError(f"cannot import {target!r}: {type(error).__name__}: {error}{line}") from error
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError as error:
            raise TargetError(f"cannot import {target!r}: module {module_name!r} has no attribute {part!r}") from error
        except Exception as error:  # a module __getattr__ (a lazy import) may raise anything
            why = f"{type(error).__name__}: {error}"
            raise TargetError(f"cannot import {target!r}: looking up {part!r}: {why}") from error
    if not callable(found):
        raise TargetError(f"{target!r} is a {type(found).__name__}, expected a callable")
    return found  # type: ignore[no-any-return]


def check_targets(config: Config, jobs: Collection[str] | None = None) -> dict[str, Problem]:
    """Import the ``call`` target of each job of ``config`` (of those named in ``jobs`` when given) in this
    process; return ``{job: Problem}`` for each that fails, located at its ``call:`` value."""
    problems = {}
    for name, spec in config.jobs.items():
        if spec.call is None or (jobs is not None and name not in jobs):
            continue
        try:
            resolve_call(spec.call, config.pythonpath)
        except TargetError as error:
            problems[name] = config.problem(name, "call", str(error))
    return problems
