"""The nightly signups job against real SQLite and PostgreSQL: the right day, one row per day, across DST."""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from jobs.seed import insert_users
from jobs.stats import daily_signups, engine_for
from tests.integration.conftest import Daemon, wait_for
from tests.integration.test_beat_operations import cli
from tests.integration.test_worker import config_file, statuses
from tests.redis_server import RedisServer

NEW_YORK = ZoneInfo("America/New_York")
# The machine's own PostgreSQL unless BEATD_TEST_POSTGRES_DSN names another; the cases skip when it does not answer.
POSTGRES = os.environ.get("BEATD_TEST_POSTGRES_DSN") or "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@functools.cache
def postgres_unreachable(dsn: str) -> str | None:
    """Why ``dsn`` cannot be used for the tests, or None when it answers a query."""
    try:
        engine = sa.create_engine(dsn, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as error:  # any reason the server is not usable is a reason to skip, reported as is
        return f"{type(error).__name__}: {str(error).splitlines()[0]}"
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """(DSN, users table, stats table): a fresh SQLite file, or unique tables in the test PostgreSQL."""
    suffix = uuid.uuid4().hex[:8]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'app.db'}", "users", "daily_signup_stats"
        return
    reason = postgres_unreachable(POSTGRES)
    if reason is not None:
        pytest.skip(f"PostgreSQL at {sa.make_url(POSTGRES).render_as_string()} is not reachable: {reason}")
    users, stats = f"users_{suffix}", f"stats_{suffix}"
    yield POSTGRES, users, stats
    with engine_for(POSTGRES).begin() as connection:
        for table in (users, stats):
            connection.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))


def _users_per_day(start: date, days: int) -> list[datetime]:
    """Day k (from ``start``) gets k+1 users, created at New York wall times spread over the local day,
    including 00:00 and 23:59 edges and both 01:30s of the fall-back day."""
    instants = []
    for k in range(days):
        day = start + timedelta(days=k)
        local = [datetime(day.year, day.month, day.day, 0, 0, tzinfo=NEW_YORK)]
        local += [datetime(day.year, day.month, day.day, 23, 59, tzinfo=NEW_YORK)] if k >= 1 else []
        while len(local) < k + 1:
            local.append(datetime(day.year, day.month, day.day, 12, len(local) % 60, tzinfo=NEW_YORK))
        if day == date(2026, 11, 1):  # fall back: 01:30 happens twice; both belong to Nov 1
            local[-1] = datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=NEW_YORK)
        instants.extend(instant.astimezone(UTC) for instant in local[: k + 1])
    return instants


def _rows(dsn: str, stats: str) -> dict[date, int]:
    with engine_for(dsn).connect() as connection:
        result = connection.execute(sa.text(f'SELECT day, signups FROM "{stats}" ORDER BY day'))
        return {(row[0] if isinstance(row[0], date) else date.fromisoformat(row[0])): row[1] for row in result}


def test_backfill_over_a_dst_change_gives_one_right_row_per_day(database: tuple[str, str, str]) -> None:
    """30 nightly fires across New York's fall-back day, run twice, leave one row per day with its count."""
    dsn, users, stats = database
    first_day = date(2026, 10, 15)
    insert_users(dsn, _users_per_day(first_day, 30), table=users)
    for _ in range(2):  # a re-run (retry, catch-up, backfill again) rewrites the same rows
        for k in range(30):
            day = first_day + timedelta(days=k + 1)
            fire = datetime(day.year, day.month, day.day, 0, 5, tzinfo=NEW_YORK)
            context = SimpleNamespace(scheduled_at=fire, run_id=f"nightly@{k}#1")
            result = daily_signups(context, dsn, users=users, stats=stats)
            assert result == {"day": (first_day + timedelta(days=k)).isoformat(), "signups": k + 1}
    assert _rows(dsn, stats) == {first_day + timedelta(days=k): k + 1 for k in range(30)}


def test_backfill_through_beat_cli_and_worker(
    database: tuple[str, str, str],
    tmp_path: Path,
    shared_redis: RedisServer,
    namespace: str,
    daemons: Callable[..., Daemon],
) -> None:
    """`beatd backfill` of 30 nights, run by a real worker, fills exactly one row per day."""
    dsn, users, stats = database
    first_day = date(2026, 10, 15)
    insert_users(dsn, _users_per_day(first_day, 30), table=users)
    config = config_file(tmp_path, shared_redis, namespace, f"""
        signups: {{call: jobs.stats:daily_signups, kwargs: {{dsn: '{dsn}', users: {users}, stats: {stats}}},
                   cron: '5 0 * * *', timezone: America/New_York}}
    """)  # fmt: skip
    result = cli("backfill", "-c", str(config), "signups", "--from", "2026-10-16", "--to", "2026-11-14T23:59")
    assert "emitted 30 backfill fire(s)" in result.stdout, result.stderr
    daemons("worker", "-c", str(config), name="worker")
    wait_for(lambda: statuses(shared_redis, namespace, "signups").count("succeeded") == 30, timeout=90, what="30 runs")
    assert _rows(dsn, stats) == {first_day + timedelta(days=k): k + 1 for k in range(30)}
