"""Fire messages: the versioned JSON the beat writes into a queue stream and workers read.

A message names a job, never code: a worker resolves the target from its own config. Fire ids derive from
the job and the scheduled instant (``daily_signups@2026-11-21T16:05:00Z``), so the same fire always has the
same id; a manual or backfill fire adds its trigger and emission time, because re-running a day on purpose
is a new fire of the same instant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from beatd.errors import BeatdError

__all__ = [
    "MESSAGE_VERSION",
    "FireTrigger",
    "Message",
    "MessageError",
    "MessageTemplate",
    "fire_id",
    "format_utc",
    "from_ms",
    "parse_utc",
    "scheduled_fire_id",
    "to_ms",
]

MESSAGE_VERSION = 1
FireTrigger = Literal["schedule", "catchup", "manual", "backfill"]
_TRIGGERS = frozenset(get_args(FireTrigger))


class MessageError(BeatdError):
    """A queue entry is not a message this version of beatd understands."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def to_ms(instant: datetime) -> int:
    """Epoch milliseconds of an aware instant (floored; exact integer arithmetic)."""
    return (instant - _EPOCH) // _MILLISECOND


def from_ms(value: int) -> datetime:
    """Aware UTC instant of epoch milliseconds."""
    return _EPOCH + value * _MILLISECOND


def format_utc(instant: datetime) -> str:
    """ISO-8601 in UTC with a ``Z`` and milliseconds only when needed: ``2026-11-21T16:05:00Z``."""
    utc = instant.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds" if utc.microsecond else "seconds") + "Z"


def parse_utc(text: str) -> datetime:
    """Inverse of :func:`format_utc` (accepts any ISO-8601 with an offset)."""
    instant = datetime.fromisoformat(text)
    if instant.tzinfo is None:
        raise ValueError(f"instant without offset: {text!r}")
    return instant.astimezone(UTC)


def scheduled_fire_id(job: str, scheduled_text: str) -> str:
    """The id of a scheduled or catch-up fire from its already formatted instant: ``job@scheduled``."""
    return f"{job}@{scheduled_text}"


def fire_id(
    job: str, scheduled_at: datetime, trigger: FireTrigger = "schedule", emitted_at: datetime | None = None
) -> str:
    """The id of a fire: ``job@scheduled`` for scheduled and catch-up fires, plus ``/trigger@emitted`` else."""
    base = scheduled_fire_id(job, format_utc(scheduled_at))
    if trigger in ("schedule", "catchup") or emitted_at is None:
        return base
    return f"{base}/{trigger}@{format_utc(emitted_at)}"


@dataclass(frozen=True)
class Message:
    """One fire on the wire. ``scheduled_at`` is the logical instant; ``emitted_at`` when the beat sent it."""

    fire_id: str
    job: str
    scheduled_at: str
    emitted_at: str
    trigger: FireTrigger
    config_digest: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    v: int = MESSAGE_VERSION

    def to_json(self) -> str:
        """Compact JSON, ``v`` first for humans reading a stream (built by hand: this runs for every fire)."""
        body = {
            "v": self.v,
            "fire_id": self.fire_id,
            "job": self.job,
            "scheduled_at": self.scheduled_at,
            "emitted_at": self.emitted_at,
            "trigger": self.trigger,
            "config_digest": self.config_digest,
            "args": self.args,
            "kwargs": self.kwargs,
        }
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Message:
        """Decode and check a message; raise MessageError saying what is wrong."""
        try:
            body = json.loads(text)
        except (ValueError, UnicodeDecodeError) as error:
            raise MessageError(f"not JSON: {error}") from error
        if not isinstance(body, dict):
            raise MessageError("not a JSON object")
        if body.get("v") != MESSAGE_VERSION:
            raise MessageError(f"unknown message version {body.get('v')!r}, expected {MESSAGE_VERSION}")
        try:
            message = cls(**body)
        except TypeError as error:
            raise MessageError(f"malformed message: {error}") from error
        for name in ("fire_id", "job", "scheduled_at", "emitted_at", "trigger", "config_digest"):
            if not isinstance(getattr(message, name), str):
                raise MessageError(f"malformed message: {name} is not a string")
        if message.trigger not in _TRIGGERS:
            raise MessageError(f"malformed message: unknown trigger {message.trigger!r}")
        if not isinstance(message.args, list) or not isinstance(message.kwargs, dict):
            raise MessageError("malformed message: args must be a list and kwargs an object")
        try:
            parse_utc(message.scheduled_at)
        except ValueError as error:
            raise MessageError(f"malformed message: scheduled_at: {error}") from error
        return message


class MessageTemplate:
    """The scheduled fires of one job as text with only the instants and the trigger to fill in: the same
    characters :meth:`Message.to_json` writes (a burst builds one message per fire; this costs a few
    concatenations instead of a JSON encoding). Small: it holds the job name and one string."""

    __slots__ = ("_name", "_tail")

    def __init__(self, job: str, config_digest: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        escaped = json.dumps(job)[1:-1]
        self._name = job if escaped == job else escaped  # a job name needs no escaping: share the string
        compact = (",", ":")
        self._tail = (
            f',"config_digest":{json.dumps(config_digest)},"args":{json.dumps(args, separators=compact)},'
            f'"kwargs":{json.dumps(kwargs, separators=compact)}}}'
        )

    def fill(self, scheduled_at: str, emitted_at: str, trigger: str) -> str:
        """The message of the scheduled or catch-up fire at ``scheduled_at`` (:func:`format_utc` text, as the
        fire id takes it), emitted at ``emitted_at``."""
        name = self._name
        return (
            f'{{"v":{MESSAGE_VERSION},"fire_id":"{name}@{scheduled_at}","job":"{name}","scheduled_at":"{scheduled_at}",'
            f'"emitted_at":"{emitted_at}","trigger":"{trigger}"{self._tail}'
        )
