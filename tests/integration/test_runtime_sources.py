"""`beatd status` and `beatd history` treat runtime jobs like YAML ones, with a SOURCE saying where each came
from; `workers`, `logs` and `export` read through the client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from beatd.cli import cli
from beatd.cli.runtime import Runtime
from beatd.client import AsyncClient, Client
from beatd.web.catalogue import Catalogue
from tests.integration.conftest import Daemon, wait_for
from tests.integration.test_runtime_jobs import _api, _config
from tests.redis_server import RedisServer


def test_status_and_history_name_each_jobs_source(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A runtime job's runs are in `history` with SOURCE runtime (and `-` once it is deleted), `status` lists it
    beside the YAML job with its source (as the web catalogue does), and `workers`, `export` and `logs` show the
    same runs as the client."""
    config = _config(tmp_path / "beatd.yaml", shared_redis, namespace)
    daemons("beat", "-c", str(config.path))
    daemons("worker", "-c", str(config.path), "--isolation", "thread", name="worker")
    _api(config).put("customer_9", {"every": "200ms", "call": "tests.worker_jobs:noop"})
    client = Client(config=config)
    wait_for(lambda: client.history("customer_9", status="succeeded"), timeout=60, what="a run of the runtime job")
    runner, runtime = CliRunner(), Runtime(environ={}, cwd=tmp_path)

    def run(*args: str) -> str:
        result = runner.invoke(cli, [*args, "-c", str(config.path)], obj=runtime)
        assert result.exit_code == 0, result.output
        return result.stdout

    records = json.loads(run("history", "customer_9", "--json"))
    assert records and {record["source"] for record in records} == {"runtime"}
    table = run("history", "customer_9").splitlines()
    assert table[0].split()[3] == "SOURCE" and table[1].split()[3] == "runtime"

    report = json.loads(run("status", "--json"))
    assert {job["name"]: job["source"] for job in report["jobs"]} == {"yaml_job": "yaml", "customer_9": "runtime"}
    rows = {line.split()[0]: line.split() for line in run("status").splitlines() if line.startswith("customer_9")}
    assert "runtime" in rows["customer_9"] and "SOURCE" in run("status")

    wait_for(client.workers, what="a worker heartbeat")
    workers = json.loads(run("workers", "--json"))
    assert [worker["worker"] for worker in workers] == [worker["worker"] for worker in client.workers()]
    exported = [json.loads(line) for line in run("export").splitlines()]
    assert {record["run_id"] for record in records} <= {record["run_id"] for record in exported}
    assert exported == sorted(exported, key=lambda record: record.get("started_at") or record["scheduled_at"])
    first = records[-1]
    assert run("logs", first["run_id"]) == (first.get("output") or "")

    async def read_async() -> tuple[dict[str, str], list[dict[str, object]]]:
        async with AsyncClient(config=config) as aio:
            return await aio.sources(["customer_9", "yaml_job", "nope"]), await aio.workers()

    sources, async_workers = asyncio.run(read_async())
    assert sources == {"customer_9": "runtime", "yaml_job": "yaml", "nope": "-"} and len(async_workers) == 1

    catalogue = Catalogue(client)  # what `beatd web` lists
    catalogue.refresh()
    assert catalogue.sources == {"yaml_job": "yaml", "customer_9": "runtime"}

    assert _api(config).delete("customer_9")
    after = json.loads(run("history", "customer_9", "--json", "--limit", "1"))
    assert after[0]["source"] == "-"


def test_the_web_catalogue_sees_a_runtime_job_put_in_any_shard(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """With `shards: 4` a runtime job lives in its own shard's keys: the web catalogue, refreshed after the put,
    lists it whichever shard it is in (it compared only shard 0's version, so it missed the other shards')."""
    from beatd.config import load_config
    from beatd.sharding import shard_of

    path = _config(tmp_path / "beatd.yaml", shared_redis, namespace).path
    path.write_text(path.read_text() + "shards: 4\n")
    client = Client(config=load_config(path, {}))
    catalogue = Catalogue(client)
    catalogue.refresh()
    assert catalogue.sources == {"yaml_job": "yaml"}
    name = next(f"made{index}" for index in range(100) if shard_of(f"made{index}", 4) != 0)
    client.jobs.put(name, {"every": "1h", "call": "tests.worker_jobs:noop"})
    catalogue.refresh()
    assert catalogue.sources == {"yaml_job": "yaml", name: "runtime"}
