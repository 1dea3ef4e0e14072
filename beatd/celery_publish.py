"""Publishing Celery task messages from the outbox to a broker on another server, confirmed by the broker.

A Redis broker confirms by its reply: the envelopes are LPUSHed onto their queue lists (kombu's Redis
transport's, where ``celery worker`` BRPOPs them) in one MULTI, so a batch lands whole or not at all. An AMQP
broker (RabbitMQ) confirms each message with publisher confirms (kombu's py-amqp transport,
``confirm_publish``): the envelope's body, headers and properties are published to the queue's direct exchange,
as Celery's own AMQP producer does, after declaring the queue the way a Celery worker declares it.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
from collections.abc import Sequence
from typing import Any, Protocol

import redis

from beatd import defaults
from beatd.config.model import CelerySettings
from beatd.config.redis_urls import display_url, redis_py_url
from beatd.errors import BeatdError
from beatd.store.base import connect
from beatd.store.outbox import OutboxEntry

__all__ = ["AmqpPublisher", "PublishFailed", "Publisher", "RedisPublisher", "publisher_for"]


class PublishFailed(BeatdError):
    """The broker refused or could not be reached after ``done`` entries of the batch were confirmed."""

    def __init__(self, done: int, reason: str) -> None:
        super().__init__(reason)
        self.done = done


class Publisher(Protocol):
    """Publishes outbox entries in order; returns how many the broker confirmed (all, or raises)."""

    batch: int
    """Most entries the relay hands to one :meth:`publish` (and deletes in one fenced call after)."""

    def publish(self, entries: Sequence[OutboxEntry]) -> int:
        """Publish ``entries``; raise :class:`PublishFailed` (with the confirmed prefix) on a broker error."""
        ...

    def close(self) -> None:
        """Drop the connection."""
        ...


class RedisPublisher:
    """LPUSH onto the queue lists of a Redis broker (the database of its URL)."""

    batch = defaults.RELAY_BATCH

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        self.url = url
        self.client: Any = connect(redis_py_url(url), timeout)

    def publish(self, entries: Sequence[OutboxEntry]) -> int:
        """LPUSH every entry's envelope onto its queue list, in one MULTI."""
        pipe = self.client.pipeline(transaction=True)
        for entry in entries:
            pipe.lpush(entry.queue, entry.envelope)
        try:
            pipe.execute()
        except redis.RedisError as error:
            raise PublishFailed(0, f"Redis broker {display_url(self.url)}: {error}") from error
        return len(entries)

    def close(self) -> None:
        """Close the broker's connections."""
        self.client.close()


class AmqpPublisher:
    """Publish with publisher confirms to an AMQP broker (kombu, py-amqp); reconnects after an error."""

    batch = defaults.RELAY_BATCH_AMQP

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        self.url, self.timeout = url, timeout
        self._connection: Any = None
        self._producer: Any = None
        self._declared: set[str] = set()

    def publish(self, entries: Sequence[OutboxEntry]) -> int:
        """Publish each entry and wait for the broker's confirm before the next."""
        done = 0
        try:
            producer = self._connect()
            for entry in entries:
                self._publish(producer, entry)
                done += 1
        except Exception as error:  # kombu and py-amqp raise many kinds (socket, channel, NACK): all are one outage
            self.close()
            raise PublishFailed(
                done, f"AMQP broker {display_url(self.url)}: {type(error).__name__}: {error}"
            ) from error
        return done

    def _connect(self) -> Any:
        if self._producer is None:
            connection = _kombu().Connection(
                self.url, connect_timeout=self.timeout, transport_options={"confirm_publish": True}
            )
            connection.ensure_connection(max_retries=1)
            self._connection, self._producer, self._declared = connection, connection.Producer(), set()
        return self._producer

    def _publish(self, producer: Any, entry: OutboxEntry) -> None:
        kombu = _kombu()
        envelope = json.loads(entry.envelope)
        properties = envelope["properties"]
        name = properties["delivery_info"]["routing_key"]
        queue = kombu.Queue(
            name, kombu.Exchange(name, type="direct"), routing_key=name
        )  # as a Celery worker declares it
        expiration = properties.get("expiration")
        producer.publish(
            base64.b64decode(envelope["body"]),
            exchange=queue.exchange,
            routing_key=name,
            declare=[queue] if name not in self._declared else [],
            headers=envelope["headers"],
            content_type=envelope["content-type"],
            content_encoding=envelope["content-encoding"],
            correlation_id=properties["correlation_id"],
            delivery_mode=properties.get("delivery_mode", 2),
            priority=properties.get("priority") or 0,
            expiration=int(expiration) / 1000 if expiration is not None else None,
            retry=False,
        )
        self._declared.add(name)

    def close(self) -> None:
        """Close the connection (the next publish opens another)."""
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.release()
        self._connection, self._producer = None, None


def _kombu() -> Any:
    """kombu (``beatd[celery]``), imported only by a relay to an AMQP broker (``check`` requires it there)."""
    return importlib.import_module("kombu")


def publisher_for(celery: CelerySettings) -> Publisher:
    """The publisher of ``celery``'s broker: AMQP for ``amqp://``, else Redis."""
    return AmqpPublisher(celery.broker_url) if celery.amqp else RedisPublisher(celery.broker_url)
