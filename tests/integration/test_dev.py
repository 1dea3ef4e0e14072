"""`beatd dev` runs beat and worker on a private Redis, prints runs, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from beatd.localredis import bundled_redis_server
from tests.conftest import REPO
from tests.integration.conftest import wait_for


def _get(url: str, token: str) -> str | None:
    """The body of a GET of ``url`` with ``token``, or None while nothing answers there."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return str(reply.read().decode())
    except OSError:
        return None


def _path_without_redis() -> str:
    """PATH minus every directory that holds a redis-server binary."""
    return os.pathsep.join(
        entry for entry in os.environ.get("PATH", "").split(os.pathsep) if not (Path(entry) / "redis-server").exists()
    )


def test_dev_runs_jobs_without_a_redis_on_path(tmp_path: Path) -> None:
    """With no redis-server on PATH, `beatd dev` uses the bundled one, runs a job, and stops cleanly."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("BEATD_")}
    environment["PATH"] = _path_without_redis()
    if bundled_redis_server() is None:
        pytest.skip("no bundled redis-server (pip install 'beatd[embedded]')")
    config = _ping_config(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "beatd", "dev", "-c", str(config), "--duration", "10"],
        capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=90, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.search(r"succeeded .* ping@", result.stdout), result.stdout
    pids = [int(pid) for pid in re.findall(r"pid (\d+)", result.stdout)]
    assert len(pids) == 2 and "stopped" in result.stdout
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_dev_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    """`beatd dev` prints the web dashboard's URL, whose port is taken from then on and answers; SIGINT stops the
    beat, the worker, the web dashboard and the private redis-server."""
    config = _ping_config(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "beatd", "dev", "-c", str(config), "--data-dir", str(tmp_path / "redis")],
        stdout=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert process.stdout is not None
    seen = ""
    while "succeeded" not in seen or "web dashboard at" not in seen:
        line = process.stdout.readline()
        assert line, "beatd dev ended early"
        seen += line
        if printed := re.search(r"web dashboard at http://127\.0\.0\.1:(\d+)/", line):
            # Taken from the moment it is printed: dev binds it and the dashboard inherits it (a port dev only
            # probed could be taken before the dashboard bound it, as another `beatd dev` started at once did).
            with socket.socket() as rival, pytest.raises(OSError):
                rival.bind(("127.0.0.1", int(printed.group(1))))
    url = re.search(r"web dashboard at (http://127\.0\.0\.1:(\d+))/login\?token=(\S+)", seen)
    assert url is not None, seen
    page = wait_for(lambda: _get(f"{url.group(1)}/api/v1/jobs", url.group(3)), 30, 0.2, what="the dashboard")
    assert json.loads(page)["jobs"][0]["name"] == "ping"
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0 and "stopped" in out
    pids = [int(pid) for pid in re.findall(r"pid (\d+)", seen)]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url.group(1)}/api/v1/health", timeout=5)
    redis_port = re.search(r"127\.0\.0\.1:(\d+)", seen)
    assert redis_port is not None
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert f"127.0.0.1:{redis_port.group(1)}" not in listing


@pytest.mark.parametrize("then", ["next print", "ctrl-c"])
def test_dev_whose_stdout_closes_stops_everything_it_started(tmp_path: Path, then: str) -> None:
    """`beatd dev | head`: once its stdout pipe is closed, dev's next print fails and it stops as on Ctrl-C, the
    beat, worker, web dashboard and private redis-server with it (it had died on the closed pipe and left them
    running: each is in a session of its own), and exits 0 without a traceback; as it does when Ctrl-C comes
    first and its "stopping" line cannot be written."""
    config = _ping_config(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "beatd", "dev", "-c", str(config), "--web-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    seen = ""
    try:
        while ("succeeded" if then == "next print" else "web dashboard at") not in seen:
            line = process.stdout.readline()
            assert line, "beatd dev ended early"
            seen += line
        process.stdout.close()  # as `head` does once it has its lines
        if then == "ctrl-c":
            process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        pids = [int(pid) for pid in re.findall(r"pid (\d+)", seen)]
        redis_port = re.search(r"redis-server at redis://127\.0\.0\.1:(\d+)", seen)
        left = [pid for pid in pids if _alive(pid)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert len(pids) == 2 and left == [], seen
    assert redis_port is not None
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert f"127.0.0.1:{redis_port.group(1)}" not in listing and "-c " + str(config) not in listing
    assert "Traceback" not in process.stderr.read()


def _ping_config(tmp_path: Path) -> Path:
    """A config with one job, ``ping``, every second, on the Redis ``beatd dev`` gives it."""
    config = tmp_path / "beatd.yaml"
    config.write_text(
        f"pythonpath: ['{REPO}']\nredis: {{url: '${{BEATD_REDIS_URL}}'}}\n"
        "jobs:\n  ping: {call: tests.worker_jobs:noop, every: 1s}\n"
    )
    return config


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_quick_start_command_without_redis_on_path(tmp_path: Path) -> None:
    """`./dev run` (the README's first command) works with no redis-server on PATH: the signups job succeeds."""
    if bundled_redis_server() is None:
        pytest.skip("no bundled redis-server (pip install 'beatd[embedded]')")
    shadow = tmp_path / "bin"  # every command on PATH except redis-*
    shadow.mkdir()
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        folder = Path(entry)
        if not folder.is_dir():
            continue
        for tool in folder.iterdir():
            if not tool.name.startswith("redis") and not (shadow / tool.name).exists():
                (shadow / tool.name).symlink_to(tool)
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("BEATD_", "SIGNUPS_"))}
    environment |= {"PATH": str(shadow), "BEATD_VENV": sys.prefix, "BEATD_DEV_DIR": str(tmp_path / "state")}
    result = subprocess.run(
        [str(REPO / "dev"), "run", "--duration", "25"],
        capture_output=True, text=True, env=environment, cwd=REPO, timeout=240, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert re.search(r"succeeded .* signups_demo@\S+#1\s+\{\"day\": \"\d{4}-\d\d-\d\d\", \"signups\": \d+\}",
                     result.stdout), result.stdout[-3000:]  # fmt: skip
    assert "private redis-server" in result.stdout
