"""Operating a running beat: reload, pause/resume, trigger, backfill, audit, status, catch-up, sd_notify."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from beatd.config import load_config
from beatd.messages import parse_utc, to_ms
from tests.conftest import run_cli
from tests.integration.conftest import Daemon, wait_for
from tests.integration.helpers import assert_contiguous, messages, runs, scheduled, write_config
from tests.redis_server import RedisServer

cli = run_cli  # each command in this process (tests/conftest.py)


def test_reload_invalid_keeps_running_then_valid_applies_diff(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """SIGHUP with a broken file keeps the old jobs and reports the error; a valid file adds jobs from now."""
    config = write_config(tmp_path / "beatd.yaml", shared_redis, namespace, "a: {command: [x], every: 200ms}")
    beat = daemons("beat", "-c", str(config))
    client = shared_redis.client()
    wait_for(lambda: len(messages(client, namespace)) >= 2, what="first fires")

    config.write_text(config.read_text().replace("every: 200ms", "every: soon"))
    beat.signal(signal.SIGHUP)
    beat.wait_log(r"reload rejected: .*jobs\.a\.every: invalid duration 'soon'")
    status = json.loads(cli("status", "-c", str(config), "--json").stdout)
    assert "invalid duration" in status["replicas"][0]["config_error"]
    count = len(messages(client, namespace))
    wait_for(lambda: len(messages(client, namespace)) >= count + 2, what="old config still firing")

    write_config(config, shared_redis, namespace, "a: {command: [x], every: 200ms}\nb: {command: [y], every: 1s}")
    reloaded = datetime.now(UTC)
    beat.signal(signal.SIGHUP)
    beat.wait_log(r"reload: added b: every 1s")
    wait_for(lambda: scheduled(messages(client, namespace), "b"), what="b fires")
    assert min(scheduled(messages(client, namespace), "b")) > reloaded - timedelta(seconds=0.01)
    assert_contiguous(scheduled(messages(client, namespace), "a"), 0.2)
    events = [record["event"] for record in json.loads(cli("audit", "-c", str(config), "--json").stdout)]
    assert events[:2] == ["reload", "reload-failed"]
    status = json.loads(cli("status", "-c", str(config), "--json").stdout)
    assert status["replicas"][0]["config_error"] is None


def test_changed_schedule_continues_from_now(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A job whose schedule changes on reload fires on the new schedule from now, with no retroactive fire."""
    config = write_config(tmp_path / "beatd.yaml", shared_redis, namespace, "a: {command: [x], every: 200ms}")
    beat = daemons("beat", "-c", str(config))
    client = shared_redis.client()
    wait_for(lambda: len(messages(client, namespace)) >= 2, what="first fires")
    write_config(config, shared_redis, namespace, "a: {command: [x], every: 300ms}")
    beat.signal(signal.SIGHUP)
    beat.wait_log(r"reload: changed a: every 200ms -> every 300ms, from now on")
    count = len(messages(client, namespace))
    wait_for(lambda: len(messages(client, namespace)) >= count + 3, what="fires on the new schedule")
    instants = scheduled(messages(client, namespace), "a")
    assert len(instants) == len(set(instants)) and instants == sorted(instants)
    assert all(to_ms(instant) % 300 == 0 for instant in instants[-3:])


