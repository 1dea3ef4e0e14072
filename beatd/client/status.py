"""``status``: the deployment at a glance (leader, replicas, jobs, queues, backlog, warnings), as one report."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from beatd import defaults
from beatd.client.waiting import is_live
from beatd.config import Config
from beatd.config.redis_urls import display_url
from beatd.durations import format_duration
from beatd.errors import Problem
from beatd.messages import format_utc, from_ms, parse_utc, to_ms
from beatd.store import RunStore, Store
from beatd.store.outbox import OutboxStore, OutboxSummary
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
        "celery": None,
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
    redis_now = store.redis_now()  # liveness and waits by Redis's clock
    _backlog(report, store, workers, queues, redis_now)
    _celery(report, config, OutboxStore(store.client, store.keys).summary(), redis_now, store.keys.celery_outbox_dead)
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


def _celery(report: dict[str, Any], config: Config, outbox: OutboxSummary, now: datetime, dead_key: str) -> None:
    """The Celery outbox (task messages for a broker on another server, waiting for the leader's relay) and its
    dead stream (entries the broker kept refusing), with warnings; shown when the config has a ``celery:``
    section or either stream holds entries (a broken or changed config)."""
    celery = config.settings.celery
    if celery is None and outbox.depth == 0 and outbox.dead == 0:
        return
    now_ms = to_ms(now)
    limit = celery.outbox_limit if celery is not None else None
    oldest_age = round(max(now_ms - outbox.oldest_ms, 0) / 1000, 3) if outbox.oldest_ms is not None else None
    report["celery"] = {
        "broker": display_url(celery.broker_url) if celery is not None else None,
        "outbox": {"depth": outbox.depth, "limit": limit, "oldest_age_s": oldest_age},
        "dead": {
            "count": outbox.dead,
            "newest": [
                {
                    "entry_id": entry.entry_id,
                    "reason": entry.reason,
                    "queue": entry.queue,
                    "task_id": entry.task_id,
                    "fire_id": entry.fire_id,
                    "moved_at": format_utc(from_ms(entry.moved_at_ms)),
                }
                for entry in outbox.newest_dead
            ],
        },
    }
    warn_after = defaults.CELERY_OUTBOX_WARN_AFTER.total_seconds()
    if oldest_age is not None and oldest_age > warn_after:
        report["warnings"].append(
            f"Celery outbox: {outbox.depth} task messages waiting, the oldest for "
            f"{format_duration(timedelta(seconds=round(oldest_age)))}: the broker is down or refusing, or no leader "
            "relays (see the leader's log)"
        )
    if limit is not None and outbox.depth * 2 >= limit:
        report["warnings"].append(
            f"Celery outbox: {outbox.depth} of at most {limit} task messages (celery.outbox_limit); past the bound "
            "celery fires are refused (retried, never dropped)"
        )
    if outbox.dead:
        report["warnings"].append(
            f"Celery outbox: {outbox.dead} task messages the broker kept refusing were moved to "
            f"{dead_key} (never published; `beatd status --json` lists the newest)"
        )
