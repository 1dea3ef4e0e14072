"""The AMQP publisher of the outbox relay against a real RabbitMQ (skipped, with the reason, when it does not
answer at 127.0.0.1:5672): unroutable messages fail the publish, existing queues are used as declared, and a
stalled broker fails within the timeout instead of blocking the relay."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from beatd.celery_publish import AmqpPublisher, PublishFailed
from beatd.store.outbox import OutboxEntry
from tests.integration.test_celery_relay import RABBITMQ, rabbitmq_unreachable
from tests.tcp_proxy import TcpProxy

URL = f"amqp://guest:guest@{RABBITMQ[0]}:{RABBITMQ[1]}//"


@pytest.fixture
def queue() -> Iterator[str]:
    """A fresh queue name; the queue and any exchange of that name are deleted afterwards."""
    if (why := rabbitmq_unreachable()) is not None:
        pytest.skip(why)
    from kombu import Connection

    name = f"beatd_test_{uuid.uuid4().hex[:8]}"
    yield name
    with Connection(URL) as connection:
        for delete in ("queue_delete", "exchange_delete"):
            channel = connection.channel()
            getattr(channel, delete)(name)
            channel.close()


def _entry(queue: str, entry_id: str) -> OutboxEntry:
    envelope = {
        "body": base64.b64encode(b"[[],{},{}]").decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"id": entry_id, "task": "tests.record"},
        "properties": {
            "correlation_id": entry_id,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": entry_id,
        },
    }
    return OutboxEntry(entry_id, queue, json.dumps(envelope))


def _depth(queue: str) -> int:
    from kombu import Connection

    with Connection(URL) as connection:
        return int(connection.channel().queue_declare(queue, passive=True).message_count)


def test_a_queue_deleted_while_connected_fails_the_publish_instead_of_dropping_it(queue: str) -> None:
    """RabbitMQ acks an unroutable message unless it is mandatory: with the queue deleted between two publishes
    on one connection, the second fails (nothing confirmed, so the relay deletes nothing), and the retry
    declares the queue again and lands the message."""
    from kombu import Connection

    publisher = AmqpPublisher(URL)
    try:
        assert publisher.publish([_entry(queue, "1-0")]) == 1
        assert _depth(queue) == 1
        with Connection(URL) as connection:
            connection.channel().queue_delete(queue)
        with pytest.raises(PublishFailed, match="NO_ROUTE") as failed:
            publisher.publish([_entry(queue, "2-0")])
        assert failed.value.done == 0
        assert publisher.publish([_entry(queue, "2-0")]) == 1
        assert _depth(queue) == 1
    finally:
        publisher.close()


def test_an_existing_quorum_queue_and_a_same_named_exchange_of_another_type_are_used_as_they_are(queue: str) -> None:
    """A queue declared by its owner with arguments (quorum) and an exchange of its name of another type: the
    publisher declares nothing over them (that was 406 PRECONDITION_FAILED on every retry) and publishes through
    the default exchange."""
    from kombu import Connection, Exchange, Queue

    with Connection(URL) as connection:
        channel = connection.channel()
        Queue(queue, queue_arguments={"x-queue-type": "quorum"})(channel).declare()
        Exchange(queue, type="fanout")(channel).declare()
    publisher = AmqpPublisher(URL)
    try:
        assert publisher.publish([_entry(queue, "1-0"), _entry(queue, "2-0")]) == 2
        assert publisher.publish([_entry(queue, "3-0")]) == 1
    finally:
        publisher.close()
    assert _depth(queue) == 3


def test_a_stalled_broker_fails_the_publish_within_the_timeout(queue: str) -> None:
    """A broker that stops answering mid-connection (no RST): the publish raises PublishFailed within a few
    timeouts (it blocked forever: no confirm timeout, no read timeout)."""
    proxy = TcpProxy(RABBITMQ)
    publisher = AmqpPublisher(f"amqp://guest:guest@127.0.0.1:{proxy.port}//", timeout=1.0)
    try:
        assert publisher.publish([_entry(queue, "1-0")]) == 1
        proxy.stalled.set()
        outcome: dict[str, Any] = {}

        def publish() -> None:
            try:
                outcome["done"] = publisher.publish([_entry(queue, "2-0")])
            except PublishFailed as error:
                outcome["failed"] = error

        started = time.monotonic()
        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        thread.join(15)
        assert not thread.is_alive(), "the publish still blocks on a stalled broker"
        assert "failed" in outcome and time.monotonic() - started < 15
    finally:
        proxy.close()
        publisher.close()


def test_a_batch_with_one_unroutable_message_confirms_the_others_and_refuses_that_one(queue: str) -> None:
    """A batch is confirmed message by message: with one of its two queues deleted while connected, the broker's
    return refuses that entry alone (NO_ROUTE), the others are confirmed once, and the next publish declares the
    deleted queue again."""
    from kombu import Connection

    other = f"{queue}_other"
    publisher = AmqpPublisher(URL)
    try:
        assert publisher.publish([_entry(queue, "1-0"), _entry(other, "2-0")]) == 2
        with Connection(URL) as connection:
            connection.channel().queue_delete(other)
        batch = [_entry(queue, "3-0"), _entry(other, "4-0"), _entry(queue, "5-0")]
        with pytest.raises(PublishFailed, match=r"1 refused .*NO_ROUTE") as failed:
            publisher.publish(batch)
        assert failed.value.confirmed == ("3-0", "5-0") and list(failed.value.refused) == ["4-0"]
        assert _depth(queue) == 3
        assert publisher.publish([_entry(other, "4-0")]) == 1
        assert _depth(other) == 1
    finally:
        publisher.close()
        with Connection(URL) as connection:
            connection.channel().queue_delete(other)


def test_a_large_batch_is_confirmed_whole(queue: str) -> None:
    """A batch of RELAY_BATCH_AMQP messages is published and confirmed in one call, each message landing once."""
    from beatd import defaults

    publisher = AmqpPublisher(URL)
    try:
        count = defaults.RELAY_BATCH_AMQP
        assert publisher.publish([_entry(queue, f"{n}-0") for n in range(count)]) == count
        assert publisher.publish([_entry(queue, f"{n}-1") for n in range(count)]) == count
    finally:
        publisher.close()
    assert _depth(queue) == 2 * defaults.RELAY_BATCH_AMQP


def test_a_queue_the_broker_refuses_to_declare_refuses_its_entries_alone(queue: str) -> None:
    """A queue RabbitMQ will not declare (a reserved ``amq.`` name) refuses that queue's entries by themselves,
    with the broker's reason, and the batch's others are published and confirmed: one misnamed job does not stall
    the outbox for every other one (its entries count as refusals and go to the dead stream in time)."""
    publisher = AmqpPublisher(URL)
    try:
        batch = [_entry(queue, "1-0"), _entry("amq.beatd_reserved", "2-0"), _entry(queue, "3-0")]
        with pytest.raises(PublishFailed, match=r"1 refused .*ACCESS_REFUSED") as failed:
            publisher.publish(batch)
        assert failed.value.confirmed == ("1-0", "3-0") and list(failed.value.refused) == ["2-0"]
        assert _depth(queue) == 2
        assert publisher.publish([_entry(queue, "4-0")]) == 1  # the connection was kept
    finally:
        publisher.close()
    assert _depth(queue) == 3


def test_a_return_refuses_its_own_message_when_two_share_a_task_id(queue: str) -> None:
    """Two entries of one batch with the same task id (correlation id), the first to a queue deleted while
    connected: the broker's return refuses the first, the one it returned, never confirming it in the other's
    place (a return carries no delivery tag; the second, if not confirmed yet, is refused too: at least once)."""
    from kombu import Connection

    other = f"{queue}_other"

    def entry(name: str, entry_id: str) -> OutboxEntry:
        shared = _entry(name, entry_id)
        envelope = json.loads(shared.envelope)
        envelope["properties"]["correlation_id"] = envelope["headers"]["id"] = "same-task"
        return OutboxEntry(entry_id, name, json.dumps(envelope))

    publisher = AmqpPublisher(URL)
    try:
        assert publisher.publish([_entry(other, "1-0")]) == 1
        with Connection(URL) as connection:
            connection.channel().queue_delete(other)
        with pytest.raises(PublishFailed, match=r"[12] refused .*NO_ROUTE") as failed:
            publisher.publish([entry(other, "2-0"), entry(queue, "3-0")])
        assert "2-0" in failed.value.refused and "2-0" not in failed.value.confirmed
        assert set(failed.value.confirmed) | set(failed.value.refused) == {"2-0", "3-0"}
    finally:
        publisher.close()
        with Connection(URL) as connection:
            connection.channel().queue_delete(other)
    assert _depth(queue) == 1


def test_a_message_amqp_cannot_encode_is_refused_alone(queue: str) -> None:
    """An entry whose headers AMQP cannot carry (an integer past 64 bits, valid JSON and a valid config) is
    refused by itself with the reason and the batch's others confirmed on the same connection: it does not fail
    every batch as an outage, holding up the whole outbox."""
    big = _entry(queue, "2-0")
    envelope = json.loads(big.envelope)
    envelope["headers"]["big"] = 2**70
    publisher = AmqpPublisher(URL)
    try:
        batch = [_entry(queue, "1-0"), OutboxEntry("2-0", queue, json.dumps(envelope)), _entry(queue, "3-0")]
        with pytest.raises(PublishFailed, match=r"1 refused \(cannot encode the AMQP message") as failed:
            publisher.publish(batch)
        assert failed.value.confirmed == ("1-0", "3-0") and list(failed.value.refused) == ["2-0"]
        assert publisher.publish([_entry(queue, "4-0")]) == 1
    finally:
        publisher.close()
    assert _depth(queue) == 3


def test_a_nack_leaves_the_entry_for_a_retry_never_counted_as_a_refusal(queue: str) -> None:
    """A queue at its x-max-length with reject-publish nacks what does not fit: those entries are neither
    confirmed nor refused by themselves (a full queue drains; counting them would move a burst of task messages
    to the dead stream within seconds), the one that fit is confirmed, and once the queue drains they land."""
    from kombu import Connection

    with Connection(URL) as connection:
        arguments = {"x-max-length": 1, "x-overflow": "reject-publish"}
        connection.channel().queue_declare(queue, durable=True, auto_delete=False, arguments=arguments)
    publisher = AmqpPublisher(URL)
    try:
        with pytest.raises(PublishFailed, match=r"NACK") as failed:
            publisher.publish([_entry(queue, "1-0"), _entry(queue, "2-0"), _entry(queue, "3-0")])
        assert failed.value.confirmed == ("1-0",) and failed.value.refused == {}
        with Connection(URL) as connection:
            connection.channel().queue_purge(queue)
        assert publisher.publish([_entry(queue, "2-0")]) == 1
    finally:
        publisher.close()
    assert _depth(queue) == 1
