"""Jobs for the run-output tests: they write to stdout and stderr, warn, log, and wait for a gate file."""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import click


def chatty(ctx: Any) -> str:
    """Write one line each way a job writes: print, stderr, a warning, the run's logger, a library's logger."""
    print("printed line")
    sys.stderr.write("stderr line\n")
    warnings.warn("careful now", UserWarning, stacklevel=1)
    ctx.logger.info("logged by %s", ctx.run_id)
    logging.getLogger("some.library").warning("a library warns")
    return "done"


def numbered(ctx: Any, count: int) -> None:
    """Print ``count`` numbered lines."""
    for number in range(count):
        print(f"line {number:05d}")


def chatty_failure(ctx: Any) -> None:
    """Print, then fail."""
    print("about to fail")
    raise ValueError("the data is wrong")


def gated(ctx: Any, gate: str) -> None:
    """Print a line, wait until the ``gate`` file exists, print another."""
    print("before the gate", flush=True)
    ctx.logger.info("waiting at the gate")
    deadline = time.monotonic() + 60
    while not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    print("after the gate")


def quiet() -> None:
    """Do nothing."""


def flood() -> None:
    """Print short lines as fast as it can, forever."""
    while True:
        print("x" * 10)


def binary(ctx: Any) -> None:
    """Write the ways code writes bytes or asks for stream features: click.echo of text and of bytes,
    ``sys.stdout.buffer`` (a character split across two writes), ``reconfigure`` and ``line_buffering``."""
    click.echo("click text")
    click.echo(b"click bytes")
    sys.stdout.buffer.write(b"caf\xc3")
    sys.stdout.buffer.write(b"\xa9 bytes\n")
    sys.stdout.buffer.flush()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    print(f"line buffering: {sys.stdout.line_buffering}")  # type: ignore[union-attr]
