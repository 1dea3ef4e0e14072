"""When a running daemon must read the deployment's layout before it goes on (beatd.layout.LayoutWatch), with an
injected clock and a Redis that does not answer (a closed port: refused at once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from beatd.config import load_config
from beatd.layout import LayoutWatch
from beatd.store import connect


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _watch(tmp_path: Path, clock: Clock, *, cluster: bool) -> LayoutWatch:
    path = tmp_path / "beatd.yaml"
    path.write_text("redis: {url: 'redis://127.0.0.1:1/0'}\nnamespace: ns\nshards: 2\njobs: {}\n")
    watch = LayoutWatch(connect("redis://127.0.0.1:1/0", timeout=0.2), load_config(path, {}), clock, 10.0,
                        checked=True)  # fmt: skip
    watch.outage_waits = not cluster  # as `redis.cluster: true` sets it (a cluster cannot be started here)
    return watch


@pytest.mark.parametrize(
    ("cluster", "steps", "expected"),
    [
        # One server: an outage shorter than 10 s since the last answered check goes on; longer waits.
        (False, [1, 6, 9, 10.5, 12], [True, True, True, False, False]),
        # A cluster: an unanswered check (shard 0's node down) never stops the other shards...
        (True, [1, 6, 9, 10.5, 12, 20], [True, True, True, True, True, True]),
        # ...but a stall of the daemon itself (no step for over 10 s) does, until a check is answered.
        (True, [1, 12, 13], [True, False, False]),
    ],
)
def test_when_a_daemon_waits_for_the_layout(
    tmp_path: Path, cluster: bool, steps: list[float], expected: list[bool]
) -> None:
    clock = Clock()
    watch = _watch(tmp_path, clock, cluster=cluster)
    found = []
    for at in steps:
        clock.now = at
        found.append(watch.holds())
    assert found == expected
