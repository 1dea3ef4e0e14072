"""The overview's run counts (issue 13): every record a fire ends with is counted in the run-count buckets,
the runs a worker ends (finish.lua) and also the fires that never ran: missed (emit.lua) and expired
(sweep_expired.lua)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from beatd import defaults
from beatd.audit import audit_record
from beatd.beat import Beat
from beatd.client import Client
from beatd.clock import FixedClock
from beatd.config import load_config
from beatd.identity import Identity
from beatd.keys import Keys
from beatd.messages import Message, fire_id, format_utc, to_ms
from beatd.store import Store, connect
from beatd.store.base import script
from beatd.web import Catalogue, Web, views
from tests.integration.helpers import runs, write_config
from tests.redis_server import RedisServer


def _beat(tmp_path: Path, server: RedisServer, namespace: str, jobs: str) -> tuple[Beat, FixedClock, Path]:
    """An in-process Beat on an injected clock (it learns Redis's time on its first tick), with its config."""
    path = write_config(tmp_path / "beatd.yaml", server, namespace, jobs, lease="30s")
    config = load_config(path, {})
    clock = FixedClock(datetime.now(UTC))
    store = Store(connect(config.settings.redis), Keys(namespace))
    return Beat(config, store, Identity("beat", "test", 0, clock.now()), clock=clock), clock, path


def test_missed_fires_are_counted_in_the_overview(tmp_path: Path, shared_redis: RedisServer, namespace: str) -> None:
    """After a gap with no leader, the fires ``catchup: none`` records ``missed`` show in the overview's runs
    of the last hour and day."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=690)
    beat, clock, path = _beat(tmp_path, shared_redis, namespace, f"""
        a: {{command: [x], every: 1m, start: '{start.isoformat()}', catchup: none, misfire_grace: 1h}}
    """)  # fmt: skip
    client = shared_redis.client()
    keys = Keys(namespace)
    client.hset(keys.progress, "a", to_ms(start))  # the last fire passed, then every replica died
    client.hset(keys.schedules, "a", beat.config.jobs["a"].schedule_digest)
    beat.tick(clock.now(), clock.monotonic())
    missed = [record for record in runs(client, namespace, "a") if record["status"] == "missed"]
    assert len(missed) >= 10  # 11 fires in the gap; the newest may be on time yet, by Redis's clock
    with Client.from_config(path, environ={}) as reader:
        counts = reader.run_counts()
        web = Web(reader, Catalogue(reader))
        overview = views.ENDPOINTS[0].run(web, {}, {})
        job = next(endpoint for endpoint in views.ENDPOINTS if endpoint.path == "/jobs/{name}").run(
            web, {"name": "a"}, {}
        )
    assert counts["hour"].get("missed") == len(missed) and counts["day"].get("missed") == len(missed)
    assert overview["runs"]["hour"]["missed"] == len(missed)
    assert {"job": "a", "problem": "missed", "detail": "its newest fire was missed"} in overview["trouble"]
    marks = [mark for mark in job["timeline"]["marks"] if mark["status"] == "missed"]
    assert len(marks) == len(missed) and all(mark["y"] > job["timeline"]["axis_y"] for mark in marks)  # below


def test_expired_fires_are_counted_in_the_overview(tmp_path: Path, shared_redis: RedisServer, namespace: str) -> None:
    """A fire nobody consumed before its ``expires`` is recorded ``expired`` by the leader's upkeep and shows
    in the overview's runs of the last hour and day."""
    beat, clock, path = _beat(tmp_path, shared_redis, namespace, """
        report: {command: [x], every: 1h, queue: nobody, expires: 1m}
    """)  # fmt: skip
    beat.tick(clock.now(), clock.monotonic())  # the first tick learns Redis's time
    now = beat.now(clock.now(), clock.monotonic())
    scheduled = now - timedelta(minutes=10)
    message = Message(fire_id("report", scheduled), "report", format_utc(scheduled), format_utc(now), "schedule", "d")
    beat.store.enqueue("nobody", [(message.to_json(), "")], audit_record("trigger", now, job="report"))
    clock.advance(6)
    beat.tick(clock.now(), clock.monotonic())
    assert [record["status"] for record in runs(shared_redis.client(), namespace, "report")] == ["expired"]
    with Client.from_config(path, environ={}) as reader:
        counts = reader.run_counts()
    assert counts["hour"].get("expired") == 1 and counts["day"].get("expired") == 1


def test_the_prelude_keeps_a_bucket_as_long_as_the_default_says() -> None:
    """``TALLY_TTL_MS`` in the Lua prelude is ``defaults.TALLY_TTL``."""
    found = re.search(r"^local TALLY_TTL_MS = (\d+)$", script("_prelude", prelude=False), re.MULTILINE)
    assert found is not None and int(found[1]) == int(defaults.TALLY_TTL.total_seconds() * 1000)
