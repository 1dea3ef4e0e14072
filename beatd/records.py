"""RunRecords: what history keeps of every attempt of every fire, as versioned JSON.

A run id is ``{fire_id}#{attempt}``, so it names its job and fire: ``daily_signups@2026-11-21T16:05:00Z#2``; a
fire out of attempts gets a ``dead`` record ``{fire_id}#dead-{attempt}`` (one each time it runs out).
Fires the beat did not emit (``missed``), fires a worker did not run (``skipped``) and fires not started
before their job's ``expires`` ran out (``expired``) have records too, and so do fires of ``celery`` jobs,
recorded ``sent`` when the beat pushed their task message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "FINAL_STATUSES",
    "RECORD_VERSION",
    "RESULT_LIMIT",
    "RunRecord",
    "RunStatus",
    "cap_result",
    "dead_run_id",
    "job_of",
    "run_id",
]

RECORD_VERSION = 1
RESULT_LIMIT = 16_384
"""Most characters of a run's JSON result kept; longer results are cut and flagged ``result_truncated``."""

RunStatus = Literal[
    "queued",
    "running",
    "succeeded",
    "failed",
    "timeout",
    "lost",
    "cancelled",
    "skipped",
    "missed",
    "dead",
    "sent",
    "expired",
]
FINAL_STATUSES = frozenset(
    {"succeeded", "failed", "timeout", "lost", "cancelled", "skipped", "missed", "dead", "sent", "expired"}
)
"""``sent``: a ``celery`` fire handed to the Celery app's broker (its task id in ``extra``); beatd's part ends there."""


def run_id(fire_id: str, attempt: int) -> str:
    """The id of attempt ``attempt`` (1-based) of fire ``fire_id``."""
    return f"{fire_id}#{attempt}"


def dead_run_id(fire_id: str, attempt: int) -> str:
    """The id of the ``dead`` record of fire ``fire_id`` out of attempts after attempt ``attempt``."""
    return f"{fire_id}#dead-{attempt}"


def job_of(identifier: str) -> str:
    """The job named by a fire id or a run id (the part before ``@``)."""
    return identifier.split("@", 1)[0]


def cap_result(value: Any) -> tuple[Any, bool]:
    """A JSON-safe form of a job's return value, cut to RESULT_LIMIT characters; and whether it was cut."""
    if value is None or isinstance(value, bool | int):
        return value, False
    try:
        text = json.dumps(value, allow_nan=False, default=repr)
    except (TypeError, ValueError):
        text = json.dumps(repr(value))
    if len(text) <= RESULT_LIMIT:
        return json.loads(text), False
    return text[:RESULT_LIMIT], True


@dataclass
class RunRecord:
    """One attempt of one fire. Instants are ISO-8601 UTC strings; durations and lags are seconds."""

    run_id: str
    fire_id: str
    job: str
    scheduled_at: str
    trigger: str
    attempt: int
    status: RunStatus
    emitted_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    lag_s: float | None = None
    worker: str | None = None
    result: Any = None
    result_truncated: bool = False
    error: dict[str, str] | None = None
    exit_code: int | None = None
    output: str | None = None
    output_truncated: bool = False
    config_digest: str | None = None
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    v: int = RECORD_VERSION

    def to_json(self, omit: tuple[str, ...] = ()) -> str:
        """Compact JSON, without empty optional fields nor the ``omit`` ones (built from ``__dict__``: this
        runs twice per run)."""
        body = {key: value for key, value in self.__dict__.items() if value is not None}
        if not self.extra:
            del body["extra"]
        if not self.result_truncated:
            del body["result_truncated"]
        if not self.output_truncated:
            del body["output_truncated"]
        for key in omit:
            del body[key]
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        """Decode a stored record (unknown keys of newer versions go to ``extra``)."""
        body = json.loads(text)
        known = set(cls.__dataclass_fields__)
        extra = {key: body.pop(key) for key in list(body) if key not in known}
        record = cls(**body)
        record.extra.update(extra)
        return record
