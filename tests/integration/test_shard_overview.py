"""Leadership and the Celery outbox of every shard (docs/sharding.md section 6): the web overview (its API and
page) shows who leads each shard and warns per unled shard; `beatd status` sums every shard's outbox."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from beatd.client import Client
from beatd.keys import Keys
from beatd.sharding import shard_of
from beatd.web import Catalogue, Tokens, Web, create_app
from beatd.web.security import COOKIE, allowed_hosts
from tests.integration.test_shard_read import GOOD
from tests.integration.test_shard_worker import SHARDS, shard_config
from tests.redis_server import RedisServer

READ_TOKEN = "read-token-for-tests"
HOLDER = "r<b>1</b>"
"""The replica holding the leases the tests set: markup, to show the page escapes it."""


@pytest.fixture
def deployment(tmp_path: Path, shared_redis: RedisServer, namespace: str) -> Iterator[tuple[Client, TestClient]]:
    """A client of a three-shard deployment (jobs in every shard, no beat running) and the web app over it."""
    jobs = dict.fromkeys(GOOD, "{call: tests.worker_jobs:noop, every: 1h}")
    client = Client.from_config(shard_config(tmp_path, shared_redis, namespace, jobs), environ={}, actor="web")
    tokens = Tokens.from_environ({"BEATD_WEB_READ_TOKEN": READ_TOKEN}, "127.0.0.1")
    app = create_app(Web(client, Catalogue(client)), tokens, allowed_hosts("127.0.0.1"))
    with TestClient(app, base_url="http://127.0.0.1") as http:
        http.cookies.set(COOKIE, READ_TOKEN)
        yield client, http
    client.close()


def lead(server: RedisServer, namespace: str, shards: Sequence[int]) -> None:
    """Set the lease of each of ``shards`` to ``HOLDER`` (fencing token 7), as its leader's acquire writes it."""
    for shard in shards:
        server.client().set(Keys(namespace, shard, tagged=True).leader, f"7:{HOLDER}", px=30_000)


def shown(http: TestClient) -> tuple[dict[str, Any], str]:
    """The overview's JSON (``/api/v1/overview``) and its page (``/``)."""
    data = http.get("/api/v1/overview", headers={"Authorization": f"Bearer {READ_TOKEN}"}).json()
    page = http.get("/")
    assert page.status_code == 200, page.text
    return data, page.text


def jobs_in(shard: int) -> int:
    """How many of the test jobs are in ``shard``."""
    return sum(shard_of(job, SHARDS) == shard for job in GOOD)


def test_shard_0_unled_with_the_others_led_is_not_no_leader(
    deployment: tuple[Client, TestClient], shared_redis: RedisServer, namespace: str
) -> None:
    """With only shards 1 and 2 led, the overview shows a leader (the lowest led shard's lease), each shard's
    holder, and one warning naming shard 0; the page says 2 of 3 shards led, never "no leader" in red as the
    leader, and shows the holder escaped."""
    _, http = deployment
    lead(shared_redis, namespace, [1, 2])
    data, page = shown(http)
    assert data["leader"] is not None and (data["leader"]["token"], data["leader"]["shard"]) == (f"7:{HOLDER}", 1)
    assert [(row["shard"], row["leader"]) for row in data["shards"]] == [(0, None), (1, HOLDER), (2, HOLDER)]
    assert [row["jobs"] for row in data["shards"]] == [jobs_in(shard) for shard in range(SHARDS)]
    assert [w for w in data["warnings"] if "no leader" in w] == [
        f"shard 0: no leader (its {jobs_in(0)} jobs are not emitted)"
    ]
    assert '<p class="big bad">no leader</p>' not in page and "2 of 3 shards led" in page
    assert 'shard 0: <span class="bad">no leader</span>' in page
    assert 'shard 1: <span class="ok">r&lt;b&gt;1&lt;/b&gt;</span>' in page and HOLDER not in page
    assert f"shard 0: no leader (its {jobs_in(0)} jobs are not emitted)" in page


def test_shard_0_led_with_the_others_unled_warns_for_each(
    deployment: tuple[Client, TestClient], shared_redis: RedisServer, namespace: str
) -> None:
    """With only shard 0 led, the overview warns for shards 1 and 2 (their jobs are not emitted), and the page
    shows 1 of 3 shards led, in red, with both warnings."""
    _, http = deployment
    lead(shared_redis, namespace, [0])
    data, page = shown(http)
    assert data["leader"]["shard"] == 0
    assert [row["leader"] for row in data["shards"]] == [HOLDER, None, None]
    assert [w for w in data["warnings"] if "no leader" in w] == [
        f"shard {shard}: no leader (its {jobs_in(shard)} jobs are not emitted)" for shard in (1, 2)
    ]
    assert '<p class="big bad">1 of 3 shards led</p>' in page
    for shard in (1, 2):
        assert f'shard {shard}: <span class="bad">no leader</span>' in page
        assert f"shard {shard}: no leader (its {jobs_in(shard)} jobs are not emitted)" in page


