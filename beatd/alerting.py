"""Alerting: in the leader (or, while no beat leads, one standby), turn alert events into grouped messages,
judge deadlines, silence and unserved queues on Redis's clock, and deliver to the sinks at least once.

Where alerts come from. The scripts that write a run record (``finish.lua``: failed attempts, ``dead``,
successes; ``emit.lua``: ``missed``; ``sweep_expired.lua``: ``expired``) note it in ``{ns}:alerts:events`` in
the same atomic step, for jobs with rules about it. The leader judges ``deadline`` (a fire not succeeded D after
its instant), ``silence`` (no success for N intervals or a duration) and ``no_worker`` (a queue with waiting
fires and no live worker) itself; ``no_leader`` is judged by every standby beat and every worker (no lease for
longer than X: with every beat down, the workers are who is left), and the first to take the standby claim
raises and delivers it (and everything else due) until a beat leads again. A standby leaves the events of jobs
its config does not declare (a worker's may declare only its own) for a leader to route.

One step (:meth:`Alerting.step`), each write fenced (``lua/alerts_apply.lua``): group the oldest events
(:func:`beatd.alert_rules.group_events`: one message per job, rule and window, the rest counted and summed up
when the window closes, once none of its events waits: :func:`beatd.alert_rules.closable`), judge the
watched rules, then attempt the due deliveries one by one, recording each attempt (alerts log, audit stream)
in its own fenced call. A failed attempt is retried with a doubling
backoff (``ALERT_RETRY_FIRST`` to ``ALERT_RETRY_MAX``, jittered), given up after ``ALERT_ATTEMPTS``. A
process killed between a send and its record sends again (at least once): the payload's ``id`` (and the
``Idempotency-Key`` header) is the same each time.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from beatd import defaults
from beatd.alert_rules import (
    OPENING_RULES,
    Delivery,
    Event,
    Group,
    closable,
    deadline_fires,
    event_of_record,
    group_events,
    retry_delay,
    silence_threshold,
    summaries,
    window_of,
)
from beatd.alert_sinks import SinkFailed, send
from beatd.audit import audit_record
from beatd.client.waiting import is_live
from beatd.config.alerts import AlertRule, AlertSettings
from beatd.config.compact import JobView
from beatd.daemon import Backoff
from beatd.messages import format_utc, from_ms, scheduled_fire_id, to_ms
from beatd.metrics import Metrics
from beatd.store import StoreError
from beatd.store.alerts import AlertChanges, AlertStore, Fence
from beatd.store.base import Heartbeats, redis_now
from beatd.store.upkeep import UpkeepStore

__all__ = ["AlertThread", "Alerting"]

log = logging.getLogger("beatd.alerts")

IDLE = 0.2
"""Seconds between steps with nothing to do."""

STANDBY_TTL_MS = 5000
"""How long the standby claim lasts unless renewed (each step renews it)."""


@dataclass(frozen=True)
class Current:
    """What alerting works from: every job (with its effective rules) and the ``alerts:`` settings."""

    jobs: Mapping[str, JobView]
    settings: AlertSettings | None


class Alerting:
    """One replica's alerting over ``store``; call :meth:`step` with its fence."""

    def __init__(self, store: AlertStore, upkeep: UpkeepStore, metrics: Metrics) -> None:
        self.store, self.upkeep, self.metrics = store, upkeep, metrics
        self.keys = store.keys
        self.namespace = store.keys.namespace
        self.next_watch = 0.0

    # -- the step ------------------------------------------------------------------------------------------
    def step(self, fence: Fence, current: Current, monotonic: float) -> float:
        """One step as ``fence``; the seconds to wait before the next (0 when more is waiting)."""
        now = redis_now(self.store.client)
        more = self._group(fence, current, now)
        if monotonic >= self.next_watch and current.settings is not None:
            self.next_watch = monotonic + defaults.ALERT_WATCH_INTERVAL.total_seconds()
            self._watch(fence, current, now)
        more = self._deliver(fence, current, now) or more
        return 0.0 if more else IDLE

    def _apply(self, fence: Fence, changes: AlertChanges) -> None:
        if not changes.empty() and not self.store.apply(fence, changes):
            raise _Deposed

    # -- events -> groups ---------------------------------------------------------------------------------
    def _group(self, fence: Fence, current: Current, now: datetime) -> bool:
        entries = self.store.events(defaults.ALERT_BATCH)
        if not entries:
            return False
        changes = AlertChanges()
        jobs_seen = set()
        parsed: list[tuple[str, str, Any]] = []
        for entry_id, text in entries:
            try:
                record = json.loads(text)
            except ValueError:
                changes.events.append(entry_id)
                continue
            kind, what = event_of_record(record, int(entry_id.split("-")[0]))
            job = what if isinstance(what, str) else what.subject if kind else ""
            if kind and fence.mode == "standby" and job not in current.jobs:
                continue  # a worker's config may declare only its own jobs: left for a leader to route
            changes.events.append(entry_id)
            if kind:
                parsed.append((kind, entry_id, what))
                jobs_seen.add(job)
        state = self.store.state([f"open:{job}" for job in jobs_seen])
        routed: list[tuple[Event, AlertRule]] = []
        for _kind, entry_id, what in parsed:
            if isinstance(what, str):  # a success: recovers an open alert, resets silence
                job, at_ms = what, int(entry_id.split("-")[0])
                changes.state[f"success:{job}"] = str(at_ms)
                opened = state.pop(f"open:{job}", None)
                if opened is not None:
                    changes.state_gone.append(f"open:{job}")
                    changes.state.pop(f"open:{job}", None)
                    event = Event(job, "recovered", at_ms, f"{job}: succeeded again after {opened}", {"after": opened})
                    routed += self._routes(current, event)
                continue
            found = self._routes(current, what)
            if found and what.rule in OPENING_RULES and f"open:{what.subject}" not in state:
                state[f"open:{what.subject}"] = what.rule
                changes.state[f"open:{what.subject}"] = what.rule
                if f"open:{what.subject}" in changes.state_gone:
                    changes.state_gone.remove(f"open:{what.subject}")
            routed += found
        self._raise(changes, routed, current.settings)
        self._apply(fence, changes)
        return len(changes.events) == defaults.ALERT_BATCH

    def _routes(self, current: Current, event: Event) -> list[tuple[Event, AlertRule]]:
        spec = current.jobs.get(event.subject)
        rules = spec.alert_rules if spec is not None else ()
        return [(event, rule) for rule in rules if rule.on == event.rule]

    def _raise(
        self, changes: AlertChanges, routed: list[tuple[Event, AlertRule]], settings: AlertSettings | None
    ) -> None:
        """Group ``routed`` events into ``changes``: groups, deliveries, log entries, metrics."""
        if not routed or settings is None:
            return
        window = settings.window
        rules = {id(event): rule for event, rule in routed}
        ids = sorted({_group_id(event, rule, window) for event, rule in routed})
        known = {gid: Group.from_json(text) for gid, text in self.store.groups(ids).items()}
        grouped = group_events(self.namespace, routed, known, window)
        for gid, group in grouped.groups.items():
            changes.groups[gid] = group.to_json()
        room = defaults.ALERT_DELIVERIES_LIMIT - self.store.waiting()
        for delivery, due_ms in grouped.deliveries:
            if room <= 0:
                log.error(
                    "alert delivery %s dropped: %d deliveries wait already",
                    delivery.id,
                    defaults.ALERT_DELIVERIES_LIMIT,
                )
                continue
            room -= 1
            changes.deliveries[delivery.id] = delivery.to_json()
            changes.due[delivery.id] = due_ms
        for event, how in grouped.raised:
            self.metrics.alerts_raised.labels(event.rule).inc()
            if how == "told":
                key = f"{self.namespace}:{_group_id(event, rules[id(event)], window)}:first"
                changes.log.append(
                    _entry(
                        "raised",
                        id=key,
                        subject=event.subject,
                        rule=event.rule,
                        summary=event.summary,
                        at=format_utc(from_ms(event.at_ms)),
                    )
                )
                log.warning("alert %s: %s", event.rule, event.summary)

    # -- watched rules --------------------------------------------------------------------------------------
    def _watch(self, fence: Fence, current: Current, now: datetime) -> None:
        settings = current.settings
        assert settings is not None
        changes = AlertChanges()
        events: list[tuple[Event, AlertRule]] = []
        if fence.mode == "leader":
            paused = self.store.paused()
            watching = {
                name: spec
                for name, spec in current.jobs.items()
                if any(rule.on in ("deadline", "silence") for rule in spec.alert_rules)
            }
            fields = [f"{kind}:{name}" for name in watching for kind in ("mark:deadline", "mark:silence", "success")]
            state = self.store.state(fields)
            for name, spec in watching.items():
                if not spec.enabled or name in paused:
                    self._rest(spec, state, changes, now)
                    continue
                events += self._deadlines(spec, state, changes, now)
                events += self._silence(spec, state, changes, now)
            events += self._unserved(current, settings, changes, now)
            if self.store.state(["mark:no_leader"]):
                changes.state_gone.append("mark:no_leader")
        else:
            events += self._no_leader(settings, changes, now)
        self._raise(changes, events, settings)
        self._apply(fence, changes)

    def _rest(self, spec: JobView, state: dict[str, str], changes: AlertChanges, now: datetime) -> None:
        """A paused or disabled job: the fires it skips meanwhile are not judged late once it is back, and its
        silence counts from its last moment at rest (not from its last success, before it was paused)."""
        rule = next((rule for rule in spec.alert_rules if rule.on == "deadline" and rule.after is not None), None)
        mark_name = f"mark:deadline:{spec.name}"
        if rule is not None and rule.after is not None and mark_name in state:
            changes.state[mark_name] = str(max(int(state[mark_name]), to_ms(now - rule.after)))
        if any(rule.on == "silence" for rule in spec.alert_rules):
            changes.state[f"mark:silence:{spec.name}"] = json.dumps({"since_ms": to_ms(now)})
            if f"success:{spec.name}" in state:
                changes.state_gone.append(f"success:{spec.name}")

    def _deadlines(self, spec: JobView, state: dict[str, str], changes: AlertChanges, now: datetime) -> list[Any]:
        events = []
        for rule in spec.alert_rules:
            if rule.on != "deadline" or rule.after is None:
                continue
            mark_name = f"mark:deadline:{spec.name}"
            judged = int(state[mark_name]) if mark_name in state else None
            fires, mark = deadline_fires(spec.trigger(), rule.after, judged, now)
            changes.state[mark_name] = str(mark)
            for instant in fires:
                fire = scheduled_fire_id(spec.name, format_utc(instant))
                if not self.store.succeeded(spec.name, fire, spec.retries + 1):
                    summary = f"{spec.name}: fire {fire} has not succeeded {rule.describe().split(' ->')[0]}"
                    events.append(
                        (
                            Event(
                                spec.name,
                                "deadline",
                                to_ms(now),
                                summary,
                                {"fire_id": fire, "scheduled_at": format_utc(instant)},
                            ),
                            rule,
                        )
                    )
                    changes.state.setdefault(f"open:{spec.name}", "deadline")
            break  # one deadline rule per job judges (the first)
        return events

    def _silence(self, spec: JobView, state: dict[str, str], changes: AlertChanges, now: datetime) -> list[Any]:
        rule = next((rule for rule in spec.alert_rules if rule.on == "silence"), None)
        if rule is None:
            return []
        mark_name = f"mark:silence:{spec.name}"
        mark = json.loads(state.get(mark_name, "{}"))
        base_ms = int(state.get(f"success:{spec.name}") or mark.get("since_ms") or to_ms(now))
        if "since_ms" not in mark:
            mark["since_ms"] = to_ms(now)
            changes.state[mark_name] = json.dumps(mark)
        threshold = silence_threshold(spec.trigger(), rule, from_ms(base_ms))
        if threshold is None or now < threshold or mark.get("told_ms") == base_ms:
            return []
        mark["told_ms"] = base_ms
        changes.state[mark_name] = json.dumps(mark)
        changes.state.setdefault(f"open:{spec.name}", "silence")
        since = format_utc(from_ms(base_ms))
        summary = f"{spec.name}: no success since {since} ({rule.describe().split(' ->')[0]})"
        return [(Event(spec.name, "silence", to_ms(now), summary, {"last_success_or_since": since}), rule)]

    def _unserved(self, current: Current, settings: AlertSettings, changes: AlertChanges, now: datetime) -> list[Any]:
        rules = settings.global_rules("no_worker")
        if not rules:
            return []
        queues = sorted({spec.queue for spec in current.jobs.values() if spec.enabled and spec.celery is None})
        workers = Heartbeats(self.store.client, self.keys.workers).read()
        served = {queue for worker in workers.values() if is_live(worker, now) for queue in worker.get("queues", ())}
        marks = self.store.state([f"mark:no_worker:{queue}" for queue in queues])
        events = []
        for queue in queues:
            name = f"mark:no_worker:{queue}"
            waiting = self.upkeep.backlog(queue, 1).waiting if queue not in served else 0
            if not waiting:
                if name in marks:
                    changes.state_gone.append(name)
                continue
            mark = json.loads(marks.get(name, "{}"))
            if "since_ms" not in mark:
                mark["since_ms"] = to_ms(now)
                changes.state[name] = json.dumps(mark)
            told = list(mark.get("told_rules", []))  # each rule tells once (its own after: an escalation)
            for index, rule in enumerate(rules):
                after_ms = int(rule.after.total_seconds() * 1000) if rule.after else 0
                if to_ms(now) - int(mark["since_ms"]) >= after_ms and index not in told:
                    told.append(index)
                    mark["told_rules"] = told
                    changes.state[name] = json.dumps(mark)
                    summary = f"queue {queue}: {waiting} fires waiting and no live worker consumes it"
                    events.append(
                        (
                            Event(
                                f"queue:{queue}", "no_worker", to_ms(now), summary, {"queue": queue, "waiting": waiting}
                            ),
                            rule,
                        )
                    )
        return events

    def _no_leader(self, settings: AlertSettings, changes: AlertChanges, now: datetime) -> list[Any]:
        """As the standby holding the claim (it took it because no beat led for the rule's ``after``)."""
        if self.store.state(["mark:no_leader"]):
            return []
        changes.state["mark:no_leader"] = str(to_ms(now))
        summary = f"namespace {self.namespace}: no beat holds the lease"
        return [(Event("-", "no_leader", to_ms(now), summary, {}), rule) for rule in settings.global_rules("no_leader")]

    # -- deliveries ---------------------------------------------------------------------------------------
    def _deliver(self, fence: Fence, current: Current, now: datetime) -> bool:
        due = [Delivery.from_json(text) for text in self.store.due(to_ms(now), defaults.ALERT_BATCH)]
        self.metrics.alerts_waiting.set(self.store.waiting())
        closing = [delivery for delivery in due if delivery.kind == "close"]
        if closing:
            groups = self.store.groups([delivery.group for delivery in closing])
            oldest = self.store.oldest_event_ms()
            changes = AlertChanges()
            for delivery in closing:
                text = groups.get(delivery.group)
                group = Group.from_json(text) if text else None
                if not closable(group, oldest):
                    continue  # still due: it closes at a later step, once its window's events are counted
                for summary in summaries(self.namespace, delivery, group):
                    changes.deliveries[summary.id] = summary.to_json()
                    changes.due[summary.id] = to_ms(now)
                changes.deliveries_gone.append(delivery.id)
                changes.groups_gone.append(delivery.group)
            self._apply(fence, changes)
        down: set[str] = set()
        settings = current.settings
        for delivery in due:
            if delivery.kind == "close" or delivery.sink in down:
                continue
            sink = settings.sinks.get(delivery.sink) if settings is not None else None
            changes = AlertChanges()
            delivery.attempts += 1
            base = {
                "id": delivery.key,
                "delivery": delivery.id,
                "sink": delivery.sink,
                "kind": delivery.kind,
                "rule": delivery.payload.get("rule"),
                "subject": delivery.payload.get("subject"),
                "attempt": delivery.attempts,
            }
            try:
                if sink is None:
                    raise SinkFailed(f"sink {delivery.sink!r} is no longer configured")
                send(sink, delivery.payload)
            except SinkFailed as error:
                self.metrics.alerts_failed.labels(delivery.sink).inc()
                down.add(delivery.sink)
                delivery.error = str(error)[:500]
                if sink is None or delivery.attempts >= defaults.ALERT_ATTEMPTS:
                    changes.deliveries_gone.append(delivery.id)
                    outcome = "gave_up"
                    log.error(
                        "alert %s to %s given up after %d attempts: %s",
                        delivery.key,
                        delivery.sink,
                        delivery.attempts,
                        error,
                    )
                else:
                    assert settings is not None
                    wait = retry_delay(delivery.attempts, settings.retry_first, settings.retry_max)
                    changes.deliveries[delivery.id] = delivery.to_json()
                    changes.due[delivery.id] = to_ms(now + wait)
                    outcome = "failed"
                    log.warning(
                        "alert %s to %s failed (attempt %d, next in %.1fs): %s",
                        delivery.key,
                        delivery.sink,
                        delivery.attempts,
                        wait.total_seconds(),
                        error,
                    )
                detail = {**base, "error": delivery.error}
            else:
                self.metrics.alerts_delivered.labels(delivery.sink).inc()
                changes.deliveries_gone.append(delivery.id)
                outcome, detail = "delivered", base
            changes.log.append(_entry(outcome, **detail))
            changes.audit.append(json.dumps(audit_record(f"alert-{outcome}", redis_now(self.store.client), **detail)))
            self._apply(fence, changes)
        return len(due) == defaults.ALERT_BATCH


