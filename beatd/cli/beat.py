"""``beatd beat``: run a beat replica until SIGTERM/SIGINT; SIGHUP reloads the config."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import click

from beatd import defaults
from beatd.alerting import Alerting, AlertThread, Current
from beatd.audit import audit_record
from beatd.beat import Beat, LaunchFreezer
from beatd.celery_broker import BrokerProbe, probe_broker
from beatd.celery_publish import publisher_for
from beatd.celery_relay import Relay, RelayThread
from beatd.cli.options import config_option, log_options, metrics_options
from beatd.cli.runtime import Runtime
from beatd.collector import keep_out_of_collections
from beatd.config import Config
from beatd.config.alerts import AlertSettings
from beatd.daemon import Notifier, Signals, run_loop
from beatd.errors import ConfigError
from beatd.identity import Identity
from beatd.keys import celery_queue
from beatd.layout import LayoutWatch, check_layout
from beatd.messages import format_utc
from beatd.metrics import Health, Metrics, serve
from beatd.runtime_follow import RuntimeFollower
from beatd.shard_beat import ShardedBeat, shard_views
from beatd.signing import Signer
from beatd.store import Store, StoreError, connect
from beatd.store.alerts import AlertStore
from beatd.store.jobs import JobStore
from beatd.store.outbox import OutboxStore

__all__ = ["beat"]

log = logging.getLogger("beatd.beat")


@click.command()
@config_option
@log_options
@metrics_options
@click.pass_obj
def beat(
    runtime: Runtime,
    config_path: str | None,
    log_level: str,
    log_format: str,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run a beat replica: elect a leader, emit every due fire exactly once (with ``shards: N``, lead a fair
    share of the shards, each under its own lease)."""
    path, config = runtime.start_daemon(config_path, log_level, log_format)
    clock = runtime.clock
    client = connect(config.settings.redis)
    # A mismatch raises ConfigError: exit 2, nothing led. Read again while the beat runs (LayoutWatch).
    layout = LayoutWatch(
        client,
        config,
        clock.monotonic,
        defaults.REPLICA_STALE_AFTER.total_seconds(),
        checked=_check_layout(client, config),
    )
    replica = Identity.here(clock.now())
    key = config.settings.security.signing_key
    sharded = config.shards > 1
    views = shard_views(config) if sharded else [config]
    stores = [Store(client, keys) for keys in config.shard_keys()]
    store = stores[0]
    followers = [
        RuntimeFollower(JobStore(each.client, each.keys), view, clock, f"beat {replica.id}", each.audit)
        for each, view in zip(stores, views, strict=True)
    ]
    try:  # read by the loop, page by page, before it contends for the lease
        stored = sum(follower.store.count() for follower in followers)
    except StoreError as error:
        log.warning("runtime jobs not counted yet: %s", error)
        stored = 0
    metrics, health = Metrics(len(config.jobs) + stored), Health()
    signer = Signer.optional(key)
    beats = [
        Beat(view, each, replica, signer, metrics, health, clock, follower, shard=shard if sharded else None)
        for shard, (view, each, follower) in enumerate(zip(views, stores, followers, strict=True))
    ]
    daemon = beats[0]
    shards = ShardedBeat(beats, metrics, health) if sharded else None
    if metrics_port is not None:
        serve(metrics_port, metrics, health, metrics_host)
    signals = Signals()
    signals.install()
    notifier = Notifier(runtime.environ)
    alert_settings = [config.settings.alerts]
    refused: list[ConfigError] = []

    def reload() -> None:
        fresh, problems = runtime.reload(path, metrics)
        if fresh is not None and fresh.shards != daemon_config().shards:
            problems = [f"shards: {daemon_config().shards} -> {fresh.shards}: a reload cannot change the shard count "
                        "(move the jobs' keys, then restart: docs/sharding.md section 9)"]  # fmt: skip
            log.error("reload refused: %s", problems[0])
            fresh = None
        if fresh is None:
            error = f"{len(problems)} problem(s): {problems[0]}"
            (shards or daemon).report_config_error(error)
            _audit(store, audit_record("reload-failed", daemon.now(clock.now(), clock.monotonic()), problems=problems))
            return
        done = (shards or daemon).apply_config(fresh, clock.now(), clock.monotonic())
        alert_settings[0] = fresh.settings.alerts
        if any(name == "celery" or name.startswith("celery.") for name in done.settings.applied):
            probe(fresh)  # the applied names are dotted leaves (celery.broker_url), or celery when added
        keep_out_of_collections(replacing=True)
        (shards or daemon).report_config_error(None)
        settings = done.settings
        for line in done.jobs:
            log.info("reload: %s", line)
        for name in settings.applied:
            log.info("reload: %s changed, applied", name)
        for name in settings.ignored:
            log.info("reload: %s changed, not used by the beat", name)
        if settings.needs_restart:
            log.warning("reload: %s changed: needs a restart to take effect", ", ".join(settings.needs_restart))
        log.info("reloaded %s: %d change(s), digest %s", path, len(done.jobs) + len(settings.applied), fresh.digest)
        record = audit_record(
            "reload",
            daemon.now(clock.now(), clock.monotonic()),
            changes=done.jobs,
            settings_applied=settings.applied,
            needs_restart=settings.needs_restart,
            config_digest=fresh.digest,
        )
        _audit(store, record)

    def daemon_config() -> Config:
        return daemon.config

    relays: dict[int, RelayThread] = {}

    def probe(current: Config) -> None:
        previous = dict(relays)
        relays.clear()
        for running in previous.values():
            running.stop()  # bounded; the successor waits for it in its own thread
        decide(current)
        celery = current.settings.celery
        if celery is not None:
            # Always, even when this replica pushes directly: another replica or `beatd trigger` (another
            # network view, an earlier broker) may have written the outbox, and only a relay empties it. One
            # relay per shard, each under its shard's lease (the outbox is a shard's key).
            for shard, beat in enumerate(beats):
                outbox = OutboxStore(beat.store.client, beat.store.keys)
                relaying = Relay(outbox, publisher_for(celery), metrics, celery.outbox_limit)
                before = previous.get(shard)
                after = before if before is not None and before.alive() else None
                relays[shard] = RelayThread(relaying, leader_token(beat), after=after).start()

    def hold_relay(shard: int, token: str) -> contextlib.AbstractContextManager[None]:
        running = relays.get(shard)  # looked up at the hand-over: a reload replaces the relays
        return running.paused(token) if running is not None else contextlib.nullcontext()

    if sharded:  # a shard handed over: its relay deletes what the broker confirmed before the lease goes
        for shard, beat in enumerate(beats):
            beat.handing_over.append(partial(hold_relay, shard))

    def decide(current: Config) -> None:
        """Where celery fires go; probed again before the next emission while beatd's Redis did not answer."""
        found = _probe_celery_broker(store, current)
        for beat in beats:
            beat.celery_outbox = None if found.unknown else found.outbox is not None
            beat.celery_reprobe = (lambda: decide(current)) if found.unknown else None
        if found.outbox is not None and not found.unknown:
            log.info("celery broker: %s: task messages go through the outbox and the leader's relay", found.outbox)

    def leader_token(beat: Beat) -> Callable[[], str | None]:
        def token() -> str | None:
            return beat.leadership.token if beat.leadership.is_leader(clock.monotonic()) else None

        return token

    def status() -> str:
        if shards is not None:
            return shards.status(clock.monotonic())
        role = "leader" if daemon.leadership.is_leader(clock.monotonic()) else "standby"
        upcoming = daemon.next_fire()
        text = f"{role}, {len(daemon.jobs)} jobs"
        if upcoming is not None:
            text += f", next fire {format_utc(upcoming)}"
        if daemon.config_error:
            text += ", config reload failed"
        return text

    freezers = [LaunchFreezer(beat) for beat in beats]

    def step() -> float:
        try:
            holds = layout.holds()
        except ConfigError as error:  # resharded while this beat was stalled or cut off: it must not lead
            refused.append(error)
            signals.stop = True
            return 0.0
        if not holds:  # alive (/healthz), not ready: nothing is led before the layout is checked
            health.step(redis_ok=False, role="standby")
            return 1.0
        wait = (
            shards.tick(clock.now(), clock.monotonic())
            if shards is not None
            else daemon.tick(clock.now(), clock.monotonic())
        )
        for freezer in freezers:
            freezer.after_tick(clock.monotonic())
        return wait

    jobs = sum(len(beat.jobs) for beat in beats)
    shards_text = f", {config.shards} shards" if sharded else ""
    log.info("beat %s starting with %s (%d jobs%s, digest %s)", replica.id, path, jobs, shards_text, config.digest)
    probe(config)
    alerts = [
        AlertThread(
            Alerting(AlertStore(beat.store.client, beat.store.keys), beat.store.upkeep, metrics),
            leader_token(beat),
            partial(_current, beat, alert_settings),
            clock.monotonic,
        ).start()
        for beat in beats
    ]
    try:
        run_loop(
            step,
            signals=signals,
            notifier=notifier,
            clock=clock,
            reload=reload,
            status=status,
            metrics=metrics,
        )
    finally:
        for thread in alerts:  # before the lease is released: the attempt being made is recorded under it
            thread.stop()
        for running in relays.values():  # before the lease is released: the relay deletes what the broker confirmed
            running.stop(timeout=defaults.RELAY_SHUTDOWN_WAIT.total_seconds())
        (shards or daemon).shutdown()
        notifier.close()
        log.info("beat %s stopped", replica.id)
    if refused:
        raise refused[0]


