"""Jobs for the worker tests: each does one thing a real job might (hang, fail, crash, report its context)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def noop() -> None:
    """Do nothing."""


def hang(seconds: float = 3600) -> None:
    """Sleep far past any test's timeout."""
    time.sleep(seconds)


def fail(message: str = "boom") -> None:
    """Raise."""
    raise RuntimeError(message)


def crash() -> None:
    """Kill the process running the job, as a segfault would."""
    os._exit(17)


def slow_first_attempt(ctx: Any, seconds: float, log: str) -> str:
    """Sleep on attempt 1 (to be killed mid-run); succeed at once on later attempts."""
    _append(log, {"attempt": ctx.attempt, "run_id": ctx.run_id, "event": "start"})
    if ctx.attempt == 1:
        time.sleep(seconds)
    return f"attempt {ctx.attempt}"


def fail_first_attempt(ctx: Any, log: str) -> dict[str, Any]:
    """Fail on attempt 1, succeed later; report the context either way."""
    seen = _context(ctx)
    _append(log, seen)
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return seen


def report_context(ctx: Any, log: str) -> dict[str, Any]:
    """Write the run context to the log file and return it."""
    seen = _context(ctx)
    _append(log, seen)
    return seen


def sleep_and_log(ctx: Any, seconds: float, log: str) -> None:
    """Log start and end around a sleep, to observe overlap."""
    _append(log, {"run_id": ctx.run_id, "event": "start", "t": time.time()})
    time.sleep(seconds)
    _append(log, {"run_id": ctx.run_id, "event": "end", "t": time.time()})


def _context(ctx: Any) -> dict[str, Any]:
    previous, current = ctx.data_interval
    return {
        "run_id": ctx.run_id,
        "attempt": ctx.attempt,
        "trigger": ctx.trigger,
        "scheduled_at": ctx.scheduled_at.isoformat(),
        "previous_at": previous.isoformat() if previous else None,
        "interval_end": current.isoformat(),
    }


def _append(path: str, entry: dict[str, Any]) -> None:
    with Path(path).open("a") as handle:
        handle.write(json.dumps(entry) + "\n")


def write_pids_and_hang(log: str, seconds: float = 60) -> None:
    """Write this process's pid and its parent's (the fork server) to ``log``, then sleep."""
    _append(log, {"pid": os.getpid(), "parent": os.getppid()})
    time.sleep(seconds)


def sleep_unless_manual(ctx: Any, seconds: float, log: str) -> None:
    """Log the start; sleep ``seconds`` unless the fire was triggered by hand (a quick run to replace a slow one)."""
    _append(log, {"run_id": ctx.run_id, "event": "start", "trigger": ctx.trigger})
    if ctx.trigger != "manual":
        time.sleep(seconds)


def long_text(size: int = 300) -> str:
    """Return a text longer than any table column."""
    return "word " * (size // 5)


def add(a: int, b: int = 0) -> int:
    """Return the sum of its arguments (the client tests pass them as overrides)."""
    return a + b


def fail_while(flag: str) -> str:
    """Fail while the file ``flag`` exists, else succeed."""
    if Path(flag).exists():
        raise RuntimeError(f"failing while {flag} exists")
    return "ok"
