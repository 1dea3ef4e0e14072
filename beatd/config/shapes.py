"""Validation once per job shape: YAML jobs written alike are validated in full once, then copied.

A config of 100,000 jobs usually has a few distinct job bodies ("shapes"): the same mapping under another
name. Validating each in full costs ~15 µs of pydantic and beatd's own rules per job. :class:`Shapes` keeps,
per shape, a valid spec of it (validated in full, with every problem check, under the first job's name) and
makes each further job of that shape by copying it with its own name, then redoing what depends on the name:
the name's pattern, ``H`` fields of cron (hashed by the name, in the field validator's check and in the
trigger), the trigger of a cron job and the job's alert rules (top-level rules select jobs by name). Jitter
offsets are drawn from the name by the beat, not the spec, so a spec holds no other name-dependent value.

``start`` and ``end`` are left out of the shape (``FREE_KEYS``, as runtime jobs do in
:mod:`beatd.runtime_judge`): a copy's own values are validated by the model's field validator (in the job's
time zone, each distinct text once: :class:`ValueCache`), then its own trigger is built (end before start goes
the full way) and its schedule digest is computed from its own values.

A shape is the job's raw mapping exactly as read: keys in order (``kwargs`` keeps its order) and every value
of an exact JSON-like type (dict, list, str, int, float, bool, None) so that ``repr`` tells apart what
``==`` would not (``1``, ``1.0`` and ``True``). Everything else that validation reads (the top-level time
zone, ``defaults``, ``celery`` and ``alerts`` settings) is one per load, so it is not part of the key. A raw
value of any other type, a shape whose first job had problems, or any exception on the copy's name-dependent
steps sends the job the full way (:func:`beatd.config.load._validate_job`), so problems, their messages and
their file:line:col locations are always the full path's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from beatd.config.alerts import AlertRule, AlertSettings, effective_rules
from beatd.config.compact import CompactJob, Shape
from beatd.config.model import NAME_PATTERN, JobSpec
from beatd.triggers import CronTrigger, Trigger

__all__ = ["FREE_KEYS", "SHAPES_KEPT", "Shapes", "ValueCache", "pristine", "shape_key"]

SHAPES_KEPT = 4096
"""Most shapes remembered (the oldest is forgotten first): a bound for configs whose jobs are all different."""

FREE_KEYS = ("start", "end")
"""The keys a shape leaves out (one schedule per customer, spread over the hour): each job's own values are
validated on their own, by the model's field validator."""

_NAME = re.compile(NAME_PATTERN)
_UTC = ZoneInfo("UTC")
_SCALARS = frozenset({str, int, float, bool, type(None)})


def shape_key(raw: Any) -> str | None:
    """The text that job bodies equal but for their ``start`` and ``end`` values share (which of the two are
    given is part of it), or None when ``raw`` holds a value of another type."""
    if type(raw) is not dict or not _plain(raw):
        return None
    if "start" not in raw and "end" not in raw:
        return repr(raw)
    rest = {key: value for key, value in raw.items() if key not in FREE_KEYS}
    return repr(rest) + "".join(f" +{key}" for key in FREE_KEYS if key in raw)


def _plain(value: Any) -> bool:
    """Whether ``value`` and everything in it is of an exact JSON-like type, with string keys (no recursion
    into scalars: most job bodies are flat)."""
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str or (type(item) not in _SCALARS and not _plain(item)):
                return False
        return True
    if type(value) is list:
        return all(type(item) in _SCALARS or _plain(item) for item in value)
    return False


def pristine(spec: JobSpec) -> JobSpec:
    """A copy of ``spec`` without cached properties (trigger, digests), which a copy would otherwise carry."""
    return Shape(spec, ()).spec


class Shapes:
    """The jobs whose shape was validated in full before, under one load's settings (``alerts``), as compact
    jobs of that shape (:mod:`beatd.config.compact`). ``share`` makes equal triggers one object (the loader's
    interner: jobs spread over the hour by their starts have a few thousand distinct triggers)."""

    def __init__(self, alerts: AlertSettings | None, share: Callable[[Trigger], Trigger] | None = None) -> None:
        self.alerts = alerts
        self.share = share
        self._templates: dict[str, Shape] = {}
        self._values = ValueCache(SHAPES_KEPT * 4)
        self._rules: dict[tuple[AlertRule, ...], tuple[AlertRule, ...]] = {}
        self.copied = 0
        """Jobs made from their shape (for tests and benchmarks)."""

    def job(self, key: str | None, name: str, raw: Any) -> CompactJob | None:
        """Job ``name`` written as ``raw`` of shape ``key`` when a job of that shape was valid; None: validate
        in full."""
        template = self._templates.get(key) if key is not None else None
        if template is None or not _NAME.fullmatch(name):
            return None
        try:
            job = self._copy(template, name, raw)
        except Exception:  # any doubt: the full path decides, with its messages
            return None
        self.copied += 1
        return job

    def remember(self, key: str | None, spec: JobSpec, raw: Any) -> None:
        """Keep ``spec``, job ``raw`` validated in full and valid, as the template of shape ``key``."""
        if key is None or key in self._templates:
            return
        if len(self._templates) >= SHAPES_KEPT:
            del self._templates[next(iter(self._templates))]
        self._templates[key] = Shape(spec, tuple(free for free in FREE_KEYS if free in raw))

    def _copy(self, template: Shape, name: str, raw: dict[str, Any]) -> CompactJob:
        base = template.spec
        own = {free: self._values.validated(base, free, raw[free]) for free in template.free}
        rules: tuple[AlertRule, ...] = ()
        if self.alerts is not None:
            rules = effective_rules(self.alerts, name, base.tags, base.alerts)
            rules = self._rules.setdefault(rules, rules) if rules else ()  # the rules repeat: one tuple each
        if base.cron is not None:  # H fields are hashed by the name, as the field validator checks
            CronTrigger.parse(base.cron, _UTC, hash_key=name)
        return CompactJob.of_shape(template, name, own.get("start"), own.get("end"), rules, self.share)


class ValueCache:
    """Values of a free key validated by the model's own field validator, by time zone, key and text (a
    hundred thousand jobs spread over the hour have 3,600 starts); at most ``kept`` remembered."""

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self._values: dict[tuple[str, str, str], Any] = {}

    def validated(self, template: JobSpec, key: str, value: Any) -> Any:
        """``value`` of ``key`` as the model validates it in ``template`` (ValidationError when it is not valid)."""
        cache_key = (template.timezone, key, value) if type(value) is str else None
        if cache_key is not None and cache_key in self._values:
            return self._values[cache_key]
        scratch = template.model_copy()
        JobSpec.__pydantic_validator__.validate_assignment(scratch, key, value)
        result = getattr(scratch, key)
        if cache_key is not None:
            if len(self._values) >= self.kept:
                del self._values[next(iter(self._values))]
            self._values[cache_key] = result
        return result
