"""What a ``celery`` job may say, and where its broker may be: the rules of the config that concern Celery.

A ``celery`` job is run by the Celery app's own workers, so the policies that beatd's workers enforce
(``overlap``, ``retries``, ``timeout``) cannot apply; each is refused with the Celery setting that does the
same. A broker on beatd's own Redis server gets the task message inside the fenced script that advances the
job's progress (any database number on that server: the script SELECTs it); another Redis server or RabbitMQ
gets it through the outbox and the leader's relay (:mod:`beatd.celery_relay`). On a Redis Cluster
(``redis.cluster``) every broker is another server: kombu has no cluster transport, so the cluster itself is
refused as a broker.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from beatd.config.model import CelerySettings, ConfigFile
from beatd.config.redis_urls import RedisLocation, display_url, redis_location
from beatd.config.yamlsource import KeyPath, Located
from beatd.errors import Problem

__all__ = ["UNHONOURED", "broker_problems", "celery_job_problems", "prepare_celery_job"]

UNHONOURED = {
    "overlap": (
        "a Celery worker cannot honour beatd's overlap policy: make the task exclusive in the Celery app "
        "(a lock such as a Redis SET NX held while it runs), or give it its own queue served by one worker "
        "process (celery worker -Q QUEUE --concurrency 1)"
    ),
    "retries": (
        "beatd's retries are not seen by a Celery worker: declare them on the task "
        "(@app.task(autoretry_for=(Exception,), max_retries=N, retry_backoff=True)) or call self.retry()"
    ),
    "retry_delay": "beatd's retry backoff is not seen by a Celery worker: use the task's retry_backoff or countdown",
    "retry_delay_max": "beatd's retry backoff is not seen by a Celery worker: use the task's retry_backoff_max",
    "timeout": (
        "a Celery worker does not know beatd's timeout: use options.time_limit (hard) and "
        "options.soft_time_limit (raises SoftTimeLimitExceeded in the task)"
    ),
    "isolation": (
        "a Celery worker runs tasks in its own pool: choose it on the worker (celery worker --pool prefork, "
        "threads or solo)"
    ),
    "queue": "queue names a beatd queue stream: a celery job's Celery queue is options.queue",
    "env": "env belongs to command jobs: a Celery task runs in its worker's environment",
    "cwd": "cwd belongs to command jobs: a Celery task runs in its worker's directory",
    "shell": "shell belongs to command jobs",
    "output": (
        "a Celery task's output stays with its worker: beatd captures nothing of it (read the worker's log, "
        "or return what matters as the task's result: beatd show reads it from the result backend)"
    ),
}
"""Keys a ``celery`` job may not set itself, each with what to use instead (inherited defaults are ignored)."""

SENTINEL_SCHEMES = ("sentinel", "sentinels")
"""Broker URL schemes of kombu's Redis Sentinel transport (``sentinel://h1:26379;sentinel://h2:26379``)."""


def celery_job_problems(
    raw: dict[str, Any], source: Located, base: KeyPath, celery: CelerySettings | None
) -> list[Problem]:
    """The problems of job ``raw`` (declared at ``base``) that concern Celery: options without a celery target,
    keys a Celery worker cannot honour, a celery job without the top-level ``celery`` section."""
    if raw.get("celery") is None:
        if "options" in raw:
            return [source.problem((*base, "options"), "options are Celery's: only for a celery job", at_key=True)]
        return []
    problems = [
        source.problem((*base, key), f"not for a celery job: {hint}", at_key=True)
        for key, hint in UNHONOURED.items()
        if key in raw
    ]
    options = raw.get("options")
    if "expires" in raw and isinstance(options, dict) and options.get("expires") is not None:
        problems.append(
            source.problem(
                (*base, "expires"),
                "expires and options.expires both set: say one (expires counts from the fire's scheduled instant, "
                "as for any job; options.expires from the emission)",
                at_key=True,
            )
        )
    if celery is None:
        problems.append(
            source.problem(
                (*base, "celery"),
                "a celery job needs the top-level celery section: celery: {broker_url: ${CELERY_BROKER_URL}}",
            )
        )
    return problems


