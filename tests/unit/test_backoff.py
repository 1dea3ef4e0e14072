"""Backoff: the waits of a daemon retrying while Redis is away, and what it logs."""

from __future__ import annotations

import logging

import pytest

from beatd.daemon import Backoff


@pytest.mark.parametrize(
    ("first", "longest", "failures", "waits"),
    [
        (0.1, 5.0, 4, [0.1, 0.2, 0.4, 0.8]),
        (0.1, 0.3, 4, [0.1, 0.2, 0.3, 0.3]),
        (1.0, 1.0, 2, [1.0, 1.0]),
    ],
)
def test_waits_double_up_to_the_longest(first: float, longest: float, failures: int, waits: list[float]) -> None:
    """Each failure waits twice as long as the one before, never longer than ``longest``."""
    backoff = Backoff(logging.getLogger("test"), "waiting", first, longest)
    assert [backoff.failed(OSError("down")) for _ in range(failures)] == pytest.approx(waits)


def test_an_outage_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    """Many failures log one error; success logs its end once and the next failure starts over from ``first``."""
    backoff = Backoff(logging.getLogger("test"), "worker waiting", 0.1, 5.0)
    with caplog.at_level(logging.INFO, logger="test"):
        for _ in range(5):
            backoff.failed(OSError("refused"))
        backoff.succeeded()
        backoff.succeeded()
        first_again = backoff.failed(OSError("refused"))
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "worker waiting: refused; retrying with backoff up to 5s",
        "Redis reachable again",
        "worker waiting: refused; retrying with backoff up to 5s",
    ]
    assert first_again == 0.1


def test_the_relays_broker_backoff_names_the_broker_when_it_comes_back(caplog: pytest.LogCaptureFixture) -> None:
    """The relay's broker outage ends with "Celery broker reachable again", not "Redis reachable again" (an
    AMQP broker is no Redis, and beatd's own Redis never went away)."""
    from beatd.celery_relay import Relay

    relay = Relay(None, None, None, 10)  # type: ignore[arg-type]  # only its backoff is used
    with caplog.at_level(logging.INFO, logger="beatd.relay"):
        relay.backoff.failed(OSError("refused"))
        relay.backoff.succeeded()
    assert [record.getMessage() for record in caplog.records][-1] == "Celery broker reachable again"
