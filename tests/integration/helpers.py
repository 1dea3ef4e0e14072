"""Reading what the beat wrote, for assertions."""

from __future__ import annotations

import itertools
import json
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from beatd.keys import Keys
from beatd.messages import parse_utc
from tests.redis_server import RedisServer


def write_config(path: Path, server: RedisServer, namespace: str, jobs: str, lease: str = "1s") -> Path:
    """Write a beat config for ``server`` and ``namespace`` with the given ``jobs:`` body (YAML, dedented)."""
    body = textwrap.indent(textwrap.dedent(jobs).strip("\n"), "  ")
    path.write_text(
        f"redis: {{url: '{server.url}'}}\nnamespace: {namespace}\nleader: {{lease: {lease}}}\n"
        f"pythonpath: [{Path(__file__).resolve().parents[2]}]\njobs:\n{body}\n"
    )
    return path


def messages(client: redis.Redis, namespace: str, queue: str = "default") -> list[dict[str, Any]]:
    """Every message in a queue stream, oldest first, with the stream entry id as ``_id``."""
    entries = client.xrange(Keys(namespace).queue(queue))
    return [{"_id": entry_id, **json.loads(fields["message"])} for entry_id, fields in entries]


def scheduled(items: list[dict[str, Any]], job: str) -> list[datetime]:
    """Scheduled instants of ``job``'s messages, in stream order."""
    return [parse_utc(item["scheduled_at"]) for item in items if item["job"] == job]


def assert_contiguous(instants: list[datetime], period_seconds: float) -> None:
    """No duplicate and no gap: consecutive instants are exactly one period apart."""
    assert len(instants) == len(set(instants)), f"duplicated fires: {instants}"
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(instants)]
    assert all(abs(gap - period_seconds) < 1e-6 for gap in gaps), f"gaps {gaps} in {instants}"


def leader_token(client: redis.Redis, namespace: str) -> str | None:
    """The current fencing token, or None."""
    value = client.get(Keys(namespace).leader)
    return str(value) if value else None


def runs(client: redis.Redis, namespace: str, job: str) -> list[dict[str, Any]]:
    """Run records of ``job``, oldest scheduled instant first."""
    keys = Keys(namespace)
    ids = client.zrange(keys.runs_by_time(job), 0, -1)
    return [json.loads(record) for record in client.hmget(keys.runs(job), ids)] if ids else []
