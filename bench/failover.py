"""beatd fail-over benchmark: kill -9 (and SIGTERM) the leader repeatedly; takeover time, lost and doubled fires.

Commands (from the repo root)::

    .venv/bin/python bench/failover.py --replicas 3 --entries 20 --kills 20 --terms 10            # lease 5s
    .venv/bin/python bench/failover.py --replicas 3 --entries 20 --kills 20 --terms 10 --lease 2s

Set-up: one private redis-server (free loopback port, ``--save '' --appendonly no``, as in the RedBeat peer
benchmark); a config with --entries jobs ``fo-000`` .. ``{command: ["true"], every: <interval>s, catchup:
all}`` whose phases are spread evenly over one interval (``start`` offsets), leader lease --lease; --replicas
``python -m beatd beat -c CONFIG`` processes (log level INFO).

Kill series, --kills times: read the leader from ``{ns}:leader`` (token ``{epoch}:{host}:{pid}:{rand}``) and
its PTTL, ``kill -9`` that pid (``t_kill`` = ``time.time()`` just before ``os.kill``), start a replacement
at once (so there are always --replicas processes), wait (polling 10 ms) until another token holds the lease
and a message was emitted after it, then until the replacement publishes its first heartbeat (it is up, a
standby), then let emission run --settle seconds plus a random 0 .. --phase-jitter (default: a third of the
lease, the renewal period), so that events hit random phases of the leader's renewal cycle (with a fixed
settle every kill lands at the same phase and the takeover time is the same every time).
SIGTERM series, --terms times: the same with SIGTERM (a graceful stop releases the lease); the stopped replica
must exit 0 and is replaced too.

Definitions (those of ``bench/peers/redbeat_failover.py``, with beatd's exact data instead of inference):

* token (lock acquired) = Redis time of the new leader's ``leader`` audit entry (written atomically with the
  acquisition, ``acquire.lua``) - t_kill.
* takeover = Redis time (stream entry id) of the first message emitted after that acquisition - t_kill.
  Only the new leader can write then: the old one is dead (kill -9) or has released the lease and stopped.
* duplicate fire = a second message with the same ``fire_id`` (= same job and scheduled instant).
* lost fire = for each job, an instant of its schedule between its first and its last message (after the
  warm-up) that has no message. beatd's interval schedule is fixed-rate, so this is RedBeat's "nominal slot
  with no publication". A lost instant between event k and event k + 1 is attributed to event k.
* catch-up lag = the largest (entry ms - scheduled ms) of the messages emitted from the takeover up to the
  next event: how late the fires due while nobody led were delivered.

Bounded: each takeover waits at most --takeover-cap seconds (then the series stops), each replacement 30 s,
the whole run --max-wall seconds. Prints the per-event table, a summary table and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

NAMESPACE = "bench"
QUEUE_KEY = f"{NAMESPACE}:queue:default"
LEADER_KEY = f"{NAMESPACE}:leader"
AUDIT_KEY = f"{NAMESPACE}:audit"
REPLICAS_KEY = f"{NAMESPACE}:replicas"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Kill -9 / SIGTERM the beatd leader repeatedly; measure takeover, lost and duplicated fires.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--replicas", type=int, default=3, help="beat replicas kept running")
    parser.add_argument("--entries", type=int, default=20, help="jobs")
    parser.add_argument("--interval", type=int, default=1, help="job interval, whole seconds")
    parser.add_argument("--kills", type=int, default=20, help="kill -9 events")
    parser.add_argument("--terms", type=int, default=10, help="SIGTERM events after the kills")
    parser.add_argument("--lease", default="5s", help="leader lease (beatd duration)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of emission before the first event")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of emission after a takeover")
    parser.add_argument(
        "--phase-jitter",
        type=float,
        default=-1.0,
        help="extra settle, uniform in [0, this) s, so events hit random phases of the lease renewal (-1: lease/3)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the phase jitter")
    parser.add_argument("--takeover-cap", type=float, default=0.0, help="takeover wait cap, s (0: 3 leases + 10)")
    parser.add_argument("--max-wall", type=float, default=900.0, help="hard cap on the whole run, seconds")
    parser.add_argument("--quiet-load", type=float, default=1.0, help="first wait for this 1-min load average")
    parser.add_argument("--quiet-wait", type=float, default=120.0, help="longest wait for --quiet-load, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (config, logs)")
    parser.add_argument("--json-out", help="also write the final JSON line to this file")
    return parser.parse_args(argv)


def lease_seconds(text: str) -> float:
    """Seconds of a simple beatd duration (``5s``, ``2s``, ``500ms``, ``1m``)."""
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * factor
    return float(text)


def leader_pid(token: str | None) -> int | None:
    """The pid in a fencing token ``{epoch}:{host}:{pid}:{rand}``."""
    if not token:
        return None
    parts = token.split(":")
    return int(parts[2]) if len(parts) >= 4 and parts[2].isdigit() else None


def acquisitions(client: Any) -> list[tuple[int, str]]:
    """(Redis ms, token) of every lease acquisition, oldest first."""
    return [
        (int(str(entry_id).split("-")[0]), fields.get("token", ""))
        for entry_id, fields in client.xrange(AUDIT_KEY)
        if fields.get("event") == "leader"
    ]


def heartbeat_pids(client: Any) -> set[int]:
    """Pids of every replica that has published a heartbeat."""
    pids = set()
    for raw in client.hvals(REPLICAS_KEY):
        try:
            pids.add(int(json.loads(raw)["pid"]))
        except (ValueError, KeyError, TypeError):
            continue
    return pids


def poll(predicate: Any, timeout: float, step: float = 0.01) -> Any:
    """Call ``predicate`` until it returns something truthy or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def main(argv: list[str] | None = None) -> int:
    """Run the kill and SIGTERM series, print the tables and the JSON line."""
    args = parse_args(argv)
    lease = lease_seconds(args.lease)
    cap = args.takeover_cap or 3 * lease + 10
    phase_jitter = lease / 3 if args.phase_jitter < 0 else args.phase_jitter
    rng = random.Random(args.seed)
    waited = C.wait_for_quiet(args.quiet_load, args.quiet_wait)
    info = C.machine()
    C.print_machine(info)
    print(
        f"config: lease {args.lease}, replicas={args.replicas}, entries={args.entries} every {args.interval}s "
        f"(catchup: all), kills={args.kills}, SIGTERMs={args.terms}",
        flush=True,
    )
    wall0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="beatd-failover-"))
    server = C.RedisServer(tmp)
    client = server.client
    beats: dict[int, C.Beat] = {}
    events: list[dict[str, Any]] = []
    notes: list[str] = []
    started = 0
    capped = False
    interval_ms = args.interval * 1000
    anchor_ms = (int(time.time() * 1000) - 86_400_000) // interval_ms * interval_ms
    phases = [i * interval_ms // args.entries for i in range(args.entries)]
    names = [f"fo-{i:03d}" for i in range(args.entries)]
    try:
        jobs = {}
        for name, phase in zip(names, phases, strict=True):
            start = datetime.fromtimestamp((anchor_ms + phase) / 1000, UTC)
            jobs[name] = {
                "command": ["true"],
                "every": f"{args.interval}s",
                "catchup": "all",
                "start": start.strftime("%Y-%m-%dT%H:%M:%S.") + f"{(anchor_ms + phase) % 1000:03d}Z",
            }
        config = C.write_config(tmp / "beatd.yaml", server.url, NAMESPACE, args.lease, jobs)

        def start_replica() -> C.Beat:
            nonlocal started
            started += 1
            beat = C.Beat(config, tmp / f"beat-{started}.log").start()
            beats[beat.pid] = beat
            return beat

        for _ in range(args.replicas):
            start_replica()
        if not poll(lambda: client.xlen(QUEUE_KEY) > 0, 60):
            raise RuntimeError("no fire emitted within 60 s of start")
        if not poll(lambda: all(pid in heartbeat_pids(client) for pid in beats), 30):
            raise RuntimeError("replicas did not all publish a heartbeat within 30 s")
        time.sleep(args.warmup)
        measure_from = time.time()

        plan = [("SIGKILL", signal.SIGKILL)] * args.kills + [("SIGTERM", signal.SIGTERM)] * args.terms
        for number, (kind, signum) in enumerate(plan, start=1):
            if time.monotonic() - wall0 > args.max_wall - cap - args.settle:
                notes.append(f"stopped after {number - 1} events: --max-wall {args.max_wall:g}s")
                break
            token = client.get(LEADER_KEY)
            pttl = client.pttl(LEADER_KEY)
            pid = leader_pid(token)
            if pid not in beats:
                raise RuntimeError(f"event {number}: leader token {token!r} names no replica of ours")
            known = len(acquisitions(client))
            victim = beats.pop(pid)
            t_event = time.time()
            os.kill(pid, signum)
            exit_code = victim.stop(timeout=15) if signum == signal.SIGTERM else None
            if signum == signal.SIGKILL:
                assert victim.process is not None
                victim.process.wait(10)
                victim.stop()
            replacement = start_replica()

            def taken_over(known: int = known) -> tuple[int, str, int] | None:
                taken = acquisitions(client)[known:]
                if not taken:
                    return None
                acquired_ms, new_token = taken[0]
                after = client.xrange(QUEUE_KEY, min=str(acquired_ms), max="+", count=1)
                if not after:
                    return None
                return acquired_ms, new_token, int(str(after[0][0]).split("-")[0])

            found = poll(taken_over, cap)
            row: dict[str, Any] = {
                "event": number,
                "kind": kind,
                "pid": pid,
                "t": t_event,
                "lease_pttl_at_event_s": round(pttl / 1000, 3) if pttl and pttl > 0 else None,
                "exit_code": exit_code,
            }
            if not found:
                row["takeover_s"] = f">{cap:g}"
                row["capped"] = True
                events.append(row)
                capped = True
                notes.append(f"event {number} ({kind}): no takeover within {cap:g}s; series stopped")
                break
            acquired_ms, new_token, first_ms = found
            new_pid = leader_pid(new_token)
            row |= {
                "token_s": round(acquired_ms / 1000 - t_event, 3),
                "takeover_s": round(first_ms / 1000 - t_event, 3),
                "new_pid": new_pid,
                "new_is_replacement": new_pid == replacement.pid,
            }
            events.append(row)
            print(
                f"{kind} {number}: pid {pid} (lease PTTL {row['lease_pttl_at_event_s']}s) -> pid {new_pid}: "
                f"token after {row['token_s']}s, first fire after {row['takeover_s']}s",
                flush=True,
            )
            if not poll(lambda pid=replacement.pid: pid in heartbeat_pids(client), 30):
                notes.append(f"event {number}: replacement pid {replacement.pid} no heartbeat within 30 s")
            time.sleep(args.settle + rng.uniform(0.0, phase_jitter))
        end = time.time()
        exit_codes = {pid: beat.stop() for pid, beat in beats.items()}
        redis_alive = server.proc.poll() is None
        fires = list(C.read_fires(client, QUEUE_KEY))
    finally:
        for beat in beats.values():
            beat.stop()
        server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    ids = Counter(fire.fire_id for fire in fires)
    duplicates = sum(count - 1 for count in ids.values() if count > 1)
    measure_ms = int(measure_from * 1000)
    end_ms = int(end * 1000)
    event_ms = [int(row["t"] * 1000) for row in events]
    by_job: dict[str, set[int]] = {}
    for fire in fires:
        by_job.setdefault(fire.job, set()).add(fire.scheduled_ms)
    lost_by_event = [0] * len(events)
    lost_baseline = 0
    off_schedule = 0
    for name, phase in zip(names, phases, strict=True):
        got = by_job.get(name, set())
        window = [instant for instant in got if instant >= measure_ms - interval_ms]
        if not window:
            continue
        first, last = min(window), max(window)
        # A capped takeover leaves an open gap up to the end of the run.
        last = max(last, end_ms) if capped else last
        for instant in range(first, last + 1, interval_ms):
            if instant in got:
                continue
            index = max((i for i, t in enumerate(event_ms) if t <= instant), default=None)
            if index is None:
                lost_baseline += 1
            else:
                lost_by_event[index] += 1
        off_schedule += sum(1 for instant in got if (instant - anchor_ms - phase) % interval_ms)
    for index, row in enumerate(events):
        row["lost"] = lost_by_event[index]
        if row.get("capped"):
            continue
        takeover_ms = int((row["t"] + row["takeover_s"]) * 1000)
        upto = event_ms[index + 1] if index + 1 < len(events) else end_ms
        lags = [fire.entry_ms - fire.scheduled_ms for fire in fires if takeover_ms <= fire.entry_ms < upto]
        row["catchup_lag_max_s"] = round(max(lags) / 1000, 3) if lags else None
        row["catchup_fires"] = sum(
            1 for fire in fires if takeover_ms <= fire.entry_ms < upto and fire.trigger == "catchup"
        )
    steady_lags = sorted(
        fire.entry_ms - fire.scheduled_ms
        for fire in fires
        if measure_ms - 1000 * args.warmup <= fire.entry_ms < (event_ms[0] if event_ms else end_ms)
    )

    def summary_of(kind: str) -> dict[str, Any]:
        rows = [row for row in events if row["kind"] == kind]
        done = [row for row in rows if not row.get("capped")]
        takeovers = sorted(row["takeover_s"] for row in done)
        tokens = sorted(row["token_s"] for row in done)
        return {
            "events": len(rows),
            "capped": len(rows) - len(done),
            "takeover_min_s": takeovers[0] if takeovers else None,
            "takeover_p50_s": C.percentile(takeovers, 50),
            "takeover_mean_s": round(sum(takeovers) / len(takeovers), 3) if takeovers else None,
            "takeover_max_s": takeovers[-1] if takeovers else None,
            "token_p50_s": C.percentile(tokens, 50),
            "token_mean_s": round(sum(tokens) / len(tokens), 3) if tokens else None,
            "token_max_s": tokens[-1] if tokens else None,
            "lost": sum(row["lost"] for row in rows),
            "catchup_lag_max_s": max((row.get("catchup_lag_max_s") or 0 for row in done), default=None),
            "replacement_became_leader": sum(1 for row in done if row.get("new_is_replacement")),
            "nonzero_exits": sum(1 for row in rows if row.get("exit_code") not in (None, 0)),
        }

    summary = {
        "lease": args.lease,
        "lease_s": lease,
        "replicas": args.replicas,
        "entries": args.entries,
        "interval_s": args.interval,
        "settle_s": args.settle,
        "phase_jitter_s": round(phase_jitter, 3),
        "target_kill_s": lease + 1,
        "target_term_s": 1.0,
        "kill": summary_of("SIGKILL"),
        "term": summary_of("SIGTERM"),
        "duplicates": duplicates,
        "lost_total": sum(lost_by_event) + lost_baseline,
        "lost_baseline": lost_baseline,
        "messages": len(fires),
        "off_schedule": off_schedule,
        "steady_lag_p99_s": round((C.percentile(steady_lags, 99) or 0) / 1000, 3) if steady_lags else None,
        "measured_s": round(end - measure_from, 1),
        "wall_s": round(time.monotonic() - wall0, 1),
        "redis_alive_at_end": redis_alive,
        "final_exit_codes": sorted(str(code) for code in exit_codes.values()),
        "waited_for_quiet_s": waited,
        "load_before": info["load_average"],
        "load_after": C.load_average(),
    }

    print()
    C.print_table(
        [
            "event",
            "kind",
            "pid",
            "PTTL s",
            "token s",
            "takeover s",
            "new pid",
            "replacement?",
            "lost",
            "catch-up lag s",
        ],
        [
            [
                row["event"],
                row["kind"],
                row["pid"],
                C.fmt(row["lease_pttl_at_event_s"], digits=2),
                C.fmt(row.get("token_s")),
                C.fmt(row["takeover_s"]),
                row.get("new_pid", "-"),
                row.get("new_is_replacement", "-"),
                row["lost"],
                C.fmt(row.get("catchup_lag_max_s")),
            ]
            for row in events
        ],
    )
    print()
    C.print_table(
        ["lease", "kind", "events", "takeover p50", "mean", "max", "token p50", "max", "target", "lost", "dup"],
        [
            [
                args.lease,
                kind,
                part["events"],
                C.fmt(part["takeover_p50_s"]),
                C.fmt(part["takeover_mean_s"]),
                C.fmt(part["takeover_max_s"]),
                C.fmt(part["token_p50_s"]),
                C.fmt(part["token_max_s"]),
                f"<= {target:g}s",
                part["lost"],
                duplicates,
            ]
            for kind, part, target in (
                ("SIGKILL", summary["kill"], lease + 1),
                ("SIGTERM", summary["term"], 1.0),
            )
        ],
    )
    print(f"lost outside events: {lost_baseline}; messages: {len(fires)}; duplicates: {duplicates}")
    for note in notes:
        print("note:", note)
    for row in events:
        row["t"] = round(row["t"] - measure_from, 3)  # relative to the end of the warm-up
    out = {"bench": "beatd_failover", "machine": info, "summary": summary, "events": events, "notes": notes}
    line = json.dumps(out)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")
    if args.keep:
        print(f"kept {tmp}")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
