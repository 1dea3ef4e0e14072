"""Convert RedBeat's entries (read from its Redis) into beatd jobs, through the Celery importer's one path.

Each stored ``definition`` (RedBeatJSONEncoder's JSON: ``{"__type__": "crontab" | "interval" | "rrule" |
"datetime" | "weekday", ...}``) is decoded into the schedule objects Celery (and ``beatd.rrule_import``) know,
and the entries become a ``beat_schedule`` converted by ``celery_import.convert`` in the given time zone,
routed by the project's Celery app when one is given (its ``task_routes``, tasks' own queues and
``task_default_queue``; without it, a bare app's: every entry without ``options.queue`` goes to ``celery``,
said in a top-level note). Each entry is named after its key without the prefix (unique, as RedBeat's keys
are; a different definition name is noted). What only RedBeat has is added here: ``enabled: false`` is kept,
a non-relative interval entry's grid starts at its ``last_run_at`` (so beatd keeps RedBeat's current phase),
a MONTHLY or YEARLY rrule's weekdays are noted (RedBeat keeps no n-th), and an entry whose definition cannot
be read is refused with the reason (``Imported.malformed`` counts them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from beatd.celery_import import Conversion, Converted, convert, every_note
from beatd.rrule_import import MONTHLY, YEARLY, Recurrence
from beatd.store.redbeat_entries import StoredEntry

__all__ = ["Imported", "convert_entries", "decode_definition"]


@dataclass
class Imported:
    """The conversion of RedBeat's entries, and how many of them could not be read at all."""

    conversion: Conversion
    malformed: int


def convert_entries(entries: list[StoredEntry], prefix: str, zone: str, app: Any = None) -> Imported:
    """Convert RedBeat's ``entries`` (as read, in key order) into beatd jobs; crontab entries run in ``zone``
    (RedBeat keeps none: its crontabs run in the Celery app's ``timezone``). ``app``, the project's Celery app
    (only read), routes the entries; None: a bare app's defaults."""
    schedule: dict[str, dict[str, Any]] = {}
    specs: dict[str, dict[str, Any]] = {}  # stored key without the prefix -> what only RedBeat has
    refused: dict[str, Converted] = {}
    for stored in entries:
        name = stored.key.removeprefix(prefix)
        try:
            spec = _spec(stored)
        except ValueError as error:
            refused[name] = Converted(name, name, None, refused=f"{stored.key}: {error}")
            continue
        specs[name] = {key: spec.pop(key) for key in ("name", "enabled", "last_run_at")}
        schedule[name] = spec
    source = "--timezone" if app is None else "--timezone, by default the app's"
    notes = [
        f"RedBeat keeps no time zone: crontab entries run in the Celery app's timezone, converted as {zone} ({source})"
    ]
    if app is None:
        from celery import Celery

        app = Celery("beatd-import-redbeat", set_as_current=False)
        notes.append(
            "no --app given: the project's task_routes, tasks' own queues and task_default_queue were not seen; "
            "entries without options.queue go to the queue 'celery' (pass --app MODULE:APP to route them)"
        )
    conversion = convert(app, beat_schedule=schedule, timezone=zone)
    conversion.notes[:0] = notes
    converted = {entry.entry: entry for entry in conversion.entries}
    conversion.entries = []
    for stored in entries:
        name = stored.key.removeprefix(prefix)
        if name in refused:
            conversion.entries.append(refused[name])
        else:
            conversion.entries.append(_redbeat_extras(converted[name], schedule[name], **specs[name]))
    return Imported(conversion, len(refused))


