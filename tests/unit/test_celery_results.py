"""Celery outcomes when the result backend cannot be read: each `unknown` with why, quickly, never a crash."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from beatd.localredis import free_port
from beatd.store.celery_results import celery_outcomes

pytest.importorskip("celery", reason="Celery is in the dev extras (beatd[celery])")


def test_a_redis_backend_that_is_down_is_unknown_not_redis_unavailable() -> None:
    """A Redis result backend nobody listens on: `unknown` per task, saying why (the command goes on)."""
    started = time.monotonic()
    outcomes = celery_outcomes(f"redis://127.0.0.1:{free_port()}/2", ["a", "b"])
    assert set(outcomes) == {"a", "b"}
    assert all(o["state"] == "unknown" and "cannot be read: ConnectionError" in o["why"] for o in outcomes.values())
    assert time.monotonic() - started < 10


def test_a_database_backend_that_fails_is_unknown(tmp_path: Path) -> None:
    """A database backend whose driver raises (here SQLite cannot open the file): `unknown`, asked once."""
    url = f"db+sqlite:///{tmp_path}/no/such/dir/results.db"
    outcomes = celery_outcomes(url, ["a", "b"])
    assert [outcome["state"] for outcome in outcomes.values()] == ["unknown", "unknown"]
    assert "OperationalError" in outcomes["a"]["why"], outcomes
