"""Triggers: when a job is due. Pure, timezone-aware, the same on every replica.

``CronTrigger`` (five-field cron in an IANA zone, with beatd's DST rules), ``IntervalTrigger`` (every fixed
period since an anchor), ``AtTrigger`` (given instants); ``parse_instant`` reads instants as users write
them; ``jitter_offset`` spreads fires deterministically; :mod:`beatd.triggers.zones` knows time zones.
"""

from beatd.triggers.at import AtTrigger, format_instant, parse_instant
from beatd.triggers.base import Trigger, ensure_aware
from beatd.triggers.cron import CronTrigger
from beatd.triggers.cron_fields import CronFields
from beatd.triggers.interval import EPOCH, IntervalTrigger
from beatd.triggers.jitter import jitter_offset
from beatd.triggers.zones import (
    load_zone,
    next_transition,
    offset_at,
    offset_segment_end,
    resolve_wall_time,
    transitions,
)

__all__ = [
    "EPOCH",
    "AtTrigger",
    "CronFields",
    "CronTrigger",
    "IntervalTrigger",
    "Trigger",
    "ensure_aware",
    "format_instant",
    "jitter_offset",
    "load_zone",
    "next_transition",
    "offset_at",
    "offset_segment_end",
    "parse_instant",
    "resolve_wall_time",
    "transitions",
]
