"""The outcome policy, pure: what happens after an attempt ends, and whether a claimed fire may start.

No Redis, no clock, no randomness of its own: callers pass the random draw, so every rule is table-tested.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["AfterAttempt", "StartDecision", "after_attempt", "start_decision"]

RETRYABLE = frozenset({"failed", "timeout"})
"""Statuses that spend a retry; every other end is final."""


@dataclass(frozen=True)
class AfterAttempt:
    """What follows an attempt: ``done`` (the fire is finished), ``retry`` after ``delay_s``, or ``dead`` (out of
    retries); ``reason`` is the sentence the record gets (empty for ``done``)."""

    then: Literal["done", "retry", "dead"]
    delay_s: float = 0.0
    reason: str = ""


def after_attempt(
    status: str,
    attempt: int,
    retries: int,
    retry_delay_s: float,
    retry_delay_max_s: float,
    draw: Callable[[float, float], float],
) -> AfterAttempt:
    """The policy after attempt ``attempt`` (1-based) ended with ``status``: up to ``retries`` retries with full
    jitter exponential backoff (a delay drawn by ``draw(0, ceiling)``, ceiling ``retry_delay_s * 2**(attempt-1)``
    capped at ``retry_delay_max_s``), then dead."""
    if status not in RETRYABLE:
        return AfterAttempt("done")
    if attempt <= retries:
        ceiling = min(retry_delay_max_s, retry_delay_s * 2 ** (attempt - 1))
        delay = draw(0.0, ceiling)
        return AfterAttempt("retry", delay, f"retry in {delay:.1f}s")
    if attempt > retries + 1:  # a dead letter put back by hand runs once more, with no retries of its own
        return AfterAttempt(
            "dead", reason=f"{status} on attempt {attempt} (retried from dead letters; the job allows {retries + 1})"
        )
    return AfterAttempt("dead", reason=f"{status} on attempt {attempt} of {retries + 1}: no retries left")


StartDecision = Literal["run", "wait", "replace"]


def start_decision(overlap: str, *, running_here: bool) -> StartDecision:
    """Whether a claimed fire starts now, given whether a run of its job executes on this worker.

    The claim already skipped (or held back, or deferred) a fire whose job was running when it was claimed,
    here or elsewhere. A run that started here after the claim is a fire of the same job claimed with it or
    just before it (a backlog after a delay): such fires run one after another, instead of skipping each
    other, unless the job's policy is ``replace``, which stops the running one. ``allow`` always runs.
    """
    if overlap == "allow" or not running_here:
        return "run"
    if overlap == "replace":
        return "replace"
    return "wait"