def test_pause_and_resume_without_catch_up(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A paused job emits nothing, survives in Redis, and on resume does not catch up the paused period."""
    config = write_config(
        tmp_path / "beatd.yaml", shared_redis, namespace, "a: {command: [x], every: 200ms, catchup: all}"
    )
    daemons("beat", "-c", str(config))
    client = shared_redis.client()
    wait_for(lambda: len(messages(client, namespace)) >= 2, what="first fires")
    assert cli("pause", "-c", str(config), "a", "--reason", "maintenance").stdout.strip() == "paused a"
    status = json.loads(cli("status", "-c", str(config), "--json").stdout)
    assert status["paused"]["a"]["reason"] == "maintenance"
    time.sleep(1.5)  # the leader re-reads pause state every second: give it time to stop, then check it did
    paused_count = len(messages(client, namespace))
    time.sleep(1.0)  # an unpaused job would emit 5 fires in this second
    assert len(messages(client, namespace)) == paused_count
    resumed_at = datetime.now(UTC)
    assert cli("resume", "-c", str(config), "a").stdout.strip() == "resumed a"
    wait_for(lambda: len(messages(client, namespace)) >= paused_count + 2, what="fires after resume")
    after = scheduled(messages(client, namespace), "a")[paused_count:]
    assert min(after) > resumed_at - timedelta(milliseconds=10)
    assert [record["event"] for record in json.loads(cli("audit", "-c", str(config), "--json").stdout)][:2] == [
        "resume",
        "pause",
    ]


def test_a_reload_changing_a_paused_jobs_schedule_emits_nothing_of_the_paused_period(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """A paused `catchup: all` job whose schedule a reload changes stays silent: the old schedule's settling
    skips the paused period (as resume does), and after resume the job fires on the new schedule from then."""
    config = write_config(
        tmp_path / "beatd.yaml", shared_redis, namespace, "a: {command: [x], every: 200ms, catchup: all}"
    )
    beat = daemons("beat", "-c", str(config))
    client = shared_redis.client()
    wait_for(lambda: len(messages(client, namespace)) >= 2, what="first fires")
    assert cli("pause", "-c", str(config), "a").returncode == 0
    time.sleep(1.5)  # the leader re-reads pause state every second: give it time to stop
    paused_count = len(messages(client, namespace))
    time.sleep(1.0)  # a paused period of five fires
    write_config(config, shared_redis, namespace, "a: {command: [x], every: 300ms, catchup: all}")
    beat.signal(signal.SIGHUP)
    beat.wait_log(r"reload: changed a: every 200ms -> every 300ms")
    time.sleep(1.0)  # an unpaused job would emit three fires in this second
    assert len(messages(client, namespace)) == paused_count
    resumed_at = datetime.now(UTC)
    assert cli("resume", "-c", str(config), "a").returncode == 0
    wait_for(lambda: len(messages(client, namespace)) >= paused_count + 2, what="fires after resume")
    after = scheduled(messages(client, namespace), "a")[paused_count:]
    assert min(after) > resumed_at - timedelta(milliseconds=10)
    assert all(to_ms(instant) % 300 == 0 for instant in after)


def test_trigger_and_backfill(tmp_path: Path, shared_redis: RedisServer, namespace: str) -> None:
    """`trigger --at` emits one manual fire; `backfill` emits every scheduled instant of a range in order."""
    config = write_config(
        tmp_path / "beatd.yaml",
        shared_redis,
        namespace,
        "nightly: {call: jobs.stats:year_end_close, cron: '30 1 * * *', timezone: America/New_York}",
    )
    result = cli("trigger", "-c", str(config), "nightly", "--at", "2026-11-20T01:30:00")
    assert result.returncode == 0, result.stderr
    result = cli("backfill", "-c", str(config), "nightly", "--from", "2026-10-30", "--to", "2026-11-03T23:59")
    assert result.returncode == 0 and "emitted 5 backfill fire(s)" in result.stdout
    items = messages(shared_redis.client(), namespace)
    assert [item["trigger"] for item in items] == ["manual"] + ["backfill"] * 5
    assert items[0]["scheduled_at"] == "2026-11-20T06:30:00Z"
    assert [item["scheduled_at"] for item in items[1:]] == [
        "2026-10-30T05:30:00Z",
        "2026-10-31T05:30:00Z",
        "2026-11-01T05:30:00Z",  # fall-back day: once, at the first 01:30 (EDT)
        "2026-11-02T06:30:00Z",
        "2026-11-03T06:30:00Z",
    ]
    assert len({item["fire_id"] for item in items}) == 6
    events = [record["event"] for record in json.loads(cli("audit", "-c", str(config), "--json").stdout)]
    assert events.count("backfill") == 1 and events.count("trigger") == 1
    backfill_record = next(
        r for r in json.loads(cli("audit", "-c", str(config), "--json").stdout) if r["event"] == "backfill"
    )
    assert backfill_record["count"] == 5 and backfill_record["first"] == items[1]["fire_id"]
    assert cli("trigger", "-c", str(config), "nightly_typo").returncode == 2


@pytest.mark.parametrize(("policy", "emitted", "missed"), [("none", 0, 11), ("latest", 1, 10), ("all", 11, 0)])
def test_catch_up_after_downtime(
    tmp_path: Path,
    shared_redis: RedisServer,
    namespace: str,
    daemons: Callable[..., Daemon],
    policy: str,
    emitted: int,
    missed: int,
) -> None:
    """After an 11-minute gap with no leader, catchup none/latest/all emit 0/1/11 fires and record the rest."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=690)  # fires at start + k min
    config = write_config(
        tmp_path / "beatd.yaml",
        shared_redis,
        namespace,
        f"a: {{command: [x], every: 1m, start: '{start.isoformat()}', catchup: {policy}, misfire_grace: 1h}}",
    )
    spec = load_config(config, {}).jobs["a"]
    client = shared_redis.client()
    client.hset(f"{namespace}:progress", "a", to_ms(start))  # the last fire passed: then every replica died
    client.hset(f"{namespace}:schedules", "a", spec.schedule_digest)
    daemons("beat", "-c", str(config))
    wait_for(lambda: client.hget(f"{namespace}:progress", "a") != str(to_ms(start)), what="the first plan")
    items = messages(client, namespace)
    records = runs(client, namespace, "a")
    late = [start + timedelta(minutes=k) for k in range(1, 12)]  # the newest is 30 s old: late, not on time
    assert len(items) == emitted and len(records) == missed
    assert all(item["trigger"] == "catchup" for item in items)
    assert [parse_utc(item["scheduled_at"]) for item in items] == (late[-emitted:] if emitted else [])
    assert all(record["status"] == "missed" for record in records)
    assert [parse_utc(record["scheduled_at"]) for record in records] == late[:missed]


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET."""
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "notify.sock"))
    receiver.settimeout(10)
    yield receiver
    receiver.close()


def _receive_until(receiver: socket.socket, wanted: str) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        seen.extend(receiver.recv(4096).decode().split("\n"))
        if any(line.startswith(wanted) for line in seen):
            return seen
    pytest.fail(f"no {wanted} in {seen}")


def test_sd_notify_over_a_real_socket(
    tmp_path: Path,
    shared_redis: RedisServer,
    namespace: str,
    daemons: Callable[..., Daemon],
    notify_socket: socket.socket,
) -> None:
    """The beat sends READY=1, STATUS=, WATCHDOG=1, RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 on SIGTERM."""
    config = write_config(tmp_path / "beatd.yaml", shared_redis, namespace, "a: {command: [x], every: 1s}")
    beat = daemons(
        "beat",
        "-c",
        str(config),
        env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"},
    )
    seen = _receive_until(notify_socket, "READY=1")
    seen += _receive_until(notify_socket, "WATCHDOG=1")
    seen += _receive_until(notify_socket, "STATUS=leader")
    assert any(line.startswith("STATUS=leader, 1 jobs, next fire") for line in seen)
    beat.signal(signal.SIGHUP)
    after_hup = _receive_until(notify_socket, "READY=1")
    assert "RELOADING=1" in after_hup
    beat.signal(signal.SIGTERM)
    assert "STOPPING=1" in _receive_until(notify_socket, "STOPPING=1")
    assert beat.exited() == 0


def test_status_marks_replicas_with_a_different_config(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """Replicas publish their config digest; status flags the one whose config differs from the local file."""
    first = write_config(tmp_path / "a.yaml", shared_redis, namespace, "a: {command: [x], every: 1s}")
    second = write_config(tmp_path / "b.yaml", shared_redis, namespace, "a: {command: [x], every: 2s}")
    daemons("beat", "-c", str(first))
    daemons("beat", "-c", str(second))
    client = shared_redis.client()
    wait_for(lambda: client.hlen(f"{namespace}:replicas") == 2, what="two heartbeats")
    status = json.loads(cli("status", "-c", str(first), "--json").stdout)
    differs = {replica["config_path"]: replica["config_differs"] for replica in status["replicas"]}
    assert differs == {str(first): False, str(second): True}
    assert status["leader"]["lease_left_s"] > 0
    text = cli("status", "-c", str(first)).stdout
    assert "(differs)" in text and "leader:" in text
