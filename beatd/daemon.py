"""Running a daemon the way systemd expects: signals, sd_notify, the watchdog, logging.

``run_loop`` drives any step function (``tick(now, monotonic) -> seconds to sleep``): it sleeps on an event
that signals set, so SIGTERM and SIGHUP take effect at once, and it speaks sd_notify when ``NOTIFY_SOCKET``
is set (``READY=1``, ``STATUS=``, ``WATCHDOG=1``, ``RELOADING=1``, ``STOPPING=1``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType

from beatd import defaults
from beatd.clock import Clock
from beatd.metrics import Metrics

__all__ = [
    "Backoff",
    "Notifier",
    "Signals",
    "TickGuard",
    "configure_logging",
    "run_loop",
]

log = logging.getLogger("beatd.daemon")


class Notifier:
    """sd_notify over the unix datagram socket named by ``NOTIFY_SOCKET``; silent when it is unset."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # abstract namespace
            address = "\0" + address[1:]
        self.address = address
        watchdog_usec = environ.get("WATCHDOG_USEC", "")
        watchdog_pid = environ.get("WATCHDOG_PID", "")
        applies = not watchdog_pid or watchdog_pid == str(os.getpid())
        self.watchdog_interval = int(watchdog_usec) / 2_000_000 if watchdog_usec.isdigit() and applies else None
        self._socket: socket.socket | None = None
        self._next_watchdog = 0.0

    def keep_alive(self, now: float) -> float | None:
        """Send ``WATCHDOG=1`` if one is due at ``now`` (monotonic seconds); the seconds until the next one is
        due, None without a watchdog. Called by the loop after each step, and by anything that blocks it."""
        if self.watchdog_interval is None:
            return None
        if now >= self._next_watchdog:
            self.send("WATCHDOG=1")
            self._next_watchdog = now + self.watchdog_interval
        return self._next_watchdog - now

    def send(self, *lines: str) -> None:
        """Send ``KEY=value`` lines in one datagram; errors are logged, never raised."""
        if not self.address:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto("\n".join(lines).encode(), self.address)
        except OSError as error:
            log.warning("sd_notify failed: %s", error)

    def close(self) -> None:
        """Close the socket."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


@dataclass
class Signals:
    """What the signal handlers asked for; handlers only set flags and wake the loop.

    The first SIGTERM or SIGINT asks for a stop (a worker drains); a second one, while stopping, sets
    ``stop_now``: whatever the stop waits for, it waits no longer (a worker stops its runs at once)."""

    wake: threading.Event = field(default_factory=threading.Event)
    stop: bool = False
    reload: bool = False
    stop_now: threading.Event = field(default_factory=threading.Event)

    def install(self) -> None:
        """Handle SIGTERM and SIGINT (stop) and SIGHUP (reload) in the main thread."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stop:
            self.stop_now.set()
        self.stop = True
        self.wake.set()

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        self.reload = True
        self.wake.set()


class Backoff:
    """The waits between attempts at something that fails while Redis is away: doubling from ``first`` up to
    ``longest`` seconds. The outage is logged once to ``logger`` when it starts (``what`` says what waits),
    and once more when it ends."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        first: float = 0.1,
        longest: float = 5.0,
        recovered: str = "Redis reachable again",
    ) -> None:
        self.logger, self.what, self.first, self.longest = logger, what, first, longest
        self.recovered = recovered
        """What is logged when an outage ends (it names what came back: beatd's Redis, a Celery broker)."""
        self._wait: float | None = None

    def failed(self, error: Exception) -> float:
        """Note a failed attempt; return the seconds to wait before the next."""
        if self._wait is None:
            self.logger.error("%s: %s; retrying with backoff up to %.0fs", self.what, error, self.longest)
            self._wait = self.first
        wait, self._wait = self._wait, min(self.longest, self._wait * 2)
        return wait

    def succeeded(self) -> None:
        """Note a successful attempt: the next failure starts a new outage."""
        if self._wait is not None:
            self.logger.info("%s", self.recovered)
            self._wait = None


def run_loop(
    tick: Callable[[], float],
    *,
    signals: Signals,
    notifier: Notifier,
    clock: Clock,
    reload: Callable[[], None],
    status: Callable[[], str],
    metrics: Metrics | None = None,
) -> None:
    """Call ``tick`` until a stop signal; sleep what it returns; reload on SIGHUP; keep systemd informed.

    A tick that raises does not end the daemon: see :class:`TickGuard`."""
    notifier.send("READY=1", f"STATUS={status()}")
    last_status = ""
    guard = TickGuard(metrics)
    while not signals.stop:
        if signals.reload:
            signals.reload = False
            notifier.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
            reload()
            notifier.send("READY=1", f"STATUS={status()}")
        wait = guard.run(tick)
        due = notifier.keep_alive(clock.monotonic())
        if due is not None:
            wait = min(wait, max(0.0, due))
        current = status()
        if current != last_status:
            notifier.send(f"STATUS={current}")
            last_status = current
        if wait > 0 and not signals.stop and not signals.reload:
            signals.wake.wait(wait)
            signals.wake.clear()
    notifier.send("STOPPING=1")


class TickGuard:
    """Runs one tick so that an unexpected error ends the tick, not the daemon (a bad tick is logged, counted
    in ``beatd_loop_errors_total`` and followed by a backoff; systemd restarting it would only crash again).

    The first occurrence of an error is logged with its traceback; the same error again gets a short line."""

    BACKOFF_FIRST = 0.1
    BACKOFF_MAX = 5.0

    def __init__(self, metrics: Metrics | None) -> None:
        self.metrics = metrics
        self.backoff = self.BACKOFF_FIRST
        self.seen: set[str] = set()

    def run(self, tick: Callable[[], float]) -> float:
        """``tick()``, or after an error the seconds to back off."""
        try:
            wait = tick()
        except Exception as error:
            if self.metrics is not None:
                self.metrics.loop_errors.inc()
            signature = f"{type(error).__name__}: {error}"
            if signature not in self.seen and len(self.seen) < 100:
                self.seen.add(signature)
                log.exception("the loop step failed (the daemon goes on, retrying in %.1fs)", self.backoff)
            else:
                log.error("the loop step failed again: %s (retrying in %.1fs)", signature, self.backoff)
            wait, self.backoff = self.backoff, min(self.BACKOFF_MAX, self.backoff * 2)
            return wait
        self.backoff = self.BACKOFF_FIRST
        return wait


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """One line per event on stderr; ``json`` for log shippers (journald adds the time to text lines)."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(defaults.LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for chatty in ("httpx", "httpcore"):  # they log each request's URL: a Slack webhook's is a credential
        logging.getLogger(chatty).setLevel(logging.WARNING)


RECORD_FIELDS = ("job", "fire_id", "run_id", "status")
"""Attributes a log call may attach (``extra=``) that ``--log-format json`` writes as fields of their own."""


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in RECORD_FIELDS:  # what a line is about, for a log shipper to index (see the worker's run lines)
            if (value := getattr(record, name, None)) is not None:
                body[name] = value
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body)
