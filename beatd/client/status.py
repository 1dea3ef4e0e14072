"""``status``: the deployment at a glance (leader, replicas, jobs, queues, backlog, warnings), as one report."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from beatd import defaults
from beatd.client.waiting import is_live
from beatd.config import Config
from beatd.config.redis_urls import display_url
from beatd.durations import format_duration
from beatd.errors import Problem
from beatd.leader import holder_of
from beatd.messages import format_utc, from_ms, parse_utc, to_ms
from beatd.sharding import shard_of
from beatd.store import RunStore, Store
from beatd.store.beat import read_leases
from beatd.store.outbox import DeadOutboxEntry, OutboxStore, OutboxSummary
from beatd.store.upkeep import Backlog
from beatd.upkeep import backlog_warnings

if TYPE_CHECKING:
    from beatd.client.sync import Client

__all__ = ["shard_leaders", "status_report", "unled_warnings"]

DEAD_SHOWN = 10
"""The newest dead Celery outbox entries the report lists (over every shard)."""


def status_report(client: Client, config: Config, local_problems: list[Problem], now: datetime) -> dict[str, Any]:
    """The report ``beatd status --json`` prints: ``config``'s jobs, YAML and runtime, each with its ``source``
    (with ``local_problems``, the jobs the beat keeps progress of instead, source unknown), replica heartbeat
    ages at ``now`` (this host's clock), worker liveness and waits by Redis's clock."""
    complete = not local_problems
    store = client.store
    leader = store.leader()
    replicas = store.replicas()  # stale ones are deleted by the leader's upkeep, never by a read command
    shard_stores = [store] if config.shards == 1 else [Store(store.client, keys) for keys in config.shard_keys()]
    paused: dict[str, dict[str, Any]] = {}
    progress: dict[str, int] = {}
    last: dict[str, dict[str, Any]] = {}
    for each in shard_stores:  # a job's progress, pause and last emission live in its shard
        paused.update(each.paused())
        progress.update(each.progress())
        last.update(each.last_emitted())
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
        "queues": _queue_lengths(shard_stores, queues),
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
    if config.shards > 1:
        report["shards"] = shard_leaders(store.client, config, replicas, [spec.name for spec, _ in listed])
        report["warnings"] += unled_warnings(report["shards"])
    redis_now = store.redis_now()  # liveness and waits by Redis's clock
    _backlog(report, shard_stores, workers, queues, redis_now)
    outboxes = [OutboxStore(each.client, each.keys).summary(DEAD_SHOWN) for each in shard_stores]
    _celery(report, config, outboxes, redis_now, [each.keys.celery_outbox_dead for each in shard_stores])
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


def _queue_lengths(stores: list[Store], queues: list[str]) -> dict[str, int]:
    """Entries in each queue, summed over the shards (each shard has its own stream of every queue)."""
    lengths = stores[0].queue_lengths(queues)
    for store in stores[1:]:
        for queue, length in store.queue_lengths(queues).items():
            lengths[queue] += length
    return lengths


def shard_leaders(
    client: Any, config: Config, replicas: Mapping[str, dict[str, Any]], jobs: Sequence[str]
) -> list[dict[str, Any]]:
    """Who leads each shard of ``config`` (``shards: N``), shard 0 first, read in one pipeline: the holder's
    replica id (``leader``; None when nobody leads the shard, so its jobs are not emitted), its fencing token,
    host and pid (from its heartbeat in ``replicas``), the lease left in seconds and how many of ``jobs`` are
    in the shard. Shared by ``beatd status`` and the web overview."""
    counts = Counter(shard_of(name, config.shards) for name in jobs)
    rows = []
    for shard, lease in enumerate(read_leases(client, [keys.leader for keys in config.shard_keys()])):
        replica = holder_of(lease[0]) if lease is not None else None
        holder = replicas.get(replica, {}) if replica is not None else {}
        rows.append(
            {
                "shard": shard,
                "leader": replica,
                "token": lease[0] if lease is not None else None,
                "host": holder.get("host"),
                "pid": holder.get("pid"),
                "lease_left_s": round(lease[1] / 1000, 3) if lease is not None else None,
                "jobs": counts.get(shard, 0),
            }
        )
    return rows


def unled_warnings(shards: Sequence[Mapping[str, Any]]) -> list[str]:
    """One warning per shard of :func:`shard_leaders` that nobody leads (its jobs are not emitted)."""
    return [
        f"shard {row['shard']}: no leader (its {row['jobs']} jobs are not emitted)"
        for row in shards
        if row["leader"] is None
    ]


def _backlog(
    report: dict[str, Any], stores: list[Store], workers: dict[str, dict[str, Any]], queues: list[str], now: datetime
) -> None:
    """Fires waiting in each queue (over every shard), and warnings for queues nobody consumes or that fall
    behind."""
    consumers = Counter(
        queue for worker in workers.values() if is_live(worker, now) for queue in worker.get("queues", ())
    )
    backlogs = stores[0].upkeep.backlogs(queues)
    for store in stores[1:]:
        for queue, backlog in store.upkeep.backlogs(queues).items():
            known = backlogs[queue]
            oldest = min((found for found in (known.oldest_id, backlog.oldest_id) if found), key=_entry_ms, default="")
            backlogs[queue] = Backlog(known.waiting + backlog.waiting, oldest)
    report["backlog"] = {
        queue: {"waiting": backlog.waiting, "oldest_age_s": round(backlog.oldest_age(now), 3)}
        for queue, backlog in backlogs.items()
    }
    report["warnings"] += backlog_warnings(backlogs, consumers, now, defaults.BACKLOG_WARN_AFTER)


def _celery(
    report: dict[str, Any], config: Config, outboxes: list[OutboxSummary], now: datetime, dead_keys: list[str]
) -> None:
    """The Celery outbox of every shard (task messages for a broker on another server, waiting for the shard
    leader's relay) and its dead stream (entries the broker kept refusing), merged (depth and dead summed, the
    oldest entry of them all, the newest dead entries), with warnings; shown when the config has a ``celery:``
    section or any stream holds entries (a broken or changed config). ``outboxes``, ``dead_keys``: by shard."""
    celery = config.settings.celery
    outbox, shards = _merged_outbox(outboxes)
    if celery is None and outbox.depth == 0 and outbox.dead == 0:
        return
    limit = celery.outbox_limit if celery is not None else None
    oldest_age = _age_s(outbox.oldest_ms, now)
    sharded = len(outboxes) > 1
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
                    **({"shard": shard} if sharded else {}),
                }
                for shard, entry in zip(shards, outbox.newest_dead, strict=True)
            ],
        },
    }
    if sharded:  # the bound is each shard's (its fenced script refuses past it), so is the detail
        report["celery"]["outbox"]["shards"] = [
            {"shard": shard, "depth": part.depth, "oldest_age_s": _age_s(part.oldest_ms, now), "dead": part.dead}
            for shard, part in enumerate(outboxes)
        ]
    warn_after = defaults.CELERY_OUTBOX_WARN_AFTER.total_seconds()
    if oldest_age is not None and oldest_age > warn_after:
        report["warnings"].append(
            f"Celery outbox: {outbox.depth} task messages waiting, the oldest for "
            f"{format_duration(timedelta(seconds=round(oldest_age)))}: the broker is down or refusing, or no leader "
            "relays (see the leader's log)"
        )
    for shard, part in enumerate(outboxes):
        if limit is not None and part.depth * 2 >= limit:
            report["warnings"].append(
                f"Celery outbox{f' of shard {shard}' if sharded else ''}: {part.depth} of at most {limit} task "
                "messages (celery.outbox_limit); past the bound celery fires are refused (retried, never dropped)"
            )
    if outbox.dead:
        holding = ", ".join(key for key, part in zip(dead_keys, outboxes, strict=True) if part.dead)
        report["warnings"].append(
            f"Celery outbox: {outbox.dead} task messages the broker kept refusing were moved to "
            f"{holding} (never published; `beatd status --json` lists the newest)"
        )


def _merged_outbox(outboxes: list[OutboxSummary]) -> tuple[OutboxSummary, list[int]]:
    """The outboxes of every shard as one: depths and dead counts summed, the oldest entry of them all, the
    newest ``DEAD_SHOWN`` dead entries of them all; and the shard of each of those."""
    if len(outboxes) == 1:
        return outboxes[0], [0] * len(outboxes[0].newest_dead)
    dead: list[tuple[int, DeadOutboxEntry]] = [
        (shard, entry) for shard, part in enumerate(outboxes) for entry in part.newest_dead
    ]
    dead.sort(key=lambda pair: (pair[1].moved_at_ms, pair[0]), reverse=True)
    newest = dead[:DEAD_SHOWN]
    oldest = min((part.oldest_ms for part in outboxes if part.oldest_ms is not None), default=None)
    merged = OutboxSummary(
        sum(part.depth for part in outboxes), oldest, sum(part.dead for part in outboxes),
        tuple(entry for _, entry in newest),
    )  # fmt: skip
    return merged, [shard for shard, _ in newest]


def _age_s(written_ms: int | None, now: datetime) -> float | None:
    """Seconds since ``written_ms`` (epoch ms, Redis's clock) by ``now``; None for no entry."""
    return round(max(to_ms(now) - written_ms, 0) / 1000, 3) if written_ms is not None else None


def _entry_ms(entry_id: str) -> int:
    return int(entry_id.split("-")[0])
