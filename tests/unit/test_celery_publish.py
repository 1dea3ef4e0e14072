"""The AMQP expiration of a relayed task message: what is left of its absolute deadline at publish time; how a
batch's publisher confirms (acks, nacks, returns, each maybe ``multiple``) settle its entries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from beatd.celery_publish import _Confirms, amqp_expiration
from beatd.store.outbox import OutboxEntry

EXPIRES = datetime(2026, 12, 1, 8, 0, 30, tzinfo=UTC)


def test_expiration_counts_down_to_the_expires_header_at_publish_time() -> None:
    """A message that waited 20 s in the outbox keeps 10 s, not the 30 s computed at emission."""
    headers = {"expires": EXPIRES.isoformat()}
    assert amqp_expiration(headers, EXPIRES - timedelta(seconds=30)) == 30.0
    assert amqp_expiration(headers, EXPIRES - timedelta(seconds=10)) == 10.0
    assert amqp_expiration(headers, EXPIRES + timedelta(seconds=5)) == 0.0


def test_no_expires_header_no_expiration() -> None:
    """A task without expires never expires in the broker."""
    assert amqp_expiration({"expires": None}, EXPIRES) is None
    assert amqp_expiration({}, EXPIRES) is None


def _batch(count: int) -> _Confirms:
    confirms = _Confirms()
    for tag in range(1, count + 1):
        envelope = json.dumps({"properties": {"correlation_id": f"task-{tag}"}})
        confirms.sent(tag, OutboxEntry(f"{tag}-0", "celery", envelope))
    return confirms


def test_a_multiple_nack_covers_only_the_unconfirmed_messages() -> None:
    """ack 1, then nack 3 with multiple: 2 and 3 are nacked, 1 stays confirmed (AMQP: multiple covers what is
    not confirmed yet), so the relay deletes it rather than publish it again."""
    confirms = _batch(3)
    confirms.acked(1, multiple=False)
    confirms.nacked(3, multiple=True)
    assert confirms.settled() and confirms.confirmed() == ["1-0"] and confirms.nacks() == 2


def test_a_multiple_ack_after_a_nack_does_not_confirm_the_nacked_one() -> None:
    """nack 1, then ack 3 with multiple: 2 and 3 are confirmed, 1 is not."""
    confirms = _batch(3)
    confirms.nacked(1, multiple=False)
    confirms.acked(3, multiple=True)
    assert confirms.settled() and confirms.confirmed() == ["2-0", "3-0"] and confirms.nacks() == 1


def test_a_returned_message_is_refused_though_acked_after() -> None:
    """basic.return of task-2, then ack 3 with multiple: 1 and 3 confirmed, 2 refused with the return's reason."""
    confirms = _batch(3)
    confirms.returned("task-2", "NO_ROUTE")
    confirms.acked(3, multiple=True)
    assert confirms.settled() and confirms.confirmed() == ["1-0", "3-0"]
    assert confirms.refused() == {"2-0": "NO_ROUTE"}
