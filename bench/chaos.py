"""beatd chaos soak: random kills, stops and Redis restarts against 3 beats and 2 workers; then count.

Command (from the repo root)::

    .venv/bin/python bench/chaos.py                              # 10 minutes, seed 1
    .venv/bin/python bench/chaos.py --duration 180 --seed 7 --json-out /tmp/chaos.json

Set-up: one private redis-server (``beatd.localredis.RedisServer``: loopback, a free port, ``appendonly yes``,
``appendfsync no``, which writes each command to the file before the reply; automatic AOF rewrites switched
off so the AOF keeps the whole history); a config (namespace ``chaos``, lease ``--lease``,
``worker.kill_grace`` 1 s, ``history.keep`` 100,000) with the jobs of :data:`JOBS`, whose callables
(``bench/chaos_jobs.py``, on ``pythonpath``) and command append fsync'd lines to a ledger (job, fire id,
attempt, pid); 3 ``beatd beat`` replicas; 2 ``beatd worker`` processes, one ``--isolation process``, one
``--isolation thread``.

Faults, one every ``--fault-min`` .. ``--fault-max`` s (seeded by ``--seed``; kinds weighted by
:data:`FAULTS`): kill -9 of the leader (read from ``{ns}:leader``) and a replacement started; SIGSTOP of the
leader for the lease plus 0.5-2 s, then SIGCONT; SIGTERM of any beat (it must exit 0) and a restart; kill -9
of a worker (process and thread isolation in turn, once the ledger shows it mid-job), its process tree
noted first, and a restart; Redis SIGTERM or kill -9, then a restart on the same port and data directory
after 0.2-2 s. A daemon that exits on its own is reported and restarted.

Settle: when the faults stop, wait (bounded) until the leader emits on time again, run 3 s more, SIGTERM the
beats (the window ends there: see ``bench/chaos_count.py``), wait (``--settle-timeout``) until queues, pending
lists, retries and run leases are empty and no record is ``running``, read every run record and the pending
entries, SIGTERM the workers and Redis, and parse the AOF. The counts and their definitions are in
``bench/chaos_count.py``.

Prints the fault log summary, one row per job and totals, and a final JSON line; exits 1 on any double
emission, silent loss, stuck run, run never run, or job process that outlived its killed worker; 3 when the
harness could not count (no AOF history, no recovery).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import chaos_aof
import chaos_count
from failover import leader_pid, lease_seconds, poll

from beatd.config import load_config
from beatd.keys import GROUP, Keys
from beatd.localredis import RedisServer
from beatd.store.beat import read_last

NAMESPACE = "chaos"
QUEUE = "default"
KEYS = Keys(NAMESPACE)
FAULTS = {"leader-kill": 3, "leader-stop": 2, "beat-term": 2, "worker-kill": 4, "redis-term": 1, "redis-kill": 1}
"""Fault kinds and their weights."""
LONG_JOBS = frozenset({"slow5", "cmd3"})
"""Jobs that run for seconds: a worker is killed while one of them runs (waiting a little for one)."""


def jobs(ledger: Path) -> dict[str, dict[str, Any]]:
    """The soak's jobs: short ones every 1/2/3 s (one ``catchup: all``, one failing its first attempt of a
    third of its fires, with retries), a 4 s one every 5 s (kills land mid-job), a cron job every minute and a
    2 s command every 3 s."""
    call = {"call": "chaos_jobs:record"}
    return {
        "tick1": call | {"kwargs": {"ledger": str(ledger)}, "every": "1s"},
        "tick2_all": call | {"kwargs": {"ledger": str(ledger)}, "every": "2s", "catchup": "all"},
        "flaky3": call
        | {
            "kwargs": {"ledger": str(ledger), "fail_one_in": 3},
            "every": "3s",
            "retries": 2,
            "retry_delay": "1s",
            "retry_delay_max": "2s",
        },
        "slow5": call | {"kwargs": {"ledger": str(ledger), "sleep": 4}, "every": "5s", "timeout": "10s"},
        "minutely": call | {"kwargs": {"ledger": str(ledger), "sleep": 1}, "cron": "* * * * *"},
        "cmd3": {
            "command": [sys.executable, str(C.HERE / "chaos_jobs.py"), str(ledger), "cmd3", "2"],
            "every": "3s",
            "timeout": "8s",
        },
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Chaos soak of beatd: kill, stop and restart beats, workers and Redis; count what happened.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of faults")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault sequence")
    parser.add_argument("--lease", default="2s", help="leader lease (beatd duration)")
    parser.add_argument("--fault-min", type=float, default=3.0, help="shortest time between faults, s")
    parser.add_argument("--fault-max", type=float, default=9.0, help="longest time between faults, s")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of normal running before the faults")
    parser.add_argument("--settle-timeout", type=float, default=60.0, help="longest wait for the drain, s")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (config, logs, ledger, AOF)")
    parser.add_argument("--json-out", help="also write the final JSON line to this file")
    return parser.parse_args(argv)


# -- processes ----------------------------------------------------------------------------------------------
def start_time(pid: int) -> int | None:
    """The start time (clock ticks since boot) of a live, non-zombie process; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every live descendant of ``root``: pid -> start time."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        parents.setdefault(int(text[text.rindex(")") + 2 :].split()[1]), []).append(int(entry.name))
    found: dict[int, int] = {}
    todo = list(parents.get(root, []))
    while todo:
        pid = todo.pop()
        started = start_time(pid)
        if started is not None:
            found[pid] = started
        todo.extend(parents.get(pid, []))
    return found


