"""Reading and acting across three shards (docs/sharding.md section 6) with real `beatd` commands, a real
worker and the web API in process: trigger, history, show, audit, dead letters, pause and the overview."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from beatd.client import AsyncClient, Client
from beatd.client.dead import dead_letter, dead_letters
from beatd.errors import UsageProblem
from beatd.keys import Keys
from beatd.records import RunRecord
from beatd.sharding import shard_of
from beatd.store import RunStore
from beatd.web import Catalogue, Tokens, Web, create_app
from beatd.web.security import allowed_hosts
from tests.conftest import run_cli
from tests.integration.conftest import Daemon, wait_for
from tests.integration.test_shard_worker import SHARDS, shard_config
from tests.redis_server import RedisServer

READ_TOKEN = "read-token-for-tests"
ADMIN_TOKEN = "admin-token-for-tests"

GOOD = [f"ok{number}" for number in range(6)]
BAD = [f"bad{number}" for number in range(6)]


def beatd(*args: str) -> subprocess.CompletedProcess[str]:
    """Run one ``beatd`` command (in this process: tests/conftest.py ``run_cli``)."""
    return run_cli(*args)


def beatd_json(*args: str) -> Any:
    """Run one ``beatd ... --json`` command that must succeed; its output parsed."""
    done = beatd(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _config(tmp_path: Path, server: RedisServer, namespace: str) -> Path:
    jobs = dict.fromkeys(GOOD, "{call: tests.worker_jobs:noop, every: 1h}")
    jobs |= dict.fromkeys(BAD, "{call: tests.worker_jobs:fail, every: 1h, retries: 0}")
    jobs["shout"] = """{command: "sh -c 'echo out'", every: 1h}"""  # in shard 2
    return shard_config(tmp_path, server, namespace, jobs)


def test_the_jobs_spread_over_every_shard() -> None:
    """Both sets of test jobs cover all three shards."""
    assert {shard_of(job, SHARDS) for job in GOOD} == {shard_of(job, SHARDS) for job in BAD} == set(range(SHARDS))


def test_trigger_history_show_audit_and_dead_letters_work_across_shards(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """`beatd trigger` puts each fire into its job's shard; `beatd history JOB`, `history`, `show`, `audit` and
    `dead` read every shard (merged newest first); `dead retry SHARD:ID` puts a dead letter back in its shard."""
    config = _config(tmp_path, shared_redis, namespace)
    daemons("worker", "-c", str(config), name="worker")
    by_cli = next(job for job in GOOD if shard_of(job, SHARDS) == SHARDS - 1)
    done = beatd("trigger", "-c", str(config), by_cli)  # the other fires through the client (the same code)
    assert done.returncode == 0, done.stderr
    with Client.from_config(config, environ={}) as sync:
        for job in GOOD + BAD:
            if job != by_cli:
                sync.trigger(job)
    client = shared_redis.client()

    def ended(job: str) -> bool:  # the fire went to the job's shard, whose records then hold its run
        texts = client.hvals(Keys(namespace, shard_of(job, SHARDS), tagged=True).runs(job))
        return any(json.loads(text)["status"] in ("succeeded", "dead") for text in texts)

    wait_for(lambda: all(ended(job) for job in GOOD + BAD), timeout=30, what="every fire's end in its job's shard")
    (record,) = beatd_json("history", "-c", str(config), by_cli)
    assert (record["job"], record["status"]) == (by_cli, "succeeded")
    shown = beatd_json("show", "-c", str(config), record["fire_id"])
    assert [run["run_id"] for run in shown] == [record["run_id"]]
    every = beatd_json("history", "-c", str(config), "--limit", "100")
    assert sorted({record["job"] for record in every}) == sorted(GOOD + BAD)
    times = [record.get("started_at") or record.get("finished_at") for record in every]
    assert times == sorted(times, reverse=True)
    audit = beatd_json("audit", "-c", str(config), "--limit", "100")
    triggered = [record["job"] for record in audit if record["event"] == "trigger"]
    assert sorted(triggered) == sorted(GOOD + BAD) and {record["shard"] for record in audit} == set(range(SHARDS))
    ids = [tuple(map(int, record["id"].split("-"))) for record in audit]
    assert ids == sorted(ids, reverse=True)
    shards = [Keys(namespace, shard, tagged=True) for shard in range(SHARDS)]
    wait_for(lambda: sum(client.xlen(keys.dead) for keys in shards) == len(BAD), timeout=30, what="the dead letters")
    dead = beatd_json("dead", "-c", str(config))
    assert sorted(entry["job"] for entry in dead) == sorted(BAD)
    assert all(entry["ref"] == f"{entry['shard']}:{entry['id']}" for entry in dead)
    assert {int(entry["shard"]) for entry in dead} == set(range(SHARDS))
    letter = dead[0]
    done = beatd("dead", "retry", "-c", str(config), letter["ref"])
    assert done.returncode == 0 and "requeued" in done.stdout, done.stderr
    job_keys = Keys(namespace, int(letter["shard"]), tagged=True)
    wait_for(lambda: client.hlen(job_keys.runs(letter["job"])) >= 3, timeout=30, what="the retried fire's attempt")
    bogus = beatd("dead", "retry", "-c", str(config), f"{SHARDS}:{letter['id']}")
    assert bogus.returncode == 2 and "SHARD below 3" in bogus.stderr and "Traceback" not in bogus.stderr


def test_the_async_client_s_fire_and_a_run_s_live_output_are_in_the_job_s_shard(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """The async client enqueues into the job's shard and waits on its ended stream there; the worker writes the
    run's live output stream in that shard, and `beatd logs` reads the run."""
    config = _config(tmp_path, shared_redis, namespace)
    daemons("worker", "-c", str(config), name="worker")

    async def main() -> RunRecord:
        async with AsyncClient.from_config(config, environ={}) as client:
            handle = await client.trigger("shout")
            return await handle.wait(timeout=30)

    record = asyncio.run(main())
    assert record.status == "succeeded" and shard_of("shout", SHARDS) == 2
    keys = Keys(namespace, 2, tagged=True)
    assert shared_redis.client().exists(keys.ended("shout"))
    wait_for(lambda: shared_redis.client().exists(keys.output(record.run_id)), timeout=60, what="the output stream")
    assert not shared_redis.client().exists(Keys(namespace, 0, tagged=True).output(record.run_id))
    done = beatd("logs", "-c", str(config), record.fire_id)
    assert done.returncode == 0 and "out" in done.stdout, done.stderr


