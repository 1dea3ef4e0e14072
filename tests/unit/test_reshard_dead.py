"""Where a reshard puts dead letters (beatd.reshard_dead): with their job's new shard, naming its queue."""

from __future__ import annotations

import json

from beatd.reshard_dead import Entry, leaving, merged, owner


def _letter(job: str, shard: int, queue: str = "default") -> dict[str, str]:
    return {"message": json.dumps({"job": job}), "queue": f"{{ns:{shard}}}:queue:{queue}"}


TARGETS = {"a": 0, "b": 1, "c": 1}


def _target(job: str | None, shard: int) -> int:
    return TARGETS[job] if job is not None else 0


def _queue(shard: int, name: str) -> str:
    return f"{{ns:{shard}}}:queue:{name}"


def test_owner_reads_the_message_then_the_run_id() -> None:
    """A dead letter's job is its message's, else its run id's, else unknown."""
    assert owner({"message": '{"job": "a"}'}) == "a"
    assert owner({"message": "not json", "run_id": "b@2026-01-01T00:00:00Z#2"}) == "b"
    assert owner({"message": "[]"}) is None


def test_dead_letters_move_to_their_job_s_shard_with_ids_kept_or_the_next_free() -> None:
    """A dead letter of a job now in shard 1 is added there (its queue renamed to shard 1's) and leaves shard 0;
    one whose id is taken in the target gets the next sequence number; the others stay, in id order."""
    streams: dict[int, list[Entry]] = {
        0: [("5-0", _letter("a", 0)), ("7-0", _letter("b", 0))],
        1: [("6-0", _letter("c", 1)), ("7-0", _letter("c", 1, "other"))],
    }
    result = merged(streams, _target, _queue)
    assert result[1] == [
        ("6-0", _letter("c", 1)),
        ("7-0", _letter("c", 1, "other")),
        ("7-1", {**_letter("b", 0), "queue": "{ns:1}:queue:default", "moved_from": "0:7-0"}),
    ]
    assert result[0] == streams[0]  # pass one adds; pass two deletes what left
    assert leaving(streams, _target, _queue) == {0: ["7-0"]}


def test_a_rerun_after_pass_one_adds_nothing_twice() -> None:
    """Pass one again over its own result (a crash before pass two) adds no copy; pass two then deletes."""
    streams: dict[int, list[Entry]] = {0: [("7-0", _letter("b", 0))], 1: [("7-0", _letter("c", 1))]}
    once = merged(streams, _target, _queue)
    assert merged(once, _target, _queue) == once
    assert leaving(once, _target, _queue) == {0: ["7-0"]}


def test_two_dead_letters_with_the_same_content_both_move() -> None:
    """Two entries of one shard alike in every field (a forged message sent twice) both reach the target (they
    had been taken for one, and pass two then deleted both from the source)."""
    streams: dict[int, list[Entry]] = {0: [("100-0", _letter("b", 0)), ("200-0", _letter("b", 0))], 1: []}
    result = merged(streams, _target, _queue)
    assert [entry_id for entry_id, _ in result[1]] == ["100-0", "200-0"]
    assert [fields["moved_from"] for _, fields in result[1]] == ["0:100-0", "0:200-0"]
    assert merged(result, _target, _queue) == result
