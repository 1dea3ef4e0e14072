"""Nightly statistics jobs.

``daily_signups`` counts the users created during the fire's logical day: the day before the fire's
``scheduled_at``, in the job's time zone. It never looks at the wall clock, so a retry, a catch-up or a
backfill of an old fire counts the same day, and re-running a day rewrites its single row.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol

__all__ = ["daily_signups", "logical_day", "year_end_close"]


class RunContext(Protocol):
    """The part of the run context these jobs use: the fire's logical instant and the run id."""

    scheduled_at: datetime
    run_id: str


def logical_day(scheduled_at: datetime) -> date:
    """The day a nightly fire reports on: the day before ``scheduled_at`` in its own time zone."""
    return scheduled_at.date() - timedelta(days=1)


def daily_signups(
    ctx: RunContext,
    dsn: str,
    users_table: str = "users",
    created_column: str = "created_at",
    stats_table: str = "daily_signup_stats",
) -> dict[str, Any]:
    """Count users created on the logical day and upsert ``(day, signups, computed_at, run_id)``.

    ``dsn`` is ``sqlite:///PATH``. Table and column names are parameters so the job fits a real schema.
    """
    day = logical_day(ctx.scheduled_at)
    zone = ctx.scheduled_at.tzinfo
    begin = datetime.combine(day, time(), zone)
    end = begin + timedelta(days=1)
    path = dsn.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as connection, connection:
        (count,) = connection.execute(
            f'SELECT COUNT(*) FROM "{users_table}" WHERE "{created_column}" >= ? AND "{created_column}" < ?',
            (begin.isoformat(), end.isoformat()),
        ).fetchone()
        connection.execute(
            f'CREATE TABLE IF NOT EXISTS "{stats_table}" '
            "(day TEXT PRIMARY KEY, signups INTEGER NOT NULL, computed_at TEXT NOT NULL, run_id TEXT NOT NULL)"
        )
        connection.execute(
            f'INSERT INTO "{stats_table}" (day, signups, computed_at, run_id) VALUES (?, ?, ?, ?) '
            "ON CONFLICT(day) DO UPDATE SET signups = excluded.signups, "
            "computed_at = excluded.computed_at, run_id = excluded.run_id",
            (day.isoformat(), count, datetime.now(zone).isoformat(), ctx.run_id),
        )
    return {"day": day.isoformat(), "signups": count}


def year_end_close(ctx: RunContext) -> dict[str, str]:
    """Placeholder year-end job of the example config: reports which year it closes."""
    return {"closed_year": str(ctx.scheduled_at.year)}
