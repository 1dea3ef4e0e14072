"""Publishing Celery task messages from the outbox to a broker on another server, confirmed by the broker.

A Redis broker confirms by its reply: the envelopes are LPUSHed onto their queue lists (kombu's Redis
transport's, where ``celery worker`` BRPOPs them) in one MULTI. A MULTI is not all-or-nothing: a command Redis
refuses at run time (WRONGTYPE: the queue's key is not a list) fails alone while the others are applied, so
the reply of each entry is read: the accepted ones are confirmed (deleted by the relay, never pushed again) and
the refused ones reported with their reason (the relay moves one refused too often aside). An AMQP
broker (RabbitMQ) confirms each message with publisher confirms (kombu's py-amqp transport,
``confirm_publish``): the envelope's body, headers and properties are published to the queue's direct exchange,
as Celery's own AMQP producer does, after declaring the queue the way a Celery worker declares it.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import redis

from beatd import defaults
from beatd.config.model import CelerySettings
from beatd.config.redis_urls import display_url, redis_py_url
from beatd.errors import BeatdError
from beatd.store.base import connect
from beatd.store.outbox import OutboxEntry

__all__ = ["AmqpPublisher", "PublishFailed", "Publisher", "RedisPublisher", "amqp_expiration", "publisher_for"]


class PublishFailed(BeatdError):
    """The broker refused or could not be reached; ``confirmed``: the ids of the batch's entries it accepted
    anyway, ``refused``: the entries it refused by themselves (id: reason), the others being accepted."""

    def __init__(self, confirmed: Sequence[str], reason: str, refused: Mapping[str, str] | None = None) -> None:
        super().__init__(reason)
        self.confirmed = tuple(confirmed)
        self.refused = dict(refused or {})

    @property
    def done(self) -> int:
        """How many entries the broker accepted."""
        return len(self.confirmed)


class Publisher(Protocol):
    """Publishes outbox entries in order; returns how many the broker confirmed (all, or raises
    :class:`PublishFailed` naming the ones it did confirm)."""

    batch: int
    """Most entries the relay hands to one :meth:`publish` (and deletes in one fenced call after)."""

    def publish(self, entries: Sequence[OutboxEntry]) -> int:
        """Publish ``entries``; raise :class:`PublishFailed` (with the confirmed ones) on a broker error."""
        ...

    def close(self) -> None:
        """Drop the connection."""
        ...


class RedisPublisher:
    """LPUSH onto the queue lists of a Redis broker (the database of its URL)."""

    batch = defaults.RELAY_BATCH

    def __init__(self, url: str, timeout: float = defaults.BROKER_TIMEOUT.total_seconds()) -> None:
        self.url = url
        self.client: Any = connect(redis_py_url(url), timeout)

    def publish(self, entries: Sequence[OutboxEntry]) -> int:
        """LPUSH every entry's envelope onto its queue list, in one MULTI; each entry's own reply says whether
        it landed."""
        pipe = self.client.pipeline(transaction=True)
        for entry in entries:
            pipe.lpush(entry.queue, entry.envelope)
        where = f"Redis broker {display_url(self.url)}"
        try:
            replies = pipe.execute(raise_on_error=False)
        except redis.RedisError as error:
            raise PublishFailed((), f"{where}: {error}") from error
        refused = {
            entry.entry_id: f"{type(reply).__name__}: {reply}"
            for entry, reply in zip(entries, replies, strict=True)
            if isinstance(reply, Exception)
        }
        if refused:
            confirmed = [entry.entry_id for entry in entries if entry.entry_id not in refused]
            first = next(iter(refused.values()))
            raise PublishFailed(confirmed, f"{where}: {len(refused)} refused ({first})", refused)
        return len(entries)

    def close(self) -> None:
        """Close the broker's connections."""
        self.client.close()


UNENCODABLE = (ValueError, TypeError, struct.error)
"""What py-amqp raises while it serialises a message's properties, before writing it (an integer header past
64 bits: ``struct.error``; a value it has no type for: ``ValueError``)."""


