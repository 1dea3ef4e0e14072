"""What a reload changes: the jobs, and the settings that differ by dotted name and which a daemon can apply.

Pure: compares two validated configs. Names only, never values (a Redis URL or signing key is a secret).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel

from beatd.config.compact import JobView
from beatd.config.model import ConfigFile

__all__ = ["BEAT_APPLIES", "Reload", "SettingsChange", "changed_settings", "job_changes", "settings_change"]

BEAT_APPLIES = ("leader.lease", "security.signing_key", "celery", "alerts")
"""Settings the beat applies on reload (``late_after`` follows the lease; the next Celery push goes to the new
broker database and default queue; alerting reads the new sinks and rules at its next step); jobs and their
defaults, time zone, includes and pythonpath are applied as the job diff."""

JOB_SETTINGS = ("defaults", "include", "jobs", "pythonpath", "timezone")
"""Top-level keys whose effect is the jobs themselves: applied as the job diff, not listed as settings."""


@dataclass(frozen=True)
class SettingsChange:
    """The settings a reload changed: ``applied`` now, ``needs_restart`` only after a restart, ``ignored``
    because this daemon does not use them."""

    applied: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Reload:
    """What a reload did: one line per changed job, and the changed settings by what became of them."""

    jobs: list[str] = field(default_factory=list)
    settings: SettingsChange = field(default_factory=SettingsChange)


def changed_settings(old: BaseModel, new: BaseModel, prefix: str = "") -> list[str]:
    """Dotted names of the leaves that differ between two instances of one settings model, sorted."""
    found: list[str] = []
    for name in type(old).model_fields:
        before, after = getattr(old, name), getattr(new, name)
        if before == after:
            continue
        if isinstance(before, BaseModel) and isinstance(after, BaseModel) and type(before) is type(after):
            found.extend(changed_settings(before, after, f"{prefix}{name}."))
        else:
            found.append(f"{prefix}{name}")
    return sorted(found)


def settings_change(
    old: ConfigFile, new: ConfigFile, applies: tuple[str, ...], unused: tuple[str, ...] = ()
) -> SettingsChange:
    """Sort what changed between ``old`` and ``new`` by what a daemon that ``applies`` some settings (and does
    not use the ``unused`` ones, by prefix) can do with each."""
    change = SettingsChange()
    for name in changed_settings(old, new):
        if name.split(".")[0] in JOB_SETTINGS:
            continue
        if name.startswith(applies):
            change.applied.append(name)
        elif name.startswith(unused):
            change.ignored.append(name)
        else:
            change.needs_restart.append(name)
    return change


def job_changes(old: Mapping[str, JobView], new: Mapping[str, JobView]) -> tuple[list[str], list[str]]:
    """One line per removed, added or changed job, and the jobs that start from now (added, or whose schedule
    changed)."""
    lines = [f"removed {name}" for name in old if name not in new]
    restart: list[str] = []
    for name, spec in new.items():
        before = old.get(name)
        if before is None:
            lines.append(f"added {name}: {spec.schedule_text}")
            restart.append(name)
        elif before.schedule_digest != spec.schedule_digest:
            lines.append(f"changed {name}: {before.schedule_text} -> {spec.schedule_text}, from now on")
            restart.append(name)
        elif before.digest != spec.digest:
            lines.append(f"changed {name}: target or policies (schedule unchanged)")
    return lines, restart
