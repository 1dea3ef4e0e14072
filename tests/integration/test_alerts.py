"""Alerts end to end: real redis-server, real HTTP and SMTP servers in the test, real beat and worker processes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis

from beatd.alert_sinks import SIGNATURE_HEADER, signature
from beatd.alerting import Alerting, Current
from beatd.client import Client
from beatd.config import load_config
from beatd.keys import Keys
from beatd.localredis import free_port
from beatd.messages import from_ms, parse_utc
from beatd.metrics import Metrics
from beatd.store.alerts import AlertStore, Fence
from beatd.store.upkeep import UpkeepStore
from tests.integration.conftest import wait_for
from tests.redis_server import RedisServer

SECRET = "s3cret-for-tests"


class Receiver:
    """A webhook receiver: records every POST (checking its signature); ``mode``: ok, fail (500) or hang."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.texts: list[str] = []
        self.bad_signatures = 0
        self.mode = "ok"
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.mode == "hang":
                    receiver.received.append({"hung": True, **json.loads(body)})
                    receiver.release.wait(30)
                    return
                if "/slack/" in self.path:  # a Slack-compatible incoming webhook: {"text": ...}, unsigned
                    receiver.texts.append(json.loads(body)["text"])
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.headers.get(SIGNATURE_HEADER) != signature(SECRET, body):
                    receiver.bad_signatures += 1
                alert = json.loads(body)
                assert self.headers["Idempotency-Key"] == alert["id"]
                if receiver.mode == "fail":
                    self.send_response(500)
                else:
                    receiver.received.append(alert)
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def keys(self, rule: str | None = None, kind: str = "alert") -> list[str]:
        """The distinct idempotency keys of the alerts taken (not hung), of ``rule`` and ``kind``, in order: the
        messages a receiver that drops duplicates sees (delivery is at least once: an attempt whose reply came
        too late for a loaded beat is sent again, with the same key)."""
        taken = [alert for alert in self.received if not alert.get("hung")]
        found = [alert["id"] for alert in taken if alert["kind"] == kind and rule in (None, alert["rule"])]
        return list(dict.fromkeys(found))

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on a free port."""
    found = Receiver()
    yield found
    found.close()


def _steady_window() -> str:
    """A grouping window whose end is at least 15 minutes away (windows are aligned to the epoch, and Redis's
    clock is this host's): every alert of a test, however slow the machine, falls in one window, so "one
    message per job and rule" does not depend on when the test runs."""
    now = time.time()
    for hours in range(24, 30):
        if hours * 3600 - now % (hours * 3600) > 900:
            return f"{hours}h"
    raise AssertionError("no window of 24 to 29 hours ends more than 15 minutes from now")


def _config(tmp_path: Path, server: RedisServer, namespace: str, sinks: str, rules: str, jobs: str,
            extra: str = "") -> Path:  # fmt: skip
    path = tmp_path / "beatd.yaml"
    window = "" if "window:" in extra else f"  window: {_steady_window()}\n"
    path.write_text(
        f"redis: {{url: '{server.url}'}}\nnamespace: {namespace}\nleader: {{lease: 1s}}\n"
        f"pythonpath: [{Path(__file__).resolve().parents[2]}]\n"
        f"alerts:\n  retry_first: 200ms\n  retry_max: 1s\n{window}{extra}  sinks:\n{sinks}  rules:\n{rules}"
        f"jobs:\n{jobs}"
    )
    return path


def _webhook(url: str) -> str:
    return f"    hook: {{type: webhook, url: '{url}', secret: '${{HOOK_SECRET}}', timeout: 5}}\n"


def _dead_record(job: str, number: int) -> str:
    fire = f"{job}@2026-01-01T00:00:{number % 60:02d}Z/{number}"
    return json.dumps({"run_id": f"{fire}#dead-3", "fire_id": fire, "job": job, "status": "dead", "attempt": 3,
                       "scheduled_at": "2026-01-01T00:00:00Z", "trigger": "schedule"})  # fmt: skip


def _leader(client: redis.Redis, keys: Keys) -> Fence:
    client.set(keys.leader, "1:test", px=600_000)
    return Fence("leader", "1:test")


def test_a_storm_of_ten_thousand_failures_is_two_signed_messages_that_say_how_many(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, receiver: Receiver
) -> None:
    """10,000 dead records noted in one minute, waiting when a leader takes over after that minute's window
    ended, reach the webhook as one alert and one summary counting 9,999 more, both signed (the window closes
    only once all of its events are counted, though grouping them takes twenty steps)."""
    path = _config(tmp_path, shared_redis, namespace, _webhook(receiver.url), "    - {on: dead, sinks: [hook]}\n",
                   "  nightly: {every: 1h, call: 'tests.worker_jobs:noop'}\n", extra="  window: 1m\n")  # fmt: skip
    config = load_config(path, {"HOOK_SECRET": SECRET})
    client = redis.Redis.from_url(shared_redis.url, decode_responses=True)
    keys = Keys(namespace)
    fence = _leader(client, keys)
    seconds, _ = client.time()
    minute_ms = (seconds // 60 - 1) * 60_000  # the last whole minute (Redis's clock): its window has ended
    pipe = client.pipeline(transaction=False)
    for number in range(10_000):  # ids as the scripts' XADD * would have given them during that minute
        pipe.xadd(keys.alert_events, {"record": _dead_record("nightly", number)}, id=f"{minute_ms + number * 6}-0")
    pipe.execute()
    alerting = Alerting(AlertStore(client, keys), UpkeepStore(client, keys), Metrics())
    current = Current(config.jobs, config.settings.alerts)

    def counted() -> int:
        alerting.step(fence, current, time.monotonic())
        return sum(alert["count"] for alert in receiver.received)

    wait_for(lambda: counted() >= 10_000 or len(receiver.received) > 2, timeout=60, what="the summary")
    assert client.xlen(keys.alert_events) == 0
    assert [(alert["kind"], alert["count"]) for alert in receiver.received] == [("alert", 1), ("summary", 9_999)]
    assert receiver.bad_signatures == 0
    told, summary = receiver.received
    assert told["job"] == "nightly" and told["rule"] == "dead" and told["id"] != summary["id"]
    assert summary["window"]["start"].endswith(":00Z") and summary["summary"].startswith("9999 more dead")
    assert client.hlen(keys.alert_deliveries) == 0 and client.hlen(keys.alert_groups) == 0


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (``openssl``): the SMTP server's, and the only CA trusted."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    return cert, key


def test_the_email_sink_sends_mail_over_starttls_with_credentials_from_the_environment(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An alert routed to an email sink arrives at an aiosmtpd server that requires STARTTLS and a login (the
    credentials from the environment), with the rule in its subject and a Message-ID that is the same when the
    alert is sent again (at least once: a receiver drops the duplicate)."""
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message
    from aiosmtpd.smtp import AuthResult

    from beatd.alert_sinks import send

    got: list[Any] = []
    logins: list[tuple[bytes, bytes]] = []

    class Keep(Message):  # type: ignore[misc]
        def handle_message(self, message: Any) -> None:
            got.append(message)

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        logins.append((data.login, data.password))
        return AuthResult(success=(data.login, data.password) == (b"ops", b"mail-pass-123"))

    cert, key = _certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # what the sink's default context trusts
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Keep(), hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True,
                            authenticator=authenticator, auth_required=True)  # fmt: skip
    controller.start()
    try:
        sinks = (f"    mail: {{type: email, host: 127.0.0.1, port: {port}, from: beatd@example.com, "
                 "username: '${SMTP_USER}', password: '${SMTP_PASSWORD}', to: [ops@example.com]}\n")  # fmt: skip
        path = _config(tmp_path, shared_redis, namespace, sinks, "    - {on: dead, sinks: [mail]}\n",
                       "  nightly: {every: 1h, call: 'tests.worker_jobs:noop'}\n")  # fmt: skip
        config = load_config(path, {"SMTP_USER": "ops", "SMTP_PASSWORD": "mail-pass-123"})
        client = redis.Redis.from_url(shared_redis.url, decode_responses=True)
        keys = Keys(namespace)
        fence = _leader(client, keys)
        client.xadd(keys.alert_events, {"record": _dead_record("nightly", 1)})
        alerting = Alerting(AlertStore(client, keys), UpkeepStore(client, keys), Metrics())
        current = Current(config.jobs, config.settings.alerts)
        wait_for(lambda: alerting.step(fence, current, time.monotonic()) >= 0 and got, timeout=60, what="a mail")
        assert logins == [(b"ops", b"mail-pass-123")]
        assert "dead" in got[0]["Subject"] and got[0]["To"] == "ops@example.com"
        assert got[0]["X-Beatd-Idempotency-Key"].endswith(":first")
        sent = next(alert for alert in (json.loads(e["entry"]) for _, e in client.xrange(keys.alert_log))
                    if alert["event"] == "delivered")  # fmt: skip
        assert sent["id"] == got[0]["X-Beatd-Idempotency-Key"]
        assert config.settings.alerts is not None
        send(config.settings.alerts.sinks["mail"], {"id": sent["id"], "kind": "alert", "rule": "dead"})
        wait_for(lambda: len(got) == 2, timeout=60, what="the mail sent again")
        assert got[1]["Message-ID"] == got[0]["Message-ID"]
        assert "mail-pass-123" not in json.dumps(client.xrange(keys.alert_log)) + json.dumps(client.xrange(keys.audit))
    finally:
        controller.stop()


def _wait_until_told(client: redis.Redis, keys: Keys) -> None:
    """Wait until alerting has grouped every event noted so far and attempted every message that made."""
    newest = client.xrevrange(keys.alert_events, count=1)
    last = newest[0][0] if newest else "0-0"

    def told() -> bool:
        oldest = client.xrange(keys.alert_events, count=1)
        grouped = not oldest or _after(oldest[0][0], last)
        return grouped and all(json.loads(text)["kind"] == "close" for text in client.hvals(keys.alert_deliveries))

    wait_for(told, timeout=30, what="the events noted so far grouped and told")


def _after(entry_id: str, other: str) -> bool:
    return tuple(map(int, entry_id.split("-"))) > tuple(map(int, other.split("-")))


def _beat_config(tmp_path: Path, server: RedisServer, namespace: str, url: str, rules: str, jobs: str) -> Path:
    return _config(tmp_path, server, namespace, _webhook(url), rules, jobs)


def test_a_sink_down_past_the_backoff_cap_gets_the_alert_once_when_it_returns(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Any
) -> None:
    """With nothing taking connections at the webhook's port, the beat retries with a doubling backoff, then at
    its cap (``retry_max``: 1 s here, 5 m by default); when the server is back the alert arrives, once, and every
    attempt is in the alerts log and the audit stream. The outage is counted in attempts, not seconds: eight
    refused ones (four at the cap) stand for the issue's 30 s, scaled by the test's shorter retry settings."""
    holder = socket.socket()  # bound, not listening: connections are refused, and no other process takes the port
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    path = _beat_config(
        tmp_path,
        shared_redis,
        namespace,
        f"http://127.0.0.1:{port}/hook",
        "    - {on: dead, sinks: [hook]}\n",
        "  nightly: {every: 1h, call: 'tests.worker_jobs:noop'}\n",
    )
    client = redis.Redis.from_url(shared_redis.url, decode_responses=True)
    keys = Keys(namespace)
    metrics_port = free_port()
    beat = daemons("beat", "-c", str(path), "--metrics-port", str(metrics_port), env={"HOOK_SECRET": SECRET})
    wait_for(lambda: client.get(keys.leader), timeout=30, what="a leader")
    client.xadd(keys.alert_events, {"record": _dead_record("nightly", 7)})
    beat.wait_log("failed \\(attempt 8", timeout=60)
    holder.close()
    up = Receiver(port)
    try:
        wait_for(lambda: up.keys("dead"), timeout=30, what="the alert after the sink returned")
        wait_for(lambda: client.hlen(keys.alert_deliveries) == 1, timeout=30, what="the delivery recorded")
        (left,) = client.hvals(keys.alert_deliveries)
        assert json.loads(left)["kind"] == "close"  # what waits is the window's close, not a retry
        assert len(up.keys("dead")) == 1 and up.bad_signatures == 0
        log = [json.loads(fields["entry"]) for _, fields in client.xrange(keys.alert_log)]
        failed = [entry for entry in log if entry["event"] == "failed"]
        assert len(failed) >= 8 and all("ConnectError" in entry["error"] for entry in failed)
        assert [entry["event"] for entry in log].count("delivered") == 1
        audit = [fields["event"] for _, fields in client.xrange(keys.audit)]
        assert audit.count("alert-failed") == len(failed) and audit.count("alert-delivered") == 1
        shown = subprocess.run([sys.executable, "-m", "beatd", "alerts", "--json", "-c", str(path)],
                               capture_output=True, text=True, env={**os.environ, "HOOK_SECRET": SECRET}, timeout=60,
                               check=True)  # fmt: skip
        (alert,) = json.loads(shown.stdout)
        assert alert["rule"] == "dead" and alert["sinks"]["hook"]["state"] == "delivered"
        assert alert["sinks"]["hook"]["attempts"] == len(failed) + 1
        assert SECRET not in shown.stdout and SECRET not in beat.log()
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert 'beatd_alerts_raised_total{rule="dead"} 1.0' in metrics
        assert 'beatd_alerts_delivered_total{sink="hook"} 1.0' in metrics
        assert f'beatd_alerts_failed_total{{sink="hook"}} {len(failed)}.0' in metrics
    finally:
        up.close()
        holder.close()


def test_a_leader_killed_during_delivery_loses_no_alert(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Any, receiver: Receiver
) -> None:
    """The leader is killed -9 while the sink holds its request; the next leader delivers the alert."""
    path = _beat_config(
        tmp_path,
        shared_redis,
        namespace,
        receiver.url,
        "    - {on: dead, sinks: [hook]}\n",
        "  nightly: {every: 1h, call: 'tests.worker_jobs:noop'}\n",
    )
    client = redis.Redis.from_url(shared_redis.url, decode_responses=True)
    keys = Keys(namespace)
    receiver.mode = "hang"
    first = daemons("beat", "-c", str(path), env={"HOOK_SECRET": SECRET})
    wait_for(lambda: client.get(keys.leader), timeout=60, what="a leader")
    client.xadd(keys.alert_events, {"record": _dead_record("nightly", 9)})
    wait_for(lambda: receiver.received, timeout=60, what="the delivery in flight")
    first.signal(signal.SIGKILL)
    first.process.wait()
    receiver.mode = "ok"
    receiver.release.set()
    daemons("beat", "-c", str(path), env={"HOOK_SECRET": SECRET})
    wait_for(lambda: receiver.keys("dead"), timeout=30, what="the alert from the next leader")
    assert receiver.keys("dead") == [receiver.received[0]["id"]]


def test_a_job_out_of_retries_gives_one_dead_alert_and_its_next_success_one_recovered(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Any, receiver: Receiver
) -> None:
    """Real beat and worker: a job failing every fire raises one ``dead`` message; once it succeeds, one
    ``recovered``; later successes none."""
    flag = tmp_path / "failing"
    flag.write_text("")
    jobs = (f"  flaky: {{every: 1s, call: 'tests.worker_jobs:fail_while', kwargs: {{flag: '{flag}'}}, retries: 1, "
            "retry_delay: 100ms, queue: alerts}\n")  # fmt: skip
    path = _beat_config(
        tmp_path,
        shared_redis,
        namespace,
        receiver.url,
        "    - {on: dead, sinks: [hook]}\n    - {on: recovered, sinks: [hook]}\n",
        jobs,
    )
    daemons("beat", "-c", str(path), env={"HOOK_SECRET": SECRET})
    daemons("worker", "-c", str(path), "--isolation", "thread", env={"HOOK_SECRET": SECRET}, name="worker")
    wait_for(lambda: receiver.keys("dead"), timeout=30, what="the dead alert")
    client = redis.Redis.from_url(shared_redis.url, decode_responses=True)
    keys = Keys(namespace)
    wait_for(lambda: len([r for r in client.hvals(keys.runs("flaky")) if '"dead"' in r]) >= 3, timeout=30,
             what="more dead fires")  # fmt: skip
    flag.unlink()
    wait_for(lambda: receiver.keys("recovered"), timeout=30, what="the recovered alert")
    succeeded = len([r for r in client.hvals(keys.runs("flaky")) if '"succeeded"' in r])
    wait_for(lambda: len([r for r in client.hvals(keys.runs("flaky")) if '"succeeded"' in r]) >= succeeded + 3,
             timeout=30, what="more successes")  # fmt: skip
    _wait_until_told(client, keys)
    assert len(receiver.keys("dead")) == 1
    assert len(receiver.keys("recovered")) == 1
    assert receiver.bad_signatures == 0


def test_a_worker_killed_mid_run_gives_a_failed_alert_for_its_lost_attempt(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Any, receiver: Receiver
) -> None:
    """Real beat and workers: the attempt of a worker killed with SIGKILL mid-run, recorded ``lost`` when
    another worker takes its fire over, raises the job's ``failed`` alert (a dead worker failed that attempt)."""
    log = tmp_path / "runs.jsonl"
    jobs = (f"  batch: {{every: 1h, call: 'tests.worker_jobs:slow_first_attempt', "
            f"kwargs: {{seconds: 60, log: '{log}'}}, timeout: 1s}}\n")  # fmt: skip
    path = _beat_config(tmp_path, shared_redis, namespace, receiver.url, "    - {on: failed, sinks: [hook]}\n", jobs)
    with path.open("a") as extra:
        extra.write("worker: {kill_grace: 500ms}\n")
    env = {"HOOK_SECRET": SECRET}
    daemons("beat", "-c", str(path), env=env)
    first = daemons("worker", "-c", str(path), "--isolation", "thread", env=env, name="first")
    client = Client.from_config(path, environ=env)
    fire = client.trigger("batch")
    wait_for(lambda: log.exists() and log.read_text(), timeout=30, what="attempt 1 started")
    first.signal(signal.SIGKILL)
    daemons("worker", "-c", str(path), "--isolation", "thread", env=env, name="second")
    assert fire.wait(timeout=30).status == "succeeded"
    wait_for(lambda: receiver.keys("failed"), timeout=30, what="the failed alert")
    told = next(alert for alert in receiver.received if alert["rule"] == "failed")
    assert told["job"] == "batch" and "attempt 1 lost" in json.dumps(told)
    assert receiver.bad_signatures == 0
    client.close()


def test_a_stopped_worker_gives_one_deadline_alert_and_one_silence_alert(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Any, receiver: Receiver
) -> None:
    """With its worker stopped, a job every second raises one ``deadline`` message (fires not done 1 s after their
    instant) and, after 3 intervals without a success, one ``silence`` message."""
    jobs = "  tick: {every: 1s, call: 'tests.worker_jobs:noop', queue: ticks}\n"
    rules = ("    - {on: deadline, after: 1s, sinks: [hook], jobs: [tick]}\n"
             "    - {on: silence, intervals: 3, sinks: [hook], jobs: [tick]}\n")  # fmt: skip
    path = _beat_config(tmp_path, shared_redis, namespace, receiver.url, rules, jobs)
    client = redis.Redis.from_url(shared_redis.url, decode_responses=True)
    keys = Keys(namespace)
    daemons("beat", "-c", str(path), env={"HOOK_SECRET": SECRET})
    worker = daemons("worker", "-c", str(path), "--isolation", "thread", env={"HOOK_SECRET": SECRET}, name="worker")
    wait_for(lambda: len([r for r in client.hvals(keys.runs("tick")) if '"succeeded"' in r]) >= 2, timeout=30,
             what="successes")  # fmt: skip
    worker.stop()
    wait_for(lambda: receiver.keys("deadline"), timeout=30, what="the deadline alert")
    wait_for(lambda: receiver.keys("silence"), timeout=30, what="the silence alert")
    silence = next(alert for alert in receiver.received if alert["rule"] == "silence" and not alert.get("hung"))
    since, told = (parse_utc(text) for text in (silence["event"]["last_success_or_since"], silence["at"]))
    assert told - since > timedelta(seconds=2)  # the 3rd fire instant (every second) after the last success

    def deadline_count() -> int:
        groups = [json.loads(text) for text in client.hvals(keys.alert_groups)]
        return sum(group["count"] for group in groups if group["rule"] == "deadline")

    wait_for(lambda: deadline_count() >= 3, timeout=30, what="more fires past their deadline, counted")
    _wait_until_told(client, keys)
    assert len(receiver.keys("deadline")) == 1
    assert len(receiver.keys("silence")) == 1


def test_with_every_beat_gone_a_worker_tells_no_leader_and_delivers_until_a_beat_leads_again(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Any, receiver: Receiver
) -> None:
    """The only beat killed -9: once no beat has led for no_leader's ``after``, the worker takes the standby
    claim, raises one ``no_leader`` message and delivers what is noted meanwhile (a dead record); a beat
    that leads again takes over (the no_leader mark cleared, the standby's writes refused)."""
    rules = "    - {on: no_leader, after: 1s, sinks: [hook]}\n    - {on: dead, sinks: [hook]}\n"
    jobs = "  nightly: {every: 1h, call: 'tests.worker_jobs:noop', queue: standby}\n"
    path = _beat_config(tmp_path, shared_redis, namespace, receiver.url, rules, jobs)
    client = redis.Redis.from_url(shared_redis.url, decode_responses=True)
    keys = Keys(namespace)
    beat = daemons("beat", "-c", str(path), env={"HOOK_SECRET": SECRET})
    worker = daemons("worker", "-c", str(path), "--isolation", "thread", env={"HOOK_SECRET": SECRET}, name="worker")
    wait_for(lambda: client.get(keys.leader) and client.hlen(keys.workers), timeout=30, what="a leader and a worker")
    beat.signal(signal.SIGKILL)
    beat.process.wait()
    wait_for(lambda: receiver.keys("no_leader"), timeout=30, what="the no_leader alert")
    assert client.get(keys.leader) is None and client.get(keys.alert_standby)
    assert re.search(r"alert no_leader: namespace \w+: no beat holds the lease", worker.log())
    told = next(alert for alert in receiver.received if alert["rule"] == "no_leader")
    assert told["subject"] == "-" and told["job"] is None and receiver.bad_signatures == 0
    client.xadd(keys.alert_events, {"record": _dead_record("nightly", 3)})  # noted while no beat leads
    wait_for(lambda: receiver.keys("dead"), timeout=30, what="the dead alert, delivered by the standby")
    daemons("beat", "-c", str(path), env={"HOOK_SECRET": SECRET})
    wait_for(lambda: not client.hexists(keys.alert_state, "mark:no_leader"), timeout=30, what="the leader back")
    assert client.get(keys.leader) is not None
    assert len(receiver.keys("no_leader")) == 1 and len(receiver.keys("dead")) == 1
    assert SECRET not in worker.log()


def test_a_queue_with_due_fires_and_no_live_worker_gives_one_no_worker_alert(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Any, receiver: Receiver
) -> None:
    """A job every second on a queue no worker consumes: after no_worker's ``after``, one message naming the
    queue and its waiting fires, not repeated while it stays unserved; a worker serving it clears the mark."""
    rules = "    - {on: no_worker, after: 1s, sinks: [hook, slack]}\n"
    jobs = "  lonely: {every: 1s, call: 'tests.worker_jobs:noop', queue: lonely}\n"
    slack = "    slack: {type: slack, url: '${SLACK_URL}'}\n"
    path = _config(tmp_path, shared_redis, namespace, _webhook(receiver.url) + slack, rules, jobs)
    client = redis.Redis.from_url(shared_redis.url, decode_responses=True)
    keys = Keys(namespace)
    token = "T0000/B0000/slack-token-not-for-logs"  # the URL of a Slack webhook is its credential
    env = {"HOOK_SECRET": SECRET, "SLACK_URL": receiver.url.replace("/hook", f"/slack/{token}")}
    beat = daemons("beat", "-c", str(path), "--log-level", "debug", env=env)
    wait_for(lambda: receiver.keys("no_worker"), timeout=30, what="the no_worker alert")
    told = next(alert for alert in receiver.received if alert["rule"] == "no_worker")
    assert told["subject"] == "queue:lonely" and told["event"]["queue"] == "lonely" and told["event"]["waiting"] >= 1
    waiting = told["event"]["waiting"]
    wait_for(lambda: client.xlen(keys.queue("lonely")) >= waiting + 2, timeout=30, what="more fires waiting")
    _wait_until_told(client, keys)
    assert len(receiver.keys("no_worker")) == 1
    assert set(receiver.texts) == {f"[beatd] no_worker: {told['summary']}"}  # (a late reply may bring it twice)
    daemons("worker", "-c", str(path), "--isolation", "thread", env=env, name="worker")
    wait_for(lambda: not client.hexists(keys.alert_state, "mark:no_worker:lonely"), timeout=30, what="served")
    assert len(receiver.keys("no_worker")) == 1
    shown = subprocess.run([sys.executable, "-m", "beatd", "alerts", "-c", str(path)], capture_output=True,
                           text=True, env={**os.environ, **env}, timeout=60, check=True)  # fmt: skip
    assert "no_worker" in shown.stdout and "slack: delivered" in shown.stdout
    for output in (beat.log(), shown.stdout, shown.stderr, json.dumps(client.xrange(keys.alert_log))):
        assert "slack-token" not in output and SECRET not in output


def test_a_paused_job_is_not_judged_late_for_the_fires_it_skipped(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, receiver: Receiver
) -> None:
    """A job every second, watched, then paused for 3 s: once resumed, the first deadline alert is about a fire
    after the pause (not one it skipped), and its silence counts from the resume, not from before the pause."""
    rules = "    - {on: deadline, after: 1s, sinks: [hook]}\n    - {on: silence, after: 2s, sinks: [hook]}\n"
    path = _config(tmp_path, shared_redis, namespace, _webhook(receiver.url), rules,
                   "  tick: {every: 1s, call: 'tests.worker_jobs:noop'}\n")  # fmt: skip
    config = load_config(path, {"HOOK_SECRET": SECRET})
    client = redis.Redis.from_url(shared_redis.url, decode_responses=True)
    keys = Keys(namespace)
    fence = _leader(client, keys)
    alerting = Alerting(AlertStore(client, keys), UpkeepStore(client, keys), Metrics())
    current = Current(config.jobs, config.settings.alerts)

    def redis_ms() -> int:
        seconds, micros = client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    alerting.step(fence, current, time.monotonic())  # watched: its marks start now
    assert client.hexists(keys.alert_state, "mark:deadline:tick")
    client.hset(keys.paused, "tick", "1")
    paused_until = time.monotonic() + 3
    while time.monotonic() < paused_until:  # the leader steps on while it is paused (no beat emits: none succeed)
        alerting.step(fence, current, time.monotonic())
        time.sleep(0.05)
    client.hdel(keys.paused, "tick")
    resumed = redis_ms()
    wait_for(lambda: alerting.step(fence, current, time.monotonic()) >= 0 and len(receiver.keys()) == 2, timeout=30,
             what="the deadline and silence alerts after the resume")  # fmt: skip
    by_rule = {alert["rule"]: alert for alert in receiver.received}
    late = parse_utc(by_rule["deadline"]["event"]["scheduled_at"])
    assert late >= from_ms(resumed) - timedelta(seconds=2.5)  # the last watch at rest was at most 1 s before
    silent_at = parse_utc(by_rule["silence"]["at"])
    assert silent_at >= from_ms(resumed) + timedelta(seconds=1)  # 2 s after the last watch at rest
