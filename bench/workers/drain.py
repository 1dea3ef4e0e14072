"""Drain throughput of one worker process: beatd (process and thread isolation) against RQ and Celery.

    .venv/bin/python bench/workers/drain.py --jobs 20000

(first ``bash bench/workers/setup.sh`` for the peers' virtualenv). For each variant: a fresh private
redis-server (the tests' ``RedisServer``: loopback, free port, AOF; ``--fsync`` sets its ``appendfsync``,
default ``always``), N no-op jobs enqueued before the worker starts, then ONE worker process;
the harness polls every ``--poll`` s until every job is done and recorded, and checks the records.

* beatd: N ``manual`` fires of job ``noop`` (``tests.worker_jobs:noop``, ``overlap: allow``, ``history.keep``
  100000) XADDed to ``bench:queue:default``; done = the stream is empty (an entry is deleted only in the
  script that writes its final RunRecord); then all N records must be ``succeeded``.
* RQ: ``rq worker --burst`` (SimpleWorker, and the default forking Worker); done = finished + failed
  registries hold N; failed must be 0.
* Celery: prefork, concurrency 2, Redis broker (db 0) and Redis result backend (db 1); done = db 1 holds N
  results; all must be SUCCESS. ``celery-prefork-c2-noresult``: the same with ``task_ignore_result`` (nothing
  recorded, Celery's best case); done = the queue list and the ``unacked`` hash are empty (tasks are acked as
  they start, so up to 2 may still be running: under 0.1% of N), and nothing can be checked.

``--shards N`` measures beatd on a deployment of N shards: the fires are spread in turn over no-op jobs
``noop0``, ``noop1``, ... (one per shard at least), each XADDed to its job's shard's queue (``{bench:s}:queue:
default``); the one worker reads every shard.

Reported per variant: ``jobs/s`` = jobs done after the first completion / time from the first completion to
the last (steady state, startup excluded); ``wall/s`` = N / time from spawning the worker; CPU ms per job of
the worker's process tree and of redis-server in the steady state; ``others`` = cores that every other
process on the machine used meanwhile (other benchmarks: a disturbed run shows here). ``--repeat K`` runs
each variant K times and adds a summary (median, range). Each variant is bounded by
``--time-limit``; ``--profile DIR`` records each beatd worker with py-spy (raw format) instead of measuring
cleanly. Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from _common import (  # type: ignore[import-not-found]
    BEATD_PYTHON,
    HERE,
    PEER_PYTHON,
    PY_SPY,
    beatd_env,
    beatd_source,
    load_average,
    machine,
    machine_cpu_seconds,
    print_table,
    revision,
    start_redis,
    stop,
    tree_cpu_seconds,
    wait_for_quiet,
)

from beatd.keys import Keys
from beatd.messages import Message, fire_id, format_utc
from beatd.sharding import shard_of

NAMESPACE = "bench"
QUEUE_KEY = f"{NAMESPACE}:queue:default"


@dataclass(frozen=True)
class Variant:
    """One worker configuration to measure."""

    name: str
    system: str  # beatd | rq | celery
    isolation: str = ""
    concurrency: int = 1
    prefetch: int = 0  # beatd --prefetch (0: the worker's default)
    worker_class: str = ""
    slow: bool = False  # a slow peer: measured with --slow-jobs


VARIANTS = [
    Variant("beatd-process-c1", "beatd", "process", 1),
    Variant("beatd-process-c2", "beatd", "process", 2),
    Variant("beatd-process-c4", "beatd", "process", 4),
    Variant("beatd-thread-c4", "beatd", "thread", 4),
    Variant("beatd-thread-c8", "beatd", "thread", 8),
    Variant("beatd-thread-c8-p8", "beatd", "thread", 8, prefetch=8),
    Variant("beatd-thread-c8-p16", "beatd", "thread", 8, prefetch=16),
    Variant("beatd-thread-c8-p32", "beatd", "thread", 8, prefetch=32),
    Variant("beatd-thread-c4-p32", "beatd", "thread", 4, prefetch=32),
    Variant("beatd-thread-c16", "beatd", "thread", 16),
    Variant("beatd-thread-c32", "beatd", "thread", 32),
    Variant("rq-simple", "rq", worker_class="rq.SimpleWorker"),
    Variant("rq-fork", "rq", worker_class="rq.Worker", slow=True),
    Variant("celery-prefork-c2", "celery", concurrency=2),
    Variant("celery-prefork-c2-noresult", "celery", concurrency=2, worker_class="noresult"),
]


@dataclass
class Result:
    """What one variant measured."""

    variant: str
    jobs: int
    done: int = 0
    first_done_s: float | None = None
    steady_s: float | None = None
    steady_jobs_per_s: float | None = None
    wall_jobs_per_s: float | None = None
    worker_cpu_ms_per_job: float | None = None
    redis_cpu_ms_per_job: float | None = None
    other_cores: float | None = None
    load_end: float | None = None
    repeat: int = 1
    verified: str = ""
    timed_out: bool = False
    profile: str | None = None
    notes: list[str] = field(default_factory=list)


# -- enqueueing --------------------------------------------------------------------------------------------
def bench_jobs(shards: int) -> list[str]:
    """The no-op jobs of a deployment of ``shards``: ``noop`` alone for one shard, else ``noop0``, ``noop1``,
    ... until every shard holds one (the fires are spread over them in turn)."""
    if shards == 1:
        return ["noop"]
    names: list[str] = []
    while len({shard_of(name, shards) for name in names}) < shards:
        names.append(f"noop{len(names)}")
    return names


def bench_keys(job: str, shards: int) -> Keys:
    """The keys of ``job``'s shard (the plain layout, ``bench:...``, for one shard)."""
    return Keys(NAMESPACE, shard_of(job, shards), tagged=shards > 1)


