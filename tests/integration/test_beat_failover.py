"""Real `beatd beat` replicas against a real redis-server: one leader, exactly-once emission through failures."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import Daemon, wait_for
from tests.integration.helpers import assert_contiguous, leader_token, messages, scheduled, write_config
from tests.redis_server import RedisServer

JOB = """
tick: {command: ["true"], every: 200ms, catchup: all}
"""


def _leader(daemons: list[Daemon], client: object, namespace: str) -> Daemon:
    token = wait_for(lambda: leader_token(client, namespace), what="a leader")  # type: ignore[arg-type]
    return next(daemon for daemon in daemons if f":{daemon.pid}:" in token)


def test_three_replicas_one_leader_each_fire_once(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """Three replicas elect one leader, and every fire is emitted once, with no gap."""
    config = write_config(tmp_path / "beatd.yaml", shared_redis, namespace, JOB)
    for _ in range(3):
        daemons("beat", "-c", str(config))
    client = shared_redis.client()
    wait_for(lambda: len(messages(client, namespace)) >= 10, what="10 fires")
    assert_contiguous(scheduled(messages(client, namespace), "tick"), 0.2)
    leader_events = [fields for _, fields in client.xrange(f"{namespace}:audit") if fields["event"] == "leader"]
    assert len(leader_events) == 1


def test_kill_9_leader_standby_continues_without_gap_or_duplicate(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """After kill -9 of the leader, a standby takes over within the lease and the fire sequence has no hole."""
    config = write_config(tmp_path / "beatd.yaml", shared_redis, namespace, JOB)
    replicas = [daemons("beat", "-c", str(config)) for _ in range(2)]
    client = shared_redis.client()
    wait_for(lambda: len(messages(client, namespace)) >= 3, what="first fires")
    leader = _leader(replicas, client, namespace)
    old_token = leader_token(client, namespace)
    leader.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: leader_token(client, namespace) not in (None, old_token), timeout=5, what="takeover")
    takeover = time.monotonic() - killed_at
    count = len(messages(client, namespace))
    wait_for(lambda: len(messages(client, namespace)) >= count + 5, what="fires after takeover")
    assert takeover <= 1.0 + 1.0, f"takeover took {takeover:.2f}s with a 1s lease"
    assert_contiguous(scheduled(messages(client, namespace), "tick"), 0.2)


def test_sigterm_hands_over_within_a_second(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """SIGTERM releases the lease at once: a standby leads within a second and no fire is lost or doubled."""
    config = write_config(tmp_path / "beatd.yaml", shared_redis, namespace, JOB, lease="5s")
    replicas = [daemons("beat", "-c", str(config)) for _ in range(2)]
    client = shared_redis.client()
    wait_for(lambda: len(messages(client, namespace)) >= 3, what="first fires")
    leader = _leader(replicas, client, namespace)
    old_token = leader_token(client, namespace)
    leader.signal(signal.SIGTERM)
    sent = time.monotonic()
    wait_for(lambda: leader_token(client, namespace) not in (None, old_token), timeout=5, what="handover")
    handover = time.monotonic() - sent
    assert leader.process is not None and leader.process.wait(5) == 0
    count = len(messages(client, namespace))
    wait_for(lambda: len(messages(client, namespace)) >= count + 5, what="fires after handover")
    assert handover < 1.0, f"handover took {handover:.2f}s"
    assert_contiguous(scheduled(messages(client, namespace), "tick"), 0.2)


def test_stopped_leader_never_emits_after_resuming(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A leader frozen (SIGSTOP) past its lease and then resumed (SIGCONT) does not emit again."""
    config = write_config(tmp_path / "beatd.yaml", shared_redis, namespace, JOB)
    replicas = [daemons("beat", "-c", str(config)) for _ in range(2)]
    client = shared_redis.client()
    wait_for(lambda: len(messages(client, namespace)) >= 3, what="first fires")
    leader = _leader(replicas, client, namespace)
    old_token = leader_token(client, namespace)
    leader.signal(signal.SIGSTOP)
    wait_for(lambda: leader_token(client, namespace) not in (None, old_token), timeout=5, what="takeover")
    count = len(messages(client, namespace))
    wait_for(lambda: len(messages(client, namespace)) >= count + 3, what="fires by the new leader")
    leader.signal(signal.SIGCONT)
    leader.wait_log(r"lease lapsed|lease lost|standing down", timeout=5)
    count = len(messages(client, namespace))
    wait_for(lambda: len(messages(client, namespace)) >= count + 5, what="fires after SIGCONT")
    items = messages(client, namespace)
    assert_contiguous(scheduled(items, "tick"), 0.2)
    assert leader.process is not None and leader.process.poll() is None


def test_redis_restart_mid_run(
    tmp_path: Path, own_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """The beat survives Redis going away and coming back, and carries on with no gap and no duplicate."""
    config = write_config(tmp_path / "beatd.yaml", own_redis, namespace, JOB)
    beat = daemons("beat", "-c", str(config))
    client = own_redis.client()
    wait_for(lambda: len(messages(client, namespace)) >= 3, what="first fires")
    own_redis.stop()
    beat.wait_log("Redis unavailable", timeout=5)
    own_redis.start()
    beat.wait_log("Redis reachable again", timeout=10)
    client = own_redis.client()
    count = len(messages(client, namespace))
    wait_for(lambda: len(messages(client, namespace)) >= count + 5, what="fires after the restart")
    assert beat.process is not None and beat.process.poll() is None
    assert_contiguous(scheduled(messages(client, namespace), "tick"), 0.2)