class AmqpPublisher:
    """Publish in batches with publisher confirms to an AMQP broker (kombu's py-amqp transport); reconnects after
    an error.

    A batch is published on one confirm-mode channel without waiting, then its confirms are awaited together
    (RabbitMQ acks several at once with ``multiple``): one round trip per batch, not per message. Each message
    goes to the default exchange (``""``) with its queue's name as routing key and ``mandatory``: a queue
    deleted, expired or missing while connected makes RabbitMQ return the message (312 NO_ROUTE, sent before its
    ack) instead of acking and dropping it, so nothing unrouted is deleted from the outbox; a returned message,
    one whose queue the broker will not declare and one py-amqp cannot encode are refused by themselves (the
    others of the batch confirmed; counted towards the dead stream), a returned one's queue is declared again
    before the next publish, and a nacked one (a full or unavailable queue) is left for the next publish
    without counting. The queue is declared (as a Celery worker declares it) only when a passive
    declare finds none, so a queue declared with its own arguments (quorum, ``x-max-priority``) or an exchange
    of the same name and another type is used as it is. Connect, read, write and the wait for a batch's
    confirms are bounded by ``timeout``.
    """

    batch = defaults.RELAY_BATCH_AMQP

    def __init__(
        self,
        url: str,
        timeout: float = defaults.BROKER_TIMEOUT.total_seconds(),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url, self.timeout, self.now, self.monotonic = url, timeout, now, monotonic
        self._connection: Any = None
        self._channel: Any = None
        self._declared: set[str] = set()
        self._used = 0.0
        self._tag = 0
        """The delivery tag of the channel's last publish (confirm mode numbers publishes from 1)."""
        self._confirms = _Confirms()

    def publish(self, entries: Sequence[OutboxEntry]) -> int:
        """Publish every entry, then wait for the broker's confirms of all of them."""
        where = f"AMQP broker {display_url(self.url)}"
        confirms = self._confirms = _Confirms()
        undeclared: dict[str, str] = {}
        """Queues the broker refused to declare (a reserved name, no permission): their entries are refused."""
        unencodable: dict[str, str] = {}
        """Entries AMQP cannot carry (a header integer past 64 bits): refused by themselves."""
        try:
            channel = self._connect()
            for name in dict.fromkeys(_queue_of(entry) for entry in entries):
                if name not in self._declared and (why := self._declare(name)) is not None:
                    undeclared[name] = why
            for entry in entries:
                if _queue_of(entry) in undeclared:
                    continue  # refused by itself below: one such queue must not hold up every other one
                try:
                    self._publish(channel, entry)
                except UNENCODABLE as error:  # raised before a byte is written: the channel is unharmed
                    unencodable[entry.entry_id] = f"cannot encode the AMQP message: {type(error).__name__}: {error}"
                    continue
                self._tag += 1
                confirms.sent(self._tag, entry)
            deadline = self.monotonic() + self.timeout
            while not confirms.settled():
                left = deadline - self.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no publisher confirm within {self.timeout:g}s")
                self._connection.drain_events(timeout=left)
        except Exception as error:  # kombu and py-amqp raise many kinds (socket, channel, timeout): all one outage
            self.close()
            raise PublishFailed(confirms.confirmed(), f"{where}: {type(error).__name__}: {error}") from error
        self._used = self.monotonic()
        refused = (
            confirms.refused()
            | {entry.entry_id: undeclared[_queue_of(entry)] for entry in entries if _queue_of(entry) in undeclared}
            | unencodable
        )
        by_id = {entry.entry_id: entry for entry in entries}
        for entry_id in refused:
            self._declared.discard(_queue_of(by_id[entry_id]))  # declared again before the next publish
        if refused:
            first = next(iter(refused.values()))
            raise PublishFailed(confirms.confirmed(), f"{where}: {len(refused)} refused ({first})", refused)
        if nacks := confirms.nacks():
            raise PublishFailed(confirms.confirmed(), f"{where}: {nacks} NACKed (the queue is full or unavailable)")
        return len(entries)

    def _connect(self) -> Any:
        if self._channel is not None and self.monotonic() - self._used > defaults.AMQP_HEARTBEAT:
            self.close()  # idle past the heartbeat: the broker may have dropped it; reopen rather than fail once
        if self._channel is None:
            connection = _kombu().Connection(
                self.url,
                connect_timeout=self.timeout,
                heartbeat=defaults.AMQP_HEARTBEAT,
                transport_options={"read_timeout": self.timeout, "write_timeout": self.timeout},
            )
            connection.ensure_connection(max_retries=1)
            channel = connection.channel()
            channel.events["basic_ack"].add(lambda tag, multiple: self._confirms.acked(tag, multiple))
            channel.events["basic_nack"].add(lambda tag, multiple: self._confirms.nacked(tag, multiple))
            channel.events["basic_return"].add(lambda error, _exchange, _key, message: self._returned(error, message))
            channel.confirm_select()
            self._connection, self._channel, self._declared, self._tag = connection, channel, set(), 0
            self._used = self.monotonic()
        return self._channel

    def _returned(self, error: Exception, message: Any) -> None:
        self._confirms.returned(str(message.properties.get("correlation_id", "")), f"{type(error).__name__}: {error}")

    def _declare(self, name: str) -> str | None:
        """Declare queue ``name`` as a Celery worker does, unless it exists (a passive declare, on a channel of
        its own: a missing queue closes the channel it is asked on); why the broker refused to declare it (a
        reserved ``amq.`` name, no configure permission), None once declared. A refusal closes only the channel:
        the entries for that queue are refused by themselves, the batch's others published."""
        kombu = _kombu()
        channel = self._connection.channel()
        try:
            channel.queue_declare(name, passive=True)
        except self._connection.channel_errors:
            queue = kombu.Queue(name, kombu.Exchange(name, type="direct"), routing_key=name)
            with contextlib.closing(self._connection.channel()) as fresh:
                try:
                    queue(fresh).declare()
                except self._connection.channel_errors as error:
                    return f"cannot declare queue {name!r}: {type(error).__name__}: {error}"
        else:
            channel.close()
        self._declared.add(name)
        return None

    def _publish(self, channel: Any, entry: OutboxEntry) -> None:
        """One basic.publish, as kombu's Producer builds it (``Channel.prepare_message``), without waiting."""
        envelope = json.loads(entry.envelope)
        properties = envelope["properties"]
        extra: dict[str, Any] = {
            "correlation_id": properties["correlation_id"],
            "delivery_mode": properties.get("delivery_mode", 2),
        }
        expiration = amqp_expiration(envelope["headers"], self.now())
        if expiration is not None:
            extra["expiration"] = str(int(expiration * 1000))  # kombu's rounding
        message = channel.prepare_message(
            base64.b64decode(envelope["body"]),
            priority=properties.get("priority") or 0,
            content_type=envelope["content-type"],
            content_encoding=envelope["content-encoding"],
            headers=envelope["headers"],
            properties=extra,
        )
        channel.basic_publish(message, exchange="", routing_key=_queue_of(entry), mandatory=True)

    def close(self) -> None:
        """Close the connection (the next publish opens another)."""
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.release()
        self._connection, self._channel = None, None


class _Confirms:
    """The confirms of one batch: delivery tag -> entry, and what the broker said of each."""

    def __init__(self) -> None:
        self._entries: dict[int, OutboxEntry] = {}
        self._by_task: dict[str, list[int]] = {}
        self._acked: set[int] = set()
        self._refused: dict[int, str] = {}
        self._nacked: set[int] = set()

    def sent(self, tag: int, entry: OutboxEntry) -> None:
        self._entries[tag] = entry
        self._by_task.setdefault(json.loads(entry.envelope)["properties"]["correlation_id"], []).append(tag)

    def _tags(self, tag: int, multiple: bool) -> list[int]:
        """The tags an ack or nack of ``tag`` settles: with ``multiple``, every one up to it not settled yet (an
        earlier ack is not undone by a later multiple nack, nor a nack by an ack)."""
        if not multiple:
            return [tag]
        return [sent for sent in self._entries if sent <= tag and sent not in self._acked]

    def acked(self, tag: int, multiple: bool) -> None:
        self._acked.update(self._tags(tag, multiple))

    def nacked(self, tag: int, multiple: bool) -> None:
        """Nacked messages (a queue at its length limit with reject-publish, a queue without a leader): settled,
        not confirmed, and not refused by themselves either: the broker's state, not the message, so they are
        published again without counting towards the dead stream."""
        tags = self._tags(tag, multiple)
        self._nacked.update(tags)
        self._acked.update(tags)

    def nacks(self) -> int:
        return len(self._nacked - set(self._refused))

    def returned(self, task_id: str, reason: str) -> None:
        """A returned message (unroutable): its ack still follows, so it is only marked refused here. A return
        names no delivery tag, only the task id, and RabbitMQ may ack out of publish order (an unroutable
        message at once, a persistent one after its write): when several entries with that task id are not
        confirmed yet (a fire in the outbox twice), all of them are refused, never the wrong one confirmed."""
        for tag in self._by_task.get(task_id, ()):
            if tag not in self._acked:
                self._refused.setdefault(tag, reason)

    def settled(self) -> bool:
        return all(tag in self._acked for tag in self._entries)

    def confirmed(self) -> list[str]:
        settled = self._acked - set(self._refused) - self._nacked
        return [entry.entry_id for tag, entry in self._entries.items() if tag in settled]

    def refused(self) -> dict[str, str]:
        return {self._entries[tag].entry_id: reason for tag, reason in self._refused.items()}


def _queue_of(entry: OutboxEntry) -> str:
    return str(json.loads(entry.envelope)["properties"]["delivery_info"]["routing_key"])


def amqp_expiration(headers: dict[str, Any], now: datetime) -> float | None:
    """The AMQP ``expiration`` (seconds) of a task message published at ``now``: what is left until its absolute
    ``expires`` header (a message that waited in the outbox keeps its deadline), 0 when past; None without."""
    expires = headers.get("expires")
    if expires is None:
        return None
    return max((datetime.fromisoformat(expires) - now).total_seconds(), 0.0)


def _kombu() -> Any:
    """kombu (``beatd[celery]``), imported only by a relay to an AMQP broker (``check`` requires it there)."""
    return importlib.import_module("kombu")


def publisher_for(celery: CelerySettings) -> Publisher:
    """The publisher of ``celery``'s broker: AMQP for ``amqp://``, else Redis."""
    return AmqpPublisher(celery.broker_url) if celery.amqp else RedisPublisher(celery.broker_url)
