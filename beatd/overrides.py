"""Argument overrides: the ``args``/``kwargs`` a trigger passes to a job that allows them (``overrides:``).

One rule for the client (before anything is enqueued) and the workers (a message whose arguments its job does
not allow is dead-lettered, not run): the job must declare ``overrides``; the arguments must be JSON (lists,
objects with string keys, strings, finite numbers, booleans, null) within ``OVERRIDES_MAX_BYTES``; the kwargs the
job runs with, its own merged with the trigger's (the trigger's win), must match its ``overrides.schema``.
Given ``args`` replace the job's own.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from beatd import defaults
from beatd.config import JobSpec
from beatd.errors import OverridesRefused

__all__ = ["effective_arguments", "refusal"]


def effective_arguments(
    spec: JobSpec,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    max_bytes: int = defaults.OVERRIDES_MAX_BYTES,
) -> tuple[list[Any], dict[str, Any]]:
    """The args and kwargs ``spec``'s fire runs with given a trigger's overrides (None: the job's own); raises
    OverridesRefused saying why they are refused."""
    if args is None and kwargs is None:
        return list(spec.args), dict(spec.kwargs)
    if spec.overrides is None:
        raise OverridesRefused(spec.name, "the job does not accept args/kwargs from trigger (its config has no "
                                          "`overrides: true` or `overrides: {schema: ...}`)")  # fmt: skip
    if args is not None and (isinstance(args, str | bytes) or not isinstance(args, Sequence)):
        raise OverridesRefused(spec.name, f"args: expected a list, got {type(args).__name__}")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise OverridesRefused(spec.name, f"kwargs: expected an object, got {type(kwargs).__name__}")
    given_args: list[Any] = list(args) if args is not None else []
    given_kwargs: dict[str, Any] = dict(kwargs) if kwargs is not None else {}
    problem = _not_json(given_args, "args") or _not_json(given_kwargs, "kwargs")
    if problem:
        raise OverridesRefused(spec.name, problem)
    given = {"args": given_args, "kwargs": given_kwargs}
    size = len(json.dumps(given, separators=(",", ":")).encode())
    if size > max_bytes:
        raise OverridesRefused(spec.name, f"overrides are {size} bytes of JSON, more than the limit of {max_bytes}")
    final_args = given_args if args is not None else list(spec.args)
    final_kwargs = {**spec.kwargs, **given_kwargs}
    problem = _schema_problem(spec, final_kwargs)
    if problem:
        raise OverridesRefused(spec.name, problem)
    return final_args, final_kwargs


def refusal(spec: JobSpec, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """Why a worker must not run ``spec`` with a message's ``args``/``kwargs`` ('' when it may): arguments
    other than the job's own need ``overrides``, and with a schema the kwargs must match it."""
    if spec.overrides is None:
        if list(args) != list(spec.args) or dict(kwargs) != dict(spec.kwargs):
            return "the message's args/kwargs differ from the job's and the job does not accept overrides"
        return ""
    return _schema_problem(spec, dict(kwargs))


def _schema_problem(spec: JobSpec, kwargs: dict[str, Any]) -> str:
    if spec.overrides is None or not spec.overrides.kwargs_schema:
        return ""
    import jsonschema  # here: only jobs with a schema pay for the import

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(spec.overrides.kwargs_schema)
                                             .iter_errors(kwargs))  # fmt: skip
    if error is None:
        return ""
    where = "kwargs" + "".join(f"[{part!r}]" for part in error.absolute_path)
    return f"{where}: {error.message} (overrides.schema)"


def _not_json(value: Any, path: str) -> str:
    """What in ``value`` is not plain JSON ('' when nothing is), located by its path."""
    if value is None or isinstance(value, bool | str | int):
        return ""
    if isinstance(value, float):
        return "" if math.isfinite(value) else f"{path}: {value!r} is not JSON (no NaN or infinity)"
    if isinstance(value, list | tuple):
        return next((p for i, item in enumerate(value) if (p := _not_json(item, f"{path}[{i}]"))), "")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}: key {key!r} is not a string (JSON object keys are strings)"
            problem = _not_json(item, f"{path}[{key!r}]")
            if problem:
                return problem
        return ""
    return f"{path}: a {type(value).__name__} is not JSON (lists, objects, strings, numbers, booleans, null)"
