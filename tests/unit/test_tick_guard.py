"""A loop step that raises does not end the daemon: logged once with its traceback, counted, backed off."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from beatd.clock import FixedClock
from beatd.daemon import Notifier, Signals, TickGuard, run_loop
from beatd.metrics import Metrics

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def test_run_loop_survives_a_raising_tick(caplog: pytest.LogCaptureFixture) -> None:
    """Three bad steps then good ones: the loop goes on, one traceback, short lines after, three counted."""
    signals, metrics, calls = Signals(), Metrics(), list[int]()

    def tick() -> float:
        calls.append(len(calls))
        if len(calls) <= 3:
            raise ValueError("invalid literal for int() with base 10: 'x'")
        if len(calls) == 5:
            signals.stop = True
        return 0.0

    with caplog.at_level(logging.ERROR, logger="beatd.daemon"):
        run_loop(
            tick, signals=signals, notifier=Notifier({}), clock=FixedClock(T0), reload=lambda: None,
            status=lambda: "", metrics=metrics,
        )  # fmt: skip
    assert len(calls) == 5
    assert metrics.registry.get_sample_value("beatd_loop_errors_total") == 3
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert len(tracebacks) == 1
    assert sum("failed again: ValueError" in record.getMessage() for record in caplog.records) == 2


@pytest.mark.parametrize(("failures", "wait"), [(1, 0.1), (2, 0.2), (3, 0.4), (10, 5.0)])
def test_backoff_grows_to_a_cap_and_resets(failures: int, wait: float) -> None:
    """Consecutive failures back off 0.1 s, doubling, capped at 5 s; a good step resets it."""
    guard = TickGuard(None)

    def bad() -> float:
        raise RuntimeError("boom")

    waits = [guard.run(bad) for _ in range(failures)]
    assert waits[-1] == pytest.approx(wait)
    assert guard.run(lambda: 0.5) == 0.5
    assert guard.run(bad) == pytest.approx(0.1)
