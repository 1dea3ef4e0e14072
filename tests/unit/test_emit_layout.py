"""emit.lua reads its items by the same field names, in the same order, as the LeaderWrite codec sends them."""

from __future__ import annotations

from beatd.store import LeaderWrite
from beatd.store.codec import item_fields, lua_item_fields


def test_emit_lua_item_line_matches_leader_write() -> None:
    """The `local ITEM = {...}` line of emit.lua lists LeaderWrite's fields in declaration order."""
    assert lua_item_fields("emit") == item_fields(LeaderWrite)


def test_each_kind_fills_only_its_own_fields() -> None:
    """A write of one kind leaves the fields of the other kinds empty, so no field changes meaning by kind."""
    emit = LeaderWrite.emit("a", 1, "ns:queue:default", "{}", "sig")
    miss = LeaderWrite.miss("a", 1, "ns:runs:a", "ns:runs-by-time:a", "a@x#0", "{}", 5, 10)
    base = LeaderWrite.base("a", 7, "digest")
    celery = LeaderWrite.celery(
        "a", 1, celery_queue_key="celery", celery_message="{}", celery_db=3, message="{}", runs_key="ns:runs:a",
        runs_index_key="ns:runs-by-time:a", run_id="a@x#0", record="{}", written_ms=5, keep=10,
    )  # fmt: skip
    blank = LeaderWrite("emit", "a")
    used = {
        write.kind: {name for name in item_fields(LeaderWrite) if getattr(write, name) != getattr(blank, name)}
        for write in (emit, miss, base, celery)
    }
    assert used == {
        "emit": {"scheduled_ms", "queue_key", "message", "signature"},
        "miss": {"kind", "scheduled_ms", "runs_key", "runs_index_key", "run_id", "record", "written_ms", "keep"},
        "base": {"kind", "base_ms", "schedule_digest"},
        "celery": {
            "kind", "scheduled_ms", "message", "runs_key", "runs_index_key", "run_id", "record", "written_ms", "keep",
            "celery_queue_key", "celery_message", "celery_db",
        },
    }  # fmt: skip
