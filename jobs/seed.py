"""Create a demo users table for the signups job: ``python -m jobs.seed sqlite:///PATH --days 30``."""

from __future__ import annotations

import argparse
import random
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path


def seed(dsn: str, days: int, per_day: int, now: datetime) -> int:
    """(Re)create table ``users`` with about ``per_day`` sign-ups on each of the last ``days`` days."""
    path = Path(dsn.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    generator = random.Random(42)
    for day in range(days):
        for _ in range(generator.randint(per_day // 2, per_day * 3 // 2)):
            created = now - timedelta(days=day, seconds=generator.randint(0, 86399))
            rows.append((f"user{len(rows)}@example.com", created.isoformat()))
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("DROP TABLE IF EXISTS users")
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, created_at TEXT NOT NULL)")
        connection.executemany("INSERT INTO users (email, created_at) VALUES (?, ?)", rows)
    return len(rows)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dsn", help="sqlite:///PATH")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=40)
    arguments = parser.parse_args()
    count = seed(arguments.dsn, arguments.days, arguments.per_day, datetime.now(UTC))
    print(f"seeded {count} users over {arguments.days} days into {arguments.dsn}")


if __name__ == "__main__":
    main()
