"""What every command takes from the outside world, and the errors that mean "exit 2"."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import click
import pydantic

from beatd.clock import Clock, SystemClock
from beatd.collector import keep_out_of_collections
from beatd.config import (
    Config,
    ConfigFile,
    RedisSettings,
    find_config,
    load_config,
    load_connection,
    load_namespace,
    load_shards,
)
from beatd.daemon import configure_logging
from beatd.errors import ConfigError, Problem, UsageProblem
from beatd.metrics import Metrics

__all__ = ["Runtime", "UsageProblem"]

log = logging.getLogger("beatd")


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

    def connection(
        self, config_path: str | None, redis_url: str | None = None, namespace: str | None = None
    ) -> tuple[Config, list[Problem]]:
        """What a read-only command needs: the Redis settings and the namespace; the jobs too when the file
        has no problem. Else a config without jobs, and the problems (each printed to stderr as a warning).

        The connection comes from the file when it parses far enough (``redis`` and ``namespace`` valid), else
        from ``--redis-url`` and ``--namespace`` alone; those two override the file's either way. Raises
        ConfigError (exit 2) only when neither gives a connection."""
        try:
            path = find_config(config_path, self.environ, self.cwd)
        except ConfigError as error:  # no file named and none found: --redis-url alone is no reason to warn
            return self._bare(error, redis_url, namespace, None, warn=False), error.problems
        try:
            return _overridden(load_config(path, self.environ), redis_url, namespace), []
        except ConfigError as error:
            problems = error.problems
        try:
            config = load_connection(path, self.environ)
        except ConfigError:
            return self._bare(ConfigError(problems), redis_url, namespace, path), problems
        count = len(problems)
        _warn(
            f"{path} has {count} problem{'s' if count != 1 else ''} (`beatd check` lists them); reading with "
            "only its Redis connection and namespace",
            problems,
        )
        return _overridden(config, redis_url, namespace), problems

    def _bare(
        self, error: ConfigError, redis_url: str | None, namespace: str | None, path: Path | None, *, warn: bool = True
    ) -> Config:
        """The connection from ``--redis-url`` and ``--namespace`` alone, when the file gives none (else
        ``error``); the namespace is the file's when ``--namespace`` is not given and the file reads far enough
        to give a valid one."""
        if redis_url is None:
            raise error
        file_namespace = load_namespace(path, self.environ) if path is not None and namespace is None else None
        # The file's shards go with its namespace: the keys of a sharded deployment are all tagged, none plain.
        shards = (load_shards(path, self.environ) or 1) if path is not None and file_namespace is not None else 1
        if warn:
            given = "--redis-url" + (" and --namespace" if namespace else "")
            source = f" and the file's namespace {file_namespace!r}" if file_namespace else ""
            source += f" and shards {shards}" if shards > 1 else ""
            _warn(f"the config file gives no Redis connection; reading with {given}{source}", error.problems)
        settings = ConfigFile() if file_namespace is None else ConfigFile(namespace=file_namespace, shards=shards)
        return _overridden(Config(path=Path("--redis-url"), settings=settings, jobs={}), redis_url, namespace)

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


def _warn(text: str, problems: list[Problem]) -> None:
    """A warning on stderr, then the first few problems behind it."""
    click.echo(f"beatd: warning: {text}", err=True)
    for problem in problems[:5]:
        click.echo(problem.as_warning(), err=True)


def _overridden(config: Config, redis_url: str | None, namespace: str | None) -> Config:
    """``config`` with the file's Redis URL and namespace replaced by the command line's, validated as in a file."""
    if redis_url is None and namespace is None:
        return config
    settings = config.settings
    try:
        if redis_url is not None:  # validated with the file's other Redis settings (cluster: database 0, TCP)
            redis = RedisSettings.model_validate(settings.redis.model_dump(exclude_unset=True) | {"url": redis_url})
            settings = settings.model_copy(update={"redis": redis})
        if namespace is not None:
            settings = settings.model_copy(update={"namespace": ConfigFile(namespace=namespace).namespace})
    except pydantic.ValidationError as error:
        option = "--redis-url" if error.title == "RedisSettings" else "--namespace"
        raise UsageProblem(f"{option}: {error.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    return dataclasses.replace(config, settings=settings)


def _log_warnings(config: Config) -> None:
    """Log each warning of a config a daemon runs with (``beatd check --strict`` would refuse it)."""
    for warning in config.warnings:
        log.warning("config warning: %s", warning)
