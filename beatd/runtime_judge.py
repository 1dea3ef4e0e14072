"""A reader's judge of stored runtime job entries, cheap when many jobs share a shape.

The beat and every worker judge each runtime job entry against their own config (:func:`beatd.runtime_jobs.judge`:
the full validation of a YAML job, then the allow-lists), about 100 µs a job. A deployment with 100,000 runtime
jobs usually has a few shapes: the same spec with another ``start`` or ``end`` (one schedule per customer, spread
over the hour). :class:`Judge` validates each distinct shape (the spec without ``start`` and ``end``) once, in
full, with the allow-list decision; an entry of a known shape then costs its own ``start``/``end``, validated by
the model's own field validators, its trigger and its alert rules. Whatever the fast path cannot vouch for (a
new shape, an invalid value, a name the YAML declares) goes the full way, so the verdicts and messages are the
full path's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable
from typing import Any

from beatd import defaults
from beatd.config import Config, JobSpec
from beatd.config.alerts import AlertRule, effective_rules
from beatd.config.compact import CompactJob, Shape, TriggerTable
from beatd.config.model import NAME_PATTERN
from beatd.config.shapes import ValueCache
from beatd.runtime_jobs import judge
from beatd.store.jobs import StoredJob

__all__ = ["SHAPES_KEPT", "Judge", "same_rules"]

FREE_KEYS = ("start", "end")
"""The keys a shape leaves out: each entry's own values are validated on their own."""

SHAPES_KEPT = 1024
"""Most shapes one judge remembers (the oldest is forgotten first): a bound for jobs that are all different."""

_NAME = re.compile(NAME_PATTERN)

_SHAPE_JSON = json.JSONEncoder(separators=(",", ":"))
"""The JSON of a shape (one encoder for every entry: ``json.dumps`` with options makes one each call). Keys stay
in their order, nested ones too: a spec's mappings (``kwargs``, ``env``) keep theirs, which its JSON and digest
hold, so specs whose keys differ only in order are other shapes (sorted, the first one judged answered for all)."""

_PLAIN = frozenset({str, int, bool, type(None)})
"""The JSON values a shape's key holds as they are (no float: NaN is not equal to itself)."""


def _shape_key(rest: dict[str, Any]) -> Hashable:
    """The key of a shape (a spec without its free keys): its items, each value with its type (``1`` and
    ``true`` are equal in Python, not in a spec), when every value is plain (most specs: a third of the judge's
    time went on the JSON); else its JSON. Keys in another order are another shape, judged once."""
    key = tuple([(name, type(value), value) for name, value in rest.items()])
    for _, kind, _ in key:
        if kind not in _PLAIN:
            return _SHAPE_JSON.encode(rest)
    return key


def same_rules(before: Config, after: Config) -> bool:
    """Whether a runtime job's verdict under ``after`` is the one under ``before`` for every name the YAML of
    neither declares: the same default time zone, defaults, Celery and alert settings and allow-lists."""
    old, new = before.settings, after.settings
    return (old.timezone, old.defaults, old.celery, old.alerts, old.runtime_jobs) == (
        new.timezone,
        new.defaults,
        new.celery,
        new.alerts,
        new.runtime_jobs,
    )


class Judge:
    """Verdicts on stored entries under one ``config``: the spec, or None and why it is refused (the same as
    :func:`beatd.runtime_jobs.judge`, whose work it caches per shape). :meth:`compact` gives the job as the
    beat keeps it (:mod:`beatd.config.compact`): a job of a known shape is then never a JobSpec of its own."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._shapes: dict[Hashable, Shape | None] = {}
        """Shape (:func:`_shape_key`) -> a valid, allowed spec of it (None: the shape was refused, or needs the
        full path)."""
        self._values = ValueCache(SHAPES_KEPT * 4)
        self._rules: dict[tuple[AlertRule, ...], tuple[AlertRule, ...]] = {}
        self._triggers = TriggerTable()
        self.fast = 0
        """Entries judged by their shape alone (for tests and benchmarks)."""

    def __call__(self, name: str, raw: str) -> tuple[JobSpec | None, str]:
        """The verdict on entry ``raw`` of runtime job ``name``."""
        job, why = self.compact(name, raw)
        return (job.spec() if job is not None else None), why

    def compact(self, name: str, raw: str) -> tuple[CompactJob | None, str]:
        """The verdict on entry ``raw`` of runtime job ``name``, the job as a compact one."""
        job = None
        if len(raw) <= defaults.RUNTIME_SPEC_MAX_BYTES:
            try:
                job = self.valid_compact(name, StoredJob.parse(name, raw).spec)
            except ValueError:
                job = None
        if job is not None:
            return job, ""
        spec, why = judge(self.config, name, raw)
        return (CompactJob.of_spec(spec) if spec is not None else None), why

    def valid(self, name: str, document: Any) -> JobSpec | None:
        """The spec of job ``name`` written as ``document`` (JSON values: what a job holds under its name) when
        its shape vouches for it; None when the full validation must decide (and word the problems)."""
        job = self.valid_compact(name, document)
        return job.spec() if job is not None else None

    def valid_compact(self, name: str, document: Any) -> CompactJob | None:
        """:meth:`valid`, the job as a compact one."""
        if name in self.config.jobs or not _NAME.fullmatch(name) or not isinstance(document, dict):
            return None
        rest = dict(document)
        own = {key: rest.pop(key) for key in FREE_KEYS if key in rest}
        shape = _shape_key(rest)
        if shape not in self._shapes:
            self._remember(shape, name, rest)
        template = self._shapes[shape]
        if template is None:
            return None
        try:
            job = self._instance(template, name, own)
        except Exception:  # any doubt: the full path decides, with its messages
            return None
        self.fast += 1
        return job

    def _remember(self, shape: Hashable, name: str, rest: dict[str, Any]) -> None:
        if len(self._shapes) >= SHAPES_KEPT:
            del self._shapes[next(iter(self._shapes))]
        entry = json.dumps({"version": 0, "spec": rest})
        try:
            spec, _ = judge(self.config, name, entry)
        except Exception:
            spec = None
        self._shapes[shape] = Shape(spec, ()) if spec is not None else None

    def _instance(self, template: Shape, name: str, own: dict[str, Any]) -> CompactJob:
        """Job ``name`` of ``template``'s shape with its own ``start``/``end``: each validated by the model's
        field validator (in the job's time zone), then the trigger built (end before start is refused)."""
        base = template.spec
        alerts = self.config.settings.alerts
        rules: tuple[AlertRule, ...] = ()
        if alerts is not None:
            rules = effective_rules(alerts, name, base.tags, base.alerts)
            rules = self._rules.setdefault(rules, rules) if rules else ()  # the rules repeat: one tuple each
        start = self._values.validated(base, "start", own["start"]) if "start" in own else None
        end = self._values.validated(base, "end", own["end"]) if "end" in own else None
        return CompactJob.of_shape(template, name, start, end, rules, self._triggers)