def write_beatd_config(directory: Path, url: str, jobs_path: Path, shards: int = 1) -> Path:
    """A worker config declaring the no-op jobs (``tests.worker_jobs`` imported from ``jobs_path``)."""
    path = directory / "beatd.yaml"
    path.write_text(
        f"redis: {{url: '{url}'}}\n"
        f"namespace: {NAMESPACE}\n" + (f"shards: {shards}\n" if shards > 1 else "") + f"pythonpath: ['{jobs_path}']\n"
        "jobs:\n"
        + "".join(
            f"  {job}: {{call: 'tests.worker_jobs:noop', every: 1h, overlap: allow, history: {{keep: 100000}}}}\n"
            for job in bench_jobs(shards)
        )
    )
    return path


def enqueue_beatd(client: redis.Redis, jobs: int, shards: int = 1) -> None:
    """N distinct ``manual`` fires of the no-op jobs in turn, scheduled 1 ms apart just before now, as ``beatd
    trigger`` writes them (into the job's shard; the worker does not check the config digest)."""
    now = datetime.now(UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    names = bench_jobs(shards)
    pipe = client.pipeline(transaction=False)
    for index in range(jobs):
        job = names[index % len(names)]
        scheduled = now - timedelta(milliseconds=jobs - index)
        message = Message(
            fire_id=fire_id(job, scheduled, "manual", now), job=job, scheduled_at=format_utc(scheduled),
            emitted_at=format_utc(now), trigger="manual", config_digest="bench",
        )  # fmt: skip
        pipe.xadd(bench_keys(job, shards).queue("default"), {"message": message.to_json(), "sig": ""})
        if len(pipe) >= 1000:
            pipe.execute()
    pipe.execute()


def queued(client: redis.Redis, shards: int) -> int:
    """Entries left in every shard's queue stream."""
    if shards == 1:
        return int(client.xlen(QUEUE_KEY))
    return sum(int(client.xlen(Keys(NAMESPACE, shard, tagged=True).queue("default"))) for shard in range(shards))


def peer_env(url: str) -> dict[str, str]:
    """Environment of a peer process: its modules on PYTHONPATH, the server's URL."""
    return {**os.environ, "PYTHONPATH": str(HERE), "BENCH_REDIS_URL": url.rsplit("/", 1)[0]}


# -- one run -----------------------------------------------------------------------------------------------
def poll_until_done(
    worker: subprocess.Popen[bytes],
    redis_pid: int,
    jobs: int,
    remaining: Callable[[], int],
    result: Result,
    limit: float,
    poll: float,
    on_first: Callable[[], None] | None = None,
) -> None:
    """Poll ``remaining()`` until 0 (or the time limit, or the worker's exit); fill in rates and CPU.
    ``on_first`` is called once, when the first job is done (after startup)."""
    spawned = time.monotonic()
    first: tuple[float, int, float, float, float] | None = None  # time, remaining, worker, redis, machine CPU
    left = jobs
    while True:
        left = remaining()
        now = time.monotonic()
        if first is None and left < jobs:
            if on_first is not None:
                on_first()
                left, now = remaining(), time.monotonic()
            first = (now, left, tree_cpu_seconds(worker.pid), tree_cpu_seconds(redis_pid), machine_cpu_seconds())
        if left <= 0:
            break
        if now - spawned > limit:
            result.timed_out = True
            break
        if worker.poll() is not None and remaining() > 0:
            result.notes.append(f"worker exited with {worker.returncode} before the end")
            break
        time.sleep(poll)
    end = time.monotonic()
    worker_cpu, redis_cpu, busy = tree_cpu_seconds(worker.pid), tree_cpu_seconds(redis_pid), machine_cpu_seconds()
    result.load_end = load_average()
    result.done = jobs - max(left, 0)
    result.wall_jobs_per_s = round(result.done / (end - spawned), 1)
    if first is not None and end > first[0]:
        done_in_steady = first[1] - max(left, 0)
        result.first_done_s = round(first[0] - spawned, 3)
        result.steady_s = round(end - first[0], 3)
        result.steady_jobs_per_s = round(done_in_steady / (end - first[0]), 1)
        if done_in_steady > 0:
            result.worker_cpu_ms_per_job = round((worker_cpu - first[2]) * 1000 / done_in_steady, 3)
            result.redis_cpu_ms_per_job = round((redis_cpu - first[3]) * 1000 / done_in_steady, 3)
        others = (busy - first[4]) - (worker_cpu - first[2]) - (redis_cpu - first[3])
        result.other_cores = round(others / (end - first[0]), 2)


def start_profiler(pid: int, path: Path, mode: str) -> subprocess.Popen[bytes]:
    """py-spy, raw (collapsed) stacks per thread, of ``pid`` and its children (job processes); ``gil`` mode
    samples only the thread holding the GIL (where Python CPU goes), ``active`` every non-idle thread."""
    argv = [str(PY_SPY), "record", "-f", "raw", "-o", str(path), "-p", str(pid), "--threads", "--subprocesses"]
    argv += ["--rate", "200", "--nonblocking"] + (["--gil"] if mode == "gil" else [])
    profiler = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # let py-spy attach before the clock restarts
    return profiler


def run_beatd(variant: Variant, jobs: int, workdir: Path, options: argparse.Namespace) -> Result:
    """One beatd worker process draining N pre-enqueued fires."""
    result = Result(variant.name, jobs)
    server = start_redis(workdir / "redis", options.fsync)
    client = server.client()
    try:
        shards = options.shards
        config = write_beatd_config(workdir, server.url, options.beatd_jobs, shards)
        enqueue_beatd(client, jobs, shards)
        assert queued(client, shards) == jobs
        argv = [str(BEATD_PYTHON), "-m", "beatd", "worker", "-c", str(config), "--log-level", "warning"]
        argv += ["--concurrency", str(variant.concurrency), "--isolation", variant.isolation]
        if variant.prefetch:
            argv += ["--prefetch", str(variant.prefetch)]
        worker = subprocess.Popen(
            argv, cwd=options.beatd_src, env=beatd_env(options.beatd_src), stderr=(workdir / "worker.log").open("wb")
        )
        profilers: list[subprocess.Popen[bytes]] = []

        def profile() -> None:  # from the first completion on, so the worker's imports are left out
            path = Path(options.profile) / f"{variant.name}-{options.profile_mode}.txt"
            profilers.append(start_profiler(worker.pid, path, options.profile_mode))
            result.profile = str(path)

        try:
            poll_until_done(
                worker, server.process.pid, jobs, lambda: queued(client, shards), result,
                options.time_limit, options.poll, profile if options.profile else None,
            )  # fmt: skip
        finally:
            for profiler in profilers:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(30)
            stop(worker)
        names = bench_jobs(shards)
        statuses = collections.Counter(
            json.loads(raw)["status"] for job in names for raw in client.hvals(bench_keys(job, shards).runs(job))
        )
        indexed = sum(client.zcard(bench_keys(job, shards).runs_by_time(job)) for job in names)
        pending = sum(
            client.xpending(Keys(NAMESPACE, shard, tagged=shards > 1).queue("default"), "workers")["pending"]
            for shard in range(shards)
        )
        ok = statuses.get("succeeded", 0) == result.done == indexed and pending == 0
        result.verified = f"{'ok' if ok else 'MISMATCH'}: {dict(statuses)}, index {indexed}, pending {pending}"
        errors = (workdir / "worker.log").read_text(errors="replace").strip()
        if errors:
            result.notes.append(f"worker stderr: {errors[-300:]}")
    finally:
        server.stop()
    return result


def run_rq(variant: Variant, jobs: int, workdir: Path, options: argparse.Namespace) -> Result:
    """One ``rq worker --burst`` draining N pre-enqueued no-op jobs."""
    result = Result(variant.name, jobs)
    server = start_redis(workdir / "redis", options.fsync)
    client = server.client()
    env = peer_env(server.url)
    try:
        subprocess.run([str(PEER_PYTHON), str(HERE / "peer_rq.py"), "--url", server.url, "--jobs", str(jobs)],
                       env=env, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        argv = [str(PEER_PYTHON), "-m", "rq.cli", "worker", "--url", server.url, "--burst", "--quiet"]
        argv += ["--worker-class", variant.worker_class, "default"]
        worker = subprocess.Popen(argv, cwd=HERE, env=env, stdout=subprocess.DEVNULL,
                                  stderr=(workdir / "worker.log").open("wb"))  # fmt: skip

        def remaining() -> int:
            return jobs - int(client.zcard("rq:finished:default")) - int(client.zcard("rq:failed:default"))

        try:
            poll_until_done(worker, server.process.pid, jobs, remaining, result, options.time_limit, options.poll)
        finally:
            stop(worker)
        finished, failed = client.zcard("rq:finished:default"), client.zcard("rq:failed:default")
        ok = finished == result.done and failed == 0
        result.verified = f"{'ok' if ok else 'MISMATCH'}: finished {finished}, failed {failed}"
    finally:
        server.stop()
    return result


def run_celery(variant: Variant, jobs: int, workdir: Path, options: argparse.Namespace) -> Result:
    """One Celery prefork worker draining N pre-enqueued no-op tasks, results in Redis db 1."""
    result = Result(variant.name, jobs)
    server = start_redis(workdir / "redis", options.fsync)
    client = server.client()
    results = redis.Redis(port=server.port, db=1, decode_responses=True)
    env = peer_env(server.url)
    recorded = variant.worker_class != "noresult"
    if not recorded:
        env["BENCH_CELERY_IGNORE_RESULT"] = "1"

    def remaining() -> int:
        if recorded:
            return jobs - int(results.dbsize())
        return int(client.llen("celery")) + int(client.hlen("unacked"))

    try:
        subprocess.run([str(PEER_PYTHON), str(HERE / "peer_celery.py"), "--jobs", str(jobs)],
                       cwd=HERE, env=env, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        assert client.llen("celery") == jobs, client.llen("celery")
        celery = str(PEER_PYTHON.parent / "celery")
        argv = [celery, "-A", "peer_celery", "worker", "--pool", "prefork", "--loglevel", "WARNING"]
        argv += ["--concurrency", str(variant.concurrency)]
        worker = subprocess.Popen(argv, cwd=HERE, env=env, stdout=subprocess.DEVNULL,
                                  stderr=(workdir / "worker.log").open("wb"))  # fmt: skip
        try:
            poll_until_done(worker, server.process.pid, jobs, remaining, result, options.time_limit, options.poll)
        finally:
            stop(worker, grace=30)
        if not recorded:
            result.verified = f"n/a (no results kept): queue {client.llen('celery')}, unacked {client.hlen('unacked')}"
            return result
        statuses: collections.Counter[str] = collections.Counter()
        keys = list(results.scan_iter(match="celery-task-meta-*", count=1000))
        for start in range(0, len(keys), 1000):
            for raw in results.mget(keys[start : start + 1000]):
                statuses[json.loads(raw)["status"] if raw else "missing"] += 1
        ok = statuses.get("SUCCESS", 0) == result.done
        result.verified = f"{'ok' if ok else 'MISMATCH'}: {dict(statuses)}"
    finally:
        server.stop()
    return result


RUNNERS = {"beatd": run_beatd, "rq": run_rq, "celery": run_celery}


# -- main --------------------------------------------------------------------------------------------------
def main() -> None:
    """Run the selected variants one after another and report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20000, help="jobs per variant (default 20000)")
    parser.add_argument("--slow-jobs", type=int, default=5000, help="jobs for slow peers (rq-fork; default 5000)")
    names = ",".join(variant.name for variant in VARIANTS)
    parser.add_argument("--variants", default=names, help=f"comma-separated subset of {names}")
    fsync_help = "redis-server appendfsync (default always, as the figures in docs/benchmarks.md were measured)"
    parser.add_argument("--fsync", choices=["always", "everysec", "no"], default="always", help=fsync_help)
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per variant at most (default 600)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each variant (default 1)")
    parser.add_argument("--poll", type=float, default=0.02, help="seconds between completion checks")
    parser.add_argument("--max-load", type=float, default=1.0, help="wait before each variant until load <= this")
    parser.add_argument("--profile", metavar="DIR", help="record each beatd worker with py-spy into DIR")
    parser.add_argument("--profile-mode", choices=["gil", "active"], default="gil",
                        help="py-spy: threads holding the GIL (default) or every non-idle thread")  # fmt: skip
    ref_help = "git ref of beatd to measure (exported from git), or worktree for the files as they are (default HEAD)"
    parser.add_argument("--beatd-ref", default="HEAD", help=ref_help)
    shards_help = "beatd variants: shards of the deployment (default 1); the fires are spread over every shard"
    parser.add_argument("--shards", type=int, default=1, help=shards_help)
    options = parser.parse_args()
    chosen = [variant for variant in VARIANTS if variant.name in options.variants.split(",")]
    unknown = set(options.variants.split(",")) - {variant.name for variant in VARIANTS}
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    if any(variant.system != "beatd" for variant in chosen) and not PEER_PYTHON.exists():
        parser.error(f"no {PEER_PYTHON}: run bash bench/workers/setup.sh first")
    if options.profile:
        Path(options.profile).mkdir(parents=True, exist_ok=True)

    results, loads = [], []
    source = tempfile.TemporaryDirectory(prefix="beatd-src-")
    options.beatd_src, options.beatd_jobs = beatd_source(options.beatd_ref, Path(source.name))
    for repeat in range(1, options.repeat + 1):
        for variant in chosen:
            loads.append(wait_for_quiet(options.max_load))
            jobs = options.slow_jobs if variant.slow else options.jobs
            print(f"# {variant.name} #{repeat}: {jobs} jobs (load {loads[-1]:.2f})", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(prefix="beatd-drain-") as directory:
                result = RUNNERS[variant.system](variant, jobs, Path(directory), options)
            result.repeat = repeat
            print(f"#   {result}", file=sys.stderr, flush=True)
            results.append(result)
    source.cleanup()

    print(f"# beatd {revision(options.beatd_ref)}, fsync {options.fsync}, shards {options.shards}")
    print_table(
        ["variant", "#", "jobs", "done", "jobs/s", "wall/s", "startup s", "worker ms/job", "redis ms/job", "others",
         "load", "check"],
        [
            [r.variant, r.repeat, r.jobs, r.done, r.steady_jobs_per_s, r.wall_jobs_per_s, r.first_done_s,
             r.worker_cpu_ms_per_job, r.redis_cpu_ms_per_job, r.other_cores, f"{load:.2f}-{r.load_end:.2f}",
             r.verified.split(":")[0] + (" TIMEOUT" if r.timed_out else "")]
            for r, load in zip(results, loads, strict=True)
        ],
    )  # fmt: skip
    if options.repeat > 1:
        print()
        rows = []
        for variant in chosen:
            rates = sorted(r.steady_jobs_per_s or 0.0 for r in results if r.variant == variant.name)
            rows.append([variant.name, len(rates), statistics.median(rates), f"{rates[0]}-{rates[-1]}"])
        print_table(["variant", "runs", "median jobs/s", "range"], rows)
    for r in results:
        print(f"{r.variant}: {r.verified}" + "".join(f"; {note}" for note in r.notes))
    report = {
        "benchmark": "workers/drain",
        "fsync": options.fsync,
        "shards": options.shards,
        "profiled": options.profile_mode if options.profile else False,
        "beatd_revision": revision(options.beatd_ref),
        "machine": machine(),
        "results": [{**vars(r), "load": load} for r, load in zip(results, loads, strict=True)],
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
