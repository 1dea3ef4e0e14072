"""The ``alerts:`` config: named sinks, rules routed by job name or tag, and each job's own rules.

A rule says *on* what (``dead``, ``failed``, ``missed``, ``expired``, ``deadline``, ``silence``, ``recovered``,
``no_leader``, ``no_worker``) to tell which sinks. Top-level rules apply to every job, or to the jobs they name
(``jobs:``) or tag (``tags:``); a job's own ``alerts:`` adds rules, changes one (a rule with the same ``on``
replaces the inherited ones) or opts out (``alerts: false``; one rule: ``{on: dead, sinks: []}``).
:func:`effective_rules` is that merge, pure; :func:`alert_problems` the cross-checks (unknown sink or job).
Secrets come from the environment through ``${VAR}`` (an unset one is a located error) and are never shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    WithJsonSchema,
    model_validator,
)

from beatd import defaults
from beatd.config.yamlsource import Located
from beatd.durations import format_duration, parse_duration
from beatd.errors import Problem

__all__ = [
    "GLOBAL_RULES",
    "JOB_RULES",
    "AlertRule",
    "AlertSettings",
    "CommandSink",
    "EmailSink",
    "JobAlerts",
    "SinkSettings",
    "SlackSink",
    "WebhookSink",
    "alert_problems",
    "effective_rules",
]

JOB_RULES = ("dead", "failed", "missed", "expired", "deadline", "silence", "recovered")
"""Rules about one job's fires."""

GLOBAL_RULES = ("no_leader", "no_worker")
"""Rules about the deployment: they take no ``jobs`` nor ``tags`` and never appear under a job."""

RuleName = Literal["dead", "failed", "missed", "expired", "deadline", "silence", "recovered", "no_leader", "no_worker"]


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than zero")
    return value


AlertDuration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    AfterValidator(_positive),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "number", "minimum": 0}], "examples": ["30m", "2h"]}),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"invalid URL {value!r}: expected http:// or https:// and a host")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class WebhookSink(_Strict):
    """JSON POST of each alert; with ``secret`` an ``X-Beatd-Signature: sha256=HEX`` header (HMAC-SHA256 of the
    body). Give the secret from the environment: ``secret: ${BEATD_WEBHOOK_SECRET}``."""

    type: Literal["webhook"]
    url: HttpUrl = Field(description="http:// or https:// URL the alert is POSTed to")
    secret: SecretStr | None = Field(None, description="HMAC-SHA256 key of the signature header (from the environment)")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers")
    timeout: float = Field(defaults.ALERT_SINK_TIMEOUT, gt=0, le=120, description="seconds per attempt")


class SlackSink(_Strict):
    """A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat): ``{"text": ...}``."""

    type: Literal["slack"]
    url: HttpUrl = Field(description="the incoming webhook URL (from the environment: ${SLACK_WEBHOOK_URL})")
    timeout: float = Field(defaults.ALERT_SINK_TIMEOUT, gt=0, le=120, description="seconds per attempt")


class EmailSink(_Strict):
    """Mail over SMTP; STARTTLS unless ``starttls: false``; credentials from the environment."""

    type: Literal["email"]
    host: str = Field(min_length=1, description="SMTP server")
    port: int = Field(587, ge=1, le=65535, description="SMTP port")
    starttls: bool = Field(True, description="upgrade the connection with STARTTLS before logging in")
    username: str | None = Field(None, description="SMTP user (from the environment)")
    password: SecretStr | None = Field(None, description="SMTP password (from the environment)")
    sender: str = Field(alias="from", min_length=3, description="From: address")
    to: tuple[str, ...] = Field(min_length=1, description="recipients")
    timeout: float = Field(defaults.ALERT_SINK_TIMEOUT, gt=0, le=120, description="seconds per attempt")

    @model_validator(mode="after")
    def _addresses(self) -> EmailSink:
        for address in (self.sender, *self.to):
            if "@" not in address:
                raise ValueError(f"invalid address {address!r}: expected user@host")
        return self


class CommandSink(_Strict):
    """Run ``argv`` with the alert as JSON on stdin; exit 0 means delivered."""

    type: Literal["command"]
    argv: tuple[str, ...] = Field(min_length=1, description="the program and its arguments (no shell)")
    timeout: float = Field(defaults.ALERT_SINK_TIMEOUT, gt=0, le=600, description="seconds per attempt")


SinkSettings = Annotated[WebhookSink | SlackSink | EmailSink | CommandSink, Field(discriminator="type")]


