"""The Trigger interface: when a job is due.

A trigger is pure: ``next_after(instant)`` depends only on the trigger and the argument, never on when the
process started or on a wall clock, so every replica and every restart computes the same instants.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = ["Trigger", "ensure_aware"]


@runtime_checkable
class Trigger(Protocol):
    """When a job is due.

    ``next_after(instant)`` returns the first scheduled instant strictly after ``instant`` (a timezone-aware
    datetime), as a timezone-aware datetime in UTC, or ``None`` when the trigger will never fire again.
    Successive calls are strictly increasing: ``next_after(t) > t``.
    """

    def next_after(self, instant: datetime) -> datetime | None: ...

    def describe(self) -> str:
        """The schedule in words, for ``beatd jobs`` (``at 00:05 every day``)."""
        ...


def ensure_aware(instant: datetime) -> datetime:
    """Return ``instant`` in UTC; a naive datetime is a programming error, not a user error."""
    if instant.tzinfo is UTC:  # most instants already are: astimezone would copy them
        return instant
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise TypeError(f"naive datetime {instant!r}: triggers take timezone-aware instants")
    return instant.astimezone(UTC)
