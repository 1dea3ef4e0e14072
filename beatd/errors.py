"""The one exception hierarchy of beatd.

Every error beatd raises on purpose derives from :class:`BeatdError`. A user's mistake in the config is a
:class:`ConfigError` carrying every :class:`Problem` found, each located as ``FILE:LINE:COL: PATH: message``,
so the CLI can print them all at once and exit 2 without a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BeatdError",
    "ConfigError",
    "OverridesRefused",
    "Problem",
    "RunFailed",
    "ScheduleError",
    "UnknownJob",
    "UsageProblem",
]


class BeatdError(Exception):
    """Root of every error beatd raises deliberately."""


class ScheduleError(BeatdError, ValueError):
    """A schedule (cron expression, duration, instant, time zone) is not valid; the message says why."""


@dataclass(frozen=True, order=True)
class Problem:
    """One located problem in a config file.

    ``line`` and ``column`` are 1-based; both are 0 when the problem has no position (a missing file).
    ``path`` is the dotted key path in the config (``jobs.daily_signups.cron``), empty for a whole file.
    """

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        return self._text("")

    def as_warning(self) -> str:
        """The problem as a warning: ``FILE:LINE:COL: warning: PATH: message``."""
        return self._text("warning: ")

    def _text(self, label: str) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where}: {label}{self.path}: {self.message}" if self.path else f"{where}: {label}{self.message}"


class ConfigError(BeatdError):
    """The config was rejected; ``problems`` lists every problem found, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(problem) for problem in self.problems))


class UsageProblem(BeatdError):
    """The caller asked for something that does not exist or is not allowed (an unknown job, a bad option);
    the CLI prints it and exits 2."""


class UnknownJob(UsageProblem, LookupError):
    """A job, fire or run the caller named does not exist (the CLI exits 2)."""


class OverridesRefused(UsageProblem, ValueError):
    """A trigger's ``args``/``kwargs`` were refused before anything was enqueued: the job does not accept
    overrides, they are not JSON, too large, or do not match the job's schema. ``job`` names the job; the
    message says what was expected."""

    def __init__(self, job: str, message: str) -> None:
        self.job = job
        super().__init__(f"{job}: {message}")


class RunFailed(BeatdError):
    """A fire ended without succeeding (``FireHandle.result``). ``status`` is how it ended (``dead``,
    ``skipped``, ``expired``, ``cancelled``, ...); ``error_type``, ``error_message`` and ``traceback`` come from
    the last attempt's error ('' when it had none, e.g. a fire that never ran); ``record`` is the final RunRecord
    (a :class:`beatd.records.RunRecord`)."""

    def __init__(self, fire_id: str, status: str, error_type: str, error_message: str, traceback: str,
                 reason: str, record: object) -> None:  # fmt: skip
        self.fire_id, self.status, self.reason, self.record = fire_id, status, reason, record
        self.error_type, self.error_message, self.traceback = error_type, error_message, traceback
        what = f"{error_type}: {error_message}" if error_type else reason or status
        super().__init__(f"fire {fire_id} ended {status}: {what}")
