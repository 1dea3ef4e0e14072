"""The Celery outbox relay under kill -9 of the beat leader: how often is a task message published twice?

Commands (from the repo root)::

    .venv/bin/python bench/celery_relay.py --broker redis --jobs 200 --kills 20
    .venv/bin/python bench/celery_relay.py --broker amqp --jobs 200 --kills 20     # the local RabbitMQ
    .venv/bin/python bench/celery_relay.py --broker redis --jobs 200 --kills 20 --aim-ms 300

Set-up: a private redis-server for beatd and, with ``--broker redis``, a second one as the Celery broker
(database 1); with ``--broker amqp`` the RabbitMQ at 127.0.0.1:5672 (guest/guest), a fresh queue per run.
--jobs celery jobs ``every: 1s`` (``catchup: all``, all due at the same instant: each second the relay has
--jobs messages, in batches of ``defaults.RELAY_BATCH``), leader lease --lease, --replicas beat processes.
No Celery worker consumes: the messages stay in the broker, where they are counted by task id.

Kill series, --kills times: after a random 1 .. 3 s (with --aim-ms, then at a random 0 .. AIM ms past the next
whole second, when the fires are due: aimed at the relay's publishing), ``kill -9`` the leader's pid (from
its fencing token), start a replacement at once, and wait until another token holds the lease. At the end
every replica is stopped (SIGTERM) and the broker's messages counted:

* sent = ``sent`` run records (a task message written to the outbox with the job's progress, atomically);
* duplicate publishes = messages in the broker beyond one per task id (a batch the broker confirmed that the
  killed leader had not yet deleted from the outbox, published again by the next leader);
* lost = sent task ids neither in the broker nor still in the outbox (expected 0: at least once).

Prints a table and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

sys.path.insert(0, str(C.REPO))
from beatd import defaults
from beatd.keys import Keys
from beatd.localredis import RedisServer

NAMESPACE = "bench"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=("redis", "amqp"), default="redis")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--lease", default="1s")
    parser.add_argument(
        "--aim-ms", type=float, default=0.0,
        help="kill at a random 0 .. AIM ms after a whole second (when the fires are due and relayed); 0: any time",
    )  # fmt: skip
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    own = RedisServer(folder / "own")
    own.start()
    broker = RedisServer(folder / "broker") if args.broker == "redis" else None
    queue = "celery" if broker else f"beatd-bench-{uuid.uuid4().hex[:8]}"
    if broker is not None:
        broker.start()
        broker_url = f"redis://127.0.0.1:{broker.port}/1"
    else:
        broker_url = AMQP_URL
    config = folder / "beatd.yaml"
    jobs = "".join(
        f"  r{index:04d}: {{celery: bench.task, every: 1s, catchup: all, options: {{queue: {queue}}}}}\n"
        for index in range(args.jobs)
    )
    config.write_text(
        f"redis: {{url: '{own.url}'}}\nnamespace: {NAMESPACE}\nleader: {{lease: {args.lease}}}\n"
        f"celery: {{broker_url: '{broker_url}'}}\njobs:\n{jobs}"
    )
    client = redis.Redis(port=own.port, decode_responses=True)
    keys = Keys(NAMESPACE)
    processes: list[subprocess.Popen[bytes]] = []
    started = time.monotonic()
    machine = C.machine()

    def launch() -> None:
        log = (folder / f"beat-{len(processes)}.log").open("ab")
        processes.append(
            subprocess.Popen([sys.executable, "-m", "beatd", "beat", "-c", str(config)], cwd=C.REPO, stdout=log,
                             stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        )  # fmt: skip

    def token() -> str | None:
        value = client.get(keys.leader)
        return str(value) if value else None

    try:
        for _ in range(args.replicas):
            launch()
        _until(lambda: token() is not None, 30, "a leader")
        time.sleep(2)
        for kill in range(args.kills):
            time.sleep(random.uniform(1.0, 3.0))
            if args.aim_ms:
                now = time.time()
                time.sleep(1 - now % 1 + random.uniform(0, args.aim_ms) / 1000)
            _until(lambda: token() is not None, 30, "a leader")  # a loaded machine may lapse a 1 s lease
            old = token()
            assert old is not None
            pid = int(old.split(":")[2])
            os.kill(pid, signal.SIGKILL)
            next(process for process in processes if process.pid == pid).wait()
            launch()
            _until(lambda old=old: token() not in (None, old), 30, f"a new leader after kill {kill + 1}")
        time.sleep(3)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(30)
        sent = _sent_task_ids(client, keys, args.jobs)
        waiting = [json.loads(fields["envelope"])["headers"]["id"] for _, fields in client.xrange(keys.celery_outbox)]
        published = _published_redis(broker, queue) if broker is not None else _published_amqp(queue)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        own.stop()
        if broker is not None:
            broker.stop()
    counts = Counter(published)
    duplicates = sum(count - 1 for count in counts.values())
    twice = sum(1 for count in counts.values() if count > 1)
    lost = len(set(sent) - set(counts) - set(waiting))
    result: dict[str, Any] = {
        "broker": args.broker,
        "jobs": args.jobs,
        "kills": args.kills,
        "replicas": args.replicas,
        "lease": args.lease,
        "aim_ms": args.aim_ms,
        "relay_batch": defaults.RELAY_BATCH_AMQP if args.broker == "amqp" else defaults.RELAY_BATCH,
        "sent": len(sent),
        "published": len(published),
        "duplicate_publishes": duplicates,
        "task_ids_published_twice_or_more": twice,
        "duplicates_per_kill": round(duplicates / max(args.kills, 1), 2),
        "duplicate_rate": round(duplicates / max(len(sent), 1), 5),
        "lost": lost,
        "left_in_outbox": len(waiting),
        "wall_s": round(time.monotonic() - started, 1),
        "machine": machine,
    }
    C.print_table(
        ["broker", "jobs", "kills", "sent", "published", "duplicates", "per kill", "rate", "lost", "outbox left"],
        [[args.broker, args.jobs, args.kills, len(sent), len(published), duplicates, result["duplicates_per_kill"],
          result["duplicate_rate"], lost, len(waiting)]],
    )  # fmt: skip
    print(json.dumps(result))


def _until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def _sent_task_ids(client: redis.Redis, keys: Keys, jobs: int) -> list[str]:
    ids: list[str] = []
    for index in range(jobs):
        for record in client.hvals(keys.runs(f"r{index:04d}")):
            parsed = json.loads(record)
            if parsed["status"] == "sent":
                ids.append(parsed["extra"]["task_id"])
    return ids


def _published_redis(broker: RedisServer, queue: str) -> list[str]:
    client = redis.Redis(port=broker.port, db=1, decode_responses=True)
    return [json.loads(item)["headers"]["id"] for item in client.lrange(queue, 0, -1)]


def _published_amqp(queue: str) -> list[str]:
    from kombu import Connection, Exchange, Queue

    ids: list[str] = []
    with Connection(AMQP_URL, connect_timeout=5) as connection:
        bound = Queue(queue, Exchange(queue, type="direct"), routing_key=queue)(connection.default_channel)
        while (message := bound.get(no_ack=True)) is not None:
            ids.append(str(message.headers["id"]))
        bound.delete()
    return ids


if __name__ == "__main__":
    main()
