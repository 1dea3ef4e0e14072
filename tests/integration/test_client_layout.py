"""A client whose config's ``shards`` is not the deployment's layout (``{ns:0}:layout``, as ``beatd reshard``
leaves it) writes nothing: ``beatd trigger``, ``pause``, ``job put`` and ``dead retry`` exit 2 naming ``shards``,
``beatd.Client`` and ``AsyncClient`` raise ConfigError before any write; the matching config acts, and reads are
not checked (docs/sharding.md section 9). A client never writes the layout."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from beatd.client import AsyncClient, Client
from beatd.errors import ConfigError
from beatd.keys import Keys
from beatd.sharding import shard_of
from tests.conftest import run_cli
from tests.redis_server import RedisServer

JOB = "report"


def _config(tmp_path: Path, server: RedisServer, namespace: str, shards: int | None) -> Path:
    """A config with one job (and runtime jobs allowed); ``shards`` written only when given."""
    path = tmp_path / f"beatd-{shards}.yaml"
    path.write_text(
        f"redis: {{url: '{server.url}'}}\nnamespace: {namespace}\n"
        + (f"shards: {shards}\n" if shards is not None else "")
        + f"runtime_jobs: {{allow: ['tests.worker_jobs:*']}}\njobs:\n  {JOB}: {{command: 'true', every: 1h}}\n"
    )
    return path


def _write_layout(server: RedisServer, namespace: str, shards: int) -> None:
    """The layout record `beatd reshard --to SHARDS` leaves (beatd/reshard.py, its last step)."""
    record = {"version": 1, "shards": shards, "state": "ready", "tagged": True}
    server.client().set(Keys(namespace, 0, tagged=True).layout, json.dumps(record))


def _keys_of(server: RedisServer, namespace: str) -> set[str]:
    """Every key of the deployment, plain (``ns:...``) and tagged (``{ns:S}:...``), but the layout."""
    client = server.client()
    found = {str(key) for pattern in (f"{namespace}:*", f"{{{namespace}:*") for key in client.scan_iter(pattern)}
    return found - {Keys(namespace, 0, tagged=True).layout}


def test_a_stale_shard_count_is_refused_before_any_write(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """With a 3-shard layout and a config without `shards`: the CLI's writes exit 2 naming `shards`, the
    clients raise ConfigError, and no key is written (no queue, no audit, no pause, no runtime job)."""
    _write_layout(shared_redis, namespace, 3)
    stale = _config(tmp_path, shared_redis, namespace, None)
    for command, rest in (
        (["trigger"], [JOB]),
        (["pause"], [JOB]),
        (["resume"], [JOB]),
        (["job", "put"], ["made", "--json", '{"call": "tests.worker_jobs:noop", "every": "1h"}']),
        (["dead", "retry"], ["1764680000000-0"]),
    ):
        done = run_cli(*command, "-c", str(stale), *rest)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert "shards" in done.stderr and "holds shards: 3" in done.stderr, (command, done.stderr)
        assert "Traceback" not in done.stderr
    with Client.from_config(stale, environ={}) as client:
        for act in (lambda: client.trigger(JOB), lambda: client.pause(JOB), lambda: client.jobs.put("made", {})):
            with pytest.raises(ConfigError, match="holds shards: 3") as raised:
                act()
            assert raised.value.problems[0].path == "shards"
        assert client.history(JOB) == []  # reads are not checked

    async def trigger_async() -> None:
        async with AsyncClient.from_config(stale, environ={}) as client:
            await client.trigger(JOB)

    with pytest.raises(ConfigError, match="holds shards: 3"):
        asyncio.run(trigger_async())
    assert _keys_of(shared_redis, namespace) == set()
    assert run_cli("status", "-c", str(stale)).returncode == 0


def test_the_shard_count_the_layout_holds_acts(tmp_path: Path, shared_redis: RedisServer, namespace: str) -> None:
    """With the matching `shards: 3` (a config's, or a client's `shards=3`) the same trigger and pause are
    written into the job's shard."""
    _write_layout(shared_redis, namespace, 3)
    config = _config(tmp_path, shared_redis, namespace, 3)
    done = run_cli("trigger", "-c", str(config), JOB)
    assert done.returncode == 0, done.stderr
    keys = Keys(namespace, shard_of(JOB, 3), tagged=True)
    assert shared_redis.client().xlen(keys.queue("default")) == 1
    with Client.from_config(config, environ={}) as client:
        assert client.pause(JOB)
        client.trigger(JOB)
    assert shared_redis.client().xlen(keys.queue("default")) == 2

    async def resume_async() -> bool:  # without a config, as Client(url, shards=3) (it had no `shards`)
        async with AsyncClient(shared_redis.url, namespace=namespace, shards=3) as client:
            return await client.resume(JOB)

    assert asyncio.run(resume_async())  # the pause above, found in the job's shard
    assert not any(key.startswith(f"{namespace}:") for key in _keys_of(shared_redis, namespace))


def test_a_client_never_writes_the_layout(tmp_path: Path, shared_redis: RedisServer, namespace: str) -> None:
    """No layout yet (no beat has run): a tagged config's trigger goes ahead and leaves the layout unwritten
    (the first beat claims it); once a plain deployment's keys are in use, the tagged config is refused."""
    tagged = _config(tmp_path, shared_redis, namespace, 3)
    layout = Keys(namespace, 0, tagged=True).layout
    with Client.from_config(tagged, environ={}) as client:
        client.trigger(JOB)
    assert shared_redis.client().get(layout) is None
    shared_redis.client().set(Keys(namespace).epoch, 1)  # a plain beat has led
    with Client.from_config(tagged, environ={}) as client, pytest.raises(ConfigError, match="holds shards: 1"):
        client.pause(JOB)
    assert shared_redis.client().get(layout) is None


def test_the_web_refuses_a_write_with_a_stale_shard_count_with_409(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """`beatd web` on a config whose `shards` is not the layout's: an admin's trigger is answered 409 with the
    located message (it had been a 500), and nothing is written."""
    from starlette.testclient import TestClient

    from beatd.web import Catalogue, Tokens, Web, create_app
    from beatd.web.security import allowed_hosts

    _write_layout(shared_redis, namespace, 3)
    client = Client.from_config(_config(tmp_path, shared_redis, namespace, None), environ={}, actor="web")
    tokens = Tokens.from_environ({"BEATD_WEB_ADMIN_TOKEN": "a" * 32}, "127.0.0.1")
    app = create_app(Web(client, Catalogue(client)), tokens, allowed_hosts("127.0.0.1"))
    with TestClient(app, base_url="http://127.0.0.1") as http:
        reply = http.post(f"/api/v1/jobs/{JOB}/trigger", headers={"Authorization": f"Bearer {'a' * 32}"})
    client.close()
    assert reply.status_code == 409, reply.text
    assert "holds shards: 3" in reply.text
    assert _keys_of(shared_redis, namespace) == set()
