"""Where a Redis URL points: which server, and which database number on it (pure; no connection).

Used to tell whether a Celery broker URL names beatd's own Redis server, so the beat may push Celery's task
messages inside its fenced script, and into which database.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

__all__ = ["RedisLocation", "display_url", "redis_location"]

_DEFAULT_PORT = 6379


@dataclass(frozen=True)
class RedisLocation:
    """A Redis server (``tcp://host:port`` or ``unix:///path``) and a database number on it."""

    server: str
    db: int


def redis_location(url: str) -> RedisLocation:
    """The server and database of a ``redis://``, ``rediss://`` or ``unix://`` URL, as redis-py and kombu read
    it: the database from the path (``/2``), else ``?db=2``, else 0. Raise ValueError for another scheme or a
    database that is not a number."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if parts.scheme == "unix":
        server = f"unix://{parts.path}"
        db_text = query.get("db", ["0"])[0]
    elif parts.scheme in ("redis", "rediss"):
        host = (parts.hostname or "localhost").lower()
        host = "127.0.0.1" if host == "localhost" else host
        try:
            port = parts.port or _DEFAULT_PORT
        except ValueError as error:
            raise ValueError(f"invalid port in {display_url(url)!r}") from error
        server = f"tcp://{host}:{port}"
        db_text = parts.path.strip("/") or query.get("db", ["0"])[0]
    else:
        raise ValueError(f"scheme {parts.scheme!r} is not a Redis URL (expected redis://, rediss:// or unix://)")
    if not db_text.isdigit():
        raise ValueError(f"database {db_text!r} is not a number")
    return RedisLocation(server, int(db_text))


def display_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
