"""beatd: a scheduler-first periodic job daemon.

Jobs are declared in YAML (:mod:`beatd.config`); triggers say when they are due (:mod:`beatd.triggers`).
"""

from beatd.errors import BeatdError, ConfigError, Problem, ScheduleError

__all__ = ["BeatdError", "ConfigError", "Problem", "ScheduleError", "__version__"]

__version__ = "0.1.0"
