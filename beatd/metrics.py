"""Prometheus metrics and health endpoints of a beat or worker process (``--metrics-port``).

Each daemon owns one :class:`Metrics` with its own registry (nothing global); ``serve`` exposes
``/metrics`` (Prometheus text), ``/healthz`` and ``/readyz`` on a background HTTP thread:

- ``/healthz`` (liveness): the loop completed a step within ALIVE_WITHIN, whatever the role and whether or
  not Redis answers: restarting a daemon cannot bring Redis back, and a standby beat is healthy.
- ``/readyz`` (readiness): the loop is alive and Redis answered its last step (a beat leader holds the lease
  by then; one that lost it is a standby again, ready to take over). The body names the ``role``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["PER_JOB_LIMIT", "Health", "Metrics", "serve"]

ALIVE_WITHIN = 30.0
"""/healthz fails when the daemon's loop has not completed a step for this long (s)."""

_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)


class Health:
    """What the health endpoints report; the daemon's loop updates it."""

    def __init__(self) -> None:
        self.last_step = time.monotonic()
        self.redis_ok = False
        self.ready = False
        self.role: str | None = None

    def step(self, redis_ok: bool, role: str | None = None) -> None:
        """Record one completed loop step, whether Redis answered during it and (a beat) the role after it:
        ``leader`` (holding the lease) or ``standby``."""
        self.last_step = time.monotonic()
        self.redis_ok = redis_ok
        self.ready = self.ready or redis_ok
        self.role = role

    def busy(self) -> None:
        """The loop is blocked on purpose and still in control (a reload checking call targets): count it as
        a step, Redis as before."""
        self.last_step = time.monotonic()

    def alive(self) -> dict[str, Any]:
        """The /healthz body; ``ok`` decides the status code."""
        age = time.monotonic() - self.last_step
        return {"ok": age < ALIVE_WITHIN, "loop_age_s": round(age, 3), "redis": self.redis_ok, "role": self.role}

    def readiness(self) -> dict[str, Any]:
        """The /readyz body."""
        ok = self.ready and self.redis_ok and time.monotonic() - self.last_step < ALIVE_WITHIN
        return {"ok": ok, "ready": self.ready, "redis": self.redis_ok, "role": self.role}


PER_JOB_LIMIT = 1000
"""With more jobs than this, the ``job`` label is ``_all``: a series per job stops being useful and costs
memory in every scraper."""


class Metrics:
    """Every metric beatd exports. Label ``job`` is the job name (``_all`` past PER_JOB_LIMIT jobs);
    ``trigger`` and ``status`` are as in messages and run records."""

    def __init__(self, jobs: int = 0) -> None:
        self.per_job = jobs <= PER_JOB_LIMIT
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.fires_emitted = Counter("beatd_fires_emitted", "Fires emitted by this leader.", ["job", "trigger"],
                                     registry=registry)  # fmt: skip
        self.emission_lag = Histogram(
            "beatd_emission_lag_seconds", "Emission time minus the fire's due time (scheduled + jitter).",
            buckets=_LAG_BUCKETS, registry=registry,
        )  # fmt: skip
        self.leader = Gauge("beatd_leader", "1 while this replica holds the lease.", registry=registry)
        self.leader_changes = Counter("beatd_leader_changes", "Times this replica became leader.", registry=registry)
        self.fires_missed = Counter("beatd_fires_missed", "Fires recorded missed.", ["job"], registry=registry)
        self.fires_skipped = Counter("beatd_fires_skipped", "Fires a worker skipped (overlap).", ["job"],
                                     registry=registry)  # fmt: skip
        self.runs = Counter("beatd_runs", "Runs ended, by status.", ["job", "status"], registry=registry)
        self.run_duration = Histogram("beatd_run_duration_seconds", "Duration of runs.", ["job"],
                                      buckets=_DURATION_BUCKETS, registry=registry)  # fmt: skip
        self.queue_depth = Gauge("beatd_queue_depth", "Entries in a queue stream.", ["queue"], registry=registry)
        self.queue_waiting = Gauge("beatd_queue_waiting", "Fires in a queue not yet delivered to a worker (leader).",
                                   ["queue"], registry=registry)  # fmt: skip
        self.queue_oldest_age = Gauge(
            "beatd_queue_oldest_age_seconds", "How long the oldest fire not yet delivered has waited (leader).",
            ["queue"], registry=registry,
        )  # fmt: skip
        self.reload_failures = Counter("beatd_config_reload_failures", "Rejected config reloads.", registry=registry)
        self.celery_outbox_depth = Gauge(
            "beatd_celery_outbox_depth",
            "Celery task messages in the outbox, waiting for the relay (leader; summed over the shards it leads).",
            registry=registry,
        )
        self._outbox_depths: dict[str, int] = {}
        """Each relaying outbox (key) -> its depth at its relay's last step: the gauge is their sum."""
        self._outbox_lock = threading.Lock()  # each shard's relay steps in its own thread
        self.celery_published = Counter(
            "beatd_celery_published", "Celery task messages the relay published (broker confirmed).", registry=registry
        )
        self.celery_publish_failures = Counter(
            "beatd_celery_publish_failures",
            "Relay publishes the Celery broker refused or did not answer.",
            registry=registry,
        )
        self.celery_relay_last_step = Gauge(
            "beatd_celery_relay_last_step_timestamp_seconds",
            "Unix time of the relay's last fenced step as the leader (relay liveness: alert when it lags).",
            registry=registry,
        )
        self.alerts_raised = Counter("beatd_alerts_raised", "Alert events raised (grouped ones too), by rule.",
                                     ["rule"], registry=registry)  # fmt: skip
        self.alerts_delivered = Counter("beatd_alerts_delivered", "Alert messages a sink took.", ["sink"],
                                        registry=registry)  # fmt: skip
        self.alerts_failed = Counter("beatd_alerts_failed", "Alert delivery attempts that failed.", ["sink"],
                                     registry=registry)  # fmt: skip
        self.alerts_waiting = Gauge("beatd_alerts_waiting", "Alert deliveries waiting (leader).", registry=registry)
        self.redis_errors = Counter("beatd_redis_errors", "Redis operations that failed.", registry=registry)
        self.loop_errors = Counter("beatd_loop_errors", "Loop steps that failed unexpectedly (the loop went on).",
                                   registry=registry)  # fmt: skip

    def outbox_depth(self, outbox: str, depth: int | None) -> None:
        """Set outbox ``outbox``'s depth (None: this replica no longer relays it) and the gauge to the sum over
        the outboxes this replica relays (one per shard it leads): each shard's relay steps on its own."""
        with self._outbox_lock:
            if depth is None:
                self._outbox_depths.pop(outbox, None)
            else:
                self._outbox_depths[outbox] = depth
            self.celery_outbox_depth.set(sum(self._outbox_depths.values()))

    def job(self, name: str) -> str:
        """The ``job`` label value for ``name``."""
        return name if self.per_job else "_all"

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)


def serve(port: int, metrics: Metrics, health: Health, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve /metrics, /healthz and /readyz on ``host:port`` from a daemon thread; return the server."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, metrics.render(), CONTENT_TYPE_LATEST)
            elif self.path in ("/healthz", "/readyz"):
                body = health.alive() if self.path == "/healthz" else health.readiness()
                self._send(200 if body["ok"] else 503, json.dumps(body).encode(), "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Scrapes are not worth a log line each."""

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