def test_no_shard_led_is_no_leader_and_every_shard_warns(
    deployment: tuple[Client, TestClient], shared_redis: RedisServer, namespace: str
) -> None:
    """With no shard led the overview's leader is None, every shard warns, the page shows "no leader"; with
    every shard led there is no warning and the replica row names the shards it leads."""
    _, http = deployment
    data, page = shown(http)
    assert data["leader"] is None and all(row["leader"] is None for row in data["shards"])
    assert len([w for w in data["warnings"] if "no leader" in w]) == SHARDS
    assert '<p class="big bad">no leader</p>' in page
    lead(shared_redis, namespace, range(SHARDS))
    shared_redis.client().hset(Keys(namespace, 0, tagged=True).replicas, HOLDER, json.dumps({
        "replica": HOLDER, "host": "h", "pid": 1, "role": "leader", "heartbeat_at": data["at"],
    }))  # fmt: skip
    data, page = shown(http)
    assert not [w for w in data["warnings"] if "no leader" in w]
    assert [(row["replica"], row["leader"], row["shards"]) for row in data["replicas"]] == [(HOLDER, True, [0, 1, 2])]
    assert '<p class="big ok">3 of 3 shards led</p>' in page and "leader of shards 0, 1, 2" in page


def test_status_sums_the_celery_outbox_of_every_shard_and_warns_per_unled_shard(
    deployment: tuple[Client, TestClient], shared_redis: RedisServer, namespace: str
) -> None:
    """Outbox entries and dead entries in shards 1 and 2 (none in shard 0) show in `beatd status`: depth and
    dead summed, the oldest of them all, the newest dead entries with their shard, per-shard detail, and the
    warnings for a stale outbox, the dead entries (naming both dead streams) and each unled shard."""
    client, _ = deployment
    redis = shared_redis.client()
    redis_ms = int(redis.time()[0]) * 1000
    shards = [Keys(namespace, shard, tagged=True) for shard in range(SHARDS)]
    envelope = json.dumps({"headers": {"id": "task-1", "beatd_fire_id": "ok0@2026-12-01T00:00:00Z"}})
    for shard, ages_s, dead in ((1, (300, 200), 1), (2, (100,), 2)):  # written this long ago by Redis's clock
        for age_s in ages_s:
            redis.xadd(shards[shard].celery_outbox, {"queue": "celery", "envelope": envelope},
                       id=f"{redis_ms - age_s * 1000}-0")  # fmt: skip
        for n in range(dead):
            fields = {"entry_id": f"{n + 1}-0", "reason": f"refused in {shard}", "queue": "q", "envelope": envelope}
            redis.xadd(shards[shard].celery_outbox_dead, fields)
    lead(shared_redis, namespace, [0, 1])
    report = client.status()
    celery = report["celery"]
    assert celery["outbox"]["depth"] == 3 and 290 < celery["outbox"]["oldest_age_s"] < 400
    assert celery["dead"]["count"] == 3
    assert sorted((entry["shard"], entry["reason"]) for entry in celery["dead"]["newest"]) == [
        (1, "refused in 1"), (2, "refused in 2"), (2, "refused in 2"),
    ]  # fmt: skip
    detail = [(row["shard"], row["depth"], row["dead"]) for row in celery["outbox"]["shards"]]
    assert detail == [(0, 0, 0), (1, 2, 1), (2, 1, 2)]
    assert celery["outbox"]["shards"][0]["oldest_age_s"] is None
    warnings = report["warnings"]
    assert f"shard 2: no leader (its {jobs_in(2)} jobs are not emitted)" in warnings, warnings
    assert not any(warning.startswith(("shard 0:", "shard 1:")) for warning in warnings), warnings
    assert any("Celery outbox: 3 task messages waiting, the oldest for 5m" in warning for warning in warnings)
    moved = f"Celery outbox: 3 task messages the broker kept refusing were moved to {shards[1].celery_outbox_dead}, "
    assert any(warning.startswith(moved + shards[2].celery_outbox_dead) for warning in warnings), warnings
