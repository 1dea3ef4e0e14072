"""Each batched Lua script and its Python codec agree on the item layout, and share one unpack limit."""

from __future__ import annotations

import re

import pytest

from beatd.store import LeaderWrite
from beatd.store.base import script
from beatd.store.beat import StartWrite
from beatd.store.codec import UNPACK_LIMIT, item_fields, lua_item_fields
from beatd.store.dead_letters import DeadLetter, DeadLetterAction
from beatd.store.jobs import JobChange
from beatd.store.runs import ClaimItem, FinishItem, RunLease
from beatd.store.upkeep import ExpiredFire, Retention, StaleHeartbeat, WaitingEntry


@pytest.mark.parametrize(
    ("name", "item"),
    [
        ("claim", ClaimItem),
        ("finish", FinishItem),
        ("dead_letter", DeadLetter),
        ("unclaim", RunLease),
        ("extend", RunLease),
        ("settle_dead", DeadLetterAction),
        ("sweep_expired", ExpiredFire),
        ("sweep_history", Retention),
        ("sweep_heartbeats", StaleHeartbeat),
        ("send", LeaderWrite),
        ("put_jobs", JobChange),
        ("start", StartWrite),
    ],
)
def test_lua_item_line_matches_the_dataclass(name: str, item: type) -> None:
    """The script's `local ITEM = {...}` names the dataclass's fields in the same order."""
    assert lua_item_fields(name) == item_fields(item)


def test_the_backlog_reply_items_match_the_named_tuple() -> None:
    """backlog.lua's `local REPLY_ITEM = {...}` names WaitingEntry's fields in the same order."""
    assert lua_item_fields("backlog", "REPLY_ITEM") == item_fields(WaitingEntry)


def test_the_relay_reply_items_match_the_named_tuple() -> None:
    """relay.lua's `local REPLY_ITEM = {...}` names OutboxEntry's fields in the same order."""
    from beatd.store.outbox import OutboxEntry

    assert lua_item_fields("relay", "REPLY_ITEM") == item_fields(OutboxEntry)


def test_the_prelude_and_the_codec_share_the_unpack_limit() -> None:
    """`UNPACK_LIMIT` in the Lua prelude is the Python constant."""
    prelude = script("_prelude", prelude=False)
    found = re.search(r"^local UNPACK_LIMIT = (\d+)$", prelude, re.MULTILINE)
    assert found is not None and int(found[1]) == UNPACK_LIMIT


def test_no_script_unpacks_outside_the_prelude() -> None:
    """Every script chunks through the prelude: none calls unpack() itself."""
    from importlib import resources

    folder = resources.files("beatd.store") / "lua"
    offenders = [
        entry.name
        for entry in folder.iterdir()
        if entry.name.endswith(".lua") and entry.name != "_prelude.lua" and "unpack(" in entry.read_text()
    ]
    assert offenders == [] or offenders == ["emit.lua"]  # emit.lua is ported in the beat change
