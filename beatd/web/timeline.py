"""The job page's run timeline: each run of a window as a mark on a time axis (pure; the template draws it
as inline SVG). A mark's x is when the fire was scheduled, its height grows with the run's duration, its class
is its status; ``missed``, ``skipped`` and ``expired`` fires get a short mark below the axis."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from beatd.messages import parse_utc

__all__ = ["HEIGHT", "WIDTH", "Mark", "Tick", "Timeline", "timeline"]

WIDTH = 960
HEIGHT = 180
_LEFT, _RIGHT, _TOP, _AXIS = 40, 10, 10, 140
"""Margins: the axis runs at y = _AXIS; marks of runs grow up from it, marks of fires not run hang below."""

_NOT_RUN = frozenset({"missed", "skipped", "expired", "cancelled"})


@dataclass(frozen=True)
class Mark:
    """One run: a bar at ``x`` (px) from ``y`` of ``height``, ``status`` (its CSS class), ``title`` (hover text)."""

    x: float
    y: float
    width: float
    height: float
    status: str
    title: str
    run_id: str


@dataclass(frozen=True)
class Tick:
    """An axis label at ``x``."""

    x: float
    label: str


@dataclass(frozen=True)
class Timeline:
    """What the SVG shows: marks, axis ticks, the longest duration (s) the heights scale to."""

    width: int
    height: int
    axis_y: int
    marks: list[Mark]
    ticks: list[Tick]
    longest_s: float
    start: str
    end: str


def timeline(records: Sequence[dict[str, Any]], start: datetime, end: datetime) -> Timeline:
    """The timeline of ``records`` (stored run record objects) scheduled in ``[start, end]`` (aware instants)."""
    span = (end - start).total_seconds() or 1.0
    inner = WIDTH - _LEFT - _RIGHT
    durations = [float(record.get("duration_s") or 0.0) for record in records]
    longest = max(durations, default=0.0)
    scale = math.log1p(longest) or 1.0
    marks = []
    for record, duration in zip(records, durations, strict=True):
        at = parse_utc(record["scheduled_at"])
        if not start <= at <= end:
            continue
        x = _LEFT + (at - start).total_seconds() / span * inner
        status = str(record["status"])
        if status in _NOT_RUN:
            y, height = _AXIS + 4.0, 12.0
        else:  # log scale: a 2 s run among 1 h ones stays visible
            height = 6 + (_AXIS - _TOP - 6) * math.log1p(duration) / scale
            y = float(_AXIS) - height
        title = f"{record['scheduled_at']} {status}" + (f" {duration:.3f}s" if record.get("duration_s") else "")
        marks.append(Mark(round(x, 1), round(y, 1), 3.0, round(height, 1), status, title, str(record["run_id"])))
    return Timeline(WIDTH, HEIGHT, _AXIS, marks, _ticks(start, end, inner), round(longest, 3),
                    start.isoformat(), end.isoformat())  # fmt: skip


def _ticks(start: datetime, end: datetime, inner: int) -> list[Tick]:
    """About six evenly spaced labels: hours for a day, dates for a week."""
    span = end - start
    step = span / 6
    label = "%H:%M" if span <= timedelta(days=1) else "%a %d %H:%M"
    ticks = []
    for index in range(7):
        at = start + step * index
        x = 40 + (at - start).total_seconds() / (span.total_seconds() or 1.0) * inner
        ticks.append(Tick(round(x, 1), at.strftime(label)))
    return ticks