def prepare_celery_job(merged: dict[str, Any], celery: CelerySettings | None) -> None:
    """Make ``merged`` (a celery job's keys, defaults applied) ready to validate: drop the inherited keys a
    celery job does not use (its own were reported) and an inherited ``expires`` when ``options.expires`` is
    set, and fill ``options.queue`` from ``celery.default_queue``."""
    for key in UNHONOURED:
        merged.pop(key, None)
    options = merged.get("options")
    if options is None:
        options = {}
    if isinstance(options, dict) and options.get("expires") is not None:
        merged.pop("expires", None)  # an inherited expires gives way to the job's own options.expires
    if isinstance(options, dict) and celery is not None and options.get("queue") is None:
        merged["options"] = {**options, "queue": celery.default_queue}


def broker_problems(settings: ConfigFile, main: Located) -> list[Problem]:
    """Problems of the ``celery`` section: a broker URL that is neither Redis nor AMQP, an AMQP broker without
    kombu installed. A broker on another server is no problem: the leader's relay publishes to it."""
    if settings.celery is None:
        return []
    where = ("celery", "broker_url")
    broker_url = settings.celery.broker_url
    if broker_url.split(":", 1)[0] in SENTINEL_SCHEMES:
        return [main.problem(where, f"{display_url(broker_url)}: a Celery broker behind Redis Sentinel is not "
                                    "supported: beatd would push to a master it cannot prove is the one the Celery "
                                    "workers follow after a failover; use a broker at a fixed address (redis://, "
                                    "rediss://, unix://) or RabbitMQ (amqp://)")]  # fmt: skip
    if settings.redis.sentinel is not None:
        return [main.problem(where, "a Celery broker with redis.sentinel is not supported: beatd's master moves "
                                    "on a failover and the broker's may not (or not with it), so neither the fenced "
                                    "push nor the relay can be proven to reach the Celery workers' broker; use "
                                    "redis.url at a fixed address for a Celery deployment")]  # fmt: skip
    if settings.celery.amqp:
        if not _kombu_installed():
            return [main.problem(where, f"{display_url(broker_url)} is AMQP: the relay publishes with kombu, "
                                        "which is not installed (pip install 'beatd[celery]')")]  # fmt: skip
        return []
    try:
        redis_location(broker_url)
    except ValueError as error:
        return [main.problem(where, f"{error}, or amqp:// (RabbitMQ)")]
    try:
        own = redis_location(settings.redis.url)
    except ValueError as error:
        return [main.problem(("redis", "url"), str(error))]
    if settings.redis.cluster and _cluster_node(redis_location(broker_url), own, settings.redis.cluster_nodes):
        return [main.problem(where, f"{display_url(broker_url)} is a node of beatd's Redis Cluster: a Celery "
                                    "worker (kombu) cannot use a Redis Cluster as its broker; give Celery another "
                                    "Redis server or RabbitMQ (amqp://), which the leader's relay publishes to "
                                    "from the outbox")]  # fmt: skip
    return []  # the beat compares run ids at start: its own server gets the fenced push, another the relay


def _cluster_node(broker: RedisLocation, seed: RedisLocation, nodes: tuple[str, ...]) -> bool:
    """Whether ``broker`` is written as the cluster's seed (``redis.url``) or one of ``redis.cluster_nodes``
    (another node of the cluster is found by the beat at start: :mod:`beatd.celery_broker`)."""
    addresses = [(seed.host, seed.port)] + [
        (location.host, location.port) for location in (redis_location(f"redis://{node}") for node in nodes)
    ]
    return bool(broker.host) and (broker.host, broker.port) in addresses


def _kombu_installed() -> bool:
    """Whether kombu can be imported, without importing it (a module already imported counts: Celery's lazy
    modules leave ``kombu.__spec__`` None, which find_spec refuses)."""
    if "kombu" in sys.modules:
        return True
    return importlib.util.find_spec("kombu") is not None
