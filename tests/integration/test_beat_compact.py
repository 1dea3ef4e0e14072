"""The beat keeps a compact job per job: it schedules exactly what it scheduled from whole JobSpecs (the same
fires, messages, digests, missed records and alert events), for YAML jobs of every kind and runtime jobs."""

from __future__ import annotations

import json
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from beatd.beat import Beat
from beatd.clock import FixedClock
from beatd.config import Config, load_config
from beatd.config.compact import CompactJob
from beatd.identity import Identity
from beatd.keys import Keys
from beatd.messages import parse_utc, to_ms
from beatd.runtime_judge import Judge
from beatd.store import Store, connect
from tests.redis_server import RedisServer

HOST = datetime(2030, 1, 1, tzinfo=UTC)
BODIES = [  # (name prefix, body): each written under three names; {at} is five minutes before the test begins
    ("e", '{every: 1s, command: ["true"], catchup: all, catchup_limit: 1000}'),
    ("s", "{every: 2s, call: m:f, start: '2026-06-01T00:00:00.500Z', end: '2036-01-01T00:00:00Z', args: [1], "
          "catchup: all, catchup_limit: 1000}"),
    ("c", "{cron: 'H/2 * * * *', call: m:f, kwargs: {a: 1, b: [2]}, tags: [nightly], catchup: all}"),
    ("j", '{every: 2s, jitter: 1s, command: ["true"], expires: 10s, catchup: all, catchup_limit: 1000}'),
    ("a", "{at: ['{at}'], call: m:f, catchup: all}"),
    ("g", "{every: 1h, start: '{at}', call: m:f, catchup: none}"),  # one missed fire; g-x2 alerts by name
    ("t", "{every: 1h, start: '{at}', call: m:f, catchup: none, tags: [nightly]}"),  # alerts by tag
    ("k", "{every: 1h, start: '{at}', call: m:f, catchup: none, alerts: [{on: missed, sinks: [hook]}]}"),
]  # fmt: skip
NAMES = ("x1", "x2", "x3")


