"""Time zones: loading them by IANA name, finding their UTC offset transitions, resolving wall times.

:mod:`zoneinfo` has no public API for a zone's transitions, so :func:`transitions` finds them by probing
``utcoffset`` every few hours across a year and bisecting each change to the exact second. Results are
memoised per ``(zone, year)``; every function here is pure (the same arguments give the same answer).

A *transition* is the first UTC instant at which a zone's UTC offset differs from the offset one second
earlier. Changes of abbreviation or of the DST flag that keep the offset are not transitions: only the
offset decides wall times.
"""

from __future__ import annotations

import bisect
import difflib
import functools
import zoneinfo
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from beatd.errors import ScheduleError
from beatd.triggers.base import ensure_aware

__all__ = [
    "load_zone",
    "next_transition",
    "offset_at",
    "offset_segment_end",
    "resolve_wall_time",
    "transitions",
]

_PROBE_STEP = timedelta(hours=3)
_ONE_SECOND = timedelta(seconds=1)
_MACHINE_DEPENDENT = frozenset({"localtime", "posixrules"})


def load_zone(name: str) -> ZoneInfo:
    """Return the IANA time zone called ``name`` (``Europe/London``, ``UTC``).

    Raises :class:`ScheduleError` for an unknown name, suggesting the closest known name when there is one.
    ``localtime`` and ``posixrules`` are refused: they are files whose meaning differs between machines, and
    every replica must read a schedule the same way.
    """
    message = f"unknown time zone {name!r}, expected an IANA name such as Europe/London"
    if name in _MACHINE_DEPENDENT:
        raise ScheduleError(f"{message} (the zone of this machine may differ from that of other replicas)")
    try:
        return ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, OSError) as error:
        suggestion = _closest_zone_name(name)
        if suggestion is not None:
            message += f" (did you mean {suggestion!r}?)"
        raise ScheduleError(message) from error


def _closest_zone_name(name: str) -> str | None:
    if not isinstance(name, str):
        return None
    names = sorted(zoneinfo.available_timezones() - _MACHINE_DEPENDENT)
    by_folded = {known.casefold(): known for known in names}
    if name.casefold() in by_folded:
        return by_folded[name.casefold()]
    matches = difflib.get_close_matches(name.casefold(), list(by_folded), n=1, cutoff=0.6)
    return by_folded[matches[0]] if matches else None


def _utcoffset_of_utc(zone: ZoneInfo, utc: datetime) -> timedelta:
    offset = utc.astimezone(zone).utcoffset()
    return offset if offset is not None else timedelta(0)


def offset_at(zone: ZoneInfo, utc: datetime) -> timedelta:
    """The UTC offset of ``zone`` in force at the UTC-aware instant ``utc``."""
    return _utcoffset_of_utc(zone, ensure_aware(utc))


@functools.lru_cache(maxsize=4096)
def transitions(zone: ZoneInfo, year: int) -> tuple[datetime, ...]:
    """Every UTC offset transition of ``zone`` in UTC calendar year ``year``, ascending, UTC-aware.

    Found by probing the offset every three hours and bisecting each change to the second, so two
    transitions less than three hours apart that cancel each other out are not seen (no zone in the IANA
    database does that in years after 1970). Memoised per ``(zone, year)``.
    """
    if not 1 < year < 9999:
        return ()
    start = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    found: list[datetime] = []
    # Starting one second early lets a transition at exactly 00:00:00 UTC on 1 January be seen.
    low = start - _ONE_SECOND
    low_offset = _utcoffset_of_utc(zone, low)
    while low < end - _ONE_SECOND:
        high = min(low + _PROBE_STEP, end - _ONE_SECOND)
        high_offset = _utcoffset_of_utc(zone, high)
        if high_offset != low_offset:
            found.append(_bisect_transition(zone, low, low_offset, high))
        low, low_offset = high, high_offset
    return tuple(found)


def _bisect_transition(zone: ZoneInfo, low: datetime, low_offset: timedelta, high: datetime) -> datetime:
    """The first second in ``(low, high]`` whose offset differs from ``low_offset``."""
    low_seconds, high_seconds = 0, int((high - low).total_seconds())
    while high_seconds - low_seconds > 1:
        middle = (low_seconds + high_seconds) // 2
        if _utcoffset_of_utc(zone, low + timedelta(seconds=middle)) == low_offset:
            low_seconds = middle
        else:
            high_seconds = middle
    return low + timedelta(seconds=high_seconds)


def next_transition(zone: ZoneInfo, after_utc: datetime) -> datetime | None:
    """The first transition of ``zone`` strictly after the aware instant ``after_utc``, as UTC.

    Looks through the rest of ``after_utc``'s UTC year and the whole next year; returns ``None`` when the
    offset does not change in that window (zones without daylight saving time).
    """
    after = ensure_aware(after_utc)
    for year in (after.year, after.year + 1):
        found = transitions(zone, year)
        index = bisect.bisect_right(found, after)
        if index < len(found):
            return found[index]
    return None


def resolve_wall_time(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of the naive wall time ``wall`` in ``zone``, by the wall-time rule of beatd.

    A wall time that exists once maps to that instant; one that occurs twice (the clocks went back) maps
    to its first occurrence; one that does not exist (the clocks went forward over it) maps to the
    transition instant that skipped it, the first instant after the gap. The mapping is monotone: a later
    wall time never maps to an earlier instant.
    """
    if wall.tzinfo is not None:
        raise TypeError(f"aware datetime {wall!r}: resolve_wall_time takes a naive wall time")
    wall = wall.replace(fold=0)
    before = zone.utcoffset(wall)  # fold=0: the offset in force before any transition at this wall time
    after = zone.utcoffset(wall.replace(fold=1))
    if before is None or after is None:
        raise TypeError(f"zone {zone!r} gives no UTC offset for {wall!r}")
    if before >= after:
        # Exists once (equal offsets) or twice (clocks went back): fold=0 is the first occurrence.
        return (wall - before).replace(tzinfo=UTC)
    # In a gap: the transition lies in (wall - after, wall - before].
    transition = next_transition(zone, (wall - after).replace(tzinfo=UTC))
    if transition is None:  # pragma: no cover - zoneinfo reported a gap, so a transition exists
        raise AssertionError(f"no transition found for the gap at {wall} in {zone}")
    return transition


def offset_segment_end(zone: ZoneInfo, utc: datetime) -> datetime:
    """The end (exclusive) of the run of constant offset containing ``utc``, capped at the end of its year.

    The cap keeps the answer cheap for zones without transitions; a caller walking forward simply
    starts a new run there.
    """
    found = transitions(zone, utc.year)
    index = bisect.bisect_right(found, utc)
    if index < len(found):
        return found[index]
    if utc.year >= 9999:
        return datetime.max.replace(tzinfo=UTC)
    return datetime(utc.year + 1, 1, 1, tzinfo=UTC)
