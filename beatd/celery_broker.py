"""At beat start: is the Celery broker beatd's own Redis server, and can the fenced script push into it?

``beatd check`` compares URLs, which cannot prove two of them reach one server (a socket and a port, a name
and an address) nor that one URL reaches the same server from beatd and from the workers' hosts. The beat
asks: it connects with ``celery.broker_url`` and compares ``INFO server``'s ``run_id`` with its own
connection's; another server is a refusal (the beat emits no celery job: a push into its own server would be
read by nobody). It then runs the script's SELECT of the broker database and back, and where Redis has it
(7.0+) asks ``ACL DRYRUN`` whether its user may LPUSH the jobs' queues: each failure is an error to log, as
every such push would be refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from beatd.config.model import CelerySettings
from beatd.config.redis_urls import display_url, redis_py_url
from beatd.store.base import connect

__all__ = ["BrokerProbe", "probe_broker"]

_SELECT_AND_BACK = """
local reply = redis.pcall('SELECT', ARGV[1])
if type(reply) == 'table' and reply.err then
    return reply.err
end
redis.call('SELECT', ARGV[2])
return ''
"""
"""The SELECT emit.lua and send.lua make, made the same way (inside a script), so a proxy or ACL that refuses
it inside a script is found too."""


@dataclass(frozen=True)
class BrokerProbe:
    """What the probe found: ``refusal`` (the broker is another server: emit no celery job), ``errors`` (each
    push would be refused, said once at start), ``notes`` (what could not be asked)."""

    refusal: str | None = None
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def probe_broker(
    client: redis.Redis, own_db: int, celery: CelerySettings, queue_keys: Sequence[str], timeout: float = 2.0
) -> BrokerProbe:
    """Probe ``celery``'s broker from beatd's connection ``client`` (database ``own_db``); ``queue_keys`` are
    the Redis lists the celery jobs push to. Never raises for Redis errors: what cannot be asked is a note."""
    url = display_url(celery.broker_url)
    try:
        own = _run_id(client)
    except redis.RedisError as error:
        return BrokerProbe(notes=[f"cannot probe the Celery broker: beatd's Redis: {error}"])
    notes: list[str] = []
    try:
        theirs = _run_id(connect(redis_py_url(celery.broker_url), timeout))
    except (redis.RedisError, ValueError) as error:
        notes.append(f"cannot reach celery.broker_url {url} ({error}): not proven to be beatd's own server")
    else:
        if theirs != own:
            return BrokerProbe(
                refusal=(
                    f"celery.broker_url {url} reaches another Redis server (run_id {theirs[:12]}) than redis.url "
                    f"(run_id {own[:12]}): a task pushed into beatd's server would never reach a Celery worker; "
                    "celery jobs are not emitted until the broker is beatd's own server"
                )
            )
    errors = []
    try:
        selected = client.eval(_SELECT_AND_BACK, 0, celery.broker_db, own_db)
    except redis.RedisError as error:
        selected = str(error)
    if selected:
        errors.append(
            f"a script cannot SELECT database {celery.broker_db} (celery.broker_url {url}): {selected}; every "
            "celery fire will be refused"
        )
    errors += _acl_problems(client, queue_keys)
    return BrokerProbe(None, errors, notes)


def _run_id(client: redis.Redis) -> str:
    info: dict[str, Any] = client.info("server")
    return str(info["run_id"])


def _acl_problems(client: redis.Redis, queue_keys: Sequence[str]) -> list[str]:
    """``ACL DRYRUN`` of the pushes (Redis 7.0+; skipped where the command or the permission to run it is
    missing)."""
    try:
        user = str(client.acl_whoami())
        replies = [(key, _dryrun(client, user, key)) for key in queue_keys]
    except redis.RedisError:
        return []
    return [
        f"Redis user {user!r} may not LPUSH Celery queue {key!r}: {reply}; every celery fire to it will be refused"
        for key, reply in replies
        if str(reply) != "OK"
    ]


def _dryrun(client: redis.Redis, user: str, key: str) -> Any:
    return client.execute_command("ACL", "DRYRUN", user, "LPUSH", key, "probe")  # type: ignore[no-untyped-call]
