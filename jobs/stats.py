"""Nightly statistics jobs.

``daily_signups`` counts the users created during the fire's logical day: the day before the fire's
``scheduled_at``, in the job's time zone (a day of 23 or 25 hours on a DST change). It never looks at the
wall clock, so a retry, a catch-up or a backfill of an old fire counts the same day, and re-running a day
rewrites its single row. Works with SQLite and PostgreSQL through SQLAlchemy; table and column names are
parameters so it fits a real users table.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

__all__ = ["daily_signups", "day_bounds", "logical_day", "users_table", "year_end_close"]


class RunContext(Protocol):
    """The part of beatd's run context these jobs use."""

    scheduled_at: datetime
    run_id: str


def logical_day(scheduled_at: datetime) -> date:
    """The day a nightly fire reports on: the day before ``scheduled_at``, in its own time zone."""
    return scheduled_at.date() - timedelta(days=1)


def day_bounds(day: date, zone: Any) -> tuple[datetime, datetime]:
    """[start, end) of ``day`` in ``zone``, as UTC instants (23 or 25 hours apart on DST days)."""
    start = datetime.combine(day, time(), zone)
    end = datetime.combine(day + timedelta(days=1), time(), zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def users_table(name: str = "users", created_column: str = "created_at") -> sa.Table:
    """The shape the job expects of the users table (only the creation instant is read)."""
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column(created_column, sa.DateTime(timezone=True), nullable=False, index=True),
    )


def _stats_table(name: str) -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("signups", sa.Integer, nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(400), nullable=False),
    )


@lru_cache(maxsize=8)
def engine_for(dsn: str) -> sa.Engine:
    """One engine (connection pool) per DSN in this process."""
    return sa.create_engine(dsn, pool_pre_ping=True)


def as_stored(engine: sa.Engine, instant: datetime) -> datetime:
    """SQLite keeps naive UTC; PostgreSQL keeps aware instants (timestamptz)."""
    return instant.astimezone(UTC).replace(tzinfo=None) if engine.dialect.name == "sqlite" else instant


def daily_signups(
    ctx: RunContext,
    dsn: str,
    users: str = "users",
    created_column: str = "created_at",
    stats: str = "daily_signup_stats",
) -> dict[str, Any]:
    """Count users created on the logical day and upsert one row ``(day, signups, computed_at, run_id)``."""
    engine = engine_for(dsn)
    day = logical_day(ctx.scheduled_at)
    start, end = day_bounds(day, ctx.scheduled_at.tzinfo)
    created = users_table(users, created_column).c[created_column]
    table = _stats_table(stats)
    with engine.begin() as connection:
        table.metadata.create_all(connection)
        count = connection.execute(
            sa.select(sa.func.count()).where(created >= as_stored(engine, start), created < as_stored(engine, end))
        ).scalar_one()
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        row = {"day": day, "signups": count, "computed_at": as_stored(engine, datetime.now(UTC)), "run_id": ctx.run_id}
        statement = dialect.insert(table).values(**row)
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=[table.c.day],
                set_={
                    "signups": statement.excluded.signups,
                    "computed_at": statement.excluded.computed_at,
                    "run_id": statement.excluded.run_id,
                },
            )
        )
    return {"day": day.isoformat(), "signups": count}


def year_end_close(ctx: RunContext) -> dict[str, str]:
    """Placeholder year-end job of the example config: reports which year it closes."""
    return {"closed_year": str(ctx.scheduled_at.year)}
