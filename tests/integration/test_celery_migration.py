"""The README's "Switching over" steps, run as written on a tiny Celery app against a real Celery worker.

``tests.celery_app`` is the app: its ``beat_schedule`` has one entry (``tests.record`` every second). The test
runs what the README says, in its order: ``beatd import celery tests.celery_app:app > beatd.yaml``,
``beatd check``, ``beatd pause JOB --reason migration`` for each job before the beat starts, ``beatd next``,
the beat beside the Celery worker with nothing sent, ``beatd resume JOB``, then ``beatd history`` with the
Celery outcome. ``BEATD_CONFIG`` names the file for every command after the import, as the README says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from beatd.celery_messages import celery_task_id
from tests.conftest import REPO
from tests.integration.conftest import Daemon, wait_for
from tests.integration.helpers import leader_token, runs
from tests.integration.test_celery import _celery_env, _ledger, celery_worker  # noqa: F401 - a fixture
from tests.redis_server import RedisServer

pytest.importorskip("celery", reason="Celery is in the dev extras (beatd[celery])")


def test_the_documented_switch_over_runs_the_imported_schedule_on_an_unchanged_worker(
    tmp_path: Path,
    own_redis: RedisServer,
    namespace: str,
    daemons: Callable[..., Daemon],
    celery_worker: Callable[..., subprocess.Popen[bytes]],  # noqa: F811 - the fixture imported above
) -> None:
    """Import, check, pause, start the beat, compare `next`, resume: the imported job's fires run on the real
    Celery worker once each, with the entry's args, kwargs and headers, and `history` shows their outcome."""
    ledger = tmp_path / "ledger.jsonl"
    config = tmp_path / "beatd.yaml"
    env = {
        **os.environ,
        **_celery_env(own_redis, ledger),
        "BEATD_REDIS_URL": f"redis://127.0.0.1:{own_redis.port}/0",
        "BEATD_CONFIG": str(config),
    }

    def beatd(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "beatd", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, check=False)  # fmt: skip
        assert done.returncode == 0, f"beatd {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    imported = beatd("import", "celery", "tests.celery_app:app")
    assert "1 of 1 entries converted" in imported.stderr
    config.write_text(imported.stdout.replace("\njobs:", f"\nnamespace: {namespace}\njobs:", 1))
    beatd("check")
    listed = json.loads(beatd("jobs", "--json").stdout)
    jobs = [job["name"] for job in listed]
    assert jobs == ["record_every_second"], jobs  # the entry's name made a valid job name
    assert listed[0]["queue"] == "celery"  # a celery job's queue is Celery's, not a beatd queue
    (job,) = jobs
    beatd("pause", job, "--reason", "migration")
    upcoming = beatd("next", job, "-n", "3").stdout.split()
    assert len(upcoming) == 3 and all(datetime.fromisoformat(at).utcoffset() is not None for at in upcoming)

    worker = celery_worker(env)
    beat = daemons("beat", env=env)
    client = own_redis.client()
    wait_for(lambda: leader_token(client, namespace) is not None, timeout=30, what="the beat to lead")
    led_at = float(client.time()[0])
    wait_for(lambda: float(client.time()[0]) >= led_at + 3, timeout=30, what="three seconds of leading, paused")
    assert runs(client, namespace, job) == [] and _ledger(ledger) == []  # paused: nothing sent
    beatd("resume", job)
    wait_for(lambda: len(_ledger(ledger)) >= 3, timeout=60, what="three executions after the resume")
    beat.stop()
    sent = [record for record in runs(client, namespace, job) if record["status"] == "sent"]
    wait_for(lambda: len(_ledger(ledger)) >= len(sent), timeout=30, what="every sent task run")
    assert worker.poll() is None
    lines = _ledger(ledger)
    assert Counter(line["fire_id"] for line in lines) == Counter(record["fire_id"] for record in sent)
    for line in lines:
        assert (line["args"], line["kwargs"], line["trace"]) == ([1, "two"], {"region": "eu"}, "migrated")
        assert line["task_id"] == celery_task_id(namespace, line["fire_id"])
    history = beatd("history", job, "--limit", "50").stdout
    assert "SUCCESS" in history, history
