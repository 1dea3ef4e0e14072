"""Where "now" comes from. Code that needs the time takes a Clock, so tests can pass a fixed one."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "FixedClock", "SystemClock"]


class Clock(Protocol):
    """A source of the current instant (UTC-aware) and of monotonic seconds for measuring waits."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


@dataclass(frozen=True)
class SystemClock:
    """The real clock; ``skew`` (s) shifts its wall time (a test hook: ``BEATD_CLOCK_SKEW``, see Runtime)."""

    skew: float = 0.0

    def now(self) -> datetime:
        """The current instant, UTC-aware."""
        return datetime.now(UTC) + timedelta(seconds=self.skew) if self.skew else datetime.now(UTC)

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never go backwards."""
        return time.monotonic()


@dataclass
class FixedClock:
    """A clock that stands still until told to move: ``advance(seconds)``."""

    instant: datetime
    elapsed: float = 0.0

    def now(self) -> datetime:
        """The instant the clock was set to."""
        return self.instant

    def monotonic(self) -> float:
        """Seconds advanced so far."""
        return self.elapsed

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""

        self.instant += timedelta(seconds=seconds)
        self.elapsed += seconds
