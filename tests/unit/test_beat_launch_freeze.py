"""What the beat's loop freezes while it launches: never the garbage of a tick that failed."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from beatd.beat import Beat, LaunchFreezer
from beatd.clock import SystemClock
from beatd.config import load_config
from beatd.identity import Identity
from beatd.keys import Keys
from beatd.runtime_follow import RuntimeFollower
from beatd.store import Store, connect
from beatd.store.jobs import JobStore
from tests.conftest import WriteFiles

CONFIG = """
    redis: {url: "redis://127.0.0.1:1/0"}
    jobs:
      a: {every: 1s, command: ["true"]}
"""


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """The test's frozen objects are handed back to the collector afterwards."""
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
def test_a_launch_with_redis_unreachable_freezes_no_garbage(write_files: WriteFiles) -> None:
    """A beat launched while Redis is unreachable fails each tick; those ticks' objects (exceptions, tracebacks:
    cycles) are not frozen, where the collector could never free them."""
    config = load_config(write_files({"beatd.yaml": CONFIG}), {})
    clock = SystemClock()
    store = Store(connect(config.settings.redis), Keys(config.namespace))
    follower = RuntimeFollower(JobStore(store.client, store.keys), config, clock, "beat x", store.audit)
    beat = Beat(config, store, Identity.here(clock.now()), clock=clock, runtime=follower)
    freezer = LaunchFreezer(beat)
    gc.freeze()
    before = gc.get_freeze_count()
    for _ in range(50):
        beat.tick(clock.now(), clock.monotonic())
        freezer.after_tick(clock.monotonic())
    assert beat.unavailable_since is not None and not beat.runtime_read
    assert gc.get_freeze_count() - before < 100  # each failed tick left ~45 objects frozen
