"""Redis's clock, carried on the monotonic clock: the time by which the beat decides what is due.

Every lease call (acquire, renew) returns Redis's ``TIME``. The beat times the call on its monotonic clock.
Redis read its clock somewhere within the round trip; the midpoint would be the best guess, but it may be
early by half the round trip, and a fire must never be emitted before its instant by Redis's clock. So the
beat takes the reading to have happened when the reply arrived: its "now" is never ahead of Redis's and is
behind by at most one round trip. Between samples that offset is carried on the monotonic clock: a step of
the host's wall clock changes nothing, and replicas whose host clocks disagree by minutes agree on what is
due. Pure: the caller supplies every reading.
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
    """Seconds the sampled call took: the estimate lags Redis's clock by at most this."""

    def observe(self, redis_seconds: float, sent: float, received: float) -> None:
        """Record that Redis read ``redis_seconds`` (epoch) during a call sent at monotonic ``sent`` and
        answered at ``received`` (taken as read at ``received``: the estimate can only lag)."""
        self.offset = redis_seconds - received
        self.round_trip = max(0.0, received - sent)

    def now(self, monotonic: float) -> datetime | None:
        """Redis's time at monotonic reading ``monotonic`` (UTC-aware, ms precision); None before any sample."""
        if self.offset is None:
            return None
        milliseconds = int((self.offset + monotonic) * 1000)
        return _EPOCH + timedelta(milliseconds=milliseconds)
