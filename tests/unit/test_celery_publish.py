"""The AMQP expiration of a relayed task message: what is left of its absolute deadline at publish time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from beatd.celery_publish import amqp_expiration

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
