"""At beat start: is the Celery broker beatd's own Redis server, and can the fenced script push into it?

``beatd check`` compares URLs, which cannot prove two of them reach one server (a socket and a port, a name
and an address) nor that one URL reaches the same server from beatd and from the workers' hosts. The beat
asks: it connects with ``celery.broker_url`` and compares ``INFO server``'s ``run_id`` with its own
connection's. Another server, a broker it cannot reach, or an AMQP broker is served through the outbox (the
fenced script writes the task message there, the leader's relay publishes it: :mod:`beatd.celery_relay`);
only a proven same server gets the push inside the fenced script. For that one it then runs the script's
SELECT of the broker database and back, and where Redis has it
(7.0+) asks ``ACL DRYRUN`` whether its user may LPUSH the jobs' queues: each failure is an error to log, as
every such push would be refused. On a Redis Cluster (``redis.cluster``) every broker is served through the
outbox, and one that is itself a cluster node is an error (kombu has no cluster transport).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from beatd.config.model import CelerySettings
from beatd.config.redis_urls import display_url, redis_py_url
from beatd.store.base import connect, is_cluster

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
    """What the probe found: ``outbox`` (why celery fires go through the outbox and the relay; None: the broker
    is beatd's own server, pushed to directly), ``errors`` (each push would be refused, said once at start),
    ``notes`` (what could not be asked), ``unknown`` (beatd's own Redis did not answer, so nothing is known:
    the beat holds its celery fires and probes again once Redis answers, rather than settle for the outbox's
    at least once because it started while Redis restarted)."""

    outbox: str | None = None
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unknown: bool = False


def probe_broker(
    client: redis.Redis, own_db: int, celery: CelerySettings, queue_keys: Sequence[str], timeout: float = 2.0
) -> BrokerProbe:
    """Probe ``celery``'s broker from beatd's connection ``client`` (database ``own_db``); ``queue_keys`` are
    the Redis lists the celery jobs push to. Never raises for Redis errors: what cannot be asked is a note."""
    url = display_url(celery.broker_url)
    if celery.amqp:
        return BrokerProbe(outbox=f"celery.broker_url {url} is AMQP")
    if is_cluster(client):
        return _cluster_probe(celery, url, timeout)
    try:
        own = _run_id(client)
    except redis.RedisError as error:
        return _unknown(error)
    notes: list[str] = []
    try:
        theirs = _run_id(connect(redis_py_url(celery.broker_url), timeout))
    except (redis.ConnectionError, redis.TimeoutError) as error:
        try:  # beatd's own server may have gone between the two questions (a restart): then nothing is known
            _run_id(client)
        except redis.RedisError as again:
            return _unknown(again)
        # No answer: whichever server it is, the relay reaches it once it answers; a push could land nowhere.
        return BrokerProbe(
            outbox=f"celery.broker_url {url} did not answer, so is not proven to be beatd's own server",
            notes=[f"cannot reach celery.broker_url {url} ({error})"],
        )
    except (redis.RedisError, ValueError) as error:
        # It answered but refused (a database past `databases`, a password): the pushes' own checks below say why.
        notes.append(f"cannot ask celery.broker_url {url} ({error}): not proven to be beatd's own server")
    else:
        if theirs != own:
            return BrokerProbe(
                outbox=(
                    f"celery.broker_url {url} reaches another Redis server (run_id {theirs[:12]}) than redis.url "
                    f"(run_id {own[:12]})"
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


def _cluster_probe(celery: CelerySettings, url: str, timeout: float) -> BrokerProbe:
    """beatd's Redis is a cluster: the fenced script cannot reach a broker (another slot, maybe another node; no
    SELECT on a cluster), so every task message goes through the outbox. A broker that is itself a cluster node
    would fail kombu (no cluster transport): said once at start."""
    outbox = f"redis.cluster: celery.broker_url {url} is served through the outbox (a cluster script reaches one slot)"
    try:
        info: dict[str, Any] = connect(redis_py_url(celery.broker_url), timeout).info("cluster")
    except (redis.RedisError, ValueError) as error:
        return BrokerProbe(outbox=outbox, notes=[f"cannot ask celery.broker_url {url} ({error})"])
    if str(info.get("cluster_enabled", 0)) == "1":
        refusal = (
            f"celery.broker_url {url} is a Redis Cluster node: Celery (kombu) has no cluster transport, so its "
            "workers cannot read the task messages the relay publishes there; use another Redis server or RabbitMQ"
        )
        return BrokerProbe(outbox=outbox, errors=[refusal])
    return BrokerProbe(outbox=outbox)


def _unknown(error: redis.RedisError) -> BrokerProbe:
    return BrokerProbe(
        outbox=f"beatd's Redis did not answer the probe ({error})",
        notes=[f"cannot probe the Celery broker yet: beatd's Redis: {error}; celery fires wait until it answers"],
        unknown=True,
    )


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
