"""Daemons run a config that has warnings, and log each warning at start and on reload."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import Daemon
from tests.redis_server import RedisServer


def test_beat_logs_config_warnings_at_start_and_reload(
    shared_redis: RedisServer, namespace: str, tmp_path: Path, daemons: Callable[..., Daemon]
) -> None:
    """A beat started on a config without jobs logs that warning; after SIGHUP onto a config whose include
    glob matches no file it logs that one, and it keeps running."""
    config = tmp_path / "beatd.yaml"
    settings = f"redis: {{url: '{shared_redis.url}'}}\nnamespace: {namespace}\n"
    config.write_text(settings + "jobs: {}\n")
    beat = daemons("beat", "-c", str(config), "--log-level", "info")
    beat.wait_log(rf"config warning: {config}:3:7: jobs: the config declares no jobs")
    beat.wait_log(r"beat \S+ starting")

    config.write_text(settings + "include: [jobs.d/*.yaml]\njobs:\n  a: {command: [/bin/true], every: 1h}\n")
    beat.signal(signal.SIGHUP)
    beat.wait_log(rf"config warning: {config}:3:11: include\[0\]: the pattern matches no file: {tmp_path}/jobs.d/")
    beat.wait_log(rf"reloaded {config}")
    assert beat.process is not None and beat.process.poll() is None
    assert "Traceback" not in beat.log()