def _current(beat: Beat, alert_settings: list[AlertSettings | None]) -> Current:
    """What a shard's alerting works from: its beat's jobs and the alert settings of the config now."""
    return Current(beat.specs, alert_settings[0])


def _check_layout(client: Any, config: Config) -> bool:
    """Check the deployment's layout against ``config`` (:func:`beatd.layout.check_layout`); False when Redis
    did not answer (checked again before the loop leads anything). Raises ConfigError on a mismatch."""
    try:
        check_layout(client, config)
    except StoreError as error:
        log.warning("the deployment's layout is not checked yet (checked before anything is led): %s", error)
        return False
    return True


def _audit(store: Store, record: dict[str, object]) -> None:
    try:
        store.audit(record)
    except StoreError as error:
        log.warning("audit record not written: %s", error)


def _probe_celery_broker(store: Store, config: Config) -> BrokerProbe:
    """Probe the Celery broker whenever the config has a celery section (:mod:`beatd.celery_broker`), log what it
    found; return it (``outbox`` None: the fenced script pushes into beatd's own server). Probed even when no
    YAML job is a celery job: a runtime job, or one a reload adds, must not be pushed into beatd's own server for
    a broker elsewhere. The YAML celery jobs' queues get the ACL check."""
    celery = config.settings.celery
    queue_keys = sorted(
        {
            celery_queue(spec.options.queue, spec.options.priority)
            for spec in config.compact.values()
            if spec.celery is not None and spec.options is not None and spec.options.queue is not None
        }
    )
    if celery is None:
        return BrokerProbe()
    found = probe_broker(store.client, store.db, celery, queue_keys)
    for note in found.notes:
        log.warning("celery broker: %s", note)
    for error in found.errors:
        log.error("celery broker: %s", error)
    return found