class Soak:
    """The running system (Redis, beats, workers) and what happened to it."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self.lease = lease_seconds(args.lease)
        self.rng = random.Random(args.seed)
        self.ledger = tmp / "ledger.jsonl"
        self.server = RedisServer(tmp / "redis")
        self.client = redis.Redis(port=self.server.port, decode_responses=True, socket_timeout=3)
        self.started = 0
        self.worker_kills = 0
        self.beats: list[C.Beat] = []
        self.workers: dict[str, C.Beat] = {}
        self.faults: list[dict[str, Any]] = []
        self.orphans: list[dict[str, Any]] = []
        self.unexpected: list[str] = []
        self.notes: list[str] = []
        self.config = tmp / "beatd.yaml"

    # -- set-up ---------------------------------------------------------------------------------------
    def start_redis(self) -> None:
        """Start (or restart) Redis on its port and data directory; keep the AOF's whole history."""
        self.server.start()
        self.client.config_set("auto-aof-rewrite-percentage", 0)

    def spawn(self, command: tuple[str, ...]) -> C.Beat:
        """Start one beatd daemon."""
        self.started += 1
        name = f"{command[0]}-{command[-1] if command[0] == 'worker' else 'replica'}-{self.started}"
        return C.Beat(self.config, self.tmp / f"{name}.log", command).start()

    def start(self) -> None:
        """Redis, the config, 3 beats and 2 workers."""
        self.start_redis()
        settings = {
            "pythonpath": [str(C.HERE)],
            "worker": {"kill_grace": "1s"},
            "defaults": {"timeout": "5s", "history": {"keep": 100000}},
        }
        C.write_config(self.config, self.server.url, NAMESPACE, self.args.lease, jobs(self.ledger), settings)
        self.beats = [self.spawn(("beat",)) for _ in range(3)]
        for isolation in ("process", "thread"):
            self.workers[isolation] = self.start_worker(isolation)

    def redis_up(self) -> bool:
        """Whether our redis-server process runs."""
        return self.server.process is not None and self.server.process.poll() is None

    def read(self, what: Callable[[], Any], default: Any = None) -> Any:
        """A harness read of Redis; ``default`` while Redis is away."""
        try:
            return what()
        except redis.RedisError:
            return default

    # -- faults ---------------------------------------------------------------------------------------
    def leader(self) -> C.Beat | None:
        """The beat holding the lease, if any."""
        pid = leader_pid(self.read(lambda: self.client.get(KEYS.leader)))
        return next((beat for beat in self.beats if beat.pid == pid and beat.alive()), None)

    def replace_beat(self, victim: C.Beat) -> C.Beat:
        """Stop ``victim``'s bookkeeping and start a new replica in its place."""
        victim.stop()
        fresh = self.spawn(("beat",))
        self.beats[self.beats.index(victim)] = fresh
        return fresh

    def inject(self, kind: str) -> dict[str, Any]:
        """One fault; returns what was done."""
        event: dict[str, Any] = {"t": round(time.time(), 3), "kind": kind}
        if kind in ("leader-kill", "leader-stop"):
            victim = self.leader()
            if victim is None:
                return event | {"skipped": "no leader"}
            event["pid"] = victim.pid
            if kind == "leader-kill":
                os.kill(victim.pid, signal.SIGKILL)
                self.replace_beat(victim)
            else:
                pause = self.lease + self.rng.uniform(0.5, 2.0)
                os.kill(victim.pid, signal.SIGSTOP)
                time.sleep(pause)
                os.kill(victim.pid, signal.SIGCONT)
                event["paused_s"] = round(pause, 2)
                event["leader_after"] = leader_pid(self.read(lambda: self.client.get(KEYS.leader)))
        elif kind == "beat-term":
            victim = self.rng.choice(self.beats)
            event["pid"] = victim.pid
            event["exit_code"] = victim.stop(timeout=15)
            if event["exit_code"] != 0:
                self.unexpected.append(f"beat {victim.pid} exited {event['exit_code']} on SIGTERM")
            self.replace_beat(victim)
        elif kind == "worker-kill":
            event |= self.kill_worker()
        else:
            assert self.server.process is not None
            if kind == "redis-term":
                self.server.process.terminate()
            else:
                self.server.process.kill()
            self.server.process.wait(15)
            self.server.process = None
            down = self.rng.uniform(0.2, 2.0)
            time.sleep(down)
            self.start_redis()
            event["down_s"] = round(down, 2)
        return event

    def kill_worker(self) -> dict[str, Any]:
        """kill -9 a worker, the process-isolation one and the thread one in turn, once it is mid-job (waiting
        up to 6 s for a run of a long job in progress by the ledger); note its process tree first and which of
        those processes still run 1 s later."""
        name = ("process", "thread")[self.worker_kills % 2]
        self.worker_kills += 1
        victim = self.workers[name]

        def runs(jobs: frozenset[str] | None = None) -> int:
            """Runs of the victim in progress by the ledger (its own pid or a descendant's, last line ``start``),
            of ``jobs`` only when given."""
            last = {line["pid"]: line for line in ledger_lines(self.ledger)}
            pids = {victim.pid, *descendants(victim.pid)}
            return sum(
                1
                for pid, line in last.items()
                if pid in pids and line["event"] == "start" and (jobs is None or line["job"] in jobs)
            )

        busy = poll(lambda: runs(LONG_JOBS), 6.0, 0.1) or runs()
        tree = descendants(victim.pid)
        killed_at = time.time()
        os.kill(victim.pid, signal.SIGKILL)
        assert victim.process is not None
        victim.process.wait(10)
        victim.stop()
        time.sleep(1.0)
        survivors = {pid: started for pid, started in tree.items() if start_time(pid) == started}
        for pid, started in survivors.items():
            self.orphans.append(
                {"pid": pid, "start": started, "worker": victim.pid, "isolation": name, "killed_at": killed_at}
            )
        poll(self.redis_up, 30.0, 0.1)
        self.workers[name] = self.start_worker(name)
        return {"pid": victim.pid, "isolation": name, "runs": busy, "outlived": len(survivors)}

    def start_worker(self, isolation: str) -> C.Beat:
        """Start a worker and wait (bounded) for its first heartbeat: a worker started while Redis is down
        exits (issue 9 item 12), so no Redis fault may land while one is starting."""
        worker = self.spawn(("worker", "--isolation", isolation))

        def beating() -> bool:
            heartbeats = self.read(lambda: self.client.hvals(KEYS.workers), []) or []
            return any(json.loads(raw).get("pid") == worker.pid for raw in heartbeats)

        if not poll(beating, 30.0, 0.1):
            self.notes.append(f"worker {worker.pid} ({isolation}) published no heartbeat within 30 s")
        return worker

    def keep_alive(self) -> None:
        """Restart any daemon that exited on its own (reported as unexpected)."""
        for beat in list(self.beats):
            if not beat.alive():
                self.unexpected.append(f"beat {beat.pid} exited {beat.process and beat.process.returncode}")
                self.replace_beat(beat)
        for name, worker in list(self.workers.items()):
            if not worker.alive() and self.redis_up():
                tail = worker.lines[-1][1] if worker.lines else ""
                self.unexpected.append(
                    f"worker {worker.pid} exited {worker.process and worker.process.returncode}: {tail}"
                )
                worker.stop()
                self.workers[name] = self.start_worker(name)

    def run_faults(self) -> None:
        """Inject faults until ``--duration`` has passed."""
        kinds, weights = list(FAULTS), list(FAULTS.values())
        deadline = time.monotonic() + self.args.duration
        upcoming = time.monotonic() + self.rng.uniform(self.args.fault_min, self.args.fault_max)
        while time.monotonic() < deadline:
            self.keep_alive()
            if time.monotonic() >= upcoming:
                event = self.inject(self.rng.choices(kinds, weights)[0])
                self.faults.append(event)
                print(f"fault {len(self.faults)}: " + json.dumps(event), flush=True)
                upcoming = time.monotonic() + self.rng.uniform(self.args.fault_min, self.args.fault_max)
            time.sleep(0.1)

    # -- settle ---------------------------------------------------------------------------------------
    def on_time(self) -> bool:
        """The leader emits on time again: tick1's last fire is at most 2 s old."""
        raw = self.read(lambda: self.client.hget(KEYS.last, "tick1"))
        scheduled_at = read_last("tick1", raw).get("scheduled_at") if raw else None
        return bool(scheduled_at) and time.time() - datetime.fromisoformat(str(scheduled_at)).timestamp() < 2.0

    def quiet(self, names: list[str]) -> bool:
        """Nothing queued, pending, waiting for a retry, leased or ``running``."""
        queue = KEYS.queue(QUEUE)
        checks = [
            lambda: self.client.xlen(queue) == 0,
            lambda: self.client.xpending(queue, GROUP)["pending"] == 0,
            lambda: self.client.zcard(KEYS.retry(QUEUE)) == 0,
            lambda: all(self.client.hlen(KEYS.active(name)) == 0 for name in names),
            lambda: not any('"status":"running"' in v for name in names for v in self.client.hvals(KEYS.runs(name))),
        ]
        return all(self.read(check, False) for check in checks)

    def settle(self, names: list[str]) -> float:
        """Recover, stop the beats, drain; returns when the beats were stopped (epoch s)."""
        self.keep_alive()
        if not poll(self.on_time, 30.0, 0.2):
            self.notes.append("the leader was not on time 30 s after the last fault")
        time.sleep(3.0)
        stopped_at = time.time()
        for beat in self.beats:
            code = beat.stop(timeout=15)
            if code != 0:
                self.unexpected.append(f"beat {beat.pid} exited {code} on the final SIGTERM")
        if not poll(lambda: self.quiet(names), self.args.settle_timeout, 0.5):
            self.notes.append(f"not drained within --settle-timeout {self.args.settle_timeout:g}s")
        return stopped_at

    def collect(self, names: list[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """Every run record (run id -> record) and the entry ids still pending."""
        records = {}
        for name in names:
            for run, raw in self.client.hgetall(KEYS.runs(name)).items():
                records[run] = json.loads(raw)
        pending = self.client.xpending_range(KEYS.queue(QUEUE), GROUP, min="-", max="+", count=100_000)
        return records, [str(item["message_id"]) for item in pending]

    def sweep(self) -> list[dict[str, Any]]:
        """After every worker stopped: job processes of the ledger still alive (killed, and reported)."""
        left = []
        for pid in sorted({line["pid"] for line in ledger_lines(self.ledger)}):
            started = start_time(pid)
            if started is None:
                continue
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"beatd" in cmdline or b"chaos_jobs" in cmdline:
                    left.append({"pid": pid, "start": started})
        return left

    def stop_all(self) -> None:
        """Stop everything still running (job processes we saw outlive their worker too, by pid)."""
        for beat in self.beats:
            with contextlib.suppress(ProcessLookupError):
                if beat.alive():
                    os.kill(beat.pid, signal.SIGCONT)
            beat.stop()
        for worker in self.workers.values():
            worker.stop()
        for orphan in self.orphans:
            if start_time(orphan["pid"]) == orphan["start"]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(orphan["pid"], signal.SIGKILL)
        self.server.stop()


def ledger_lines(path: Path) -> list[dict[str, Any]]:
    """Every complete line of the ledger."""
    if not path.exists():
        return []
    lines = []
    for text in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(text))
    return lines


def orphan_job(orphan: dict[str, Any], lines: list[dict[str, Any]]) -> dict[str, Any]:
    """What an orphan did: the job of its last ledger line before its worker's kill (else of its first line
    after), whether it was mid-job then, and whether it started a run after its worker was dead."""
    mine = [line for line in lines if line["pid"] == orphan["pid"]]
    before = [line for line in mine if line["t"] <= orphan["killed_at"]]
    after = [line for line in mine if line["t"] > orphan["killed_at"] and line["event"] == "start"]
    chosen = before[-1] if before else after[0] if after else None
    return {
        "job": chosen["job"] if chosen else "(idle)",
        "mid_job": bool(before) and before[-1]["event"] == "start",
        "started_after_kill": [line["run_id"] or line["job"] for line in after],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the soak, print the tables and the JSON line; the exit code says whether every count held."""
    args = parse_args(argv)
    info = C.machine()
    print(f"machine: nproc={info['nproc']} cpu={info['cpu']} load={info['load_average']} git={info.get('git')}")
    print(f"chaos: duration {args.duration:g}s, seed {args.seed}, lease {args.lease}, faults every "
          f"{args.fault_min:g}-{args.fault_max:g}s, weights {FAULTS}", flush=True)  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="beatd-chaos-"))
    soak = Soak(args, tmp)
    wall0 = time.monotonic()
    try:
        soak.start()
        config = load_config(soak.config, os.environ)
        names = list(config.jobs)
        if not poll(soak.on_time, 60.0, 0.2):
            raise RuntimeError("no on-time emission within 60 s of start")
        time.sleep(args.warmup)
        soak.run_faults()
        end = soak.settle(names)
        records, pending_ids = soak.collect(names)
        for worker in soak.workers.values():
            code = worker.stop(timeout=30)
            if code != 0:
                soak.unexpected.append(f"worker {worker.pid} exited {code} on the final SIGTERM")
        leftovers = soak.sweep()
        soak.stop_all()
        applied = chaos_count.read_applied(chaos_aof.read_transactions(soak.server.directory), NAMESPACE)
    except (chaos_aof.AofError, RuntimeError) as error:
        print(f"cannot count: {error}", file=sys.stderr)
        return 3
    finally:
        soak.stop_all()
        lines = ledger_lines(soak.ledger)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    wall = time.monotonic() - wall0

    orphan_rows = []
    for orphan in soak.orphans:
        orphan_rows.append(orphan | orphan_job(orphan, lines))
    by_job = Counter(row["job"] for row in orphan_rows)
    pending_fires = [applied.entry_fire.get(entry, "?@") for entry in pending_ids]
    end_at = datetime.fromtimestamp(end, UTC)
    rows = []
    for name in names:
        job_records = {run: record for run, record in records.items() if record.get("job") == name}
        rows.append(
            chaos_count.count_job(
                name, config.jobs[name].trigger().next_after, applied, end_at, job_records, pending_fires, by_job[name]
            )
        )
    columns = [
        ("instants", "instants"), ("once", "emitted_once"), ("twice", "emitted_twice"), ("missed", "missed"),
        ("lost", "lost"), ("off-sched", "off_schedule"), ("rerun:lost", "reruns_lost"),
        ("rerun:retry", "reruns_retry"), ("rerun:other", "reruns_other"), ("skipped", "skipped"),
        ("stuck", "stuck"), ("unrun", "unrun"),
        ("pending", "pending"), ("orphans", "orphans"),
    ]  # fmt: skip
    totals = {key: sum(getattr(row, key) for row in rows) for _, key in columns}
    totals["orphans"] = len(orphan_rows) + len(leftovers)
    kinds = Counter(event["kind"] for event in soak.faults if "skipped" not in event)
    print()
    print(f"faults: {sum(kinds.values())} ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}); "
          f"skipped {sum(1 for e in soak.faults if 'skipped' in e)}; AOF transactions {applied.transactions}; "
          f"wall {wall:.0f}s")  # fmt: skip
    C.print_table(
        ["job", *(title for title, _ in columns)],
        [[row.job, *(getattr(row, key) for _, key in columns)] for row in rows]
        + [["total", *(totals[key] for _, key in columns)]],
    )
    for row in rows:
        for kind, examples in row.examples.items():
            print(f"  {row.job} {kind}: {', '.join(examples)}")
    mid = sum(1 for row in orphan_rows if row["mid_job"])
    late = [run for row in orphan_rows for run in row["started_after_kill"]]
    print(
        f"processes that outlived a killed worker (1 s after): {len(orphan_rows)} ({mid} mid-job, "
        f"{sum(1 for row in orphan_rows if row['job'] == '(idle)')} never ran a job); runs started by them after "
        f"their worker died: {len(late)} {late[:5]}; job processes left after the final stop: {len(leftovers)}"
    )
    for message in soak.unexpected:
        print("unexpected:", message)
    for note in soak.notes:
        print("note:", note)
    failures = [
        f"{label}: {totals[key]}"
        for label, key in (
            ("emitted twice", "emitted_twice"),
            ("silently lost", "lost"),
            ("stuck", "stuck"),
            ("unrun", "unrun"),
            ("orphans", "orphans"),
        )
        if totals[key]
    ]
    ok = not failures
    print("OK: every count held" if ok else "FAILED: " + "; ".join(failures))
    out = {
        "bench": "beatd_chaos",
        "args": vars(args),
        "machine": info,
        "faults": dict(kinds),
        "fault_log": soak.faults,
        "jobs": [dict(row.__dict__) for row in rows],
        "totals": totals,
        "orphans": orphan_rows,
        "leftovers": leftovers,
        "unexpected": soak.unexpected,
        "notes": soak.notes,
        "failures": failures,
        "ok": ok,
        "wall_s": round(wall, 1),
        "kept": str(tmp) if args.keep else None,
    }
    line = json.dumps(out)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")
    if args.keep:
        print(f"kept {tmp}")
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
