"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["config_option", "connection_options", "json_option", "log_options", "metrics_options", "timeout_option"]

F = TypeVar("F", bound=Callable[..., Any])


def config_option(function: F) -> F:
    """``-c/--config FILE``; default lookup: $BEATD_CONFIG, ./config/beatd.yaml, /etc/beatd/beatd.yaml."""
    return click.option(
        "-c",
        "--config",
        "config_path",
        metavar="FILE",
        help="Config file (default: $BEATD_CONFIG, ./config/beatd.yaml, /etc/beatd/beatd.yaml).",
    )(function)


def json_option(function: F) -> F:
    """``--json``: machine-readable output."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(function)


def log_options(function: F) -> F:
    """``--log-level`` and ``--log-format``."""
    function = click.option(
        "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Log line format."
    )(function)
    return click.option(
        "--log-level",
        type=click.Choice(["debug", "info", "warning", "error"]),
        default="info",
        show_default=True,
        help="Least severe level logged.",
    )(function)


def metrics_options(function: F) -> F:
    """``--metrics-port`` and ``--metrics-host``: serve /metrics, /healthz and /readyz."""
    function = click.option(
        "--metrics-host", default="127.0.0.1", show_default=True, help="Address the metrics endpoint listens on."
    )(function)
    return click.option(
        "--metrics-port", type=click.IntRange(1, 65535), help="Serve Prometheus /metrics, /healthz and /readyz here."
    )(function)


def connection_options(function: F) -> F:
    """``-c``, ``--redis-url`` and ``--namespace``: what a read-only command needs (see Runtime.connection)."""
    function = click.option(
        "--namespace", metavar="NAME", help="Namespace to read (overrides the file's; default: the file's, else beatd)."
    )(function)
    function = click.option(
        "--redis-url",
        metavar="URL",
        help="Redis to read (overrides the file's; works without a file, or with one whose jobs are broken).",
    )(function)
    return config_option(function)


def timeout_option(function: F) -> F:
    """``--timeout SECONDS``: how long ``--wait`` waits (default: until every fire has ended)."""
    return click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        metavar="SECONDS",
        help="With --wait: stop waiting after this long, exit 1 (the fires carry on).",
    )(function)
