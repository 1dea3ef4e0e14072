#!/usr/bin/env python3
"""RedBeat (celery-redbeat) leader fail-over benchmark: peer figures for beatd.

Commands (from the repo root, after `bash bench/peers/setup.sh`):

    # RedBeat defaults (lock timeout = 5 x beat_max_loop_interval = 1500 s,
    # standbys retry the lock every 300 s)
    bench/.peer-venv/bin/python bench/peers/redbeat_failover.py \\
        --replicas 3 --entries 20 --kills 20

    # tuned: redbeat_lock_timeout = 5 s, beat_max_loop_interval = 1 s
    bench/.peer-venv/bin/python bench/peers/redbeat_failover.py \\
        --replicas 3 --entries 20 --kills 20 --lock-timeout 5 --max-loop-interval 1

(plain `python3 bench/peers/redbeat_failover.py ...` re-execs itself under
bench/.peer-venv.)

Set-up: one private redis-server (free loopback port, --save ''
--appendonly no); --entries RedBeat interval entries (every --interval s, task
``bench.noop``, first due instants spread evenly over one interval); --replicas
``celery -A benchapp beat -S redbeat.RedBeatScheduler`` processes against it
(broker = redbeat_redis_url = that Redis, loglevel INFO). Each beat records its
publications (``before_task_publish`` receiver: entry, due, pub time, pid) and
the moment it acquires the RedBeat lock (with the lock token) as JSON lines.

Loop, --kills times: find the leader = the replica whose recorded lock token
equals ``GET redbeat::lock`` (cross-checked with the pid of the latest
publication), read the lock's PTTL, ``kill -9`` it, immediately start a
replacement replica (so there are always --replicas processes), and poll (50 ms)
until a publication by another process appears. Then wait until the replacement
is up (its beat_init fired; it is blocked on the lock as a standby) and let
emission run --settle seconds before the next kill. If no other replica
publishes within --takeover-cap seconds, the takeover is recorded as
">cap" and that configuration stops (the lock PTTL at the kill gives the lower
bound of the real takeover).

Definitions (same ones for beatd's own bench):
* takeover = first publication by any other process - instant of the kill
  (time.time() just before os.kill(SIGKILL)); ``lock_acquired`` = the new
  leader's lock acquisition - kill.
* duplicate fire = a second publication of the same (entry, due instant), due
  being the scheduler's own due time for that fire (RedBeat: last_run_at
  loaded from Redis + interval). Also reported: ``close_pairs``, publications
  of one entry less than interval/2 apart (phase-independent check).
* lost fires: RedBeat's interval schedule is relative to the previous run and
  fires a missed entry once, late, without catching up. So for each entry and
  each pair of consecutive publications at times a < b, the due slots
  a + k*interval (k >= 1) that passed with no publication are
  ``max(0, floor((b - a) / interval) - 1)`` (the latest slot <= b is served by
  b). Counted for gaps ending after the warm-up; a gap that spans kill k is
  attributed to kill k, others are "baseline". For a fixed-rate scheduler this
  equals "nominal slots with no publication" when nothing is late by more than
  one interval. An open gap at the end (cap hit) counts
  ``floor((T_end - a) / interval)`` slots.
* other_cpu_pct: machine busy CPU (/proc/stat) during the run minus the
  beats' and redis-server's CPU, in % of one core: ~0 (plus the harness's own
  polling) on a quiet machine; large values mean other processes competed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import itertools

import _common as C

LOCK_KEY = "redbeat::lock"


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Kill -9 the RedBeat leader repeatedly; measure takeover, lost and duplicated fires.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--entries", type=int, default=20)
    p.add_argument("--interval", type=float, default=1.0, help="entry interval, seconds")
    p.add_argument("--kills", type=int, default=20)
    p.add_argument(
        "--lock-timeout",
        type=float,
        default=None,
        help="redbeat_lock_timeout, s (default: RedBeat's 5 x max loop interval)",
    )
    p.add_argument(
        "--max-loop-interval",
        type=float,
        default=None,
        help="beat_max_loop_interval, s (default: RedBeat/celery beat 300 s)",
    )
    p.add_argument(
        "--takeover-cap",
        type=float,
        default=120.0,
        help="give up waiting for a takeover after this many seconds and stop this configuration",
    )
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of emission before the first kill")
    p.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="seconds of emission after a takeover (and the replacement standby being up) before the next kill",
    )
    p.add_argument(
        "--max-wall", type=float, default=840.0, help="hard cap on the whole run, seconds; stops killing when reached"
    )
    p.add_argument("--loglevel", default="INFO", help="celery beat --loglevel")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (events, logs)")
    p.add_argument("--json-out", help="also write the final JSON to this file")
    return p.parse_args(argv)


class EventTail:
    """Incrementally reads events-*.jsonl (complete lines only)."""

    def __init__(self, events_dir: Path):
        self.dir = events_dir
        self.offsets: dict[Path, int] = {}
        self.pubs: list[dict] = []
        self.lock_events: list[dict] = []
        self.init_events: list[dict] = []

    def poll(self) -> list[dict]:
        new = []
        for path in sorted(self.dir.glob("events-*.jsonl")):
            off = self.offsets.get(path, 0)
            with path.open("rb") as fh:
                fh.seek(off)
                data = fh.read()
            end = data.rfind(b"\n")
            if end < 0:
                continue
            self.offsets[path] = off + end + 1
            for line in data[: end + 1].splitlines():
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                new.append(ev)
        for ev in new:
            kind = ev.get("ev")
            if kind == "pub":
                self.pubs.append(ev)
            elif kind == "lock":
                self.lock_events.append(ev)
            elif kind == "init":
                self.init_events.append(ev)
        return new


def wait_for(pred, timeout: float, tail: EventTail, step: float = 0.05):
    """Poll tail + pred() until pred returns a truthy value or timeout; return it."""
    deadline = time.monotonic() + timeout
    while True:
        tail.poll()
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return None
        time.sleep(step)


def main(argv=None) -> int:
    args = parse_args(argv)
    C.ensure_peer_venv()
    from celery import Celery

    info = C.machine_info()
    config = "tuned" if (args.lock_timeout or args.max_loop_interval) else "defaults"
    eff_max_loop = args.max_loop_interval or 300.0
    eff_lock_timeout = args.lock_timeout or eff_max_loop * 5
    print(f"machine: nproc={info['nproc']} cpu={info['cpu']}")
    print("versions: " + ", ".join(f"{k}={v}" for k, v in info.items() if k not in ("nproc", "cpu")))
    print(
        f"config: {config} (lock timeout {eff_lock_timeout:g}s, max loop interval "
        f"{eff_max_loop:g}s), replicas={args.replicas}, entries={args.entries} every "
        f"{args.interval:g}s, kills={args.kills}",
        flush=True,
    )

    t_wall0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="redbeat-failover-"))
    events_dir = tmp / "events"
    events_dir.mkdir()
    C.write_celery_app(tmp)
    server = C.RedisServer(tmp)
    procs: dict[int, object] = {}
    n_started = 0
    kills: list[dict] = []
    capped = False
    notes: list[str] = []
    busy0 = None
    own_cpu = 0.0  # CPU of replicas that were killed (live ones are read at the end)
    try:
        app = Celery("harness", broker=server.url)
        app.conf.redbeat_redis_url = server.url
        names = [f"fo-{i:03d}" for i in range(args.entries)]
        t0 = time.time() + 1.0
        C.create_entries(
            app, names, args.interval, [t0 + i * args.interval / args.entries for i in range(args.entries)]
        )
        env = C.beat_env(tmp, server.url, events_dir, args.lock_timeout, args.max_loop_interval)

        def start_replica():
            nonlocal n_started
            n_started += 1
            p = C.start_beat(tmp, env, tmp / f"beat-{n_started}.log", args.loglevel)
            procs[p.pid] = p
            return p

        tail = EventTail(events_dir)
        busy0 = C.machine_busy_jiffies()
        for _ in range(args.replicas):
            start_replica()

        def all_up():
            up = {e["pid"] for e in tail.init_events}
            return all(pid in up for pid in procs)

        if not wait_for(all_up, 60, tail):
            raise RuntimeError("replicas did not start within 60 s")
        if not wait_for(lambda: tail.pubs, 60, tail):
            raise RuntimeError("no publication within 60 s of start")
        # warm-up: emission runs; poll, bounded by the warm-up length
        wait_for(lambda: False, args.warmup, tail, step=0.25)
        t_measure0 = time.time()

        for k in range(args.kills):
            if time.monotonic() - t_wall0 > args.max_wall - args.takeover_cap:
                notes.append(f"stopped after {k} kills: --max-wall {args.max_wall}s")
                break
            tail.poll()
            token = server.client.get(LOCK_KEY)
            pttl_ms = server.client.pttl(LOCK_KEY)
            token_pid = {e["token"]: e["pid"] for e in tail.lock_events}
            leader = token_pid.get(token)
            last_pub_pid = tail.pubs[-1]["pid"] if tail.pubs else None
            if leader is None or leader not in procs:
                notes.append(f"kill {k + 1}: lock token not mapped, using last publisher")
                leader = last_pub_pid
            if leader not in procs:
                raise RuntimeError(f"kill {k + 1}: cannot identify leader")
            own_cpu += C.proc_cpu_seconds(leader) or 0.0
            t_kill = time.time()
            os.kill(leader, signal.SIGKILL)
            procs.pop(leader).wait(timeout=10)
            replacement = start_replica()

            scan_from = len(tail.pubs)

            def takeover(scan_from=scan_from, t_kill=t_kill, leader=leader):
                return next((e for e in tail.pubs[scan_from:] if e["pub"] > t_kill and e["pid"] != leader), None)

            first = wait_for(takeover, args.takeover_cap, tail)
            row = {
                "kill": k + 1,
                "killed_pid": leader,
                "t_kill": t_kill,
                "leader_was_last_publisher": last_pub_pid == leader,
                "lock_pttl_at_kill_s": round(pttl_ms / 1000.0, 3) if pttl_ms else None,
            }
            if first is None:
                row["takeover_s"] = f">{args.takeover_cap:g}"
                row["capped"] = True
                kills.append(row)
                capped = True
                t_cap_end = time.time()
                notes.append(
                    f"kill {k + 1}: no takeover within {args.takeover_cap:g}s; lock PTTL at "
                    f"kill was {row['lock_pttl_at_kill_s']}s and standbys retry every "
                    f"{eff_max_loop:g}s, so takeover would take >= {row['lock_pttl_at_kill_s']}s"
                    f" (<= PTTL + {eff_max_loop:g}s); configuration stopped"
                )
                break
            new_lock = next((e for e in tail.lock_events if e["t"] > t_kill and e["pid"] != leader), None)
            row.update(
                {
                    "new_leader_pid": first["pid"],
                    "new_leader_is_replacement": first["pid"] == replacement.pid,
                    "takeover_s": round(first["pub"] - t_kill, 3),
                    "lock_acquired_s": round(new_lock["t"] - t_kill, 3) if new_lock else None,
                }
            )
            kills.append(row)
            print(
                f"kill {k + 1}: pid {leader} (lock PTTL {row['lock_pttl_at_kill_s']}s) -> "
                f"pid {first['pid']} publishes after {row['takeover_s']}s",
                flush=True,
            )
            # the replacement must be up (standby, blocked on the lock) before next kill
            if not wait_for(lambda r=replacement: any(e["pid"] == r.pid for e in tail.init_events), 60, tail):
                notes.append(f"kill {k + 1}: replacement pid {replacement.pid} not up in 60 s")
            wait_for(lambda: False, args.settle, tail, step=0.25)

        t_end = time.time()
        if capped:
            t_end = t_cap_end
    finally:
        busy1 = C.machine_busy_jiffies()
        own_cpu += sum(C.proc_cpu_seconds(pid) or 0.0 for pid in procs)
        own_cpu += server.cpu_seconds() or 0.0
        for p in list(procs.values()):
            C.stop_process(p)
        redis_ok = server.proc.poll() is None
        server.stop()

    pubs, _other = C.read_events(events_dir)
    interval = args.interval
    kill_times = [r["t_kill"] for r in kills]

    # duplicates: same (entry, due) twice
    due_counts = Counter((e["e"], round(e["due"], 6)) for e in pubs if e["e"] is not None)
    dup_same_due = sum(c - 1 for c in due_counts.values() if c > 1)
    by_entry = defaultdict(list)
    for e in pubs:
        if e["e"] is not None and e["pub"] <= t_end:
            by_entry[e["e"]].append(e["pub"])
    close_pairs = 0
    lost_by_kill = [0] * len(kills)
    lost_baseline = 0
    lost_open = 0
    for _name, times in by_entry.items():
        times.sort()
        for a, b in itertools.pairwise(times):
            if b - a < interval / 2:
                close_pairs += 1
            if b <= t_measure0:
                continue
            lost = max(0, math.floor((b - a) / interval) - 1)
            if not lost:
                continue
            span = [i for i, tk in enumerate(kill_times) if a < tk <= b]
            if span:
                lost_by_kill[span[0]] += lost
            else:
                lost_baseline += lost
        last = times[-1]
        if last >= t_measure0 or capped:
            open_lost = math.floor((t_end - last) / interval)
            if capped and kills:
                lost_by_kill[-1] += open_lost
                lost_open += open_lost
            elif open_lost > 1:
                lost_baseline += open_lost - 1  # healthy tail: the slot in flight is not lost
    never = [n for n in names if n not in by_entry]
    for i, r in enumerate(kills):
        r["lost"] = lost_by_kill[i]
        r["t_kill"] = round(r["t_kill"] - t_measure0, 3)  # relative to end of warm-up

    ok = [r["takeover_s"] for r in kills if not r.get("capped")]
    locks = [r["lock_acquired_s"] for r in kills if r.get("lock_acquired_s") is not None]
    lost_ok = [r["lost"] for r in kills if not r.get("capped")]
    s_ok = sorted(ok)
    summary = {
        "config": config,
        "lock_timeout_s": eff_lock_timeout,
        "max_loop_interval_s": eff_max_loop,
        "replicas": args.replicas,
        "entries": args.entries,
        "interval_s": interval,
        "kills_requested": args.kills,
        "kills_done": len(kills),
        "capped": capped,
        "takeover_cap_s": args.takeover_cap,
        "takeover_min_s": s_ok[0] if s_ok else None,
        "takeover_p50_s": C.percentile(s_ok, 50),
        "takeover_mean_s": round(sum(s_ok) / len(s_ok), 3) if s_ok else None,
        "takeover_max_s": s_ok[-1] if s_ok else None,
        "lock_acquired_mean_s": round(sum(locks) / len(locks), 3) if locks else None,
        "lost_total": sum(lost_by_kill) + lost_baseline,
        "lost_per_kill_mean": round(sum(lost_ok) / len(lost_ok), 1) if lost_ok else None,
        "lost_per_kill_min": min(lost_ok) if lost_ok else None,
        "lost_per_kill_max": max(lost_ok) if lost_ok else None,
        "lost_open_at_cap": lost_open,
        "lost_baseline": lost_baseline,
        "dup_same_due": dup_same_due,
        "dup_close_pairs": close_pairs,
        "publications": len(pubs),
        "entries_never_published": len(never),
        "measured_s": round(t_end - t_measure0, 1),
        "wall_s": round(time.monotonic() - t_wall0, 1),
        "redis_alive_at_end": redis_ok,
        "other_cpu_pct": C.other_cpu_pct(busy0, busy1, own_cpu),
    }

    print()
    C.print_table(
        ["kill", "killed pid", "lock PTTL s", "takeover s", "lock acq s", "new leader", "replacement?", "lost"],
        [
            [
                r["kill"],
                r["killed_pid"],
                C.fmt(r["lock_pttl_at_kill_s"], digits=2),
                C.fmt(r["takeover_s"]),
                C.fmt(r.get("lock_acquired_s")),
                r.get("new_leader_pid", "-"),
                r.get("new_leader_is_replacement", "-"),
                r["lost"],
            ]
            for r in kills
        ],
    )
    print()
    C.print_table(
        [
            "config",
            "lock timeout",
            "max loop",
            "kills",
            "takeover p50",
            "mean",
            "max",
            "lost/kill mean",
            "min",
            "max",
            "dup",
            "baseline lost",
        ],
        [
            [
                config,
                f"{eff_lock_timeout:g}s",
                f"{eff_max_loop:g}s",
                len(kills),
                C.fmt(summary["takeover_p50_s"]) if s_ok else kills[-1]["takeover_s"] if kills else "-",
                C.fmt(summary["takeover_mean_s"]),
                C.fmt(summary["takeover_max_s"]),
                C.fmt(summary["lost_per_kill_mean"], digits=1)
                if lost_ok
                else (f"{kills[-1]['lost']} (open)" if kills else "-"),
                C.fmt(summary["lost_per_kill_min"]),
                C.fmt(summary["lost_per_kill_max"]),
                dup_same_due,
                lost_baseline,
            ]
        ],
    )
    print(f"other CPU during the run (machine busy minus beats and redis): {summary['other_cpu_pct']}% of one core")
    for n in notes:
        print("note:", n)
    out = {"bench": "redbeat_failover", "machine": info, "summary": summary, "kills": kills, "notes": notes}
    line = json.dumps(out)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp}")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
