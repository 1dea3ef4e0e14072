"""Where a Redis URL points: which server, and which database number on it (pure; no connection).

Used to tell whether a Celery broker URL may name beatd's own Redis server, so the beat may push Celery's task
messages inside its fenced script, and into which database. The URL is read by redis-py's own parser
(``redis.connection.parse_url``), after kombu's ``redis+socket://`` (a Unix socket) is spelt ``unix://``. A
string cannot prove two URLs reach the same server (a socket and a TCP port, a name and an address): the
beat proves it at start by each server's run id (:mod:`beatd.celery_broker`); here only a certain difference
is found (:meth:`RedisLocation.surely_other`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from redis.connection import parse_url

__all__ = ["RedisLocation", "display_url", "node_address", "redis_location", "redis_py_url"]

_DEFAULT_PORT = 6379
_LOOPBACK = "loopback"


@dataclass(frozen=True)
class RedisLocation:
    """A Redis server (``tcp://host:port`` or ``unix:///path``) and a database number on it."""

    server: str
    db: int
    host: str = ""
    """TCP: the host as written, lowercased, with localhost, 127.0.0.1 and ::1 all ``loopback``; '' for a socket."""
    port: int = 0
    path: str = ""
    """A Unix socket's path ('' for TCP)."""

    def surely_other(self, other: RedisLocation) -> bool:
        """True when ``other`` cannot be this server: the same host on another port, or two socket paths.
        Anything else (a socket and a port, two host names or addresses) may be one server: unknown offline."""
        if self.path and other.path:
            return self.path != other.path
        if self.host and other.host:
            return self.host == other.host and self.port != other.port
        return False


def redis_py_url(url: str) -> str:
    """``url`` as redis-py reads it: kombu's ``redis+socket:///path`` becomes ``unix:///path``."""
    return "unix://" + url.removeprefix("redis+socket://") if url.startswith("redis+socket://") else url


def redis_location(url: str) -> RedisLocation:
    """The server and database of a ``redis://``, ``rediss://``, ``unix://`` or ``redis+socket://`` URL, as
    redis-py reads it (the database from ``?db=2``, else the path ``/2``, else 0). Raise ValueError for another
    scheme, a port out of range, or a database that is not a number."""
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix", "redis+socket"):
        raise ValueError(
            f"scheme {scheme!r} is not a Redis URL (expected redis://, rediss://, unix:// or redis+socket://)"
        )
    parts = urlsplit(redis_py_url(url))
    if parts.scheme != "unix" and parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise ValueError(f"database {parts.path.strip('/')!r} is not a number")
    try:
        parsed = parse_url(redis_py_url(url))  # type: ignore[no-untyped-call]
    except ValueError as error:
        raise ValueError(f"{display_url(url)}: {error}") from None
    db = int(parsed.get("db") or 0)
    if parsed.get("path"):
        return RedisLocation(f"unix://{parsed['path']}", db, path=str(parsed["path"]))
    host = str(parsed.get("host") or "localhost").lower()
    port = int(parsed.get("port") or _DEFAULT_PORT)
    name = _LOOPBACK if _loopback(host) else host
    return RedisLocation(f"tcp://{host}:{port}", db, host=name, port=port)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def node_address(node: str) -> tuple[str, int]:
    """The host (an IPv6 address without its brackets) and port of a ``host:port`` node address (a
    ``redis.cluster_nodes`` entry; IPv6 written ``[::1]:7000``). Raise ValueError for anything else: no port, a
    port out of range, an unbracketed IPv6 address, a user, a path or a query."""
    invalid = ValueError(f"invalid cluster node address {node!r}: expected host:port (IPv6: [address]:port)")
    try:
        parts = urlsplit(f"redis://{node}")
        host, port = parts.hostname, parts.port  # .port raises ValueError for an unbracketed IPv6 address
    except ValueError:
        raise invalid from None
    if not host or not port or parts.netloc != node or "@" in node:
        raise invalid
    return host, port


def display_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for messages); ``<unparsable URL>`` when it cannot
    be split (it may hold a password)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
