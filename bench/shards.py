"""beatd shards benchmark (issue 16): emission capacity, burst time and fail-over per shard, by shards and replicas.

Commands (from the repo root)::

    .venv/bin/python bench/shards.py --scenario steady --jobs 20000 --shards 1 4 --replicas 1 2 --duration 40
    .venv/bin/python bench/shards.py --scenario burst --jobs 100000 --shards 1 4 --replicas 1 2
    .venv/bin/python bench/shards.py --scenario failover --shards 4 --replicas 3 --kills 4
    ... --cluster            # on a local 3 + 3 node Redis Cluster (tests/redis_cluster.py) instead

Every run starts a fresh private store: one redis-server (``bench/_common.RedisServer``: free loopback port,
``--save '' --appendonly no``), or with ``--cluster`` a six-node Redis Cluster (3 masters, 3 replicas, on loopback,
``tests/redis_cluster.RedisClusterProcesses``), writes a config of ``shards: S`` (and ``redis.cluster: true``) and
launches R ``python -m beatd beat`` replicas (log level INFO), which share the S shards (docs/sharding.md). Nothing
consumes the queues: each shard's queue stream ``{bench:s}:queue:default`` is read back with XRANGE afterwards.

Scenarios:

* ``steady``: N jobs ``{command: ["true"], every: <interval>s}`` with phases spread evenly over the interval
  (``bench/emission.py --spread``'s jobs), --duration s from the moment every shard is led. Figures over the second
  half of the run (steady): fires/s emitted, lag (stream entry ms - scheduled ms) p50/p99/max; over the whole run:
  lost (an instant of a job between its first message and its progress in Redis without a message), duplicates
  (messages beyond the first per fire id); beats' CPU (sum of every replica, utime + stime) and Redis CPU (every node)
  over the second half, in % of a core and µs per fire.
* ``burst``: N jobs ``{every: 1h, start: T}``, T at least --ready s after launch: all due at T. Waits until every
  shard is led by a replica that logged ``leading N jobs`` for it, then for N messages in the queues (or
  T + --timeout). Figures: first / p50 / last message after T (Redis time of the XADD - T; "last" is the figure),
  missing, duplicates, beats' and Redis CPU from T - 0.5 s to the last message, µs per fire.
* ``failover``: --jobs jobs every 1 s spread over the second, ``catchup: all``; R replicas. --kills times: wait for
  a fair share (every shard led, each replica S // R or one more), kill -9 a replica leading k shards (the one
  leading most), start a replacement at once, and poll every shard's lease every 10 ms: for each of the killed
  replica's shards the time from the kill until another replica holds its lease. Then lost and duplicated fires
  over the whole run.

On one redis-server the beats' CPU is what sharding splits: Redis is still one core. The machine may be shared:
each run first waits (at most --quiet-wait s) for the 1-minute load to fall to --quiet-load and records the load
before and after. Prints a table per scenario and a final JSON line (also to --json-out).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _common as C
import emission

from beatd.keys import Keys
from beatd.sharding import shard_of, tagged_layout

NAMESPACE = "bench"
SCENARIOS = ("steady", "burst", "failover")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Measure beatd's emission, burst and fail-over per shard with S shards and R replicas.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--scenario", choices=SCENARIOS, nargs="+", default=["steady"], help="scenario(s)")
    parser.add_argument("--jobs", type=int, default=None, help="jobs (steady 20000, burst 100000, failover 40)")
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 4], help="shard counts, one run each")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2], help="replica counts, one run each")
    parser.add_argument("--interval", type=int, default=10, help="steady: job interval, whole seconds")
    parser.add_argument("--duration", type=float, default=40.0, help="steady: run time from every shard led, s")
    parser.add_argument("--ready", type=float, default=30.0, help="burst: least seconds from launch to the burst")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="burst: longest wait after the burst; steady: for all shards led"
    )
    parser.add_argument("--kills", type=int, default=4, help="failover: kill -9s")
    parser.add_argument("--lease", default="5s", help="leader lease")
    parser.add_argument("--cluster", action="store_true", help="on a local 3 + 3 node Redis Cluster")
    parser.add_argument("--quiet-load", type=float, default=1.5, help="before each run, wait for this 1-min load")
    parser.add_argument("--quiet-wait", type=float, default=30.0, help="longest wait for --quiet-load, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (config, logs)")
    parser.add_argument("--json-out", help="also write the final JSON line to this file")
    return parser.parse_args(argv)


# -- the store: one redis-server or a local cluster ---------------------------------------------------------
class Store:
    """A fresh private redis-server or Redis Cluster: its URL, a client, CPU of its processes."""

    def __init__(self, tmp: Path, cluster: bool) -> None:
        self.cluster = cluster
        if cluster:
            from tests.redis_cluster import RedisClusterProcesses

            self.nodes = RedisClusterProcesses(tmp / "cluster")
            self.nodes.start()
            self.url = self.nodes.url
            self.client: Any = self.nodes.client()
        else:
            self.server = C.RedisServer(tmp)
            self.url = self.server.url
            self.client = self.server.client

    def pids(self) -> dict[int, int]:
        """Port -> pid of each redis-server (one, or the cluster's six)."""
        if not self.cluster:
            return {self.server.port: self.server.proc.pid}
        return {node.port: node.process.pid for node in self.nodes.nodes if node.process is not None}

    def cpu(self) -> dict[int, float]:
        """Port -> CPU seconds so far of each redis-server."""
        return {port: C.proc_cpu_seconds(pid) or 0.0 for port, pid in self.pids().items()}

    def masters_of(self, shards: int) -> dict[int, int]:
        """Shard -> the port of the redis-server holding its keys."""
        if not self.cluster:
            return dict.fromkeys(range(shards), self.server.port)
        return {shard: self.client.get_node_from_key(keys(shard, shards, True).leader).port for shard in range(shards)}

    def master_ports(self) -> set[int]:
        """The ports of the masters (the one redis-server, or the cluster's nodes that say ``master``)."""
        if not self.cluster:
            return {self.server.port}
        return {node.port for node in self.nodes.nodes if node.role() == "master"}

    def stop(self) -> None:
        """Stop every redis-server by its pid."""
        if self.cluster:
            self.client.close()
            self.nodes.stop()
        else:
            self.server.stop()


def keys(shard: int, shards: int, cluster: bool) -> Keys:
    """Shard ``shard``'s keys in the layout of ``shards`` shards (tagged with more than one, or on a cluster)."""
    return Keys(NAMESPACE, shard, tagged=tagged_layout(shards, cluster))


def write_config(path: Path, store: Store, lease: str, shards: int, jobs: dict[str, dict[str, Any]]) -> Path:
    """``bench/_common.write_config`` with ``shards: S`` and, on a cluster, ``redis.cluster: true``."""
    C.write_config(path, store.url, NAMESPACE, lease, jobs, {"shards": shards, "timezone": "UTC"})
    if store.cluster:
        text = path.read_text().replace(
            f"redis: {{url: '{store.url}'}}", f"redis: {{url: '{store.url}', cluster: true}}"
        )
        path.write_text(text)
    return path


def cpu_total(beats: list[C.Beat]) -> float:
    """CPU seconds so far of every replica still running, summed."""
    return sum(C.proc_cpu_seconds(beat.pid) or 0.0 for beat in beats if beat.alive())


def holders(store: Store, shards: int) -> list[int | None]:
    """Each shard's leader pid (from its fencing token ``epoch:host:pid:suffix``), or None."""
    pipe = store.client.pipeline(transaction=False)
    for shard in range(shards):
        pipe.get(keys(shard, shards, store.cluster).leader)
    return [int(str(token).split(":")[2]) if token else None for token in pipe.execute()]


def fair(store: Store, shards: int, beats: list[C.Beat]) -> bool:
    """Every shard led by a live replica, each leading ``shards // R`` or one more (one replica: all)."""
    held = holders(store, shards)
    if None in held:
        return False
    counts = [held.count(beat.pid) for beat in beats]
    base = shards // len(beats)
    return sum(counts) == shards and all(count <= base + 1 for count in counts) and min(counts) >= min(base, 1)


def wait(condition: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll ``condition`` until truthy or ``timeout`` s; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def read_queues(store: Store, shards: int) -> Iterator[tuple[int, C.Fire]]:
    """Every message of every shard's queue stream, shard by shard."""
    for shard in range(shards):
        for fire in C.read_fires(store.client, keys(shard, shards, store.cluster).queue("default")):
            yield shard, fire


def read_progress(store: Store, shards: int) -> dict[str, int]:
    """Each job's progress (epoch ms), from its shard."""
    found: dict[str, int] = {}
    for shard in range(shards):
        for job, value in store.client.hgetall(keys(shard, shards, store.cluster).progress).items():
            found[job] = int(value)
    return found


def lost_and_duplicates(
    fires: list[tuple[int, C.Fire]], progress: dict[str, int], interval_ms: int, shards: int
) -> dict[str, int]:
    """Lost: instants between a job's first message and its progress without a message; duplicates: messages
    beyond the first per fire id; misplaced: messages in a queue of another shard than their job's."""
    seen: dict[str, set[int]] = {}
    ids: Counter[str] = Counter()
    misplaced = 0
    for shard, fire in fires:
        ids[fire.fire_id] += 1
        seen.setdefault(fire.job, set()).add(fire.scheduled_ms)
        misplaced += shard_of(fire.job, shards) != shard
    lost = 0
    for job, instants in seen.items():
        first, last = min(instants), progress.get(job, max(instants))
        lost += sum(1 for at in range(first, last + 1, interval_ms) if at not in instants)
    return {
        "lost": lost,
        "duplicates": sum(count - 1 for count in ids.values() if count > 1),
        "misplaced": misplaced,
        "jobs_seen": len(seen),
    }


@contextmanager
def fresh(args: argparse.Namespace, label: str) -> Iterator[tuple[Path, Store, list[C.Beat]]]:
    """A temp dir, a fresh store and a list for the replicas (all stopped at the end)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"beatd-shards-{label}-"))
    store = Store(tmp, args.cluster)
    beats: list[C.Beat] = []
    try:
        yield tmp, store, beats
    finally:
        for beat in beats:
            beat.stop()
        store.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def launch(config: Path, tmp: Path, beats: list[C.Beat]) -> C.Beat:
    """One more replica on ``config``."""
    beat = C.Beat(config, tmp / f"beat{len(beats)}.log").start()
    beats.append(beat)
    return beat


def redis_figures(store: Store, before: dict[int, float], after: dict[int, float], fires: int, seconds: float) -> Any:
    """Redis CPU over a window: total s, % of a core of the busiest node, µs per fire (all nodes, and the masters
    alone: a cluster's replicas only apply the replication stream)."""
    used = {port: after.get(port, 0.0) - before.get(port, 0.0) for port in after}
    total = sum(used.values())
    masters = store.master_ports()
    on_masters = sum(value for port, value in used.items() if port in masters)
    return {
        "redis_masters_us_per_fire": round(1e6 * on_masters / fires, 1) if fires else None,
        "redis_busiest_master_us_per_fire": round(1e6 * max(used[p] for p in masters if p in used) / fires, 1)
        if fires
        else None,
        "redis_cpu_s": round(total, 2),
        "redis_busiest_pct": round(100 * max(used.values()) / seconds, 1) if seconds > 0 else None,
        "redis_us_per_fire": round(1e6 * total / fires, 1) if fires else None,
        "redis_cpu_by_port": {str(port): round(value, 2) for port, value in used.items()},
    }


def per_master(
    placed: dict[int, int], fires: Counter[int], before: dict[int, float], after: dict[int, float]
) -> dict[str, float | None]:
    """Port of each master holding shards -> its CPU µs per fire of its own shards over the window."""
    out: dict[str, float | None] = {}
    for port in sorted(set(placed.values())):
        count = sum(fires.get(shard, 0) for shard, where in placed.items() if where == port)
        used = after.get(port, 0.0) - before.get(port, 0.0)
        out[str(port)] = round(1e6 * used / count, 1) if count else None
    return out


# -- (a) steady capacity -------------------------------------------------------------------------------------
def run_steady(args: argparse.Namespace, shards: int, replicas: int) -> dict[str, Any]:
    """N spread every-jobs, R replicas, S shards, --duration s: the steady figures."""
    n = args.jobs or 20_000
    interval_ms = args.interval * 1000
    result: dict[str, Any] = {"scenario": "steady", "shards": shards, "replicas": replicas, "jobs": n}
    result["due_per_s"] = n / args.interval
    result["load_before"] = C.load_average()
    with fresh(args, f"steady-{shards}x{replicas}") as (tmp, store, beats):
        jobs, _anchor = emission.build_jobs(n, args.interval, True)
        config = write_config(tmp / "beatd.yaml", store, args.lease, shards, jobs)
        del jobs
        placed = store.masters_of(shards)
        result["masters"], result["shard_masters"] = len(set(placed.values())), [placed[s] for s in range(shards)]
        for _ in range(replicas):
            launch(config, tmp, beats)
        # The window starts once every shard is led, not at launch: a slow launch (a loaded machine) would
        # otherwise eat into it, and jobs would go unseen.
        if not wait(lambda: leading_everywhere(store, shards, beats), args.timeout, 0.2):
            result["error"] = f"not every shard led {args.timeout:g} s after launch"
            return result
        started = time.time()
        result["ready_s"] = round(started - beats[0].started_at, 1)
        half, end = started + args.duration / 2, started + args.duration
        time.sleep(max(0.0, half - time.time()))
        cpu0, redis0, half = cpu_total(beats), store.cpu(), time.time()
        time.sleep(max(0.0, end - time.time()))
        cpu1, redis1, end = cpu_total(beats), store.cpu(), time.time()
        result["fair_at_end"] = fair(store, shards, beats)
        result["lease_losses"] = sum(1 for beat in beats for _, line in beat.lines if "standing down" in line)
        for beat in beats:
            beat.stop()
        fires = list(read_queues(store, shards))
        half_ms, end_ms = int(half * 1000), int(end * 1000)
        steady = sorted(f.entry_ms - f.scheduled_ms for _, f in fires if half_ms <= f.entry_ms <= end_ms)
        per_shard = Counter(shard for shard, f in fires if half_ms <= f.entry_ms <= end_ms)
        count, seconds = len(steady), end - half
        result.update(
            {
                "fires_steady": count,
                "fires_per_s_steady": round(count / seconds, 1),
                "fires_per_shard_steady": [per_shard.get(shard, 0) for shard in range(shards)],
                "lag_p50_ms": C.percentile(steady, 50),
                "lag_p99_ms": C.percentile(steady, 99),
                "lag_max_ms": steady[-1] if steady else None,
                **lost_and_duplicates(fires, read_progress(store, shards), interval_ms, shards),
                "beat_cpu_s": round(cpu1 - cpu0, 2),
                "beat_cpu_pct": round(100 * (cpu1 - cpu0) / seconds, 1),
                "beat_us_per_fire": round(1e6 * (cpu1 - cpu0) / count, 1) if count else None,
                **redis_figures(store, redis0, redis1, count, seconds),
                "redis_us_per_fire_by_master": per_master(placed, per_shard, redis0, redis1),
                "load_after": C.load_average(),
            }
        )
    return result


# -- (b) burst -----------------------------------------------------------------------------------------------
def leading_everywhere(store: Store, shards: int, beats: list[C.Beat]) -> bool:
    """Every shard led fairly, each by a replica that logged ``leading N jobs`` for it (its start is written)."""
    if not fair(store, shards, beats):
        return False
    by_pid = {beat.pid: beat for beat in beats}
    for shard, pid in enumerate(holders(store, shards)):
        label = f" of shard {shard} " if shards > 1 else " "
        if pid not in by_pid or by_pid[pid].find_line(rf"leading \d+ jobs{label}") is None:
            return False
    return True


def run_burst(args: argparse.Namespace, shards: int, replicas: int) -> dict[str, Any]:
    """N jobs due at one instant T, R replicas, S shards: how soon the last fire is in its queue."""
    n = args.jobs or 100_000
    result: dict[str, Any] = {"scenario": "burst", "shards": shards, "replicas": replicas, "jobs": n}
    result["load_before"] = C.load_average()
    with fresh(args, f"burst-{shards}x{replicas}") as (tmp, store, beats):
        burst_ms = int((time.time() + args.ready) * 1000)
        start = datetime.fromtimestamp(burst_ms / 1000, UTC)
        start_text = start.strftime("%Y-%m-%dT%H:%M:%S.") + f"{burst_ms % 1000:03d}Z"
        jobs = {f"job-{i:06d}": {"command": ["true"], "every": "1h", "start": start_text} for i in range(n)}
        config = write_config(tmp / "beatd.yaml", store, args.lease, shards, jobs)
        del jobs
        result["masters"] = len(set(store.masters_of(shards).values()))
        for _ in range(replicas):
            launch(config, tmp, beats)
        burst_s = burst_ms / 1000
        if not wait(lambda: leading_everywhere(store, shards, beats), max(0.0, burst_s - 1 - time.time()), 0.2):
            result["error"] = f"not every shard led 1 s before the burst ({args.ready:g} s after launch)"
            return result
        result["ready_s"] = round(time.time() - beats[0].started_at, 1)
        time.sleep(max(0.0, burst_s - 0.5 - time.time()))
        cpu0, redis0 = cpu_total(beats), store.cpu()
        queues = [keys(shard, shards, store.cluster).queue("default") for shard in range(shards)]
        cpu1, redis1 = cpu0, redis0
        deadline = burst_s + args.timeout
        while time.time() < deadline:
            cpu1, redis1 = cpu_total(beats), store.cpu()
            if time.time() > burst_s and sum(int(store.client.xlen(queue)) for queue in queues) >= n:
                break
            time.sleep(0.02)
        result["lease_losses"] = sum(1 for beat in beats for _, line in beat.lines if "standing down" in line)
        for beat in beats:
            beat.stop()
        fires = list(read_queues(store, shards))
        after = sorted(f.entry_ms - burst_ms for _, f in fires if f.scheduled_ms == burst_ms)
        by_shard: dict[int, int] = {}
        for shard, f in fires:
            by_shard[shard] = max(by_shard.get(shard, -(10**9)), f.entry_ms - burst_ms)
        count = len(after)
        ids = Counter(f.fire_id for _, f in fires)
        result.update(
            {
                "fires": count,
                "missing": n - len({f.job for _, f in fires if f.scheduled_ms == burst_ms}),
                "duplicates": sum(c - 1 for c in ids.values() if c > 1),
                "first_after_s": after[0] / 1000 if after else None,
                "p50_after_s": C.percentile(after, 50) / 1000 if after else None,
                "last_after_s": after[-1] / 1000 if after else None,
                "last_after_s_by_shard": [by_shard.get(s, 0) / 1000 for s in range(shards)],
                "beat_cpu_s": round(cpu1 - cpu0, 2),
                "beat_us_per_fire": round(1e6 * (cpu1 - cpu0) / count, 1) if count else None,
                **redis_figures(store, redis0, redis1, count, max(after[-1] / 1000 + 0.5, 0.5) if after else 0),
                "load_after": C.load_average(),
            }
        )
    return result


# -- (c) fail-over per shard ---------------------------------------------------------------------------------
def run_failover(args: argparse.Namespace, shards: int, replicas: int) -> dict[str, Any]:
    """kill -9 of a replica leading k shards, --kills times: per shard, kill -> another replica holds its lease."""
    n = args.jobs or 40
    result: dict[str, Any] = {"scenario": "failover", "shards": shards, "replicas": replicas, "jobs": n}
    result["load_before"] = C.load_average()
    events: list[dict[str, Any]] = []
    with fresh(args, f"failover-{shards}x{replicas}") as (tmp, store, beats):
        anchor_ms = (int(time.time() * 1000) - 86_400_000) // 1000 * 1000
        jobs = {}
        for i in range(n):
            at = anchor_ms + i * 1000 // n
            text = datetime.fromtimestamp(at / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at % 1000:03d}Z"
            jobs[f"fo-{i:03d}"] = {"command": ["true"], "every": "1s", "start": text, "catchup": "all"}
        config = write_config(tmp / "beatd.yaml", store, args.lease, shards, jobs)
        result["masters"] = len(set(store.masters_of(shards).values()))
        for _ in range(replicas):
            launch(config, tmp, beats)
        for kill in range(args.kills):
            if not wait(lambda: fair(store, shards, [b for b in beats if b.alive()]), 60, 0.05):
                result["error"] = f"no fair share before kill {kill + 1}"
                break
            time.sleep(1.0)
            live = [b for b in beats if b.alive()]
            held = holders(store, shards)
            victim = max(live, key=lambda b: held.count(b.pid))
            mine = [shard for shard, pid in enumerate(held) if pid == victim.pid]
            killed_at = time.monotonic()
            os.kill(victim.pid, signal.SIGKILL)
            launch(config, tmp, beats)
            taken: dict[int, float] = {}
            deadline = killed_at + 60
            while len(taken) < len(mine) and time.monotonic() < deadline:
                now_held = holders(store, shards)
                for shard in mine:
                    if shard not in taken and now_held[shard] not in (None, victim.pid):
                        taken[shard] = round(time.monotonic() - killed_at, 3)
                time.sleep(0.01)
            events.append({"kill": kill + 1, "shards": mine, "led_again_s": [taken.get(s) for s in mine]})
            print(f"  kill {kill + 1}: shards {mine} led again after {[taken.get(s) for s in mine]} s", flush=True)
        result["lease_losses"] = sum(1 for beat in beats for _, line in beat.lines if "standing down" in line)
        for beat in beats:
            beat.stop()
        fires = list(read_queues(store, shards))
        times = sorted(t for event in events for t in event["led_again_s"] if t is not None)
        result.update(
            {
                "events": events,
                "shards_taken_over": len(times),
                "led_again_p50_s": C.percentile(times, 50) if times else None,
                "led_again_max_s": times[-1] if times else None,
                **lost_and_duplicates(fires, read_progress(store, shards), 1000, shards),
                "load_after": C.load_average(),
            }
        )
    return result


RUNNERS = {"steady": run_steady, "burst": run_burst, "failover": run_failover}
COLUMNS = {
    "steady": ["fires_per_s_steady", "lag_p50_ms", "lag_p99_ms", "lag_max_ms", "lost", "duplicates",
               "beat_cpu_pct", "beat_us_per_fire", "redis_busiest_pct", "redis_us_per_fire", "lease_losses"],
    "burst": ["ready_s", "first_after_s", "p50_after_s", "last_after_s", "missing", "duplicates", "beat_cpu_s",
              "beat_us_per_fire", "redis_cpu_s", "redis_us_per_fire", "lease_losses"],
    "failover": ["shards_taken_over", "led_again_p50_s", "led_again_max_s", "lost", "duplicates", "lease_losses"],
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run every scenario for every (shards, replicas); print the tables and the JSON line."""
    args = parse_args(argv)
    info = C.machine()
    C.print_machine(info)
    results: list[dict[str, Any]] = []
    for scenario in args.scenario:
        for shards in args.shards:
            for replicas in args.replicas:
                print(f"\n== {scenario} S={shards} R={replicas} (load {C.load_average()}) ...", flush=True)
                waited = C.wait_for_quiet(args.quiet_load, args.quiet_wait)
                result = RUNNERS[scenario](args, shards, replicas)
                result["waited_for_quiet_s"] = waited
                result["store"] = "cluster" if args.cluster else "redis-server"
                results.append(result)
                print(json.dumps({k: v for k, v in result.items() if k != "events"}), flush=True)
    for scenario in args.scenario:
        rows = [r for r in results if r["scenario"] == scenario]
        print(f"\n{scenario} ({'Redis Cluster 3+3' if args.cluster else 'one redis-server'}):")
        C.print_table(
            ["S", "R", *COLUMNS[scenario], "load"],
            [
                [r["shards"], r["replicas"], *(C.fmt(r.get(c)) for c in COLUMNS[scenario]),
                 f"{r['load_before'][0]}/{r.get('load_after', ['-'])[0]}"]
                for r in rows
            ],
        )  # fmt: skip
        for r in rows:
            if r.get("error"):
                print(f"S={r['shards']} R={r['replicas']}: {r['error']}")
    out = {"bench": "beatd_shards", "machine": info, "args": vars(args), "results": results}
    C.print_json_line(out, args.json_out)
    return 0 if not any(r.get("error") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
