"""Create a demo users table for the signups job: ``python -m jobs.seed DSN --days 30``.

DSN is an SQLAlchemy URL: ``sqlite:///PATH`` or ``postgresql+psycopg://user@host/db``.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from jobs.stats import as_stored, engine_for, users_table


def insert_users(dsn: str, instants: Iterable[datetime], table: str = "users", fresh: bool = True) -> int:
    """(Re)create ``table`` (when ``fresh``) and insert one user created at each instant."""
    if dsn.startswith("sqlite:///"):
        Path(dsn.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = engine_for(dsn)
    users = users_table(table)
    rows = [{"email": f"user{index}@example.com", "created_at": as_stored(engine, instant)}
            for index, instant in enumerate(instants)]  # fmt: skip
    with engine.begin() as connection:
        if fresh:
            users.drop(connection, checkfirst=True)
        users.create(connection, checkfirst=True)
        if rows:
            connection.execute(sa.insert(users), rows)
    return len(rows)


def seed(dsn: str, days: int, per_day: int, now: datetime) -> int:
    """About ``per_day`` sign-ups on each of the last ``days`` days, reproducibly."""
    generator = random.Random(42)
    instants = [
        now - timedelta(days=day, seconds=generator.randint(0, 86399))
        for day in range(days)
        for _ in range(generator.randint(per_day // 2, per_day * 3 // 2))
    ]
    return insert_users(dsn, instants)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dsn", help="sqlite:///PATH or postgresql+psycopg://...")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=40)
    arguments = parser.parse_args()
    count = seed(arguments.dsn, arguments.days, arguments.per_day, datetime.now(UTC))
    print(f"seeded {count} users over {arguments.days} days into {arguments.dsn}")


if __name__ == "__main__":
    main()