def _config(tmp_path: Path, server: RedisServer, namespace: str) -> Path:
    at = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0).isoformat()
    jobs = "".join(f"  {prefix}-{name}: {body.replace('{at}', at)}\n" for prefix, body in BODIES for name in NAMES)
    path = tmp_path / f"{namespace}.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        redis: {{url: '{server.url}'}}
        namespace: {namespace}
        leader: {{lease: 30s}}
        alerts:
          sinks:
            hook: {{type: webhook, url: 'http://127.0.0.1:9/', secret: '0123456789abcdef', timeout: 5}}
          rules:
            - {{on: missed, sinks: [hook], jobs: [g-x2]}}
            - {{on: missed, sinks: [hook], tags: [nightly]}}
        runtime_jobs: {{allow: ['m:*']}}
        jobs:
        """)
        + jobs
    )
    return path


def _lead(runs: list[tuple[Config, str, dict[str, CompactJob]]], server: RedisServer) -> list[dict[str, Any]]:
    """Lead each ``(config, namespace, runtime jobs)`` side by side (one tick each in turn) for three seconds,
    every job's progress ten minutes old (so each catches up or misses by its policy); what each wrote, by
    job, without the instants of emission, and of the fires due since the start only those both had time for
    (each beat starts from its own now)."""
    clock = FixedClock(HOST)
    client = server.client()
    begun = datetime.now(UTC)
    beats = []
    for config, namespace, runtime in runs:
        keys = Keys(namespace)
        beat = Beat(config, Store(connect(server.url), keys), Identity("one", "t", 0, HOST), clock=clock)
        beat.apply_job_changes(dict(runtime), HOST)
        before = to_ms(begun - timedelta(minutes=10))
        client.hset(keys.progress, mapping=dict.fromkeys(beat.specs, before))
        client.hset(keys.schedules, mapping={name: job.schedule_digest for name, job in beat.specs.items()})
        beats.append(beat)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        clock.advance(0.05)
        for beat in beats:
            while beat.tick(clock.now(), clock.monotonic()) == 0.0:
                pass
        time.sleep(0.05)
    # Both were leading by then, on their own clocks: Redis's time when each took the lease, carried on the test
    # clock, which moves 50 ms a round however long a round takes (on a loaded machine the beats' time falls
    # behind the wall clock, each by its own start), so the window ends where the slower one had come to.
    low = min(beat.now(clock.now(), clock.monotonic()) for beat in beats) - timedelta(seconds=1.5)
    for beat in beats:
        beat.shutdown()
    return [_written(client, beat.store.keys, sorted(beat.specs), begun, low) for beat in beats]


def _written(client: redis.Redis, keys: Keys, names: list[str], begun: datetime, low: datetime) -> dict[str, Any]:
    def inside(record: dict[str, Any]) -> bool:
        instant = parse_utc(record["scheduled_at"])
        # Caught up (more than late_after, 61 s, before the start: its trigger is catchup for both), or due
        # while both were leading.
        return instant < begun - timedelta(seconds=70) or low - timedelta(seconds=1) <= instant <= low

    fires: dict[str, list[Any]] = {}
    for _, fields in client.xrange(keys.queue("default")):
        message = json.loads(fields["message"])
        message.pop("emitted_at")
        if inside(message):
            fires.setdefault(message["job"], []).append(message)
    records = {}
    for name in names:
        found = [json.loads(text) for text in client.hvals(keys.runs(name))]
        for record in found:
            record.pop("finished_at", None)
        records[name] = sorted((record for record in found if inside(record)), key=lambda record: record["run_id"])
    return {
        "fires": fires,
        "records": records,
        "alerts": sorted(json.loads(fields["record"])["job"] for _, fields in client.xrange(keys.alert_events)),
        "schedules": client.hgetall(keys.schedules),
    }


def _runtime(config: Config, count: int) -> dict[str, str]:
    entries = {}
    for index in range(count):
        spec = {
            "every": "3s",
            "call": "m:f",
            "start": f"2026-06-01T00:00:0{index % 3}Z",
            "tags": ["nightly"],
            "catchup": "all",
            "catchup_limit": 1000,
        }
        entries[f"r{index}"] = json.dumps({"version": 1, "spec": spec, "by": "me", "at": "now"})
    return entries


def test_compact_jobs_schedule_what_whole_specs_did(tmp_path: Path, shared_redis: RedisServer, namespace: str) -> None:
    """Two leaders on two namespaces, one keeping compact jobs made from shapes, one whole JobSpecs (each its
    own shape): five minutes of every, own start and end, H cron, jitter, at, catch-up with misses and alert
    rules (by name, tag and the job's own), and runtime jobs write the same fires, messages, digests, run
    records, last emissions and alert events."""
    compact = load_config(_config(tmp_path, shared_redis, namespace + "c"), {})
    whole = load_config(_config(tmp_path, shared_redis, namespace + "w"), {}, by_shape=False)
    whole = Config(path=whole.path, settings=whole.settings, jobs=dict(whole.jobs), sources=whole.sources)
    assert sum(not job.shape.own for job in compact.compact.values()) >= len(BODIES) * (len(NAMES) - 1)
    assert all(job.shape.own for job in whole.compact.values())
    judge = Judge(compact)
    shaped = {name: judge.compact(name, raw)[0] for name, raw in _runtime(compact, 6).items()}
    full = {name: CompactJob.of_spec(judge(name, raw)[0]) for name, raw in _runtime(compact, 6).items()}  # type: ignore[arg-type]
    assert judge.fast >= 6 and all(job is not None and not job.shape.own for job in shaped.values())
    runtime = {name: job for name, job in shaped.items() if job is not None}
    got, expected = _lead([(compact, namespace + "c", runtime), (whole, namespace + "w", full)], shared_redis)
    assert got["fires"] == expected["fires"]
    assert got == expected
    assert {name[0] for name in got["fires"]} == {"e", "s", "c", "j", "a", "r"}  # every kind fired
    missed = sorted(
        name for name, records in got["records"].items() for record in records if record["status"] == "missed"
    )
    assert missed == ["g-x1", "g-x2", "g-x3", "k-x1", "k-x2", "k-x3", "t-x1", "t-x2", "t-x3"]
    assert got["alerts"] == ["g-x2", "k-x1", "k-x2", "k-x3", "t-x1", "t-x2", "t-x3"]
