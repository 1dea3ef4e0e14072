"""``beatd beat``: run a beat replica until SIGTERM/SIGINT; SIGHUP reloads the config."""

from __future__ import annotations

import logging

import click

from beatd import defaults
from beatd.alerting import Alerting, AlertThread, Current
from beatd.audit import audit_record
from beatd.beat import Beat
from beatd.celery_broker import BrokerProbe, probe_broker
from beatd.celery_publish import publisher_for
from beatd.celery_relay import Relay, RelayThread
from beatd.cli.options import config_option, log_options, metrics_options
from beatd.cli.runtime import Runtime
from beatd.config import Config
from beatd.daemon import Notifier, Signals, keep_out_of_collections, run_loop
from beatd.identity import Identity
from beatd.keys import Keys, celery_queue
from beatd.messages import format_utc
from beatd.metrics import Health, Metrics, serve
from beatd.runtime_follow import RuntimeFollower
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
    """Run a beat replica: elect a leader, emit every due fire exactly once."""
    path, config = runtime.start_daemon(config_path, log_level, log_format)
    clock = runtime.clock
    store = Store(connect(config.settings.redis), Keys(config.namespace))
    replica = Identity.here(clock.now())
    key = config.settings.security.signing_key
    follower = RuntimeFollower(JobStore(store.client, store.keys), config, clock, f"beat {replica.id}", store.audit)
    try:
        follower.poll_all()  # before leading: a first read of many runtime jobs does not hold up the lease
    except StoreError as error:
        log.warning("runtime jobs not read yet: %s", error)
    keep_out_of_collections()  # the runtime jobs too, like the config's
    metrics, health = Metrics(len(config.jobs) + len(follower.jobs)), Health()
    daemon = Beat(config, store, replica, Signer.optional(key), metrics, health, clock, follower)
    if metrics_port is not None:
        serve(metrics_port, metrics, health, metrics_host)
    signals = Signals()
    signals.install()
    notifier = Notifier(runtime.environ)
    alert_settings = [config.settings.alerts]

    def reload() -> None:
        fresh, problems = runtime.reload(path, metrics)
        if fresh is None:
            daemon.report_config_error(f"{len(problems)} problem(s): {problems[0]}")
            _audit(store, audit_record("reload-failed", daemon.now(clock.now(), clock.monotonic()), problems=problems))
            return
        done = daemon.apply_config(fresh, clock.now(), clock.monotonic())
        alert_settings[0] = fresh.settings.alerts
        if any(name == "celery" or name.startswith("celery.") for name in done.settings.applied):
            probe(fresh)  # the applied names are dotted leaves (celery.broker_url), or celery when added
        keep_out_of_collections(replacing=True)
        daemon.report_config_error(None)
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

    relay: list[RelayThread] = []

    def probe(current: Config) -> None:
        previous = relay.pop() if relay else None
        if previous is not None:
            previous.stop()  # bounded; the successor waits for it in its own thread
        decide(current)
        celery = current.settings.celery
        if celery is not None:
            # Always, even when this replica pushes directly: another replica or `beatd trigger` (another
            # network view, an earlier broker) may have written the outbox, and only a relay empties it.
            relaying = Relay(OutboxStore(store.client, store.keys), publisher_for(celery), metrics, celery.outbox_limit)
            after = previous if previous is not None and previous.alive() else None
            relay.append(RelayThread(relaying, leader_token, after=after).start())

    def decide(current: Config) -> None:
        """Where celery fires go; probed again before the next emission while beatd's Redis did not answer."""
        found = _probe_celery_broker(store, current)
        daemon.celery_outbox = None if found.unknown else found.outbox is not None
        daemon.celery_reprobe = (lambda: decide(current)) if found.unknown else None
        if found.outbox is not None and not found.unknown:
            log.info("celery broker: %s: task messages go through the outbox and the leader's relay", found.outbox)

    def leader_token() -> str | None:
        return daemon.leadership.token if daemon.leadership.is_leader(clock.monotonic()) else None

    def status() -> str:
        role = "leader" if daemon.leadership.is_leader(clock.monotonic()) else "standby"
        upcoming = daemon.next_fire()
        text = f"{role}, {len(daemon.jobs)} jobs"
        if upcoming is not None:
            text += f", next fire {format_utc(upcoming)}"
        if daemon.config_error:
            text += ", config reload failed"
        return text

    log.info("beat %s starting with %s (%d jobs, digest %s)", replica.id, path, len(daemon.jobs), config.digest)
    probe(config)
    alerting = Alerting(AlertStore(store.client, store.keys), store.upkeep, metrics)
    alerts = AlertThread(
        alerting, leader_token, lambda: Current(daemon.specs, alert_settings[0]), clock.monotonic
    ).start()
    try:
        run_loop(
            lambda: daemon.tick(clock.now(), clock.monotonic()),
            signals=signals,
            notifier=notifier,
            clock=clock,
            reload=reload,
            status=status,
            metrics=metrics,
        )
    finally:
        alerts.stop()  # before the lease is released: the attempt being made is recorded under it
        for running in relay:  # before the lease is released: the relay deletes what the broker confirmed
            running.stop(timeout=defaults.RELAY_SHUTDOWN_WAIT.total_seconds())
        daemon.shutdown()
        notifier.close()
        log.info("beat %s stopped", replica.id)


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
            for spec in config.jobs.values()
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
