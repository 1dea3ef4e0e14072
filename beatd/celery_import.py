"""Convert a Celery app's ``beat_schedule`` into beatd jobs, saying every difference in meaning per entry.

``convert(app)`` reads the app's schedule and settings (``timezone``, ``enable_utc``, ``result_backend``) and
returns, per entry, the job it becomes (a mapping, ready for YAML) or why it cannot, and the notes on what
changes. Each entry's queue is resolved as Celery beat's send would: the task's own options (``@app.task(
queue=...)``) under the entry's, then ``app.amqp.router.route`` (``task_routes``); the queue the message lands
on is written as ``options.queue`` (when it is not the default queue). Kept options are checked against
beatd's ``CeleryOptions`` and made plain JSON (a kombu ``Queue`` or ``Exchange`` becomes its name). Nothing
here connects anywhere: the app is only read. Celery is imported only to recognise its schedule classes
(``beatd[celery]``).
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import ValidationError

from beatd.config.model import CELERY_RESERVED_HEADERS, NAME_PATTERN, CeleryOptions
from beatd.durations import format_duration
from beatd.errors import ScheduleError
from beatd.rrule_import import Recurrence, has_daylight_saving, to_schedule
from beatd.triggers import CronTrigger

__all__ = ["Converted", "convert", "every_note", "known_zone", "render_yaml"]

_OPTIONS = ("queue", "priority", "headers", "expires", "time_limit", "soft_time_limit")
_ROUTING = ("exchange", "routing_key")
_KOMBU_DEFAULTS = ("priority_steps", "sep", "global_keyprefix")
"""broker_transport_options beatd does not read: it writes kombu's default queue names (keys.celery_queue)."""
_DURATION_OPTIONS = ("expires", "time_limit", "soft_time_limit")
_INVALID_NAME_CHARACTER = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass
class Converted:
    """One ``beat_schedule`` entry: the beatd job (None when refused), its name, and the notes."""

    entry: str
    name: str
    job: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)
    refused: str | None = None


@dataclass
class Conversion:
    """A whole app: the top-level settings, the entries, and notes about the app as a whole."""

    timezone: str
    celery: dict[str, Any]
    entries: list[Converted]
    notes: list[str] = field(default_factory=list)


def convert(app: Any, beat_schedule: dict[str, Any] | None = None, timezone: str | None = None) -> Conversion:
    """Convert ``app.conf.beat_schedule`` (a Celery app) into beatd jobs, in the schedule's order; or, given,
    ``beat_schedule`` (routed by the app's task_routes and tasks) in ``timezone`` instead of the app's."""
    conf = app.conf
    notes: list[str] = []
    given = timezone is not None
    if timezone is None:
        timezone = str(conf.timezone) if conf.timezone else "UTC"
    if not given and not conf.timezone and not conf.enable_utc:
        notes.append(
            "enable_utc is False and no timezone is set: Celery reads crontab in the host's local time; "
            "timezone: UTC was written, set your host's IANA zone instead"
        )
    try:
        ZoneInfo(timezone)
    except (KeyError, ValueError):
        notes.append(f"timezone {timezone!r} is not an IANA zone beatd knows: fix the top-level timezone")
    celery: dict[str, Any] = {"broker_url": "${CELERY_BROKER_URL}"}
    if conf.result_backend:
        celery["result_backend"] = "${CELERY_RESULT_BACKEND}"
    default_queue = str(conf.task_default_queue or "celery")
    if default_queue != "celery":
        celery["default_queue"] = default_queue
    transport = dict(conf.broker_transport_options or {})
    for key in _KOMBU_DEFAULTS:
        if key in transport:
            notes.append(
                f"broker_transport_options {key}={transport[key]!r} is not read: beatd pushes onto kombu's default "
                "queue names (priority steps 0, 3, 6, 9, separator '\\x06\\x16', no key prefix), so a worker with "
                "this option would not see its tasks: drop the option, or keep these entries in Celery"
            )
    entries, names = [], set()
    redbeat = "redbeat" in str(conf.beat_scheduler or "").lower()
    schedule = conf.beat_schedule if beat_schedule is None else beat_schedule
    for entry, spec in (schedule or {}).items():
        zone = ZoneInfo(timezone) if known_zone(timezone) else ZoneInfo("UTC")
        converted = _entry(app, str(entry), spec, zone, default_queue, redbeat)
        while converted.name in names:
            converted.name += "_"
        names.add(converted.name)
        entries.append(converted)
    return Conversion(timezone, celery, entries, notes)


