"""Shared helpers for the RedBeat peer benchmarks (bench/peers/redbeat_*.py).

Not a benchmark by itself. Provides:

* ``ensure_peer_venv()``: re-exec the calling script under bench/.peer-venv
  (created by bench/peers/setup.sh) when it is not already running there.
* ``RedisServer``: a throw-away ``redis-server --port <free> --save ''
  --appendonly no`` child process (never the system Redis on 6379).
* ``write_celery_app()``: generates the minimal Celery app module that the
  ``celery beat -S redbeat.RedBeatScheduler`` subprocesses load. The module
  records every task publication (``before_task_publish`` signal) as a JSON
  line ``{"ev":"pub","pid":..,"e":<entry name>,"due":<epoch s>,"pub":<epoch s>}``
  in ``$BENCH_EVENTS_DIR/events-<pid>.jsonl`` (line-buffered, so the lines
  survive ``kill -9``), plus ``"ev":"init"`` (beat started, about to take the
  RedBeat lock) and ``"ev":"lock"`` (lock acquired, with the lock token).
* ``create_entries()``: stores interval entries with RedBeat's own
  ``RedBeatSchedulerEntry.save()`` / ``reschedule()`` code, batched into one
  Redis pipeline per 1,000 entries.
* small statistics helpers.

How the due instant is found: RedBeat keeps ``last_run_at`` per entry in Redis
and an interval entry is due at ``last_run_at + run_every`` (celery
``schedule.is_due``). The publish hook walks up the call stack to
``RedBeatScheduler.maybe_due(entry)``, whose ``entry`` is the copy loaded from
Redis *before* it was advanced, and records
``due = entry.last_run_at + entry.schedule.run_every`` and ``pub = time.time()``
taken at the start of the signal handler (i.e. just before kombu pushes the
message to the broker list). ``lag = pub - due``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from datetime import UTC
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH_DIR = HERE.parent
VENV = BENCH_DIR / ".peer-venv"
VENV_PY = VENV / "bin" / "python"
VENV_CELERY = VENV / "bin" / "celery"


def ensure_peer_venv() -> None:
    """Re-exec under bench/.peer-venv if we are not running in it."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not VENV_PY.exists():
        sys.exit(f"peer venv {VENV} not found: run `bash bench/peers/setup.sh` first")
    os.execv(str(VENV_PY), [str(VENV_PY), *sys.argv])


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"nproc": os.cpu_count(), "cpu": cpu, "python": sys.version.split()[0]}
    try:
        from importlib.metadata import version

        for name in ("celery", "celery-redbeat", "redis", "kombu"):
            info[name] = version(name)
    except Exception:  # pragma: no cover - informational only
        pass
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=10).stdout
        info["redis-server"] = out.split("v=")[1].split()[0] if "v=" in out else out.strip()
    except Exception:
        pass
    return info


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private redis-server on a free loopback port; killed on stop()."""

    def __init__(self, workdir: Path, startup_timeout: float = 10.0):
        if not shutil.which("redis-server"):
            sys.exit("redis-server not on PATH")
        self.port = free_port()
        if self.port == 6379:  # never the system Redis
            self.port = free_port()
        self.workdir = workdir
        self.log = (workdir / f"redis-{self.port}.log").open("wb")
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        import redis

        self.client = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)
        deadline = time.monotonic() + startup_timeout
        while True:
            try:
                if self.client.ping():
                    break
            except Exception:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not answer PING in time")
            time.sleep(0.02)

    def cpu_seconds(self) -> float | None:
        return proc_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self.log.close()


APP_TEMPLATE = '''\
"""Minimal Celery app for the RedBeat peer benchmark (generated, do not edit)."""
import os
import sys
import time

from celery import Celery
from celery.signals import beat_init, before_task_publish

REDIS_URL = os.environ["BENCH_REDIS_URL"]
EVENTS_DIR = os.environ["BENCH_EVENTS_DIR"]

app = Celery("benchapp", broker=REDIS_URL)
app.conf.redbeat_redis_url = REDIS_URL
app.conf.beat_scheduler = "redbeat.RedBeatScheduler"
app.conf.broker_connection_retry_on_startup = True
if os.environ.get("BENCH_LOCK_TIMEOUT"):
    app.conf.redbeat_lock_timeout = float(os.environ["BENCH_LOCK_TIMEOUT"])
if os.environ.get("BENCH_MAX_LOOP_INTERVAL"):
    app.conf.beat_max_loop_interval = float(os.environ["BENCH_MAX_LOOP_INTERVAL"])


@app.task(name="bench.noop")
def noop(*args, **kwargs):
    return None


_PID = os.getpid()
_OUT = open(os.path.join(EVENTS_DIR, "events-%d.jsonl" % _PID), "a", buffering=1)


@beat_init.connect
def _bench_beat_init(sender=None, **kwargs):
    # connected before RedBeat's lock receiver: beat is up, about to take the lock
    _OUT.write('{"ev":"init","pid":%d,"t":%.6f}\\n' % (_PID, time.time()))


import redbeat.schedulers  # noqa: E402  (connects RedBeat's beat_init lock receiver)


@beat_init.connect
def _bench_lock_acquired(sender=None, **kwargs):
    # runs after RedBeat's receiver returned, i.e. once the lock is held
    lock = getattr(sender.scheduler, "lock", None)
    token = getattr(getattr(lock, "local", None), "token", None) if lock else None
    if isinstance(token, bytes):
        token = token.decode()
    _OUT.write('{"ev":"lock","pid":%d,"t":%.6f,"token":"%s"}\\n' % (_PID, time.time(), token))


@before_task_publish.connect
def _bench_on_publish(sender=None, **kwargs):
    t = time.time()
    f = sys._getframe(1)
    entry = None
    while f is not None:
        if f.f_code.co_name == "maybe_due":
            entry = f.f_locals.get("entry")
            break
        f = f.f_back
    if entry is None:
        _OUT.write('{"ev":"pub","pid":%d,"e":null,"due":null,"pub":%.6f}\\n' % (_PID, t))
        return
    lr = entry.last_run_at
    due = lr.timestamp() + entry.schedule.run_every.total_seconds()
    _OUT.write('{"ev":"pub","pid":%d,"e":"%s","due":%.6f,"pub":%.6f}\\n' % (_PID, entry.name, due, t))
'''


def write_celery_app(dirpath: Path) -> Path:
    path = dirpath / "benchapp.py"
    path.write_text(APP_TEMPLATE)
    return path


def beat_env(app_dir: Path, redis_url: str, events_dir: Path, lock_timeout=None, max_loop_interval=None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(app_dir)
    env["BENCH_REDIS_URL"] = redis_url
    env["BENCH_EVENTS_DIR"] = str(events_dir)
    env.pop("BENCH_LOCK_TIMEOUT", None)
    env.pop("BENCH_MAX_LOOP_INTERVAL", None)
    if lock_timeout is not None:
        env["BENCH_LOCK_TIMEOUT"] = str(lock_timeout)
    if max_loop_interval is not None:
        env["BENCH_MAX_LOOP_INTERVAL"] = str(max_loop_interval)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_beat(app_dir: Path, env: dict, logfile: Path, loglevel: str) -> subprocess.Popen:
    cmd = [
        str(VENV_CELERY),
        "-A",
        "benchapp",
        "beat",
        "-S",
        "redbeat.RedBeatScheduler",
        "--loglevel",
        loglevel,
        "--logfile",
        str(logfile),
    ]
    return subprocess.Popen(
        cmd,
        cwd=str(app_dir),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=Path(str(logfile) + ".stderr").open("ab"),
        start_new_session=True,
    )


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, wait up to timeout (polling), then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def proc_cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    except (OSError, IndexError, ValueError):
        return None


def machine_busy_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    try:
        with Path("/proc/stat").open() as fh:
            vals = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    total = sum(vals[:8])
    return total - idle, total


def other_cpu_pct(start, end, own_cpu_s: float) -> float | None:
    """Machine CPU busy over [start, end] not accounted for by own_cpu_s, in % of
    one core. A quiet machine gives ~0; anything large means other processes
    (other sessions, tests) competed with the benchmark."""
    if not start or not end or end[1] <= start[1]:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    ncpu = os.cpu_count() or 1
    busy_s = (end[0] - start[0]) / ticks
    wall_s = (end[1] - start[1]) / ticks / ncpu
    if wall_s <= 0:
        return None
    return round(100.0 * (busy_s - own_cpu_s) / wall_s, 1)


def proc_status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def create_entries(
    app, names, interval: float, first_due: list[float] | float, batch: int = 1000, task: str = "bench.noop"
) -> None:
    """Create RedBeat interval entries whose first due instant is first_due[i].

    Uses RedBeat's own RedBeatSchedulerEntry.save() (definition + meta + zset
    score) and .reschedule(last_run_at) (meta + score), only routing their
    per-entry pipelines into one shared pipeline executed every `batch` entries.
    last_run_at is set to first_due - interval, so the entry is due at first_due.
    """
    from datetime import datetime, timedelta
    from unittest import mock

    import redbeat.schedulers as rs
    from celery.schedules import schedule as interval_schedule

    real = rs.get_redis(app)

    class _SharedPipe:
        def __init__(self, pipe):
            self._pipe = pipe

        def pipeline(self):
            return self

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def execute(self):
            return []

        def __getattr__(self, item):
            return getattr(self._pipe, item)

    sched = interval_schedule(run_every=timedelta(seconds=interval))
    names = list(names)
    for start in range(0, len(names), batch):
        pipe = real.pipeline(transaction=False)
        shared = _SharedPipe(pipe)
        with mock.patch.object(rs, "get_redis", lambda app=None, shared=shared: shared):
            for i in range(start, min(start + batch, len(names))):
                fd = first_due[i] if isinstance(first_due, list) else first_due
                lra = datetime.fromtimestamp(fd - interval, tz=UTC)
                entry = rs.RedBeatSchedulerEntry(names[i], task, sched, args=[], kwargs={}, app=app, last_run_at=lra)
                entry.save()
                entry.reschedule(last_run_at=lra)
        pipe.execute()


def read_events(events_dir: Path) -> tuple[list[dict], list[dict]]:
    """Return (publications, other events) from all events-*.jsonl files."""
    pubs, other = [], []
    for path in sorted(events_dir.glob("events-*.jsonl")):
        with path.open() as fh:
            for line in fh:
                if not line.endswith("\n"):
                    continue  # torn last line of a killed process
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                (pubs if ev.get("ev") == "pub" else other).append(ev)
    pubs.sort(key=lambda e: e["pub"])
    other.sort(key=lambda e: e["t"])
    return pubs, other


def percentile(sorted_vals: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of an already sorted list."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, math.ceil(q / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


def fmt(v, unit="", digits=3) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return f"{v:.{digits}f}{unit}"
    return f"{v}{unit}"


def print_table(headers: list[str], rows: list[list]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, r in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=False)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def dedent(s: str) -> str:
    return textwrap.dedent(s).strip()
