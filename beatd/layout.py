"""The deployment's layout (``{ns:0}:layout``: how many shards its keys are split into, or a reshard's journal):
checked by every beat and worker at start and again while it runs, and by a client (``beatd.Client``, the CLI's
operator commands) before it writes (docs/sharding.md sections 8, 9)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from beatd import defaults
from beatd.config import Config
from beatd.errors import ConfigError, Problem
from beatd.keys import Keys
from beatd.store import StoreError, StoreRejected
from beatd.store.base import reachable
from beatd.store.beat import claim_layout, read_layout

__all__ = ["LAYOUT_VERSION", "LayoutGate", "LayoutWatch", "check_layout", "verify_layout"]

log = logging.getLogger("beatd.layout")

LAYOUT_VERSION = 1
"""The version of the layout record this code writes and reads."""


def check_layout(client: Any, config: Config) -> None:
    """Refuse to run with a ``shards`` other than the one the deployment's Redis holds (``{ns:0}:layout``;
    absent: one plain shard). The first beat of a tagged deployment writes it, unless a plain deployment's keys
    are in use (then it holds one shard). Raises ConfigError at the config's ``shards`` setting."""
    found = _layout_of(client, config)
    if found is None:
        return
    key, layout = found
    if layout is None:
        record = {"version": LAYOUT_VERSION, "shards": config.shards, "state": "ready"}
        plain = Keys(config.namespace)
        layout = claim_layout(client, key, record, [plain.epoch, plain.progress])
        if layout is None:
            log.info("layout: %s written (shards: %d)", key, config.shards)
            return
    _refuse_other(layout, config, key)


def verify_layout(client: Any, config: Config) -> None:
    """:func:`check_layout` for a client, which never writes the layout: ConfigError at the config's ``shards``
    when Redis holds another shard count or a reshard is under way, so a fire, pause or runtime job is not
    written to keys no beat or worker reads. An absent layout with a tagged config passes unless a plain
    deployment's keys are in use: no beat has run yet, and the first one, started with this config, claims the
    layout whose keys this client writes. One GET (and an EXISTS when the layout is absent)."""
    found = _layout_of(client, config)
    if found is None:
        return
    key, layout = found
    if layout is None:
        plain = Keys(config.namespace)
        with reachable():
            if not client.exists(plain.epoch, plain.progress):
                return
        layout = {"shards": 1, "state": "plain"}
    _refuse_other(layout, config, key)


def _layout_of(client: Any, config: Config) -> tuple[str, dict[str, Any] | None] | None:
    """The layout key and its record (None: absent) for a tagged config; None when there is nothing to check: a
    plain config and no layout, or a plain config whose ACL user may not read the tagged layout's key (it could
    not reach a tagged deployment's keys either, so its plain deployment is the only one it can run)."""
    key = Keys(config.namespace, 0, tagged=True).layout
    try:
        layout = read_layout(client, key)
    except StoreRejected:
        if config.tagged:
            raise
        return None
    if layout is None and not config.tagged:
        return None
    return key, layout


def _refuse_other(layout: dict[str, Any], config: Config, key: str) -> None:
    """ConfigError at ``shards`` unless ``layout`` (the record at ``key``) is ready with the config's count."""
    held, state = layout.get("shards"), layout.get("state", "ready")
    if held == config.shards and state == "ready":
        return
    if state == "resharding":  # beatd reshard's journal: nothing may lead until it is done
        message = (
            f"a `beatd reshard` from {layout.get('from')} to {layout.get('to')} shards is under way or unfinished "
            f"({key}, state resharding): start the beats, or act on the jobs, once it is done (run it again to "
            "finish a crashed one)"
        )
        raise ConfigError([Problem(str(config.path), 0, 0, "shards", message)])
    what = f"an unreadable layout {layout['unreadable']!r}" if "unreadable" in layout else f"shards: {held}"
    if state not in ("ready", "plain"):
        what += f" (state {state})"
    message = (
        f"this deployment's Redis holds {what} ({key}), this config says {config.shards}: a changed shard count "
        "needs the jobs' keys moved first (docs/sharding.md section 9); run with the shard count Redis holds"
    )
    raise ConfigError([Problem(str(config.path), 0, 0, "shards", message)])


class LayoutWatch:
    """:func:`check_layout` while a daemon runs: again every ``defaults.LAYOUT_RECHECK``, and, before the daemon
    does anything more, after it was itself stalled for ``stale_after`` (no step for that long: the age at which
    ``beatd reshard`` takes its heartbeat for stopped, so a reshard may have run meanwhile) or, on one server or
    Sentinel, after Redis did not answer a check for that long (nothing else of the daemon's answers then either).
    On a Redis Cluster an unanswered check (the node of shard 0's slot is down) does not stop the other shards:
    the check is made again at each step until it is answered. ``checked``: whether the check at start was made
    (False: Redis did not answer; nothing is done before it is)."""

    def __init__(
        self, client: Any, config: Config, monotonic: Callable[[], float], stale_after: float, *, checked: bool
    ) -> None:
        self.client, self.config, self.monotonic, self.stale_after = client, config, monotonic, stale_after
        self.outage_waits = not config.settings.redis.cluster
        self.pending = not checked
        self.checked_at = self.stepped_at = monotonic()
        self.error: StoreError | None = None
        """Why the last check was not answered (None once one was)."""

    def holds(self) -> bool:
        """Whether the daemon may go on now. False while it must wait for a check Redis answers; ConfigError
        when the layout no longer matches the config (the daemon exits 2)."""
        now = self.monotonic()
        if now - self.stepped_at > self.stale_after:
            self.pending = True  # stalled itself (SIGSTOP, a paused VM): checked before anything more
        self.stepped_at = now
        since = now - self.checked_at
        if not self.pending and since <= defaults.LAYOUT_RECHECK.total_seconds():
            return True
        try:
            check_layout(self.client, self.config)
        except StoreError as error:
            self.error = error
            self.pending = self.pending or (self.outage_waits and since > self.stale_after)
            return not self.pending
        if self.pending:
            log.info("the deployment's layout is checked: Redis answers")
        self.pending, self.checked_at, self.error = False, now, None
        return True


class LayoutGate:
    """:func:`verify_layout` before a client's writes: at the first, and again once the last check is older than
    ``defaults.LAYOUT_RECHECK`` (a long-lived client, such as ``beatd web``'s, sees a reshard made since). Shared
    by a client and its :meth:`~beatd.client.Client.acting_as` copies."""

    def __init__(self, client: Any, config: Config, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client, self.config, self.monotonic = client, config, monotonic
        self.checked_at: float | None = None

    @property
    def due(self) -> bool:
        """Whether the next write must check the layout first (no I/O)."""
        since = None if self.checked_at is None else self.monotonic() - self.checked_at
        return since is None or since > defaults.LAYOUT_RECHECK.total_seconds()

    def check(self) -> None:
        """Check the layout when :attr:`due`; ConfigError (nothing written) when it is not the config's."""
        if self.due:
            verify_layout(self.client, self.config)
            self.checked_at = self.monotonic()
