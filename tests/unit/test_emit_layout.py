"""emit.lua reads its items by the same field names, in the same order, as the LeaderWrite codec sends them."""

from __future__ import annotations

from beatd.store import LeaderWrite
from beatd.store.beat import last_text, read_last
from beatd.store.codec import item_fields, lua_item_fields


def test_emit_lua_item_line_matches_leader_write() -> None:
    """The `local ITEM = {...}` line of emit.lua lists LeaderWrite's fields in declaration order."""
    assert lua_item_fields("emit") == item_fields(LeaderWrite)


def test_each_kind_fills_only_its_own_fields() -> None:
    """A write of one kind leaves the fields of the other kinds empty, so no field changes meaning by kind."""
    emit = LeaderWrite.emit("a", 1, "ns:queue:default", "{}", "sig", "1 schedule d")
    miss = LeaderWrite.miss("a", 1, "ns:runs:a", "ns:runs-by-time:a", "a@x#0", "{}", 5, 10)
    base = LeaderWrite.base("a", 7, "digest")
    celery = LeaderWrite.celery(
        "a", 1, celery_queue_key="celery", celery_message="{}", celery_db=3, last="1 schedule d", runs_key="ns:runs:a",
        runs_index_key="ns:runs-by-time:a", run_id="a@x#0", record="{}", written_ms=5, keep=10,
    )  # fmt: skip
    blank = LeaderWrite("emit", "a")
    used = {
        write.kind: {name for name in item_fields(LeaderWrite) if getattr(write, name) != getattr(blank, name)}
        for write in (emit, miss, base, celery)
    }
    assert used == {
        "emit": {"scheduled_ms", "queue_key", "message", "signature", "last_text"},
        "miss": {"kind", "scheduled_ms", "runs_key", "runs_index_key", "run_id", "record", "written_ms", "keep"},
        "base": {"kind", "base_ms", "schedule_digest"},
        "celery": {
            "kind", "scheduled_ms", "last_text", "runs_key", "runs_index_key", "run_id", "record", "written_ms", "keep",
            "celery_queue_key", "celery_message", "celery_db",
        },
    }  # fmt: skip


def test_the_last_emission_is_kept_short_and_read_back_whole() -> None:
    """``{ns}:last`` keeps instant, trigger and digest of a fire; read back they give what status shows (fire id
    included), and the whole-message JSON an older beatd kept still reads."""
    text = last_text(1_893_456_060_000, "catchup", "0123456789abcdef")
    assert len(text) < 45
    assert read_last("a", text) == {
        "fire_id": "a@2030-01-01T00:01:00Z", "job": "a", "scheduled_at": "2030-01-01T00:01:00Z",
        "trigger": "catchup", "config_digest": "0123456789abcdef",
    }  # fmt: skip
    assert read_last("a", '{"job": "a", "trigger": "schedule"}') == {"job": "a", "trigger": "schedule"}
    assert read_last("a", "garbage") == {} and read_last("a", "{not json") == {}