def test_pause_resume_and_the_web_api_read_every_shard(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """Pause writes in the job's shard and the jobs page sees it; the overview sums run counts and queue
    lengths over the shards; the API's dead letters, audit and a job's runs read across them."""
    config = _config(tmp_path, shared_redis, namespace)
    client = Client.from_config(config, environ={}, actor="web")
    paused = next(job for job in GOOD if shard_of(job, SHARDS) != 0)
    assert client.pause(paused, "maintenance")
    assert shared_redis.client().hexists(Keys(namespace, shard_of(paused, SHARDS), tagged=True).paused, paused)
    assert not shared_redis.client().hexists(Keys(namespace, 0, tagged=True).paused, paused)
    handles = [client.trigger(job) for job in GOOD + BAD]  # waiting: no worker yet
    tokens = Tokens.from_environ({"BEATD_WEB_READ_TOKEN": READ_TOKEN, "BEATD_WEB_ADMIN_TOKEN": ADMIN_TOKEN},
                                 "127.0.0.1")  # fmt: skip
    app = create_app(Web(client, Catalogue(client)), tokens, allowed_hosts("127.0.0.1"))
    headers = {"Authorization": f"Bearer {READ_TOKEN}"}
    with TestClient(app, base_url="http://127.0.0.1") as http:
        overview = http.get("/api/v1/overview", headers=headers).json()
        assert sum(queue["length"] for queue in overview["queues"]) == len(handles), overview["queues"]
        jobs = http.get("/api/v1/jobs?limit=100", headers=headers).json()["jobs"]
        assert [row["name"] for row in jobs if row["paused"]] == [paused]
        daemons("worker", "-c", str(config), name="worker")
        for handle in handles:
            handle.wait(timeout=30)
        overview = wait_for(lambda: (o := http.get("/api/v1/overview", headers=headers).json())["runs"]["hour"]
                            .get("succeeded") == len(GOOD) and o, timeout=20, what="the counts")  # fmt: skip
        assert overview["runs"]["hour"].get("dead", 0) + overview["runs"]["hour"].get("failed", 0) >= len(BAD)
        dead = http.get("/api/v1/dead", headers=headers).json()["dead"]
        assert sorted(entry["job"] for entry in dead) == sorted(BAD)
        audit = http.get("/api/v1/audit", headers=headers).json()
        assert {record["job"] for record in audit["audit"] if record["event"] == "trigger"} == set(GOOD + BAD)
        run = http.get(f"/api/v1/runs/{handles[1].fire_id}", headers=headers).json()
        assert run["attempts"][0]["status"] == "succeeded", run
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        for ref in ("%C2%B2:1000-1", f"{SHARDS}:1000-1", "-1:1000-1", "1000-1%0A"):  # superscript 2, newline
            refused = http.post(f"/api/v1/dead/{ref}/drop", headers=admin)
            assert refused.status_code == 400 and "is not a dead-letter id" in refused.text, (ref, refused.text)
    client.close()


def test_dead_letters_of_equal_ids_in_several_shards_page_without_a_skip_and_are_named_by_shard(
    shared_redis: RedisServer, namespace: str
) -> None:
    """Entry ids are per stream, so two shards may hold the same one: the merged list pages through every
    dead letter once (ties by shard), and a bare id held by two shards is refused naming ``SHARD:MS-SEQ``."""
    shards = [Keys(namespace, shard, tagged=True) for shard in range(SHARDS)]
    client = shared_redis.client()
    for entry_id in ("1000-1", "2000-1"):
        for keys in shards:
            client.xadd(keys.dead, {"message": "{}", "reason": f"test {keys.shard}"}, id=entry_id)
    store = RunStore(client, shards[0], shards)
    seen, before, before_shard = [], "+", None
    while page := store.dead_letters.newest(2, before, before_shard):
        seen += [(entry["id"], entry["shard"]) for entry in page]
        before, before_shard = page[-1]["id"], int(page[-1]["shard"])
    assert seen == [(entry_id, str(shard)) for entry_id in ("2000-1", "1000-1") for shard in (2, 1, 0)]
    with pytest.raises(UsageProblem, match=r"several shards: give one of 0:1000-1, 1:1000-1, 2:1000-1"):
        dead_letter(store, "1000-1", "drop")
    assert dead_letter(store, "1:1000-1", "drop")["reason"] == "test 1"
    assert dead_letters(store, 10, show_all=True)[0]["ref"] == "2:2000-1"


@pytest.mark.parametrize(
    "ref",
    ["\u00b2:1000-1", "\u0661:1000-1", "0:\u0661\u0660\u0660\u0660-1", "1000-1\n", "0:1000-1\n", "-1:1000-1",
     f"{SHARDS}:1000-1", "x:1000-1", ":1000-1", "0:0:1000-1"],
)  # fmt: skip
def test_a_dead_letter_ref_that_is_not_ascii_digits_of_a_shard_is_a_usage_problem(
    shared_redis: RedisServer, namespace: str, ref: str
) -> None:
    """A ref with a shard or id that is not ASCII digits (a superscript or Arabic-Indic digit, a trailing
    newline), or an out-of-range shard, is a UsageProblem naming what an id looks like, never a ValueError or
    a Redis error."""
    shards = [Keys(namespace, shard, tagged=True) for shard in range(SHARDS)]
    shared_redis.client().xadd(shards[0].dead, {"message": "{}", "reason": "test"}, id="1000-1")
    with pytest.raises(UsageProblem, match="is not a dead-letter id"):
        dead_letter(RunStore(shared_redis.client(), shards[0], shards), ref, "drop")


def test_redis_url_with_a_file_whose_redis_is_broken_reads_the_file_s_shards(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """With a file whose ``redis`` section is broken, ``--redis-url`` reads the file's namespace and its
    ``shards`` (not the one-shard layout, where a sharded deployment has no key at all)."""
    job = next(job for job in GOOD if shard_of(job, SHARDS) != 0)
    record = {"run_id": f"{job}@x#1", "fire_id": f"{job}@x", "job": job, "status": "succeeded", "attempt": 1,
              "scheduled_at": "2026-11-01T00:00:00Z"}  # fmt: skip
    shards = [Keys(namespace, shard, tagged=True) for shard in range(SHARDS)]
    RunStore(shared_redis.client(), shards[0], shards).write_record(job, record["run_id"], json.dumps(record), 1)
    broken = tmp_path / "broken.yaml"
    broken.write_text(f"redis: {{url: 5}}\nnamespace: {namespace}\nshards: {SHARDS}\njobs: {{}}\n")
    for args in (["history"], ["history", job]):
        done = beatd(*args, "-c", str(broken), "--redis-url", shared_redis.url, "--json")
        assert done.returncode == 0, done.stderr
        assert [entry["run_id"] for entry in json.loads(done.stdout)] == [record["run_id"]], args
        assert f"shards {SHARDS}" in done.stderr
