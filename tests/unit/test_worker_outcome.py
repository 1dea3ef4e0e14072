"""The worker's outcome policy, pure and table-driven: retries, backoff, dead, and when a claimed fire starts."""

from __future__ import annotations

import pytest

from beatd.worker.outcome import AfterAttempt, after_attempt, start_decision


def highest(low: float, high: float) -> float:
    """A draw that always takes the ceiling, so the backoff bound is visible."""
    return high


@pytest.mark.parametrize(
    ("status", "attempt", "retries", "expected"),
    [
        ("succeeded", 1, 3, AfterAttempt("done")),
        ("cancelled", 1, 3, AfterAttempt("done")),
        ("skipped", 1, 3, AfterAttempt("done")),
        ("failed", 1, 3, AfterAttempt("retry", 10.0, "retry in 10.0s")),
        ("timeout", 2, 3, AfterAttempt("retry", 20.0, "retry in 20.0s")),
        ("failed", 3, 3, AfterAttempt("retry", 25.0, "retry in 25.0s")),  # capped by retry_delay_max
        ("failed", 4, 3, AfterAttempt("dead", 0.0, "failed on attempt 4 of 4: no retries left")),
        ("timeout", 1, 0, AfterAttempt("dead", 0.0, "timeout on attempt 1 of 1: no retries left")),
        (
            "failed",
            5,
            3,
            AfterAttempt("dead", 0.0, "failed on attempt 5 (retried from dead letters; the job allows 4)"),
        ),
    ],
)
def test_after_attempt(status: str, attempt: int, retries: int, expected: AfterAttempt) -> None:
    """Failures and timeouts are retried with capped exponential backoff until the retries run out."""
    assert after_attempt(status, attempt, retries, 10.0, 25.0, highest) == expected


def test_backoff_draws_between_zero_and_the_ceiling() -> None:
    """Full jitter: the policy asks the draw for a delay between 0 and the ceiling of this attempt."""
    asked: list[tuple[float, float]] = []
    after_attempt("failed", 2, 5, 1.5, 60.0, lambda low, high: asked.append((low, high)) or 0.25)
    assert asked == [(0.0, 3.0)]


@pytest.mark.parametrize(
    ("overlap", "running_here", "expected"),
    [
        ("allow", True, "run"),
        ("allow", False, "run"),
        ("skip", False, "run"),
        ("skip", True, "wait"),
        ("buffer_one", True, "wait"),
        ("buffer_one", False, "run"),
        ("replace", True, "replace"),
        ("replace", False, "run"),
    ],
)
def test_start_decision(overlap: str, running_here: bool, expected: str) -> None:
    """A claimed fire that finds a later-started run of its job here waits for it (or replaces it)."""
    assert start_decision(overlap, running_here=running_here) == expected
