"""--metrics-port: Prometheus metrics, /healthz and /readyz of real beat and worker processes; JSON logs."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from beatd.localredis import free_port
from tests.integration.conftest import Daemon, wait_for
from tests.integration.test_worker import config_file, statuses
from tests.redis_server import RedisServer


def fetch(port: int, path: str) -> tuple[int, str]:
    """GET http://127.0.0.1:PORT/PATH; (status, body); (0, '') while nothing listens."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    for line in text.splitlines():
        match = re.match(r"^(\w+)(\{[^}]*\})? (\S+)$", line)
        if match and match.group(1) == name:
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            if all(found.get(key) == value for key, value in labels.items()):
                return float(match.group(3))
    return 0.0


def test_metrics_and_health_of_beat_and_worker(
    tmp_path: Path, own_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """Emitted fires, lag, leadership, runs, durations and queue depth are exported; readiness follows Redis."""
    config = config_file(tmp_path, own_redis, namespace, "tick: {call: tests.worker_jobs:noop, every: 500ms}")
    beat_port, worker_port = free_port(), free_port()
    daemons("beat", "-c", str(config), "--metrics-port", str(beat_port), name="beat")
    daemons("worker", "-c", str(config), "--metrics-port", str(worker_port), name="worker")
    wait_for(lambda: statuses(own_redis, namespace, "tick").count("succeeded") >= 3, what="three runs")
    beat = wait_for(lambda: fetch(beat_port, "/metrics")[1], what="beat metrics")
    worker = wait_for(lambda: fetch(worker_port, "/metrics")[1], what="worker metrics")
    assert sample(beat, "beatd_fires_emitted_total", job="tick", trigger="schedule") >= 3
    assert sample(beat, "beatd_leader") == 1 and sample(beat, "beatd_leader_changes_total") == 1
    assert sample(beat, "beatd_emission_lag_seconds_count") >= 3
    assert sample(worker, "beatd_runs_total", job="tick", status="succeeded") >= 3
    assert sample(worker, "beatd_run_duration_seconds_count", job="tick") >= 3
    assert "beatd_queue_depth" in worker and "beatd_config_reload_failures_total" in worker
    for port in (beat_port, worker_port):
        status, body = fetch(port, "/healthz")
        assert status == 200 and json.loads(body)["redis"] is True
        assert fetch(port, "/readyz")[0] == 200
    own_redis.stop()
    wait_for(lambda: fetch(beat_port, "/readyz")[0] == 503, what="beat not ready without Redis")
    wait_for(lambda: fetch(worker_port, "/readyz")[0] == 503, what="worker not ready without Redis")
    for port in (beat_port, worker_port):  # alive all the same: a restart would not bring Redis back
        status, body = fetch(port, "/healthz")
        assert status == 200 and json.loads(body)["redis"] is False
    assert fetch(beat_port, "/nope")[0] == 404


def test_json_logs_name_the_job_and_run(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """With --log-format json every line is one JSON object, and lines about a run carry job and run id."""
    config = config_file(tmp_path, shared_redis, namespace, "tick: {call: tests.worker_jobs:noop, every: 500ms}")
    daemons("beat", "-c", str(config), name="beat")
    worker = daemons("worker", "-c", str(config), "--log-format", "json", name="worker")
    wait_for(lambda: statuses(shared_redis, namespace, "tick").count("succeeded") >= 2, what="two runs")
    worker.stop()
    entries = [json.loads(line) for line in worker.log().splitlines() if line.strip()]
    about_runs = [entry for entry in entries if "succeeded in" in entry["message"]]
    assert about_runs and all(re.search(r"tick run tick@\S+#1", entry["message"]) for entry in about_runs)
    assert {"ts", "level", "logger", "message"} <= set(entries[0])
