"""A real beat daemon against bad stored data, an outage seen from both roles, and a reload of its settings."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable
from pathlib import Path

from beatd.localredis import free_port
from beatd.signing import Signer
from tests.integration.conftest import Daemon, wait_for
from tests.integration.helpers import leader_token, messages, scheduled, write_config
from tests.integration.test_metrics import fetch
from tests.redis_server import RedisServer

EVERY = '{command: ["true"], every: 200ms}'


def test_corrupt_progress_and_pause_records_skip_their_job_only(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A non-integer progress value and bad JSON in the pause hash skip their jobs, named with key and job; the
    daemon keeps running and emitting the others, and a job whose value is repaired is scheduled again."""
    body = "\n".join(f"{name}: {EVERY}" for name in ("good", "later", "badprogress", "badpause"))
    config = write_config(tmp_path / "beatd.yaml", shared_redis, namespace, body)
    client = shared_redis.client()
    client.hset(f"{namespace}:progress", "badprogress", "not-a-number")
    client.hset(f"{namespace}:paused", "badpause", "{not json")
    beat = daemons("beat", "-c", str(config))
    wait_for(lambda: len(scheduled(messages(client, namespace), "good")) >= 5, what="good fires")
    beat.wait_log(rf"job badprogress skipped: field 'badprogress' of {namespace}:progress holds 'not-a-number'")
    beat.wait_log(rf"job badpause treated as paused: field 'badpause' of {namespace}:paused holds")
    client.hset(f"{namespace}:progress", "later", "garbage")  # corrupted while the leader runs
    beat.wait_log(rf"job later skipped: field 'later' of {namespace}:progress holds 'garbage'")
    count = len(scheduled(messages(client, namespace), "good"))
    wait_for(lambda: len(scheduled(messages(client, namespace), "good")) >= count + 5, what="good keeps firing")
    items = messages(client, namespace)
    assert not scheduled(items, "badprogress") and not scheduled(items, "badpause")
    client.hdel(f"{namespace}:progress", "badprogress")  # the operator deletes the bad value: it starts from now
    wait_for(lambda: scheduled(messages(client, namespace), "badprogress"), what="badprogress scheduled again")
    assert beat.process is not None and beat.process.poll() is None
    assert "Traceback" not in beat.log()


def test_leader_and_standby_health(
    tmp_path: Path, own_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """Leader and standby are both alive (/healthz 200) and ready while Redis answers; without Redis both stay
    alive and are not ready; when Redis is back both say so in the log and are ready again."""
    config = write_config(tmp_path / "beatd.yaml", own_redis, namespace, f"tick: {EVERY}")
    ports = [free_port(), free_port()]
    replicas = [daemons("beat", "-c", str(config), "--metrics-port", str(port), name=f"b{port}") for port in ports]
    client = own_redis.client()
    token = wait_for(lambda: leader_token(client, namespace), what="a leader")
    for port in ports:
        wait_for(lambda port=port: fetch(port, "/readyz")[0] == 200, what=f"ready on {port}")  # type: ignore[misc]

    def roles() -> list[str]:
        replies = [fetch(port, "/healthz") for port in ports]
        assert all(status == 200 for status, _ in replies)
        return sorted(json.loads(body)["role"] for _, body in replies)

    # ready comes with the first tick that reached Redis; a replica contends once it has read every runtime job,
    # a tick later, so the roles settle just after
    wait_for(lambda: roles() == ["leader", "standby"], what="one leader and one standby")
    assert token is not None
    own_redis.stop()
    for port in ports:
        wait_for(lambda port=port: fetch(port, "/readyz")[0] == 503, what=f"not ready on {port}")  # type: ignore[misc]
        assert fetch(port, "/healthz")[0] == 200
    own_redis.start()
    for replica in replicas:
        replica.wait_log("Redis reachable again", timeout=15)
    for port in ports:
        wait_for(lambda port=port: fetch(port, "/readyz")[0] == 200, what=f"ready again on {port}")  # type: ignore[misc]


def test_sighup_applies_lease_and_signing_key_and_names_what_needs_a_restart(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """After SIGHUP the new lease and signing key are in force; a changed Redis URL is named in the log and in
    the audit record as needing a restart."""
    config = write_config(tmp_path / "beatd.yaml", shared_redis, namespace, f"tick: {EVERY}", lease="10s")
    beat = daemons("beat", "-c", str(config))
    client = shared_redis.client()
    wait_for(lambda: len(messages(client, namespace)) >= 2, what="first fires")
    assert int(client.pttl(f"{namespace}:leader")) > 5000
    key = "k" * 32
    text = config.read_text().replace("lease: 10s", "lease: 2s").replace("127.0.0.1", "localhost")
    config.write_text(text.replace("jobs:\n", f"security: {{signing_key: '{key}'}}\njobs:\n", 1))
    beat.signal(signal.SIGHUP)
    beat.wait_log(r"reload: leader.lease changed, applied")
    beat.wait_log(r"reload: security.signing_key changed, applied")
    beat.wait_log(r"reload: redis.url changed: needs a restart to take effect")
    wait_for(lambda: 0 < int(client.pttl(f"{namespace}:leader")) <= 2000, what="the lease renewed at 2s")
    count = len(messages(client, namespace))
    wait_for(lambda: len(messages(client, namespace)) >= count + 3, what="fires after the reload")
    entries = client.xrange(f"{namespace}:queue:default")[-2:]
    assert all(Signer(key).verify(fields["message"], fields["sig"]) for _, fields in entries)
    reloads = [json.loads(fields["record"]) for _, fields in client.xrange(f"{namespace}:audit")]
    record = next(record for record in reversed(reloads) if record["event"] == "reload")
    assert record["needs_restart"] == ["redis.url"]
    assert record["settings_applied"] == ["leader.lease", "security.signing_key"]
    assert not re.search(r"k{32}", beat.log())
