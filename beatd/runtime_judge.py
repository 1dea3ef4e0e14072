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
from typing import Any

from beatd import defaults
from beatd.config import Config, JobSpec
from beatd.config.alerts import effective_rules
from beatd.config.model import NAME_PATTERN
from beatd.config.shapes import ValueCache, pristine
from beatd.runtime_jobs import judge
from beatd.store.jobs import StoredJob

__all__ = ["SHAPES_KEPT", "Judge", "same_rules"]

FREE_KEYS = ("start", "end")
"""The keys a shape leaves out: each entry's own values are validated on their own."""

SHAPES_KEPT = 1024
"""Most shapes one judge remembers (the oldest is forgotten first): a bound for jobs that are all different."""

_NAME = re.compile(NAME_PATTERN)


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
    :func:`beatd.runtime_jobs.judge`, whose work it caches per shape)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._shapes: dict[str, JobSpec | None] = {}
        """Shape (canonical JSON) -> a valid, allowed spec of it that no cached property has touched (None:
        the shape was refused, or needs the full path)."""
        self._values = ValueCache(SHAPES_KEPT * 4)
        self._fields: dict[frozenset[str], set[str]] = {}
        """One set of given field names per distinct set: a copy's own set is about 500 B per job."""
        self.fast = 0
        """Entries judged by their shape alone (for tests and benchmarks)."""

    def __call__(self, name: str, raw: str) -> tuple[JobSpec | None, str]:
        """The verdict on entry ``raw`` of runtime job ``name``."""
        spec = None
        if len(raw) <= defaults.RUNTIME_SPEC_MAX_BYTES:
            try:
                spec = self.valid(name, StoredJob.parse(name, raw).spec)
            except ValueError:
                spec = None
        if spec is not None:
            return spec, ""
        return judge(self.config, name, raw)

    def valid(self, name: str, document: Any) -> JobSpec | None:
        """The spec of job ``name`` written as ``document`` (JSON values: what a job holds under its name) when
        its shape vouches for it; None when the full validation must decide (and word the problems)."""
        if name in self.config.jobs or not _NAME.fullmatch(name) or not isinstance(document, dict):
            return None
        own = {key: document[key] for key in FREE_KEYS if key in document}
        rest = {key: value for key, value in document.items() if key not in FREE_KEYS}
        shape = json.dumps(rest, sort_keys=True, separators=(",", ":"))
        if shape not in self._shapes:
            self._remember(shape, name, rest)
        template = self._shapes[shape]
        if template is None:
            return None
        try:
            spec = _instance(template, name, own, self.config, self._values)
        except Exception:  # any doubt: the full path decides, with its messages
            return None
        given = frozenset(spec.__pydantic_fields_set__)
        object.__setattr__(spec, "__pydantic_fields_set__", self._fields.setdefault(given, set(given)))
        self.fast += 1
        return spec

    def _remember(self, shape: str, name: str, rest: dict[str, Any]) -> None:
        if len(self._shapes) >= SHAPES_KEPT:
            del self._shapes[next(iter(self._shapes))]
        entry = json.dumps({"version": 0, "spec": rest})
        try:
            spec, _ = judge(self.config, name, entry)
        except Exception:
            spec = None
        self._shapes[shape] = pristine(spec) if spec is not None else None


def _instance(template: JobSpec, name: str, own: dict[str, Any], config: Config, values: ValueCache) -> JobSpec:
    """The spec of job ``name`` of ``template``'s shape with its own ``start``/``end``: each validated by the
    model's field validator (in the job's time zone), then the trigger built (end before start is refused)."""
    update: dict[str, Any] = {"name": name}
    if config.settings.alerts is not None:
        update["alert_rules"] = effective_rules(config.settings.alerts, name, template.tags, template.alerts)
    for key, value in own.items():
        update[key] = values.validated(template, key, value)
    spec = template.model_copy(update=update)
    spec.trigger()
    return spec
