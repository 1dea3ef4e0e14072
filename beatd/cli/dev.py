"""``beatd dev``: beat and a worker together on one config, against a private Redis, printing each run.

For trying beatd out and for developing jobs. Ctrl-C (or ``--duration``) stops everything it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click

from beatd.cli.options import config_option
from beatd.cli.runtime import Runtime
from beatd.config import find_config, load_config
from beatd.localredis import RedisServer
from beatd.records import FINAL_STATUSES
from beatd.store import RunStore, StoreError, connect

__all__ = ["dev"]

POLL = 0.5
"""How often (s) the run history is read for new finished runs."""

STOP_WAIT = 60.0
"""Longest wait (s) for the beat and the worker to stop before they are killed (the worker drains first)."""


@click.command()
@config_option
@click.option("--redis-url", metavar="URL", help="Use this Redis instead of starting a private one.")
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Where the private Redis keeps its data."
)
@click.option("--duration", type=click.FloatRange(0, min_open=True), help="Stop by itself after this many seconds.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning",
              show_default=True, help="Log level of the beat and the worker (runs are printed anyway).")  # fmt: skip
@click.option("--web-port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port of the web dashboard on 127.0.0.1 (taken: any free one; 0: any free one).")  # fmt: skip
@click.option("--no-web", is_flag=True, help="Do not start the web dashboard.")
@click.pass_obj
def dev(runtime: Runtime, config_path: str | None, redis_url: str | None, data_dir: Path | None,
        duration: float | None, log_level: str, web_port: int, no_web: bool) -> None:  # fmt: skip
    """Run a beat and a worker on the config, with a private Redis, and print each run as it finishes."""
    stop, stop_now = threading.Event(), threading.Event()

    def on_stop(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            stop_now.set()
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_stop)
    path = find_config(config_path, runtime.environ, runtime.cwd).resolve()
    load_config(path, {**runtime.environ, "BEATD_REDIS_URL": redis_url or "redis://127.0.0.1:1/0"})  # fail fast
    with tempfile.TemporaryDirectory(prefix="beatd-dev-") as scratch:
        server = None if redis_url else RedisServer(data_dir or Path(scratch) / "redis")
        children: list[subprocess.Popen[bytes]] = []
        store = seen = None
        try:
            if server is not None:
                server.start()
                redis_url = server.url
                click.echo(f"beatd dev: private redis-server at {redis_url} (data in {server.directory})")
            assert redis_url is not None
            environ = {**runtime.environ, "BEATD_REDIS_URL": redis_url}
            config = load_config(path, environ)
            store = RunStore(connect(config.settings.redis), config.keys(), config.shard_keys())
            seen = _finished_before(store, list(config.jobs))  # a kept --data-dir or --redis-url holds earlier runs
            for kind in ("beat", "worker"):  # each kept as it starts: a failed second spawn still stops the first
                children.append(_spawn([kind, "--log-level", log_level], path, environ))
            click.echo(f"beatd dev: beat pid {children[0].pid}, worker pid {children[1].pid}, "
                       f"{len(config.jobs)} jobs; Ctrl-C stops everything")  # fmt: skip
            if not no_web:
                token = environ.get("BEATD_WEB_ADMIN_TOKEN") or secrets.token_urlsafe(24)
                # Bound here and inherited: a port probed free and bound later by the child could be taken
                # meanwhile (two `beatd dev` started at once both probed 8080 free; one dashboard failed to bind).
                with _listen(web_port) as listening:
                    port = int(listening.getsockname()[1])
                    web_environ = {**environ, "BEATD_WEB_ADMIN_TOKEN": token}
                    command = ["web", "--fd", str(listening.fileno()), "--log-level", log_level]
                    children.append(_spawn(command, path, web_environ, listening.fileno()))
                click.echo(f"beatd dev: web dashboard at http://127.0.0.1:{port}/login?token={token}")
            _watch(store, list(config.jobs), seen, stop, duration, children)
        except BrokenPipeError:  # stdout went away (`beatd dev | head`, a closed pipe): stop as on Ctrl-C
            _silence_closed_streams()
        finally:
            # Whatever ended the session, its children stop: each is in a session of its own, so nothing else
            # stops them (a dev that died on a closed stdout had left the beat, worker, web and Redis running).
            started = bool(children) or (server is not None and server.process is not None)
            if started:
                _say("beatd dev: stopping; running jobs may finish (Ctrl-C again to stop them now)")
            _stop(children, stop_now)
            if store is not None and seen is not None:
                with contextlib.suppress(OSError):
                    _print_new(store, list(config.jobs), seen)  # the runs that finished while the worker drained
            if server is not None:
                server.stop()
            if started:
                _say("beatd dev: stopped")
            _silence_closed_streams()


def _silence_closed_streams() -> None:
    """Point stdout and stderr at /dev/null where a flush fails (a closed pipe): Python's own flush at exit
    would fail again and make the exit code 120."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, stream.fileno())
            finally:
                os.close(devnull)


