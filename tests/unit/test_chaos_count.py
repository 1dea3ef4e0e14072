"""The chaos soak's AOF reader and counts (bench/chaos_aof.py, bench/chaos_count.py), on hand-built AOFs."""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from beatd.messages import format_utc, from_ms
from beatd.triggers import IntervalTrigger
from tests.conftest import REPO, bench_module

chaos_aof = bench_module("chaos_aof")
chaos_count = bench_module("chaos_count")

NS = "chaos"
BASE_MS = 1_800_000_000_000  # a whole second
END = datetime.fromtimestamp((BASE_MS + 5_000) / 1000, UTC)  # the window holds the instants base+1s .. base+5s


def resp(*parts: str) -> bytes:
    """One command as RESP, as Redis writes it to the AOF."""
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def utc(ms: int) -> str:
    """beatd's UTC text of epoch ms."""
    return format_utc(from_ms(ms))


def emit(ms: int, job: str = "j", entry: int = 0) -> bytes:
    """What emit.lua leaves in the AOF for one emitted fire."""
    message = json.dumps({"fire_id": f"{job}@{utc(ms)}", "job": job, "scheduled_at": utc(ms), "trigger": "schedule"})
    return (
        resp("MULTI")
        + resp("XADD", f"{NS}:queue:default", f"{ms + entry}-0", "message", message, "sig", "")
        + resp("HSET", f"{NS}:progress", job, str(ms))
        + resp("EXEC")
    )


def miss(ms: int, job: str = "j", first: int | None = None) -> bytes:
    """What emit.lua leaves in the AOF for one missed record (a range record with ``first``)."""
    record: dict[str, Any] = {"run_id": f"{job}@{utc(ms)}#0", "job": job, "scheduled_at": utc(ms), "status": "missed"}
    if first is not None:
        record["extra"] = {"first": utc(first), "count": 3}
    return (
        resp("MULTI")
        + resp("HSET", f"{NS}:runs:{job}", record["run_id"], json.dumps(record))
        + resp("HSET", f"{NS}:progress", job, str(ms))
        + resp("EXEC")
    )


def base(ms: int = BASE_MS, job: str = "j") -> bytes:
    """The base step of a new job."""
    return (
        resp("MULTI")
        + resp("HSET", f"{NS}:progress", job, str(ms))
        + resp("HSET", f"{NS}:schedules", job, "d")
        + resp("EXEC")
    )


def count(aof: bytes, records: dict[str, Any] | None = None, slack: float = 0.0) -> chaos_count.JobCount:
    """The count of job ``j`` (every 1 s) for an AOF, the beats stopped at END."""
    transactions = chaos_aof.transactions(chaos_aof.parse_commands(aof))
    applied = chaos_count.read_applied(transactions, NS)
    trigger = IntervalTrigger(timedelta(seconds=1))
    return chaos_count.count_job("j", trigger.next_after, applied, END, records or {}, slack=slack)


def test_torn_tail_and_open_multi_are_dropped() -> None:
    """A command cut short at the end and a MULTI with no EXEC are not applied, as Redis does on load."""
    whole = resp("SET", "a", "1") + resp("MULTI") + resp("SET", "b", "2")
    torn = whole + resp("SET", "c", "3")[:-3]
    assert list(chaos_aof.transactions(chaos_aof.parse_commands(torn))) == [[["SET", "a", "1"]]]


def test_rewritten_aof_is_refused(tmp_path: Path) -> None:
    """A base file later than the first means history was compacted away: the reader refuses to count."""
    (tmp_path / "appendonlydir").mkdir()
    (tmp_path / "appendonlydir" / "appendonly.aof.manifest").write_text(
        "file appendonly.aof.2.base.rdb seq 2 type b\nfile appendonly.aof.2.incr.aof seq 2 type i\n"
    )
    with pytest.raises(chaos_aof.AofError, match="rewritten"):
        chaos_aof.aof_files(tmp_path)


@pytest.mark.parametrize(
    ("aof", "expected"),
    [
        (b"".join(emit(BASE_MS + s * 1000) for s in range(1, 6)), {"emitted_once": 5, "lost": 0}),
        (emit(BASE_MS + 1000) + emit(BASE_MS + 1000, entry=1), {"emitted_once": 0, "emitted_twice": 1, "lost": 4}),
        (emit(BASE_MS + 1000) + emit(BASE_MS + 3000), {"emitted_once": 2, "lost": 3}),
        (miss(BASE_MS + 2000) + emit(BASE_MS + 3000), {"emitted_once": 1, "missed": 1, "lost": 3}),
        (miss(BASE_MS + 4000, first=BASE_MS + 2000) + emit(BASE_MS + 5000), {"missed": 3, "lost": 1}),
        (emit(BASE_MS + 1500), {"emitted_once": 1, "off_schedule": 1, "lost": 5}),
        (emit(BASE_MS + 7000), {"instants": 6, "emitted_once": 1, "lost": 5}),
    ],
    ids=["all-once", "double", "gap", "missed", "missed-range", "off-schedule", "after-window"],
)
def test_emissions_against_the_trigger(aof: bytes, expected: dict[str, int]) -> None:
    """Each instant after the base is counted emitted once, twice, missed or silently lost."""
    row = count(base() + aof)
    assert {key: getattr(row, key) for key in expected} == expected


@pytest.mark.parametrize(("slack", "lost"), [(0.0, 3), (1.5, 1), (5.0, 0)])
def test_instants_the_beat_had_not_reached_are_lost_only_past_the_slack(slack: float, lost: int) -> None:
    """Instants after the last progress are lost only when they were due more than ``slack`` before the stop."""
    assert count(base() + emit(BASE_MS + 1000) + emit(BASE_MS + 2000), slack=slack).lost == lost


def test_retry_xadd_is_a_rerun_not_an_emission() -> None:
    """The worker's retry XADD (with ZREM of the retry set) does not count as a second emission."""
    fire = f"j@{utc(BASE_MS + 1000)}"
    requeue = (
        resp("MULTI")
        + resp("XADD", f"{NS}:queue:default", f"{BASE_MS + 3000}-0", "message", json.dumps({"fire_id": fire}))
        + resp("ZREM", f"{NS}:retry:default", "x")
        + resp("EXEC")
    )
    records = {
        f"{fire}#1": {"run_id": f"{fire}#1", "fire_id": fire, "status": "failed"},
        f"{fire}#2": {"run_id": f"{fire}#2", "fire_id": fire, "status": "lost"},
        f"{fire}#3": {"run_id": f"{fire}#3", "fire_id": fire, "status": "running"},
    }
    row = count(base() + emit(BASE_MS + 1000) + requeue, records)
    assert (row.emitted_once, row.emitted_twice, row.reruns_retry, row.reruns_lost, row.stuck) == (1, 0, 1, 1, 1)


def test_emitted_fire_without_any_record_is_unrun() -> None:
    """A fire emitted but never claimed, run or recorded after the settle is counted ``unrun``."""
    assert count(base() + emit(BASE_MS + 1000)).unrun == 1


def test_importing_the_bench_modules_leaves_the_celery_package_reachable() -> None:
    """The soak's modules come from bench/ by path: bench/celery.py never shadows the celery package."""
    spec = importlib.util.find_spec("celery")
    assert spec is not None and spec.origin is not None and Path(spec.origin).parent.name == "celery"
    assert str(REPO / "bench") not in sys.path