def _redbeat_extras(
    converted: Converted, spec: dict[str, Any], name: Any, enabled: bool, last_run_at: datetime | None
) -> Converted:
    if name is not None and str(name) != converted.entry:
        converted.notes.append(
            f"RedBeat's definition names it {str(name)!r}: the job is named after its key (unique, as names are not)"
        )
    job = converted.job
    if job is None:
        return converted
    if not enabled:
        job["enabled"] = False
        converted.notes.append("disabled in RedBeat: enabled: false (declared, never scheduled)")
    rule = spec["schedule"]
    if isinstance(rule, Recurrence) and rule.freq in (MONTHLY, YEARLY) and rule.byweekday is not None:
        converted.notes.append(
            "RedBeat stores a weekday without its n (MO(+1) is saved as MO): RedBeat itself now runs this rule on "
            "every such weekday, and so does beatd; if the n-th weekday was meant, beatd cannot express it"
        )
    if "every" in job and "start" not in job and last_run_at is not None and not spec["relative"]:
        anchor = last_run_at.astimezone(UTC).replace(microsecond=last_run_at.microsecond // 1000 * 1000)
        job["start"] = anchor.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        epoch = every_note(job["every"], "the epoch")
        converted.notes = [every_note(job["every"], "start") if note == epoch else note for note in converted.notes]
        converted.notes.append(
            f"start: RedBeat's last_run_at, so beatd's grid keeps the entry's current phase (next run at "
            f"last_run_at + {job['every']}, as RedBeat's)"
        )
    return converted


def _spec(stored: StoredEntry) -> dict[str, Any]:
    """A beat_schedule entry from a stored RedBeat entry; ValueError says why it cannot be read."""
    if stored.error is not None:
        raise ValueError(f"not a RedBeat entry hash: {stored.error}")
    if not stored.definition:
        raise ValueError("in the schedule but has no definition (RedBeat drops it at its next tick)")
    definition = decode_definition(stored.definition)
    if not isinstance(definition.get("task"), str) or not definition["task"]:
        raise ValueError("definition names no task")
    if "schedule" not in definition:
        raise ValueError("definition has no schedule")
    for key, kind in (("args", list), ("kwargs", dict), ("options", dict)):
        if definition.get(key) is not None and not isinstance(definition[key], kind):
            raise ValueError(f"definition's {key} is a {type(definition[key]).__name__}, expected a {kind.__name__}")
    schedule = definition["schedule"]
    return {
        "name": definition.get("name"),
        "task": definition["task"],
        "schedule": schedule,
        "args": definition.get("args") or [],
        "kwargs": definition.get("kwargs") or {},
        "options": definition.get("options") or {},
        "relative": bool(getattr(schedule, "relative", False)),
        "enabled": definition.get("enabled", True) is not False,
        "last_run_at": _last_run_at(stored.meta),
    }


def _last_run_at(meta: str | None) -> datetime | None:
    if not meta:
        return None
    try:
        value = json.loads(meta, object_hook=_object).get("last_run_at")
    except (ValueError, TypeError, AttributeError, KeyError, OverflowError, OSError):
        return None  # meta is only a hint for the phase: a bad one is left out
    return value if isinstance(value, datetime) else None


def decode_definition(text: str) -> dict[str, Any]:
    """RedBeat's ``definition`` JSON with its typed objects decoded (crontab and interval as Celery's schedule
    objects, rrule as a Recurrence, datetimes aware). Raises ValueError saying what is wrong."""
    try:
        definition = json.loads(text, object_hook=_object)
    except json.JSONDecodeError as error:
        raise ValueError(f"definition is not JSON: {error}") from error
    except (TypeError, ValueError, KeyError, OverflowError, OSError) as error:
        raise ValueError(f"definition not understood: {type(error).__name__}: {error}") from error
    if not isinstance(definition, dict):
        raise ValueError(f"definition is a JSON {type(definition).__name__}, expected an object")
    return definition


def _object(value: dict[str, Any]) -> Any:
    """RedBeatJSONDecoder's object hook, without importing RedBeat."""
    kind = value.get("__type__")
    if kind is None:
        return value
    from celery.schedules import crontab
    from celery.schedules import schedule as interval

    parts = {key: item for key, item in value.items() if key != "__type__"}
    if kind == "datetime":
        zone = parts.pop("timezone", "UTC")
        tzinfo = timezone(timedelta(seconds=zone)) if isinstance(zone, int | float) else ZoneInfo(str(zone))
        return datetime(tzinfo=tzinfo, **parts)
    if kind == "interval":
        return interval(run_every=timedelta(seconds=float(parts["every"])), relative=bool(parts.get("relative")))
    if kind == "crontab":
        return crontab(**parts)
    if kind == "weekday":
        return int(parts["wkday"])
    if kind == "rrule":
        for key in ("dtstart", "until"):
            offset = timezone(timedelta(minutes=float(parts.pop(f"{key}_tz", 0) or 0)))
            if parts.get(key) is not None:
                parts[key] = datetime.fromtimestamp(float(parts[key]), tz=offset)
        return Recurrence.from_parts(parts)
    raise ValueError(f"unknown __type__ {kind!r}")
