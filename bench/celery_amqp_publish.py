"""Throughput of the outbox relay's AMQP publisher alone: task messages per second into the local RabbitMQ.

Command (from the repo root; RabbitMQ at 127.0.0.1:5672, guest/guest)::

    .venv/bin/python bench/celery_amqp_publish.py --messages 20000 --repeats 3

Publishes --messages Celery task messages (each ~0.9 KB, the envelope beatd's outbox holds) to a fresh queue
with ``beatd.celery_publish.AmqpPublisher``, in batches of ``defaults.RELAY_BATCH_AMQP`` (or --batch): each
batch is published, then its publisher confirms awaited together. Reports messages/s per repeat (wall time of
the publishes only; the envelopes are built before) and checks the queue holds every message; the queue is
deleted afterwards. No beatd Redis is involved: the relay's fenced Redis step per batch is not counted.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from beatd import defaults
from beatd.celery_publish import AmqpPublisher
from beatd.store.outbox import OutboxEntry

URL = "amqp://guest:guest@127.0.0.1:5672//"


def entry(queue: str, n: int) -> OutboxEntry:
    """One outbox entry as the fenced script writes it for ``queue``."""
    task_id = str(uuid.uuid4())
    body = json.dumps([[n, "two"], {"region": "eu", "pad": "x" * 300}, {"callbacks": None, "errbacks": None}])
    envelope = {
        "body": base64.b64encode(body.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "py", "task": "bench.noop", "id": task_id, "root_id": task_id, "retries": 0},
        "properties": {
            "correlation_id": task_id,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return OutboxEntry(f"{n}-0", queue, json.dumps(envelope))


def main() -> int:
    """Run the repeats; print one line per repeat and a final JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=defaults.RELAY_BATCH_AMQP)
    args = parser.parse_args()
    from kombu import Connection

    rates = []
    for repeat in range(args.repeats):
        queue = f"beatd_bench_{uuid.uuid4().hex[:8]}"
        entries = [entry(queue, n) for n in range(args.messages)]
        publisher = AmqpPublisher(URL)
        try:
            publisher.publish(entries[:1])  # connect and declare outside the timing
            started = time.perf_counter()
            for start in range(1, len(entries), args.batch):
                publisher.publish(entries[start : start + args.batch])
            elapsed = time.perf_counter() - started
        finally:
            publisher.close()
        with Connection(URL) as connection:
            channel = connection.channel()
            depth = int(channel.queue_declare(queue, passive=True).message_count)
            channel.queue_delete(queue)
            channel.exchange_delete(queue)
        rate = (args.messages - 1) / elapsed
        rates.append(rate)
        done = args.messages - 1
        print(f"repeat {repeat + 1}: {done} messages in {elapsed:.2f}s: {rate:,.0f}/s (queue held {depth})")
        if depth != args.messages:
            print(f"queue held {depth}, expected {args.messages}", file=sys.stderr)
            return 1
    print(json.dumps({"messages": args.messages, "batch": args.batch, "rates": [round(rate) for rate in rates]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