def _say(text: str) -> None:
    """Print ``text``, unless stdout is gone (a closed pipe): the stop goes on regardless."""
    with contextlib.suppress(OSError):
        click.echo(text)


def _stop(children: list[subprocess.Popen[bytes]], stop_now: threading.Event) -> None:
    """SIGTERM each child (the worker drains); a second Ctrl-C sends another (the worker stops its runs)."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + STOP_WAIT
    forwarded = False
    while any(child.poll() is None for child in children) and time.monotonic() < deadline:
        if stop_now.is_set() and not forwarded:
            forwarded = True
            for child in children:
                if child.poll() is None:
                    child.terminate()
        stop_now.wait(POLL / 5)
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()


def _spawn(command: list[str], path: Path, environ: dict[str, str], *fds: int) -> subprocess.Popen[bytes]:
    # In a session of its own: a Ctrl-C reaches this process only, which stops the children in order.
    return subprocess.Popen(
        [sys.executable, "-m", "beatd", command[0], "-c", str(path), *command[1:]],
        env=environ,
        start_new_session=True,
        stdout=subprocess.DEVNULL if command[0] == "web" else None,  # its URL is printed here, with the token
        pass_fds=fds,
    )


def _listen(wanted: int) -> socket.socket:
    """A listening socket on 127.0.0.1: port ``wanted`` if it is free, else (or for 0) one the system picks."""
    for port in (wanted, 0) if wanted else (0,):
        listening = socket.socket()
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a restart reuses it
        try:
            listening.bind(("127.0.0.1", port))
            listening.listen(2048)
        except OSError:
            listening.close()
            continue
        return listening
    raise OSError("no free port on 127.0.0.1")


def _watch(
    store: RunStore, jobs: list[str], seen: set[str], stop: threading.Event, duration: float | None,
    children: list[Any],
) -> None:  # fmt: skip
    waited = 0.0
    while not stop.wait(POLL):
        waited += POLL
        if duration is not None and waited >= duration:
            return
        if any(child.poll() is not None for child in children):
            click.echo("beatd dev: a child process exited; stopping", err=True)
            return
        _print_new(store, jobs, seen)


def _finished_before(store: RunStore, jobs: list[str]) -> set[str]:
    """The runs already finished when this session starts: not printed, they are not new."""
    seen = set()
    try:
        for job in jobs:
            for text in store.job_records(job):
                record = json.loads(text)
                if record["status"] in FINAL_STATUSES:
                    seen.add(record["run_id"])
    except StoreError as error:
        click.echo(f"beatd dev: {error}", err=True)
    return seen


def _print_new(store: RunStore, jobs: list[str], seen: set[str]) -> None:
    """Print each finished run not printed yet."""
    try:
        for job in jobs:
            for text in reversed(store.run_records(job, 20)):
                record = json.loads(text)
                if record["run_id"] in seen or record["status"] not in FINAL_STATUSES:
                    continue
                seen.add(record["run_id"])
                click.echo(_line(record))
    except StoreError as error:
        click.echo(f"beatd dev: {error}", err=True)


def _line(record: dict[str, Any]) -> str:
    detail = record.get("reason") or ""
    if record.get("error"):
        detail = f"{record['error'].get('type')}: {record['error'].get('message')}"
    elif record.get("result") is not None:
        detail = json.dumps(record["result"])
    elif record.get("exit_code") is not None:
        detail = f"exit {record['exit_code']} {(record.get('output') or '').strip()[-60:]}"
    duration = f"{record['duration_s']:.3f}s" if record.get("duration_s") is not None else "-"
    return f"{record['scheduled_at']}  {record['status']:<9} {duration:>8}  {record['run_id']}  {detail}"[:200]
