"""Shared helpers of beatd's own benchmarks (``bench/emission.py``, ``bench/failover.py``). Not a benchmark.

The definitions and the plumbing that must match the RedBeat peer benchmarks come from
``bench/peers/_common.py`` (same private redis-server with ``--save '' --appendonly no``, same nearest-rank
percentile, same /proc readings, same table printer), so beatd's figures and RedBeat's compare side by side.
What is beatd-specific lives here:

* :class:`Beat`: one ``python -m beatd beat -c CONFIG`` (or ``worker``) subprocess whose stderr is read by a thread that
  stamps every line with ``time.time()`` on arrival (beatd's text log lines carry no time) and copies it to
  a file; ``wait_line`` waits for a pattern.
* :func:`write_config`: a beat config with any number of jobs and optional top-level settings (built as text:
  100k jobs in well under a second).
* :func:`read_fires`: every message of a queue stream as :class:`Fire` (entry ms = Redis time of the XADD,
  scheduled ms, job, fire id, trigger), read with XRANGE in chunks.
* :func:`machine`: nproc, CPU model, load, Python, redis-server and beatd versions.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import redis

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
_PEERS_COMMON = HERE / "peers" / "_common.py"
_spec = importlib.util.spec_from_file_location("bench_peers_common", _PEERS_COMMON)
assert _spec is not None and _spec.loader is not None, f"cannot load {_PEERS_COMMON}"
peers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peers)  # bench/peers/_common.py: the peer benchmarks' shared definitions

RedisServer = peers.RedisServer
percentile = peers.percentile
print_table = peers.print_table
fmt = peers.fmt
proc_cpu_seconds = peers.proc_cpu_seconds
proc_status_kb = peers.proc_status_kb

__all__ = [
    "Beat",
    "Fire",
    "RedisServer",
    "fmt",
    "load_average",
    "machine",
    "parse_ms",
    "percentile",
    "print_json_line",
    "print_table",
    "proc_cpu_seconds",
    "proc_status_kb",
    "read_fires",
    "wait_for_quiet",
    "write_config",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def parse_ms(text: str) -> int:
    """Epoch ms of beatd's ``format_utc`` text (``2026-11-21T16:05:00Z`` or ``...00.123Z``)."""
    instant = datetime.fromisoformat(text)
    return (instant - _EPOCH) // _MS


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages."""
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def wait_for_quiet(load: float, timeout: float) -> float:
    """Wait (at most ``timeout`` s) until the 1-minute load average is at most ``load``; return the wait."""
    started = time.monotonic()
    while os.getloadavg()[0] > load and time.monotonic() - started < timeout:
        time.sleep(2)
    return round(time.monotonic() - started, 1)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    info = peers.machine_info()
    for name in ("celery", "celery-redbeat", "kombu"):
        info.pop(name, None)
    info["python"] = sys.version.split()[0]
    try:
        from importlib.metadata import version

        info["beatd"] = version("beatd")
        info["redis-py"] = version("redis")
    except Exception:  # informational only
        pass
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "beatd"], cwd=REPO, capture_output=True, text=True)
        info["git"] = head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        pass
    info["load_average"] = load_average()
    info["date"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return info


def print_machine(info: dict[str, Any]) -> None:
    """The two header lines every benchmark prints: the machine and its load, then the versions."""
    print(f"machine: nproc={info['nproc']} cpu={info['cpu']} load={info['load_average']}")
    print("versions: " + ", ".join(f"{k}={v}" for k, v in info.items() if k not in ("nproc", "cpu", "load_average")))


def print_json_line(out: dict[str, Any], path: str | None) -> None:
    """Print a benchmark's final JSON line (and write it to ``path``, its ``--json-out``, when given)."""
    line = json.dumps(out)
    if path:
        Path(path).write_text(line + "\n")
    print(line)


