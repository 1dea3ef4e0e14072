"""What every command takes from the outside world, and the errors that mean "exit 2"."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from beatd.clock import Clock, SystemClock
from beatd.config import Config, find_config, load_config, load_connection
from beatd.daemon import configure_logging, keep_out_of_collections
from beatd.errors import BeatdError, ConfigError, Problem
from beatd.metrics import Metrics

__all__ = ["Runtime", "UsageProblem"]

log = logging.getLogger("beatd")


class UsageProblem(BeatdError):
    """The user asked for something that does not exist (an unknown job); exit 2."""


@dataclass
class Runtime:
    """What commands take from the outside world; tests pass their own."""

    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path = field(default_factory=Path.cwd)
    clock: Clock = field(default_factory=SystemClock)

    def __post_init__(self) -> None:
        # Test hook, not a setting: BEATD_CLOCK_SKEW=SECONDS shifts this process's wall clock, so tests can run
        # a real daemon on a host whose clock is wrong (the beat must go by Redis's clock instead).
        skew = self.environ.get("BEATD_CLOCK_SKEW")
        if skew and isinstance(self.clock, SystemClock):
            self.clock = SystemClock(skew=float(skew))

    def load(self, config_path: str | None) -> Config:
        """Find and load the config named by ``-c`` or the default lookup."""
        return load_config(find_config(config_path, self.environ, self.cwd), self.environ)

    def load_for_status(self, config_path: str | None) -> tuple[Config, list[Problem]]:
        """The config, or, when its jobs are broken, just the connection settings and the problems."""
        path = find_config(config_path, self.environ, self.cwd)
        try:
            return load_config(path, self.environ), []
        except ConfigError as error:
            return load_connection(path, self.environ), error.problems

    def reload(self, path: Path, metrics: Metrics) -> tuple[Config | None, list[str]]:
        """The config at ``path`` again, for SIGHUP; or None and the problems, each logged as rejected and the
        failure counted. Whatever goes wrong, the running config stays."""
        try:
            config = load_config(path, self.environ)
        except ConfigError as error:
            problems = [str(problem) for problem in error.problems]
        except Exception as error:
            log.exception("reload failed")
            problems = [f"{path}: {type(error).__name__}: {error}"]
        else:
            _log_warnings(config)
            return config, []
        return None, self.reject(problems, metrics)

    def reject(self, problems: list[str], metrics: Metrics) -> list[str]:
        """A reload failed for ``problems`` (the running config stays): log each as rejected, count the
        failure, and return them (for the ``reload-failed`` audit record)."""
        metrics.reload_failures.inc()
        for problem in problems:
            log.error("reload rejected: %s", problem)
        return problems

    def start_daemon(self, config_path: str | None, log_level: str, log_format: str) -> tuple[Path, Config]:
        """What every daemon does first: set up logging, find and load the config, keep it out of collections."""
        configure_logging(log_level, log_format)
        path = find_config(config_path, self.environ, self.cwd)
        config = load_config(path, self.environ)
        _log_warnings(config)
        keep_out_of_collections()
        return path, config


def _log_warnings(config: Config) -> None:
    """Log each warning of a config a daemon runs with (``beatd check --strict`` would refuse it)."""
    for warning in config.warnings:
        log.warning("config warning: %s", warning)
