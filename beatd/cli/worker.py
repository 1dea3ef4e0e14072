"""``beatd worker``: run jobs from the queue streams until SIGTERM; SIGHUP reloads the config."""

from __future__ import annotations

import logging
import os
from collections import ChainMap
from collections.abc import MutableMapping
from typing import NoReturn, cast, get_args

import click

from beatd import defaults
from beatd.alerting import Alerting, AlertThread, Current
from beatd.audit import audit_record
from beatd.cli.options import config_option, log_options, metrics_options
from beatd.cli.runtime import Runtime, UsageProblem
from beatd.collector import keep_out_of_collections
from beatd.config import Isolation
from beatd.config.compact import JobView
from beatd.daemon import Backoff, Notifier, Signals, run_loop
from beatd.errors import ConfigError
from beatd.identity import Identity
from beatd.layout import LayoutWatch, check_layout
from beatd.metrics import Health, Metrics, serve
from beatd.runtime_follow import follow_runtime_jobs
from beatd.signing import Signer
from beatd.store import RunStore, StoreError, connect
from beatd.store.alerts import AlertStore
from beatd.store.upkeep import UpkeepStore
from beatd.worker import Worker, needs_restart
from beatd.worker.output import install
from beatd.worker.registry import Setup
from beatd.worker.target_check import CheckError, CheckStopped, TargetGate

__all__ = ["worker"]

log = logging.getLogger("beatd.worker")