def known_zone(zone: str) -> bool:
    """Whether ``zone`` is an IANA time zone this host knows."""
    try:
        ZoneInfo(zone)
    except (KeyError, ValueError):
        return False
    return True


def _entry(app: Any, entry: str, spec: dict[str, Any], zone: ZoneInfo, default_queue: str, redbeat: bool) -> Converted:
    name = _INVALID_NAME_CHARACTER.sub("_", entry)[:200] or "entry"
    converted = Converted(entry, name, None)
    if name != entry:
        converted.notes.append(f"renamed from {entry!r}: job names take letters, digits, '_', '.' and '-'")
    if not re.fullmatch(NAME_PATTERN, name):
        converted.name = "job_" + name
    job: dict[str, Any] = {"celery": str(spec.get("task", ""))}
    if not job["celery"]:
        converted.refused = "the entry names no task"
        return converted
    schedule = _schedule(spec.get("schedule"), zone, converted, redbeat)
    if schedule is None:
        return converted
    job.update(schedule)
    for key, default in (("args", ()), ("kwargs", {})):
        raw: Any = spec.get(key) or default
        value: list[Any] | dict[str, Any] = list(raw) if key == "args" else dict(raw)
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            converted.refused = f"{key} are not JSON values: beatd sends JSON only (no pickle)"
            return converted
        if value:
            job[key] = value
    routed = _routed(app, job["celery"], dict(spec.get("options") or {}), job.get("args", []), job.get("kwargs", {}))
    queue = _route_queue(routed, converted)
    if queue is None:
        return converted
    options = _options(routed, converted)
    if queue != default_queue:
        options = {"queue": queue, **options}
    options = _validated(options, converted)
    if options:
        job["options"] = options
    if spec.get("relative"):
        converted.notes.append("relative: True is dropped: beatd's every is aligned to the epoch grid anyway")
    converted.job = job
    return converted


def _schedule(schedule: Any, zone: ZoneInfo, converted: Converted, redbeat: bool) -> dict[str, Any] | None:
    from celery.schedules import crontab, solar
    from celery.schedules import schedule as every_schedule

    if isinstance(schedule, solar):
        converted.refused = (
            f"solar schedule ({schedule.event} at {schedule.lat}, {schedule.lon}) has no beatd equivalent: "
            "beatd has no sunrise or sunset trigger; list the instants with at, or keep this entry in Celery"
        )
        return None
    if isinstance(schedule, crontab):
        return _cron(schedule, zone, converted)
    if type(schedule).__name__ == "rrule" and hasattr(schedule, "freq"):  # RedBeat's rrule schedule
        try:
            schedule = Recurrence.from_parts(vars(schedule))
        except (KeyError, TypeError, ValueError) as error:
            converted.refused = f"rrule schedule not understood: {error}"
            return None
    if isinstance(schedule, Recurrence):
        return _rrule(schedule, converted, redbeat)
    if isinstance(schedule, every_schedule):
        schedule = schedule.run_every
    if isinstance(schedule, int | float) and not isinstance(schedule, bool):
        schedule = timedelta(seconds=schedule)
    if isinstance(schedule, timedelta):
        if schedule <= timedelta(0) or schedule.microseconds % 1000:
            converted.refused = f"interval {schedule} is not a positive whole number of milliseconds"
            return None
        converted.notes.append(every_note(format_duration(schedule), "the epoch"))
        return {"every": format_duration(schedule)}
    converted.refused = f"schedule {schedule!r} ({type(schedule).__name__}) is not a crontab, timedelta or number"
    return None


def every_note(every: str, grid: str) -> str:
    """The note on an interval entry whose beatd grid starts at ``grid`` (the epoch, or its start)."""
    return (
        f"every {every}: Celery measures each interval from the last run (a beat restart or a slow beat shifts "
        f"every later run); beatd's fires sit on a fixed grid from {grid}, so the first fire after the switch "
        "may come sooner than Celery's would"
    )


