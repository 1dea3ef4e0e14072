"""Signals: what the daemon loop's signal handlers ask for."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from beatd.daemon import Signals


@pytest.fixture
def signals() -> Iterator[Signals]:
    """Signals installed in this process; the previous handlers are put back afterwards."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    installed = Signals()
    installed.install()
    yield installed
    for signum, handler in previous.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize(
    ("sent", "stop", "stop_now"),
    [
        ([signal.SIGTERM], True, False),
        ([signal.SIGINT], True, False),
        ([signal.SIGINT, signal.SIGINT], True, True),
        ([signal.SIGTERM, signal.SIGINT], True, True),
        ([signal.SIGHUP], False, False),
        ([signal.SIGHUP, signal.SIGTERM], True, False),
    ],
)
def test_a_second_stop_asks_to_stop_now(signals: Signals, sent: list[int], stop: bool, stop_now: bool) -> None:
    """The first SIGTERM or SIGINT asks for a stop; a second one while stopping asks to stop at once."""
    for signum in sent:
        os.kill(os.getpid(), signum)  # handled in this (the main) thread before kill returns
    assert (signals.stop, signals.stop_now.is_set(), signals.wake.is_set()) == (stop, stop_now, True)
