"""Manual and backfill fires of a ``celery`` job: pushed to the Celery broker, each recorded ``sent``.

``beatd trigger`` and ``beatd backfill`` call :func:`send_celery_fires` for a celery job instead of enqueueing
into a beatd queue stream; there is no beatd run to wait for (Celery runs it: ``beatd show`` reads its outcome).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from beatd.celery_broker import probe_broker
from beatd.config import Config, JobSpec
from beatd.emission import celery_write
from beatd.errors import UsageProblem
from beatd.messages import Message, parse_utc
from beatd.store import Store, StoreUnavailable

__all__ = ["CeleryRefused", "send_celery_fires"]


class CeleryRefused(UsageProblem):
    """Redis refused some pushes (the broker's database cannot be SELECTed, its queue key holds another type);
    exit 2, naming the first fire and why."""


def send_celery_fires(
    config: Config, store: Store, spec: JobSpec, messages: list[Message], now: datetime, audit: dict[str, Any],
    *, wait: bool,
) -> list[dict[str, str]]:  # fmt: skip
    """Push the task messages of ``messages`` (fires of the celery job ``spec``), their ``sent`` records and the
    ``audit`` record; return ``{fire_id, task_id, celery_queue}`` per fire. ``wait`` is refused: Celery runs it."""
    if config.settings.celery is None:  # check refuses a celery job without the section
        raise UsageProblem(f"job {spec.name!r} is a celery job but the config has no celery section")
    if wait:
        raise UsageProblem(
            f"--wait: {spec.name} is a celery job, run by Celery's workers; `beatd show FIRE_ID` reads its outcome"
        )
    keys, celery = config.keys_of(spec.name), config.settings.celery
    # As the beat decides: beatd's own server gets the push directly, another broker the outbox (the leader's
    # relay publishes it; with no beat running, it waits there).
    found = probe_broker(store.client, store.db, celery, [])
    if found.unknown:  # never settle for the outbox because Redis restarted between two questions
        raise StoreUnavailable(found.notes[0])
    outbox = found.outbox is not None
    sends = [
        celery_write(spec, message.fire_id, parse_utc(message.scheduled_at), message.trigger, message.to_json(), now,
                     keys, celery, outbox=outbox)
        for message in messages
    ]  # fmt: skip
    refusals = store.send_celery([send.write for send in sends], audit)
    refused = [(message.fire_id, error) for message, error in zip(messages, refusals, strict=True) if error]
    if refused:
        fire, error = refused[0]
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise CeleryRefused(
            f"Redis refused the push of {fire}{more} to the Celery broker: {error}; "
            f"{len(messages) - len(refused)} of {len(messages)} fire(s) sent, the refused ones left no record"
        )
    return [
        {"fire_id": message.fire_id, "task_id": send.task_id, "celery_queue": send.queue}
        for message, send in zip(messages, sends, strict=True)
    ]
