"""A reload names the settings that changed and sorts them into applied, needs a restart, and not used."""

from __future__ import annotations

from typing import Any

import pytest

from beatd.config.model import ConfigFile
from beatd.reload import BEAT_APPLIES, changed_settings, settings_change

BASE: dict[str, Any] = {"redis": {"url": "redis://localhost:6379/0"}, "leader": {"lease": "5s"}}


def config(**changes: Any) -> ConfigFile:
    """A top-level config: BASE with ``changes`` merged one level deep."""
    merged = {key: dict(value) for key, value in BASE.items()}
    for key, value in changes.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    return ConfigFile.model_validate(merged)


@pytest.mark.parametrize(
    ("changes", "applied", "restart", "ignored"),
    [
        ({}, [], [], []),
        ({"leader": {"lease": "2s"}}, ["leader.lease"], [], []),
        ({"security": {"signing_key": "k" * 16}}, ["security.signing_key"], [], []),
        ({"redis": {"url": "redis://other:6379/0"}}, [], ["redis.url"], []),
        ({"redis": {"tls": {"verify": False}}}, [], ["redis.tls.verify"], []),
        ({"namespace": "other"}, [], ["namespace"], []),
        ({"worker": {"concurrency": 9}}, [], [], ["worker.concurrency"]),
        ({"timezone": "Europe/Paris", "jobs": {"a": {}}}, [], [], []),  # applied as the job diff
    ],
)
def test_beat_reload_sorts_changed_settings(
    changes: dict[str, Any], applied: list[str], restart: list[str], ignored: list[str]
) -> None:
    """Each changed setting is listed by its dotted name under what the beat does with it."""
    change = settings_change(config(), config(**changes), BEAT_APPLIES, unused=("worker",))
    assert (change.applied, change.needs_restart, change.ignored) == (applied, restart, ignored)


def test_changed_settings_never_carry_values() -> None:
    """Only names come out, never a value (URLs and keys are secrets)."""
    names = changed_settings(config(), config(redis={"url": "redis://:secret@other:6379/0"}))
    assert names == ["redis.url"] and not any("secret" in name for name in names)
