"""``status``: the deployment at a glance (leader, replicas, jobs, queues, backlog, warnings), as one report."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from beatd import defaults
from beatd.client.waiting import is_live
from beatd.config import Config
from beatd.errors import Problem
from beatd.messages import format_utc, from_ms, parse_utc
from beatd.store import RunStore, Store
from beatd.upkeep import backlog_warnings

if TYPE_CHECKING:
    from beatd.client.sync import Client

__all__ = ["status_report"]


def status_report(client: Client, config: Config, local_problems: list[Problem], now: datetime) -> dict[str, Any]:
    """The report ``beatd status --json`` prints: ``config``'s jobs, YAML and runtime, each with its ``source``
    (with ``local_problems``, the jobs the beat keeps progress of instead, source unknown), replica heartbeat
    ages at ``now`` (this host's clock), worker liveness and waits by Redis's clock."""
    complete = not local_problems
    store = client.store
    leader = store.leader()
    replicas = store.replicas()  # stale ones are deleted by the leader's upkeep, never by a read command
    paused = store.paused()
    progress = store.progress()
    last = store.last_emitted()
    workers = RunStore(store.client, store.keys).workers()
    listed = client.jobs.sourced() if complete else [(spec, "yaml") for spec in config.jobs.values()]
    queues = sorted(
        {spec.queue for spec, _ in listed if spec.celery is None}  # a celery job's queue is Celery's
        | {queue for beat in workers.values() for queue in beat["queues"]}
    )
    report: dict[str, Any] = {
        "namespace": config.namespace,
        "config_digest": config.digest if complete else None,
        "leader": None,
        "replicas": [],
        "jobs": [],
        "paused": paused,
        "queues": store.queue_lengths(queues),
        "backlog": {},
        "warnings": [],
        "local_config_problems": [str(problem) for problem in local_problems],
    }
    if leader is not None:
        token, ttl_ms = leader
        holder = next((beat for beat in replicas.values() if token.endswith(":" + beat["replica"])), {})
        report["leader"] = {
            "token": token,
            "host": holder.get("host"),
            "pid": holder.get("pid"),
            "lease_left_s": round(ttl_ms / 1000, 3),
        }
    _backlog(report, store, workers, queues, store.redis_now())  # liveness and waits by Redis's clock
    for _, beat in sorted(replicas.items()):
        age = (now - parse_utc(beat["heartbeat_at"])).total_seconds()
        report["replicas"].append(
            {
                **beat,
                "heartbeat_age_s": round(age, 3),
                "alive": age <= defaults.REPLICA_STALE_AFTER.total_seconds(),
                "config_differs": complete and beat.get("config_digest") != config.digest,
            }
        )
    for spec, source in listed:
        name = spec.name
        since = from_ms(progress[name]) if name in progress else now
        upcoming = spec.trigger().next_after(max(since, now - timedelta(days=366))) if spec.enabled else None
        report["jobs"].append(
            {
                "name": name,
                "enabled": spec.enabled,
                "paused": name in paused,
                "next_fire": format_utc(upcoming) if upcoming else None,
                "last_emission": last.get(name),
                "config_digest": spec.digest,
                "source": source,
            }
        )
    if not complete:  # the jobs the deployment knows of: those the beat keeps progress of, emitted or paused
        for name in sorted(set(progress) | set(last) | set(paused)):
            emitted = last.get(name)
            report["jobs"].append(
                {
                    "name": name,
                    "enabled": None,
                    "paused": name in paused,
                    "next_fire": None,
                    "last_emission": emitted,
                    "config_digest": (emitted or {}).get("config_digest"),
                    "source": None,
                }
            )
    return report


def _backlog(
    report: dict[str, Any], store: Store, workers: dict[str, dict[str, Any]], queues: list[str], now: datetime
) -> None:
    """Fires waiting in each queue, and warnings for queues nobody consumes or that fall behind."""
    consumers = Counter(
        queue for worker in workers.values() if is_live(worker, now) for queue in worker.get("queues", ())
    )
    backlogs = store.upkeep.backlogs(queues)
    report["backlog"] = {
        queue: {"waiting": backlog.waiting, "oldest_age_s": round(backlog.oldest_age(now), 3)}
        for queue, backlog in backlogs.items()
    }
    report["warnings"] = backlog_warnings(backlogs, consumers, now, defaults.BACKLOG_WARN_AFTER)
