"""What ``trigger`` and ``backfill`` put into a queue: a fire's message, signed as the workers expect."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from beatd.config import Config, JobSpec
from beatd.messages import FireTrigger, Message, fire_id, format_utc
from beatd.signing import Signer

__all__ = ["fire_message", "signed"]


def fire_message(
    spec: JobSpec,
    scheduled: datetime,
    now: datetime,
    trigger: FireTrigger,
    arguments: tuple[list[Any], dict[str, Any]] | None = None,
) -> Message:
    """The message of one fire of ``spec`` at ``scheduled``, emitted ``now`` by hand (``manual``, ``backfill``);
    ``arguments``: the (args, kwargs) it runs with when a trigger overrode them (``beatd.overrides``)."""
    args, kwargs = arguments if arguments is not None else (list(spec.args), dict(spec.kwargs))
    identifier = fire_id(spec.name, scheduled, trigger, now)
    if trigger == "manual":
        # Two triggers in one millisecond (an application calling trigger() concurrently) would share an id,
        # and so their attempts, records and ends; a backfill's fires differ by their scheduled instants.
        identifier += "~" + secrets.token_hex(3)
    return Message(
        fire_id=identifier,
        job=spec.name,
        scheduled_at=format_utc(scheduled),
        emitted_at=format_utc(now),
        trigger=trigger,
        config_digest=spec.digest,
        args=args,
        kwargs=kwargs,
    )


def signed(config: Config, messages: list[Message]) -> list[tuple[str, str]]:
    """Each message's JSON and its signature by the config's signing key ("" when it has none)."""
    key = config.settings.security.signing_key
    signer = Signer(key) if key else None
    return [(text, signer.sign(text) if signer else "") for text in (message.to_json() for message in messages)]