def write_config(
    path: Path,
    url: str,
    namespace: str,
    lease: str,
    jobs: dict[str, dict[str, Any]],
    settings: dict[str, Any] | None = None,
) -> Path:
    """Write a beat config whose jobs are given as flow mappings (values are JSON, which YAML reads);
    ``settings``: more top-level keys (``pythonpath``, ``worker``, ``defaults``), also as JSON."""
    lines = [
        f"redis: {{url: '{url}'}}",
        f"namespace: {namespace}",
        f"leader: {{lease: {lease}}}",
        *(f"{key}: " + json.dumps(value, separators=(", ", ": ")) for key, value in (settings or {}).items()),
        "jobs:",
    ]
    for name, body in jobs.items():
        lines.append(f"  {name}: " + json.dumps(body, separators=(", ", ": ")))
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Beat:
    """One ``beatd beat`` replica (or, with ``command``, any beatd daemon: ``("worker", "--isolation",
    "thread")``); stderr lines are stamped on arrival and copied to ``log_path``."""

    config: Path
    log_path: Path
    command: tuple[str, ...] = ("beat",)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    lines: list[tuple[float, str]] = field(default_factory=list)
    _condition: threading.Condition = field(default_factory=threading.Condition)
    _reader: threading.Thread | None = None

    def start(self) -> Beat:
        """Spawn the process (its own session, so a signal to the harness does not reach it)."""
        env = {key: value for key, value in os.environ.items() if not key.startswith(("BEATD_", "NOTIFY_"))}
        env["PYTHONUNBUFFERED"] = "1"
        self.started_at = time.time()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "beatd", *self.command, "-c", str(self.config)],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.process.stderr is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stderr,), daemon=True)
        self._reader.start()
        return self

    def _read(self, stream: IO[bytes]) -> None:
        with self.log_path.open("ab") as copy:
            for raw in stream:
                stamp = time.time()
                copy.write(f"{stamp:.6f} ".encode() + raw)
                copy.flush()
                with self._condition:
                    self.lines.append((stamp, raw.decode(errors="replace").rstrip("\n")))
                    self._condition.notify_all()

    @property
    def pid(self) -> int:
        """The process id."""
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.poll() is None

    def find_line(self, pattern: str, after: float = 0.0) -> tuple[float, str] | None:
        """The first line stamped at or after ``after`` that matches ``pattern``, or None."""
        regex = re.compile(pattern)
        with self._condition:
            return next(((t, line) for t, line in self.lines if t >= after and regex.search(line)), None)

    def wait_line(self, pattern: str, timeout: float, after: float = 0.0) -> tuple[float, str] | None:
        """Wait (bounded) for a line matching ``pattern``; None on timeout or when the process exited."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.find_line(pattern, after)
            if found is not None:
                return found
            left = deadline - time.monotonic()
            if left <= 0 or not self.alive():
                return self.find_line(pattern, after)
            with self._condition:
                self._condition.wait(min(left, 0.05))

    def signal(self, signum: int) -> None:
        """Send a signal if the process still runs."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; return the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        return self.process.returncode


@dataclass(frozen=True, slots=True)
class Fire:
    """One queue message: Redis time of its XADD (entry id ms), its scheduled instant, job and fire id."""

    entry_ms: int
    scheduled_ms: int
    job: str
    fire_id: str
    trigger: str


def read_fires(client: redis.Redis, key: str, chunk: int = 10_000) -> Iterator[Fire]:
    """Every message of the stream ``key``, oldest first, read with XRANGE ``chunk`` entries at a time."""
    start = "-"
    while True:
        entries = client.xrange(key, min=start, max="+", count=chunk)
        for entry_id, fields in entries:
            body = json.loads(fields["message"])
            yield Fire(
                entry_ms=int(str(entry_id).split("-", 1)[0]),
                scheduled_ms=parse_ms(body["scheduled_at"]),
                job=body["job"],
                fire_id=body["fire_id"],
                trigger=body["trigger"],
            )
        if len(entries) < chunk:
            return
        start = "(" + str(entries[-1][0])
