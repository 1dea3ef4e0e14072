"""Durations as users write them: ``250ms``, ``30s``, ``5m``, ``1h30m``, ``2d``, ``1w``; a bare number is seconds."""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache

from beatd.errors import ScheduleError

__all__ = ["format_duration", "parse_duration"]

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_EXPECTED = "expected a duration such as 250ms, 30s, 5m, 1h30m, 2d, or a number of seconds"


MAX_DURATION = timedelta(days=36_500)
"""Longest duration accepted (a century): longer ones are surely mistakes and overflow date arithmetic."""


def parse_duration(value: object) -> timedelta:
    """Parse a duration from YAML: an int/float (seconds), a string of unit parts, or a timedelta.

    Raises :class:`ScheduleError` naming what was expected. Negative durations are rejected here; whether zero
    is allowed is the caller's rule.
    """
    if isinstance(value, timedelta):
        return value
    duration = _parse_text(value) if isinstance(value, str) else _parse(value)
    if duration > MAX_DURATION:
        raise ScheduleError(f"invalid duration {value!r}: longer than {MAX_DURATION.days} days")
    return duration


@lru_cache(maxsize=4096)
def _parse_text(value: str) -> timedelta:
    """Configs repeat the same few duration strings (``10s``) thousands of times: parse each once."""
    return _parse(value)


def _parse(value: object) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ScheduleError(f"invalid duration {value!r}: {_EXPECTED}")
    if isinstance(value, int | float):
        if value < 0:
            raise ScheduleError(f"invalid duration {value!r}: must not be negative")
        if value != value or value > MAX_DURATION.total_seconds():  # NaN or far too long
            raise ScheduleError(f"invalid duration {value!r}: longer than {MAX_DURATION.days} days")
        return timedelta(seconds=value)
    text = value.strip().replace(" ", "")
    if _NUMBER.fullmatch(text):
        seconds = float(text)
        if seconds > MAX_DURATION.total_seconds():
            raise ScheduleError(f"invalid duration {value!r}: longer than {MAX_DURATION.days} days")
        return timedelta(seconds=seconds)
    position, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(text) or position == 0:
        _fail(value)
    if total > MAX_DURATION.total_seconds():
        raise ScheduleError(f"invalid duration {value!r}: longer than {MAX_DURATION.days} days")
    return timedelta(seconds=total)


def _fail(value: object) -> timedelta:
    raise ScheduleError(f"invalid duration {value!r}: {_EXPECTED}")


@lru_cache(maxsize=1024)  # the config digest formats every duration of every job: most are equal
def format_duration(duration: timedelta) -> str:
    """Render a duration in the shortest unit form that parses back to it (``1h30m``, ``250ms``, ``0s``)."""
    milliseconds = round(duration.total_seconds() * 1000)
    if milliseconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, milliseconds = divmod(milliseconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
