"""Argument overrides (beatd.overrides, the overrides: key): what a trigger may pass, what the worker accepts."""

from __future__ import annotations

from typing import Any

import pytest

from beatd.config import JobSpec
from beatd.errors import OverridesRefused
from beatd.overrides import effective_arguments, refusal

SCHEMA = {"type": "object", "properties": {"day": {"type": "string", "format": "date"}}, "required": ["day"]}
TRIGGERED = {"overrides": {"schema": SCHEMA}, "enabled": False}
"""A job only triggered (never scheduled): its own kwargs need not match its schema."""


def spec(**fields: Any) -> JobSpec:
    """A call job with ``fields``."""
    return JobSpec.model_validate({"name": "report", "every": "1h", "call": "app:report", **fields})


@pytest.mark.parametrize(
    ("fields", "args", "kwargs", "expected"),
    [
        ({}, None, None, ([], {})),
        ({"args": [1], "kwargs": {"a": 1}}, None, None, ([1], {"a": 1})),
        ({"args": [1], "kwargs": {"a": 1}, "overrides": True}, [2, 3], {"b": 2}, ([2, 3], {"a": 1, "b": 2})),
        ({"kwargs": {"a": 1}, "overrides": True}, None, {"a": 5}, ([], {"a": 5})),
        ({"kwargs": {"day": "x"}, "overrides": {"schema": {"type": "object"}}}, (), {}, ([], {"day": "x"})),
    ],
)
def test_effective_arguments(fields: dict[str, Any], args: Any, kwargs: Any, expected: Any) -> None:
    """Given args replace the job's, given kwargs merge over its own; nothing given keeps the job's."""
    assert effective_arguments(spec(**fields), args, kwargs) == expected


@pytest.mark.parametrize(
    ("fields", "args", "kwargs", "message"),
    [
        ({}, None, {"a": 1}, "does not accept args/kwargs"),
        ({"overrides": True}, "abc", None, "args: expected a list, got str"),
        ({"overrides": True}, None, [1], "kwargs: expected an object, got list"),
        ({"overrides": True}, [float("inf")], None, "args[0]: inf is not JSON"),
        ({"overrides": True}, None, {"a": {"b": b"x"}}, "kwargs['a']['b']: a bytes is not JSON"),
        ({"overrides": True}, None, {"a": "x" * 70_000}, "more than the limit of 65536"),
        (
            {"overrides": {"schema": SCHEMA}, "enabled": False},
            None,
            {"other": 1},
            "kwargs: 'day' is a required property",
        ),
        (
            {"overrides": {"schema": SCHEMA}, "enabled": False},
            None,
            {"day": 3},
            "kwargs['day']: 3 is not of type 'string'",
        ),
    ],
)
def test_refused_overrides(fields: dict[str, Any], args: Any, kwargs: Any, message: str) -> None:
    """Each refusal names the job and says what was expected."""
    with pytest.raises(OverridesRefused) as caught:
        effective_arguments(spec(**fields), args, kwargs)
    assert str(caught.value).startswith("report: ") and message in str(caught.value)


def test_worker_refusal() -> None:
    """A worker refuses a message's arguments that differ from a job's own unless it allows overrides, and
    checks them against its schema."""
    plain = spec(args=[1])
    assert refusal(plain, [1], {}) == ""
    assert "does not accept overrides" in refusal(plain, [2], {})
    assert refusal(spec(overrides=True), [2], {"x": 1}) == ""
    assert "'day' is a required property" in refusal(spec(overrides={"schema": SCHEMA}, enabled=False), [], {})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"call": None, "command": "echo hi", "overrides": True}, "a command job takes no arguments from trigger"),
        ({"overrides": {"schema": {"type": 3}}}, "not a valid JSON Schema"),
        ({"overrides": {"schema": SCHEMA}}, "the job's own kwargs do not match overrides.schema"),
        ({"overrides": {"schema": {}, "other": 1}}, "Extra inputs are not permitted"),
    ],
)
def test_config_refuses(fields: dict[str, Any], message: str) -> None:
    """The config refuses overrides on command jobs, invalid schemas and own kwargs its schema rejects (an
    enabled job's scheduled fires run with them)."""
    with pytest.raises(ValueError, match=message):
        spec(**fields)
