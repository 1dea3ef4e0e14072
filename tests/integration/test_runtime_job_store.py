"""The runtime job store against a real redis-server: versions, the change stream read from a cursor, and a
whole read once a reader's place in the stream was trimmed away."""

from __future__ import annotations

import redis

from beatd.keys import Keys
from beatd.store.jobs import START, JobChange, JobStore, StoredJob
from tests.redis_server import RedisServer


def _put(store: JobStore, *names: str) -> list[int]:
    return store.write([JobChange.put(name, {"every": "1h"}, "me", "now") for name in names], None)


def _scan_all(store: JobStore) -> set[str]:
    cursor, names = 0, set[str]()
    while True:
        cursor, page, _ = store.scan(cursor, 1)
        names |= set(page)
        if cursor == 0:
            return names


def test_changes_are_read_from_the_cursor_in_steps(shared_redis: RedisServer, namespace: str) -> None:
    """A reader gets the changed entries only, at most `limit` changes a poll, and None once caught up."""
    store = JobStore(shared_redis.client(), Keys(namespace))
    first = store.changes(START, -1, 10)
    assert first is not None and first.full and not first.entries
    assert _put(store, "a", "b", "c") == [1, 2, 3]
    step = store.changes(first.cursor, first.version, 2)
    assert step is not None and not step.full and step.more and set(step.entries) == {"a", "b"}
    rest = store.changes(step.cursor, step.version, 2)
    assert rest is not None and not rest.more and set(rest.entries) == {"c"} and rest.version == 3
    assert store.changes(rest.cursor, rest.version, 2) is None
    assert store.write([JobChange.delete("a"), JobChange.delete("nope")], None) == [4, 0]
    gone = store.changes(rest.cursor, rest.version, 10)
    assert gone is not None and gone.entries == {"a": None}
    stored = StoredJob.parse("b", store.entries(["b"])["b"] or "")
    assert (stored.version, stored.spec, stored.by) == (2, {"every": "1h"}, "me")


def test_a_reader_whose_changes_were_trimmed_reads_everything(shared_redis: RedisServer, namespace: str) -> None:
    """When the entries after a reader's cursor are gone from the capped stream, it is told to read every job."""
    client = shared_redis.client()
    store = JobStore(client, Keys(namespace))
    _put(store, "a")
    seen = store.changes(START, -1, 10)
    assert seen is not None
    _put(store, "b", "c")
    client.xtrim(Keys(namespace).runtime_changes, maxlen=1, approximate=False)  # "b" (version 2) is gone
    found = store.changes(seen.cursor, seen.version, 10)
    assert found is not None and found.full and not found.entries
    assert _scan_all(store) == {"a", "b", "c"}


def test_a_reader_whose_change_stream_is_gone_reads_everything(shared_redis: RedisServer, namespace: str) -> None:
    """When the change stream key is gone while the version moved past the reader's, it is told to read every job."""
    client = shared_redis.client()
    store = JobStore(client, Keys(namespace))
    _put(store, "a")
    seen = store.changes(START, -1, 10)
    assert seen is not None
    _put(store, "b")
    client.delete(Keys(namespace).runtime_changes)
    found = store.changes(seen.cursor, seen.version, 10)
    assert found is not None and found.full and not found.entries
    assert _scan_all(store) == {"a", "b"}


def test_a_full_read_works_where_info_is_refused(shared_redis: RedisServer, namespace: str) -> None:
    """A server that refuses INFO to beatd's user (a managed Redis, an ACL) still gives pages, without an id."""
    admin = shared_redis.client()
    user = f"noinfo-{namespace}"
    admin.acl_setuser(user, enabled=True, passwords=["+secret"], commands=["+@all", "-info"], keys=["*"])
    try:
        store = JobStore(redis.Redis(port=shared_redis.port, username=user, password="secret",
                                     decode_responses=True), Keys(namespace))  # fmt: skip
        _put(store, "a", "b")
        assert store.scan(0, 10) == (0, store.entries(["a", "b"]), "")
    finally:
        admin.acl_deluser(user)
