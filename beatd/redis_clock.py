"""Redis's clock, carried on the monotonic clock: the time by which the beat decides what is due.

Every lease call (acquire, renew) returns Redis's ``TIME``. The beat measures the call on its monotonic
clock and takes Redis's time to have been read at the midpoint of the round trip, so it knows
``redis time - monotonic`` to within half a round trip. Between samples that offset is carried on the
monotonic clock: a step of the host's wall clock changes nothing, and replicas whose host clocks disagree
by minutes agree on what is due. Pure: the caller supplies every reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["RedisClock"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class RedisClock:
    """The latest estimate of Redis's time as an offset from the monotonic clock (None before any sample)."""

    offset: float | None = None
    """Redis epoch seconds minus monotonic seconds, at the last sample."""
    round_trip: float = 0.0
    """Seconds the sampled call took (the estimate is good to half of it)."""

    def observe(self, redis_seconds: float, sent: float, received: float) -> None:
        """Record that Redis read ``redis_seconds`` (epoch) during a call sent at monotonic ``sent`` and
        answered at ``received``."""
        self.offset = redis_seconds - (sent + received) / 2
        self.round_trip = max(0.0, received - sent)

    def now(self, monotonic: float) -> datetime | None:
        """Redis's time at monotonic reading ``monotonic`` (UTC-aware, ms precision); None before any sample."""
        if self.offset is None:
            return None
        milliseconds = int((self.offset + monotonic) * 1000)
        return _EPOCH + timedelta(milliseconds=milliseconds)