@click.command()
@config_option
@click.option("--queues", metavar="A,B", help="Queues to consume (default: every queue of the config's jobs).")
@click.option("--concurrency", type=click.IntRange(1, 256), help="Runs at once (default: worker.concurrency).")
@click.option("--prefetch", type=click.IntRange(1, 100), help="Fires claimed per runner (default: worker.prefetch).")
@click.option("--grace", type=click.FloatRange(0), help="Seconds running jobs may finish after SIGTERM.")
@click.option("--isolation", type=click.Choice(get_args(Isolation)), help="How callables run (default: process).")
@click.option(
    "--allow-missing",
    is_flag=True,
    help="Serve even jobs whose call target cannot be imported (warned once per job; their runs fail).",
)
@log_options
@metrics_options
@click.pass_obj
def worker(
    runtime: Runtime,
    config_path: str | None,
    queues: str | None,
    concurrency: int | None,
    prefetch: int | None,
    grace: float | None,
    isolation: Isolation | None,
    allow_missing: bool,
    log_level: str,
    log_format: str,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run jobs from the queue streams: only jobs declared in this worker's config. Every call target of the
    jobs on its queues must import, at start and on each reload (exit 2 naming each one that does not)."""
    signals = Signals()  # first, so a Ctrl-C while starting stops cleanly too
    signals.install()
    path, config = runtime.start_daemon(config_path, log_level, log_format)
    settings = config.settings.worker
    names = [name.strip() for name in queues.split(",") if name.strip()] if queues else None
    if queues is not None and not names:
        raise UsageProblem("--queues: expected a comma-separated list of queue names")
    mode = isolation or settings.isolation
    if mode == "thread":
        # Before the check imports job modules: a handler one adds at import (a StreamHandler holds sys.stderr)
        # then writes into its runs' output, and only the worker's own handlers keep out of it.
        install()
    clock = runtime.clock
    notifier = Notifier(runtime.environ)
    metrics, health = Metrics(len(config.jobs)), Health()

    def waiting() -> bool:
        """While the targets are checked: keep the systemd watchdog and /healthz fed; stop when told to."""
        notifier.keep_alive(clock.monotonic())
        health.busy()
        return signals.stop

    gate = TargetGate.of(mode, allow_missing)
    try:
        refused = gate.refused(Setup.of(config, names), waiting)
    except CheckStopped:
        log.info("stopped while checking the call targets, before serving")
        notifier.close()
        return
    if refused:
        raise ConfigError(refused)
    key = config.settings.security.signing_key
    store = RunStore(connect(config.settings.redis), config.keys(), config.shard_keys())
    checked = True
    try:  # a worker of another shard count than the layout's (or during a reshard) dead-letters moved jobs' fires
        check_layout(store.client, config)
    except StoreError as error:
        log.warning("the deployment's layout is not checked yet (checked before the worker starts): %s", error)
        checked = False
    layout = LayoutWatch(
        store.client, config, clock.monotonic, defaults.WORKER_STALE_AFTER.total_seconds(), checked=checked
    )
    identity = Identity.here(clock.now())
    follower = follow_runtime_jobs(store.client, config, clock, f"worker {identity.id}", store.audit)
    daemon = Worker(
        config,
        store,
        identity,
        clock,
        queues=names,
        concurrency=concurrency or settings.concurrency,
        prefetch=prefetch or settings.prefetch,
        grace=grace if grace is not None else settings.grace.total_seconds(),
        isolation=mode,
        signer=Signer.optional(key),
        metrics=metrics,
        health=health,
        runtime=follower,
    )
    if metrics_port is not None:
        serve(metrics_port, metrics, health, metrics_host)

    fixed = frozenset(
        name for name, given in (("worker.concurrency", concurrency), ("worker.isolation", isolation)) if given
    )
    running = config

    def reload() -> None:
        nonlocal running
        fresh, problems = runtime.reload(path, metrics)
        if fresh is not None:
            try:
                refused = [str(problem) for problem in gate.refused(Setup.of(fresh, names), waiting)]
            except (CheckError, CheckStopped) as error:  # no target to blame: the config stays
                refused = [f"call targets not checked: {error}"]
            except Exception as error:  # a bug of ours must not end the worker either
                log.exception("checking the call targets failed")
                refused = [f"call targets not checked: {type(error).__name__}: {error}"]
            if refused:
                fresh, problems = None, runtime.reject(refused, metrics)
        if fresh is None:
            _audit(
                daemon.store, audit_record("reload-failed", clock.now(), worker=daemon.identity.id, problems=problems)
            )
            return
        restart = needs_restart(running, fresh, fixed)
        worker_settings = fresh.settings.worker
        try:
            daemon.reload(
                fresh,
                prefetch=prefetch or worker_settings.prefetch,
                grace=grace if grace is not None else worker_settings.grace.total_seconds(),
                signer=Signer.optional(fresh.settings.security.signing_key),
            )
        except StoreError as error:  # the new config is in use; a queue's group is created when first read
            log.warning("reloaded, but could not create consumer groups yet: %s", error)
        running = fresh
        keep_out_of_collections(replacing=True)
        if restart:
            log.warning("reload: %s changed and take effect only after a restart", ", ".join(restart))
        code = _report_code(gate)
        log.info("reloaded %s, digest %s", path, fresh.digest)
        _audit(daemon.store, audit_record(
            "reload", clock.now(), worker=daemon.identity.id, config_digest=fresh.digest, restart_required=restart,
            **code,
        ))  # fmt: skip

    started = False
    backoff = Backoff(log, "worker waiting for Redis to start")

    def tick() -> float:
        """Start the worker once Redis answers (its consumer groups are created first), then run it."""
        nonlocal started
        try:
            holds = layout.holds()
        except ConfigError as error:
            _exit_resharded(error)
        if not holds:  # Redis does not answer (at start, or after a stall): logged as the start's wait is
            metrics.redis_errors.inc()
            health.step(redis_ok=False)
            return backoff.failed(layout.error) if layout.error is not None else 1.0
        if not started:
            try:
                daemon.start()
            except StoreError as error:
                metrics.redis_errors.inc()
                health.step(redis_ok=False)
                return backoff.failed(error)
            backoff.succeeded()
            started = True
        return daemon.tick()

    def current() -> Current:
        config = daemon.config  # a view, not a copy (called every step): a YAML job wins a name, as in the beat
        # The compact jobs (no JobSpec made per job and step); read only: ChainMap writes only when told to.
        jobs = cast("MutableMapping[str, JobView]", config.compact)
        runtime = cast("MutableMapping[str, JobView]", follower.compact)
        return Current(ChainMap(jobs, runtime), config.settings.alerts)

    # Never the leader: it watches for no_leader (every beat down is when that matters) and, holding the
    # standby claim, delivers while no beat leads (beatd.alerting).
    alerting = Alerting(AlertStore(store.client, store.keys), UpkeepStore(store.client, store.keys), metrics)
    alerts = AlertThread(alerting, lambda: None, current, clock.monotonic).start()
    try:
        run_loop(
            tick, signals=signals, notifier=notifier, clock=clock, reload=reload, status=daemon.status, metrics=metrics
        )
    finally:
        alerts.stop()
        if started:
            log.info("draining: no new runs; running jobs have %.0fs to finish (stop again to stop them now)",
                     daemon.grace)  # fmt: skip
            daemon.drain(signals.stop_now)
        notifier.close()
        log.info("worker %s stopped", daemon.identity.id)


def _exit_resharded(error: ConfigError) -> NoReturn:
    """Exit 2 at once, writing nothing more: the deployment was resharded while this worker was stalled or cut
    off, so every key it would write (run ends, retries, dead letters) is in the old shard count's place. Its
    runs are left as a kill -9 leaves them: their job processes end with it, and the new layout's workers
    reclaim their fires (their leases lapse)."""
    for problem in error.problems:
        click.echo(str(problem), err=True)
    click.echo("beatd: the worker stops at once (its runs are reclaimed by the other workers)", err=True)
    os._exit(2)


def _report_code(gate: TargetGate) -> dict[str, object]:
    """Log what a reload did with job code, and return it for the audit record: process isolation imports it
    afresh; thread isolation cannot, so it names the job modules whose files changed (they need a restart)."""
    if gate.watch is None:
        log.info("reload: runs from now on import the job code on disk, each in a fresh child process")
        return {"job_code": "reloaded"}
    changed = gate.watch.changed()
    if changed:
        log.warning(
            "reload: job code changed on disk (%s) but runs in the worker itself (thread isolation): "
            "code changes need a restart",
            ", ".join(changed),
        )
    else:
        log.info("reload: job code is not reloaded under thread isolation; code changes need a restart")
    return {"job_code": "restart required", "changed_modules": changed}


def _audit(store: RunStore, record: dict[str, object]) -> None:
    try:
        store.audit(record)
    except StoreError as error:
        log.warning("audit record not written: %s", error)