class AlertRule(_Strict):
    """One rule: on ``on``, tell ``sinks``. ``after``: the deadline (``deadline``: D after the fire's
    instant), the silence (``silence``: no success for this long), how long without a leader (``no_leader``) or
    a served queue (``no_worker``). ``intervals``: ``silence`` after this many of the job's intervals instead."""

    on: RuleName = Field(description="what to tell about")
    sinks: tuple[str, ...] = Field(description="sink names; [] opts a job out of this rule")
    after: AlertDuration | None = Field(None, description="deadline, silence, no_leader, no_worker: how long")
    intervals: int | None = Field(None, ge=1, description="silence: after this many of the job's intervals")
    window: AlertDuration | None = Field(None, description="grouping window of this rule (default alerts.window)")
    jobs: tuple[str, ...] = Field((), description="top level only: the jobs this rule applies to (default: all)")
    tags: tuple[str, ...] = Field((), description="top level only: jobs carrying any of these tags")

    @model_validator(mode="after")
    def _needs(self) -> AlertRule:
        if not self.sinks:  # an opt-out needs nothing else
            return self
        if self.on == "deadline" and self.after is None:
            raise ValueError("a deadline rule needs after: how long after the fire's instant it must have succeeded")
        if self.on == "silence" and (self.after is None) == (self.intervals is None):
            raise ValueError("a silence rule needs exactly one of after (a duration) or intervals (a count)")
        if self.on not in ("silence",) and self.intervals is not None:
            raise ValueError("intervals applies to silence rules only")
        if self.on in GLOBAL_RULES and (self.jobs or self.tags):
            raise ValueError(f"{self.on} is about the deployment: it takes no jobs nor tags")
        return self

    def grouping(self, default: timedelta) -> timedelta:
        """The grouping window of this rule."""
        return self.window or default

    def describe(self) -> str:
        """``deadline after 30m -> slack`` for humans."""
        after = f" after {format_duration(self.after)}" if self.after else ""
        intervals = f" after {self.intervals} intervals" if self.intervals else ""
        return f"{self.on}{after}{intervals} -> {', '.join(self.sinks) or '(off)'}"


def _job_alerts(value: Any) -> Any:
    """``true``: inherit (None); ``false``: opt out of every job rule (each with no sinks)."""
    if value is True:
        return None
    if value is False:
        return [{"on": on, "sinks": []} for on in JOB_RULES]
    return value


JobAlerts = Annotated[
    tuple[AlertRule, ...] | None,
    BeforeValidator(_job_alerts),
    WithJsonSchema(
        {"anyOf": [{"type": "boolean"}, {"type": "array", "items": {"type": "object"}}], "examples": [False]}
    ),
    Field(description="this job's rules (added, or replacing inherited ones with the same on); false: none"),
]


class AlertSettings(_Strict):
    """Where alerts go (``sinks``) and when (``rules``); delivered by the leader, at least once."""

    window: AlertDuration = Field(
        defaults.ALERT_WINDOW, description="one message per job and rule per window; later ones summed up"
    )
    retry_first: AlertDuration = Field(defaults.ALERT_RETRY_FIRST, description="wait before a delivery's 2nd attempt")
    retry_max: AlertDuration = Field(defaults.ALERT_RETRY_MAX, description="longest wait between delivery attempts")
    sinks: dict[str, SinkSettings] = Field(default_factory=dict, description="named sinks")
    rules: tuple[AlertRule, ...] = Field((), description="rules for every job, or those named or tagged")

    def global_rules(self, on: str) -> tuple[AlertRule, ...]:
        """The top-level rules ``on`` (``no_leader``, ``no_worker``)."""
        return tuple(rule for rule in self.rules if rule.on == on and rule.sinks)


def effective_rules(
    settings: AlertSettings | None, name: str, tags: tuple[str, ...], own: Any
) -> tuple[AlertRule, ...]:
    """The rules that apply to job ``name`` (tagged ``tags``; its own ``alerts:`` is ``own``, None to inherit):
    the top-level job rules that select it, each replaced by the job's rules with the same ``on``, plus the
    job's others; rules with no sinks (opt-outs) dropped. Pure."""
    if settings is None:
        return ()
    mine = tuple(own) if isinstance(own, tuple | list) else ()
    replaced = {rule.on for rule in mine}
    inherited = tuple(
        rule
        for rule in settings.rules
        if rule.on in JOB_RULES
        and rule.on not in replaced
        and (not rule.jobs or name in rule.jobs)
        and (not rule.tags or set(rule.tags) & set(tags))
    )
    return tuple(rule for rule in (*inherited, *mine) if rule.sinks)


def alert_problems(settings: AlertSettings, jobs: Mapping[str, Any], source: Located) -> list[Problem]:
    """The top-level rules' references that point nowhere: an unknown sink, an unknown job."""
    problems = []
    for index, rule in enumerate(settings.rules):
        for at, sink in enumerate(rule.sinks):
            if sink not in settings.sinks:
                problems.append(source.problem(("alerts", "rules", index, "sinks", at), _unknown_sink(sink, settings)))
        for at, job in enumerate(rule.jobs):
            if job not in jobs:
                problems.append(source.problem(("alerts", "rules", index, "jobs", at), f"unknown job {job!r}"))
    return problems


def job_alert_problems(settings: AlertSettings | None, name: str, own: Any, source: Located) -> list[Problem]:
    """A job's own rules' problems: a rule about the deployment, an unknown sink, alerts without ``alerts:``."""
    if not isinstance(own, tuple | list):
        return []
    problems = []
    for index, rule in enumerate(own):
        where = ("jobs", name, "alerts", index)
        if rule.on in GLOBAL_RULES:
            problems.append(
                source.problem((*where, "on"), f"{rule.on} is about the deployment: put it in alerts.rules")
            )
        if rule.jobs or rule.tags:
            problems.append(source.problem(where, "jobs and tags select jobs in alerts.rules only, not under a job"))
        for at, sink in enumerate(rule.sinks):
            if settings is None:
                problems.append(
                    source.problem((*where, "sinks", at), f"unknown sink {sink!r}: no alerts.sinks declared")
                )
            elif sink not in settings.sinks:
                problems.append(source.problem((*where, "sinks", at), _unknown_sink(sink, settings)))
    return problems


def _unknown_sink(sink: str, settings: AlertSettings) -> str:
    known = ", ".join(sorted(settings.sinks)) or "none declared"
    return f"unknown sink {sink!r}: expected one of alerts.sinks ({known})"
