"""Compact jobs: what the beat keeps per job instead of a whole JobSpec.

A pydantic JobSpec keeps its ~38 fields in a dict of its own (about 1 KB a job); 100,000 jobs written alike
(:mod:`beatd.config.shapes`) or put at runtime (:mod:`beatd.runtime_judge`) differ only in their name, their
``start`` and ``end``, their trigger, digests and alert rules (top-level rules select jobs by name). A
:class:`CompactJob` holds those and a reference to the one validated spec of its :class:`Shape`, and reads
everything else from it (explicit properties, the names of JobSpec's fields). :meth:`CompactJob.spec`
materialises the full JobSpec (equal to the one full validation gives) for whoever needs one, and
:class:`JobSpecs` is the read-only mapping of names to JobSpecs that :attr:`Config.jobs` is, made of compact jobs.

A job's digest hashes the same bytes as ``JobSpec.digest`` (pydantic's JSON of the spec), made from its shape's
JSON with the job's own values put in (:meth:`Shape.json_of`) rather than serialising every spec.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import JsonValue, TypeAdapter

from beatd.config.alerts import AlertRule
from beatd.config.model import (
    CeleryOptions,
    HistoryPolicy,
    JobSpec,
    schedule_digest_of,
    schedule_parts_of,
    trigger_of,
)
from beatd.triggers import IntervalTrigger, Trigger

__all__ = ["CompactJob", "JobSpecs", "JobView", "Shape", "TriggerTable", "compact_jobs"]

_SERIALISER = JobSpec.__pydantic_serializer__
_INSTANT_JSON = TypeAdapter(datetime | None).serializer.to_json
_STRING_JSON = TypeAdapter(str).serializer.to_json
_RULES_JSON = TypeAdapter(tuple[AlertRule, ...]).serializer.to_json
_NAME_MARK = "beatd\x00name"
_START_MARK = datetime(1, 1, 1, microsecond=1, tzinfo=UTC)
_END_MARK = datetime(1, 1, 1, microsecond=2, tzinfo=UTC)
_RULES_TAIL = b',"alert_rules":[]}'
_KEPT = 4096
"""Most instant and rule texts remembered per shape."""


class JobView(Protocol):
    """What the beat's emission, upkeep and alerting read of a job: a JobSpec or a :class:`CompactJob`."""

    @property
    def name(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def digest(self) -> str: ...
    @property
    def schedule_digest(self) -> str: ...
    @property
    def expires(self) -> timedelta | None: ...
    @property
    def history(self) -> HistoryPolicy: ...
    @property
    def celery(self) -> str | None: ...
    @property
    def options(self) -> CeleryOptions | None: ...
    @property
    def jitter(self) -> timedelta: ...
    @property
    def args(self) -> tuple[JsonValue, ...]: ...
    @property
    def kwargs(self) -> dict[str, JsonValue]: ...
    @property
    def alert_rules(self) -> tuple[AlertRule, ...]: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def retries(self) -> int: ...
    @property
    def schedule_text(self) -> str: ...
    def trigger(self) -> Trigger: ...


class Shape:
    """One validated spec (no alert rules, no cached properties unless ``own``) and what the jobs made of it
    share: their field sets without and with ``alert_rules`` (one set object each), the free keys they give
    (``start``, ``end``), their trigger when it depends on neither the name nor those (every and at jobs), and
    the JSON of the spec cut where the name, ``start``, ``end`` and the alert rules go.

    ``own``: the shape of one job validated the full way, whose spec is kept as it is (:meth:`CompactJob.of_spec`)."""

    __slots__ = (
        "_fields", "_instants", "_parts", "_pieces", "_rules", "_triggers", "fields", "fields_with_rules", "free",
        "own", "schedule_parts",
        "spec", "trigger", "values",
    )  # fmt: skip

    def __init__(self, spec: JobSpec, free: tuple[str, ...], *, own: bool = False) -> None:
        self.own = own
        self.free = free
        self._pieces: list[tuple[str, bytes]] | None = None
        self._instants: dict[int, tuple[datetime | None, bytes]] = {}
        self._rules: dict[int, tuple[tuple[AlertRule, ...], bytes]] = {}
        self._fields: dict[tuple[bool, bool, bool], set[str]] = {}
        self._parts: dict[tuple[int, int], tuple[datetime | None, datetime | None, str]] = {}
        self._triggers: dict[tuple[int, int], tuple[datetime | None, datetime | None, Trigger]] = {}
        if own:  # nothing is copied: the spec is the job's
            self.spec, self.values = spec, spec.__dict__
            self.fields = self.fields_with_rules = spec.model_fields_set
            self.trigger: Trigger | None = None
            self.schedule_parts: str | None = None
            return
        self.spec = _pristine(spec)
        self.values = {**self.spec.__dict__, "alert_rules": ()}
        self.fields = set(spec.model_fields_set) - {"alert_rules"}
        self.fields_with_rules = self.fields | {"alert_rules"}
        self.trigger = spec.trigger() if spec.cron is None else None
        """The trigger of a job of this shape with the spec's own start and end (the same objects): every name's."""
        self.schedule_parts = spec.schedule_parts()
        """The schedule parts of a job of this shape with the spec's own start and end (the same objects)."""

    def fields_of(self, job: CompactJob) -> set[str]:
        """The given field names of ``job``'s spec (one set object per distinct set: the specs are frozen)."""
        rules = bool(job.alert_rules)
        if not self.free:  # a runtime shape: start and end are given when the entry has them
            key = (job.start is not None, job.end is not None, rules)
            found = self._fields.get(key)
            if found is None:
                extra = {"start"} if key[0] else set()
                extra |= {"end"} if key[1] else set()
                found = self._fields[key] = (self.fields_with_rules if rules else self.fields) | extra
            return found
        return self.fields_with_rules if rules else self.fields

    def same_schedule(self, start: datetime | None, end: datetime | None) -> bool:
        """Whether ``start`` and ``end`` are the spec's own (the same objects: one instant text is validated
        once, so jobs written with the same start share it)."""
        return start is self.spec.start and end is self.spec.end

    def json_of(self, job: CompactJob) -> bytes:
        """Pydantic's JSON of ``job``'s spec (the bytes ``JobSpec.digest`` hashes), from this shape's."""
        if self.own:
            return _SERIALISER.to_json(self.spec)
        pieces = self._pieces if self._pieces is not None else self._cut()
        if not pieces:  # the marks were not found once each: serialise the whole spec
            return _SERIALISER.to_json(job.spec())
        parts: list[bytes] = []
        for slot, text in pieces:
            if slot == "name":
                parts.append(b'"%s"' % job.name.encode())  # names need no JSON escaping (NAME_PATTERN)
            elif slot == "start":
                parts.append(self._instant(job.start))
            elif slot == "end":
                parts.append(self._instant(job.end))
            elif slot == "alert_rules":
                parts.append(self._rules_json(job.alert_rules))
            parts.append(text)
        return b"".join(parts)

    def _cut(self) -> list[tuple[str, bytes]]:
        """The spec's JSON as (slot before it, text) pieces: the first slot is "", then name, start, end and
        alert_rules in the order they appear; empty when a mark is not found exactly once."""
        marks_in = {**self.values, "name": _NAME_MARK, "start": _START_MARK, "end": _END_MARK}
        marked = _construct(marks_in, self.fields)
        text = _SERIALISER.to_json(marked)
        marks = {"name": _STRING_JSON(_NAME_MARK), "start": _INSTANT_JSON(_START_MARK), "end": _INSTANT_JSON(_END_MARK)}
        found: list[tuple[int, str, int]] = []
        for slot, mark in marks.items():
            if text.count(mark) != 1:
                self._pieces = []
                return []
            found.append((text.index(mark), slot, len(mark)))
        if not text.endswith(_RULES_TAIL):
            self._pieces = []
            return []
        found.append((len(text) - 3, "alert_rules", 2))  # the "[]" before the closing brace
        pieces: list[tuple[str, bytes]] = []
        slot, at = "", 0
        for position, mark_slot, length in sorted(found):
            pieces.append((slot, text[at:position]))
            slot, at = mark_slot, position + length
        pieces.append((slot, text[at:]))
        self._pieces = pieces
        return pieces

    def _instant(self, value: datetime | None) -> bytes:
        if value is None:
            return b"null"
        known = self._instants.get(id(value))
        if known is None or known[0] is not value:
            if len(self._instants) >= _KEPT:
                self._instants.clear()
            known = self._instants[id(value)] = (value, _INSTANT_JSON(value))
        return known[1]

    def trigger_of(
        self, start: datetime | None, end: datetime | None, share: Callable[[Trigger], Trigger] | None
    ) -> Trigger:
        """The trigger of a job of this shape (not a cron one: its ``H`` fields hash the name) with ``start`` and
        ``end``, remembered by the instants' identity as :meth:`parts_of` does (raises as the trigger does)."""
        known = self._triggers.get((id(start), id(end)))
        if known is None or known[0] is not start or known[1] is not end:
            base = self.spec
            trigger = trigger_of("", None, base.every, base.at, base.timezone, start, end)
            if share is not None and (start is not None or end is not None):
                trigger = share(trigger)
            if len(self._triggers) >= _KEPT:
                self._triggers.clear()
            known = self._triggers[(id(start), id(end))] = (start, end, trigger)
        return known[2]

    def parts_of(self, start: datetime | None, end: datetime | None) -> str:
        """The schedule parts of a job of this shape with ``start`` and ``end``, remembered by the instants'
        identity (jobs written with the same instant text share the object: a few thousand among 1,000,000)."""
        if self.schedule_parts is not None and self.same_schedule(start, end):
            return self.schedule_parts
        known = self._parts.get((id(start), id(end)))
        if known is None or known[0] is not start or known[1] is not end:
            if len(self._parts) >= _KEPT:
                self._parts.clear()
            base = self.spec
            parts = schedule_parts_of(base.cron, base.every, base.at, start, end, base.timezone, base.enabled)
            known = self._parts[(id(start), id(end))] = (start, end, parts)
        return known[2]

    def _rules_json(self, rules: tuple[AlertRule, ...]) -> bytes:
        if not rules:
            return b"[]"
        known = self._rules.get(id(rules))
        if known is None or known[0] is not rules:
            if len(self._rules) >= _KEPT:
                self._rules.clear()
            known = self._rules[id(rules)] = (rules, _RULES_JSON(rules))
        return known[1]


class CompactJob:
    """A job as the beat keeps it: its own values and the :class:`Shape` it was made from (everything else).
    Its attributes are JobSpec's (those the beat reads); :meth:`spec` is the full JobSpec."""

    __slots__ = ("_digest", "_trigger", "alert_rules", "end", "name", "shape", "start")

    def __init__(
        self, name: str, shape: Shape, trigger: Trigger, start: datetime | None = None, end: datetime | None = None,
        alert_rules: tuple[AlertRule, ...] = (),
    ) -> None:  # fmt: skip
        self.name = name
        self.shape = shape
        self.start = start
        self.end = end
        self.alert_rules = alert_rules
        self._trigger = trigger
        self._digest: str | None = None

    @classmethod
    def of_spec(cls, spec: JobSpec) -> CompactJob:
        """The compact job of ``spec`` validated the full way: its shape is its own (the spec kept as it is)."""
        return cls(spec.name, Shape(spec, (), own=True), spec.trigger(), spec.start, spec.end, spec.alert_rules)

    @classmethod
    def of_shape(
        cls, shape: Shape, name: str, start: datetime | None, end: datetime | None, alert_rules: tuple[AlertRule, ...],
        share: Callable[[Trigger], Trigger] | None = None,
    ) -> CompactJob:  # fmt: skip
        """Job ``name`` of ``shape`` with its own ``start``, ``end`` and rules; builds its trigger unless the
        shape's serves every name (raises as the trigger does: end before start, a bad ``H`` field). ``share``
        makes a trigger of the job's own start or end the equal one seen before."""
        base = shape.spec
        trigger = shape.trigger if shape.same_schedule(start, end) else None
        if trigger is None and base.cron is None:
            trigger = shape.trigger_of(start, end, share)
        elif trigger is None:
            trigger = trigger_of(name, base.cron, base.every, base.at, base.timezone, start, end)
            if share is not None and (start is not None or end is not None):
                trigger = share(trigger)
        return cls(name, shape, trigger, start, end, alert_rules)

    def spec(self) -> JobSpec:
        """The full JobSpec of this job (the kept one for a job validated the full way; else a new one each
        call, equal to what the full validation gives)."""
        shape = self.shape
        if shape.own:
            return shape.spec
        values = {**shape.values, "name": self.name, "start": self.start, "end": self.end}
        if self.alert_rules:
            values["alert_rules"] = self.alert_rules
        values["_compiled_trigger"] = self._trigger  # a cached property's value (schedule_digest is computed
        # on first use: a listing of 100,000 jobs reads none)
        if self._digest is not None:
            values["digest"] = self._digest
        return _construct(values, shape.fields_of(self))

    def trigger(self) -> Trigger:
        """This job's trigger (pure; built once)."""
        return self._trigger

    @property
    def schedule_digest(self) -> str:
        """:attr:`JobSpec.schedule_digest` (computed each time: the beat reads it at a sync and a reload, and
        100,000 kept would take 7 MB)."""
        shape = self.shape
        if shape.own:
            return shape.spec.schedule_digest
        return schedule_digest_of(self.name, shape.parts_of(self.start, self.end))

    @property
    def digest(self) -> str:
        """:attr:`JobSpec.digest`: the hash of the spec's JSON."""
        if self._digest is None:
            if self.shape.own:
                self._digest = self.shape.spec.digest
            else:
                self._digest = hashlib.sha256(self.shape.json_of(self)).hexdigest()[:16]
        return self._digest

    def json(self) -> bytes:
        """Pydantic's JSON of this job's spec (its digest is kept on the way: the beat needs it later)."""
        text = self.shape.json_of(self)
        if self._digest is None:
            self._digest = hashlib.sha256(text).hexdigest()[:16]
        return text

    # The shape's values, by JobSpec's field names (only those the beat, its upkeep and alerting read).
    @property
    def timezone(self) -> str:
        """:attr:`JobSpec.timezone`."""
        return self.shape.spec.timezone

    @property
    def queue(self) -> str:
        """:attr:`JobSpec.queue`."""
        return self.shape.spec.queue

    @property
    def retries(self) -> int:
        """:attr:`JobSpec.retries`."""
        return self.shape.spec.retries

    @property
    def catchup(self) -> str:
        """:attr:`JobSpec.catchup`."""
        return self.shape.spec.catchup

    @property
    def misfire_grace(self) -> timedelta:
        """:attr:`JobSpec.misfire_grace`."""
        return self.shape.spec.misfire_grace

    @property
    def catchup_limit(self) -> int:
        """:attr:`JobSpec.catchup_limit`."""
        return self.shape.spec.catchup_limit

    @property
    def enabled(self) -> bool:
        """:attr:`JobSpec.enabled`."""
        return self.shape.spec.enabled

    @property
    def history(self) -> HistoryPolicy:
        """:attr:`JobSpec.history`."""
        return self.shape.spec.history

    @property
    def jitter(self) -> timedelta:
        """:attr:`JobSpec.jitter`."""
        return self.shape.spec.jitter

    @property
    def expires(self) -> timedelta | None:
        """:attr:`JobSpec.expires`."""
        return self.shape.spec.expires

    @property
    def cron(self) -> str | None:
        """:attr:`JobSpec.cron`."""
        return self.shape.spec.cron

    @property
    def celery(self) -> str | None:
        """:attr:`JobSpec.celery`."""
        return self.shape.spec.celery

    @property
    def options(self) -> CeleryOptions | None:
        """:attr:`JobSpec.options`."""
        return self.shape.spec.options

    @property
    def args(self) -> tuple[JsonValue, ...]:
        """:attr:`JobSpec.args`."""
        return self.shape.spec.args

    @property
    def kwargs(self) -> dict[str, JsonValue]:
        """:attr:`JobSpec.kwargs`."""
        return self.shape.spec.kwargs

    @property
    def schedule_text(self) -> str:
        """:attr:`JobSpec.schedule_text` (the schedule's keys are the shape's)."""
        return self.shape.spec.schedule_text


class JobSpecs(Mapping[str, JobSpec]):
    """Names to full JobSpecs, made of compact jobs: each spec is materialised when asked for
    (:meth:`CompactJob.spec`); ``compact`` is the compact jobs themselves (what the beat keeps)."""

    def __init__(self, compact: dict[str, CompactJob]) -> None:
        self.compact = compact

    def __getitem__(self, name: str) -> JobSpec:
        return self.compact[name].spec()

    def __contains__(self, name: object) -> bool:
        return name in self.compact

    def __iter__(self) -> Iterator[str]:
        return iter(self.compact)

    def __len__(self) -> int:
        return len(self.compact)

    def __repr__(self) -> str:
        return f"JobSpecs({len(self.compact)} jobs)"


class TriggerTable:
    """Equal interval triggers as one object (exact type, the same anchor and end in the same zones): jobs
    spread over the hour by their starts have a few thousand distinct triggers among 100,000 jobs. At most
    ``kept`` are remembered (then the table starts again: sharing is a saving, never a meaning)."""

    def __init__(self, kept: int = 1 << 20) -> None:
        self.kept = kept
        self._table: dict[tuple[IntervalTrigger, Any, Any], IntervalTrigger] = {}

    def __call__(self, trigger: Trigger) -> Trigger:
        """``trigger``, or the equal one seen before."""
        if type(trigger) is not IntervalTrigger:
            return trigger
        start, end = trigger.start, trigger.end
        key = (trigger, start.tzinfo if start else None, end.tzinfo if end else None)
        found = self._table.get(key)
        if found is None:
            if len(self._table) >= self.kept:
                self._table.clear()
            found = self._table[key] = trigger
        return found


def compact_jobs(jobs: Mapping[str, JobSpec]) -> dict[str, CompactJob]:
    """The compact jobs of ``jobs``: a :class:`JobSpecs`'s own, else one of each spec's own shape."""
    if isinstance(jobs, JobSpecs):
        return jobs.compact
    return {name: CompactJob.of_spec(spec) for name, spec in jobs.items()}


def _pristine(spec: JobSpec) -> JobSpec:
    """A copy of ``spec`` without cached properties (trigger, digests), which a copy would otherwise carry."""
    values = {field: getattr(spec, field) for field in JobSpec.model_fields}
    return JobSpec.model_construct(set(spec.model_fields_set), **values)


def _construct(values: dict[str, Any], fields: set[str]) -> JobSpec:
    """A JobSpec of ``values`` (its ``__dict__``, cached properties included) and given ``fields``, without
    validation: what pydantic's ``BaseModel.__copy__`` does (a model_copy(update=...) costs twice as much)."""
    spec = JobSpec.__new__(JobSpec)
    object.__setattr__(spec, "__dict__", values)
    object.__setattr__(spec, "__pydantic_fields_set__", fields)
    object.__setattr__(spec, "__pydantic_extra__", None)
    object.__setattr__(spec, "__pydantic_private__", None)
    return spec