def _cron(schedule: Any, zone: ZoneInfo, converted: Converted) -> dict[str, Any] | None:
    fields = [
        _field(schedule._orig_minute),
        _field(schedule._orig_hour),
        _field(schedule._orig_day_of_month),
        _field(schedule._orig_month_of_year),
        _field(schedule._orig_day_of_week),
    ]
    day_of_month, day_of_week = fields[2], fields[4]
    if not day_of_month.startswith("*") and not day_of_week.startswith("*"):
        converted.refused = (
            f"crontab with both day_of_month={day_of_month!r} and day_of_week={day_of_week!r}: Celery runs it on "
            "days matching both, beatd's cron (like cron) on days matching either; split it, or keep one day "
            "field and test the other in the task"
        )
        return None
    expression = " ".join(fields)
    try:
        CronTrigger.parse(expression, zone)
    except ScheduleError as error:
        converted.refused = f"crontab {expression!r} is not a cron expression beatd reads: {error}"
        return None
    return {"cron": expression}  # a day field starting with '*': beatd ANDs the two, as Celery does


def _rrule(rule: Recurrence, converted: Converted, redbeat: bool) -> dict[str, Any] | None:
    """The rrule's beatd schedule (its cron checked as a crontab's is), noting how it keeps daylight saving time;
    ``redbeat``: the app runs RedBeat, which stores dtstart's UTC offset, not its zone."""
    converted_schedule = to_schedule(rule)
    if isinstance(converted_schedule, str):
        converted.refused = converted_schedule
        return None
    zone = converted_schedule.get("timezone", "")
    if "cron" in converted_schedule:
        try:
            CronTrigger.parse(converted_schedule["cron"], ZoneInfo(zone))
        except ScheduleError as error:
            converted.refused = f"rrule's cron {converted_schedule['cron']!r} is not one beatd reads: {error}"
            return None
    key = getattr(rule.dtstart.tzinfo, "key", None)
    if zone.startswith("Etc/GMT"):
        converted.notes.append(
            f"timezone {zone}: the rrule's dtstart keeps a fixed UTC offset (RedBeat stores the offset, not the "
            "zone), so it never shifts for daylight saving time; write your IANA zone if it should"
        )
    elif "every" in converted_schedule and key is None:
        converted.notes.append(
            f"every {converted_schedule['every']} from dtstart's fixed UTC offset {rule.dtstart.utcoffset()}: it "
            "never shifts for daylight saving time (nor does RedBeat's rule, which keeps only the offset)"
        )
    elif "every" in converted_schedule and has_daylight_saving(rule.dtstart):
        converted.notes.append(
            f"every {converted_schedule['every']}: a fixed length from dtstart, while dateutil keeps {key}'s "
            "wall-clock time: the fires move by the daylight saving shift twice a year"
        )
    if redbeat and key is not None and has_daylight_saving(rule.dtstart):
        converted.notes.append(
            f"this app runs RedBeat, which stores dtstart's UTC offset ({rule.dtstart.utcoffset()}), not {key}: "
            f"RedBeat runs the rule at that fixed offset year round; beatd follows {key}'s daylight saving time "
            "(dateutil's meaning of the rule)"
        )
    return converted_schedule


def _field(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(item) for item in sorted(value))
    return str(value)


def _routed(app: Any, task: str, options: dict[str, Any], args: Any, kwargs: Any) -> dict[str, Any]:
    """The options Celery would publish the entry's task with: the task's own (when the app declares it)
    under the entry's, routed by ``task_routes``."""
    with warnings.catch_warnings():  # Celery deprecates a task's own queue and priority attributes, still read
        warnings.simplefilter("ignore")
        own = getattr(app.tasks.get(task), "_get_exec_options", None)
        merged = dict(own(), **options) if own is not None else dict(options)
    return dict(app.amqp.router.route(merged, task, args, kwargs))


def _route_queue(routed: dict[str, Any], converted: Converted) -> str | None:
    """The queue the routed message lands on (a kombu Queue's name), or None (the entry refused) when only an
    exchange says where."""
    queue = routed.pop("queue", None)
    exchange, routing_key = (_name(routed.pop(key, None)) for key in _ROUTING)
    if queue is not None and not isinstance(queue, str):  # a kombu Queue: its own binding, unless overridden
        exchange = exchange or _name(getattr(queue, "exchange", None)) or ""
        routing_key = routing_key or getattr(queue, "routing_key", None)
        if exchange == queue.name and routing_key in (None, "", queue.name):
            exchange = ""  # Celery's automatic queue: exchange and routing key named after the queue
    if queue is None:
        converted.refused = (
            f"routed by exchange {exchange!r} with routing key {routing_key!r}: beatd pushes straight onto a "
            "queue, not through an exchange's bindings; name the queue in the entry's options or its task_routes"
        )
        return None
    name = str(_name(queue))
    if exchange or (routing_key and routing_key != name):
        converted.notes.append(
            f"exchange={exchange!r} routing_key={routing_key!r} dropped: beatd pushes straight onto queue {name!r}"
        )
    return name


