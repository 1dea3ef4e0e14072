"""systemd: the units install, verify and rate as hardened; worker and beat speak sd_notify like systemd needs."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from beatd.systemd_units import render_units
from tests.conftest import REPO
from tests.integration.conftest import Daemon
from tests.integration.helpers import write_config
from tests.integration.test_beat_operations import _receive_until
from tests.redis_server import RedisServer

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def install(root: Path) -> subprocess.CompletedProcess[str]:
    """Run `beatd install-systemd --root ROOT`."""
    return subprocess.run(
        [sys.executable, "-m", "beatd", "install-systemd", "--root", str(root)],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip


def test_repository_units_are_the_rendered_ones() -> None:
    """systemd/*.service in the repository are what beatd renders for /usr/local/bin/beatd."""
    for name, text in render_units("/usr/local/bin/beatd").items():
        assert (REPO / "systemd" / name).read_text() == text, f"regenerate systemd/{name}"
    assert (REPO / "beatd/examples/beatd.yaml").read_text() == (REPO / "config/beatd.yaml").read_text()


def test_install_writes_units_config_and_env_without_overwriting(tmp_path: Path) -> None:
    """Units use the real beatd path; the config and env file are written once, the env file mode 0600."""
    output = install(tmp_path).stdout
    unit = (tmp_path / "etc/systemd/system/beatd-beat.service").read_text()
    beatd = re.search(r"ExecStart=(\S+) beat", unit)
    assert beatd is not None and Path(beatd.group(1)).exists()
    config = tmp_path / "etc/beatd/beatd.yaml"
    env = tmp_path / "etc/beatd/beatd.env"
    assert config.read_text() == (REPO / "config/beatd.yaml").read_text()
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert "systemctl enable --now beatd.target" in output
    config.write_text("# mine\n")
    again = install(tmp_path).stdout
    assert config.read_text() == "# mine\n" and "kept" in again


@needs_analyze
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts each installed unit (the worker template as an instance)."""
    install(tmp_path)
    units = tmp_path / "etc/systemd/system"
    shutil.copy(units / "beatd-worker@.service", units / "beatd-worker@1.service")
    for name in ("beatd-beat.service", "beatd-worker@1.service", "beatd.target"):
        result = subprocess.run([ANALYZE, "verify", str(units / name)], capture_output=True, text=True, check=False)
        assert result.returncode == 0 and result.stderr.strip() == "", (name, result.stderr)


@needs_analyze
@pytest.mark.parametrize("name", ["beatd-beat.service", "beatd-worker@1.service"])
def test_units_rate_ok_in_systemd_analyze_security(tmp_path: Path, name: str) -> None:
    """`systemd-analyze security --offline=yes` rates each service at 2.0 or lower."""
    install(tmp_path)
    units = tmp_path / "etc/systemd/system"
    shutil.copy(units / "beatd-worker@.service", units / "beatd-worker@1.service")
    result = subprocess.run(
        [ANALYZE, "security", "--offline=yes", str(units / name)], capture_output=True, text=True, check=False
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert found is not None, result.stdout + result.stderr
    assert float(found.group(1)) <= 2.0 and found.group(2) == "OK"


def test_worker_speaks_sd_notify(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """The worker sends READY=1, WATCHDOG=1, RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 on SIGTERM."""
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "notify.sock"))
    receiver.settimeout(10)
    config = write_config(tmp_path / "beatd.yaml", shared_redis, namespace, "a: {command: [x], every: 1h}")
    worker = daemons(
        "worker", "-c", str(config), env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
    )
    seen = _receive_until(receiver, "READY=1") + _receive_until(receiver, "WATCHDOG=1")
    assert any(line.startswith("STATUS=0/4 running") for line in seen)
    worker.signal(signal.SIGHUP)
    assert "RELOADING=1" in _receive_until(receiver, "READY=1")
    worker.signal(signal.SIGTERM)
    assert "STOPPING=1" in _receive_until(receiver, "STOPPING=1")
    assert worker.exited() == 0
    receiver.close()


def test_install_user_units(tmp_path: Path) -> None:
    """--user writes user units (config under ~/.config/beatd, no system sandbox) below the root."""
    output = subprocess.run(
        [sys.executable, "-m", "beatd", "install-systemd", "--root", str(tmp_path), "--user"],
        capture_output=True, text=True, check=True, cwd=REPO,
    ).stdout  # fmt: skip
    home = tmp_path / Path.home().relative_to("/")
    unit = (home / ".config/systemd/user/beatd-beat.service").read_text()
    assert "ExecStart=" in unit and "%h/.config/beatd/beatd.yaml" in unit and "DynamicUser" not in unit
    assert (home / ".config/beatd/beatd.yaml").exists()
    assert "systemctl --user enable --now beatd.target" in output