class _Deposed(Exception):
    """The fence no longer holds: another process groups and delivers now."""


def _group_id(event: Event, rule: AlertRule, window: Any) -> str:
    start, _ = window_of(event.at_ms, rule.grouping(window))
    return f"{event.subject}|{event.rule}|{start}"


def _entry(event: str, **details: Any) -> str:
    return json.dumps({"event": event, **details}, separators=(",", ":"))


class AlertThread:
    """Runs :class:`Alerting` in a daemon thread: as the leader while ``token()`` gives its token; else, while
    no beat leads for the shortest ``no_leader`` rule's ``after``, as the standby holding the claim."""

    def __init__(
        self,
        alerting: Alerting,
        token: Callable[[], str | None],
        current: Callable[[], Current],
        monotonic: Callable[[], float],
    ) -> None:
        self.alerting, self.token, self.current, self.monotonic = alerting, token, current, monotonic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="alerts", daemon=True)
        self._redis = Backoff(log, "alerts: beatd's Redis", recovered="alerts: beatd's Redis reachable again")
        self._claim = uuid.uuid4().hex
        self._leaderless_since: float | None = None

    def start(self) -> AlertThread:
        """Start the thread."""
        self._thread.start()
        return self

    def stop(self, timeout: float = defaults.RELAY_SHUTDOWN_WAIT.total_seconds()) -> bool:
        """Ask the thread to stop after its current send; whether it ended within ``timeout`` seconds."""
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        wait = 0.0
        while not self._stop.wait(wait):
            try:
                fence = self._fence()
                wait = self.alerting.step(fence, self.current(), self.monotonic()) if fence else IDLE
                self._redis.succeeded()
            except _Deposed:
                log.info("alerts: no longer fenced in; another process delivers")
                wait = IDLE
            except StoreError as error:
                wait = self._redis.failed(error)
            except Exception:  # alerting survives any one bad step, as the loop does
                log.exception("alerts step failed; retrying in 1s")
                wait = 1.0

    def _fence(self) -> Fence | None:
        token = self.token()
        if token is not None:
            self._leaderless_since = None
            return Fence("leader", token)
        settings = self.current().settings
        rules = settings.global_rules("no_leader") if settings is not None else ()
        if not rules or not self.alerting.store.leader_absent():
            self._leaderless_since = None
            return None
        now = self.monotonic()
        if self._leaderless_since is None:
            self._leaderless_since = now
        after = min((rule.after.total_seconds() if rule.after else 0.0) for rule in rules)
        if now - self._leaderless_since < after:
            return None
        if not self.alerting.store.claim_standby(self._claim, STANDBY_TTL_MS):
            return None
        return Fence("standby", self._claim)