def _name(value: Any) -> Any:
    """A kombu Queue or Exchange as its name; anything else as it is."""
    return getattr(value, "name", value) if value is not None and not isinstance(value, str) else value


def _validated(options: dict[str, Any], converted: Converted) -> dict[str, Any]:
    """``options`` as plain JSON that beatd's CeleryOptions accepts: each option it refuses is dropped with a
    note saying why."""
    kept = dict(options)
    for key, value in list(kept.items()):
        try:
            kept[key] = json.loads(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError):
            converted.notes.append(f"option {key}={value!r} dropped: not a JSON value (beatd sends JSON only)")
            del kept[key]
    for _ in range(len(kept)):
        try:
            CeleryOptions.model_validate(kept)
        except ValidationError as error:
            first = error.errors()[0]
            key = str(first["loc"][0]) if first["loc"] else ""
            if key not in kept:
                break
            converted.notes.append(f"option {key}={kept.pop(key)!r} dropped: {first['msg']}")
        else:
            break
    return kept


def _options(options: dict[str, Any], converted: Converted) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in options.items():
        if value is None or (key == "serializer" and value == "json"):
            continue  # unset, or the task's default serializer (beatd sends JSON)
        if key not in _OPTIONS:
            converted.notes.append(f"option {key}={value!r} dropped: beatd does not send it")
            continue
        if key in _DURATION_OPTIONS:
            if isinstance(value, timedelta):
                value = value.total_seconds()
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                converted.notes.append(f"option {key}={value!r} dropped: beatd takes a duration in seconds here")
                continue
            kept[key] = format_duration(timedelta(seconds=value))
            if key == "expires":
                converted.notes.append("expires counts from the emission, as Celery beat's from its send")
        elif key == "headers":
            if not isinstance(value, dict) or not all(isinstance(name, str) for name in value):
                converted.notes.append(f"option headers={value!r} dropped: expected a mapping of names to values")
                continue
            reserved = sorted(name for name in value if name in CELERY_RESERVED_HEADERS or name.startswith("beatd_"))
            if reserved:
                converted.notes.append(f"headers {reserved} dropped: beatd writes them itself")
            kept[key] = {name: item for name, item in value.items() if name not in reserved}
        else:
            kept[key] = value
    return kept


def render_yaml(conversion: Conversion, source: str = "a Celery beat_schedule by `beatd import celery`") -> str:
    """The beatd config of ``conversion`` as YAML, each entry's notes as comments above its job (refused
    entries appear as comments only); ``source`` says where it came from in the first line."""
    lines = [f"# Converted from {source}; check it with `beatd check`."]
    lines += [f"# NOTE: {note}" for note in conversion.notes]
    lines.append(
        "# beatd's own Redis: put it on the Celery broker's Redis server (another database number) and each task\n"
        "# message is pushed exactly once, with the job's progress; another server or RabbitMQ gets it at least once."
    )
    redis_url = {"redis": {"url": "${BEATD_REDIS_URL:-redis://127.0.0.1:6379/0}"}}
    lines.append(yaml.safe_dump(redis_url, sort_keys=False).rstrip("\n"))
    lines.append(yaml.safe_dump({"timezone": conversion.timezone, "celery": conversion.celery}, sort_keys=False))
    lines.append("jobs:")
    if not any(entry.job for entry in conversion.entries):
        lines[-1] = "jobs: {}"
    for entry in conversion.entries:
        for note in entry.notes:
            lines.append(f"  # {entry.name}: {note}")
        if entry.job is None:
            lines.append(f"  # {entry.name}: NOT CONVERTED: {entry.refused}")
            continue
        body = yaml.safe_dump({entry.name: entry.job}, sort_keys=False, default_flow_style=None, width=120)
        lines.extend("  " + line for line in body.splitlines())
    return "\n".join(line.rstrip("\n") for line in lines) + "\n"
