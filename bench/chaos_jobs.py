"""The jobs of the chaos soak (``bench/chaos.py``): each run appends lines to a ledger file and fsyncs them.

A ledger line is one JSON object: ``{"event": "start"|"end", "job", "fire_id", "attempt", "run_id", "pid", "ppid",
"t"}`` (``t``: ``time.time()``). Lines are short and written with one ``write`` on an ``O_APPEND`` descriptor,
so lines of concurrent runs never interleave; each is fsync'd before the job goes on, so what a kill -9 leaves
in the file is what really ran.

As a callable (``call: chaos_jobs:record``) the run context gives the fire id and the attempt. As a command
(``python bench/chaos_jobs.py LEDGER JOB SLEEP``) beatd passes no run context, so the line has the pid only and
``fire_id`` null.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from typing import Any

__all__ = ["append", "record"]


def append(ledger: str, event: str, job: str, fire_id: str | None, attempt: int | None, run_id: str | None) -> None:
    """Append one fsync'd line to ``ledger``."""
    line = json.dumps(
        {
            "event": event,
            "job": job,
            "fire_id": fire_id,
            "attempt": attempt,
            "run_id": run_id,
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "t": round(time.time(), 6),
        },
        separators=(",", ":"),
    )
    descriptor = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, (line + "\n").encode())
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fails(fire_id: str, fail_one_in: int) -> bool:
    """Whether the first attempt of ``fire_id`` fails: a stable one in ``fail_one_in`` fires (0: never)."""
    if fail_one_in <= 0:
        return False
    return int(hashlib.sha256(fire_id.encode()).hexdigest()[:8], 16) % fail_one_in == 0


def record(ctx: Any, ledger: str, sleep: float = 0.0, fail_one_in: int = 0) -> dict[str, Any]:
    """Write a start line, sleep ``sleep`` s, write an end line; the first attempt of one fire in
    ``fail_one_in`` raises after its start line (so the job's ``retries`` run it again)."""
    append(ledger, "start", ctx.job, ctx.fire_id, ctx.attempt, ctx.run_id)
    if ctx.attempt == 1 and _fails(ctx.fire_id, fail_one_in):
        raise RuntimeError(f"chaos: first attempt of {ctx.fire_id} fails on purpose")
    if sleep:
        time.sleep(sleep)
    append(ledger, "end", ctx.job, ctx.fire_id, ctx.attempt, ctx.run_id)
    return {"pid": os.getpid()}


if __name__ == "__main__":  # the command job: python chaos_jobs.py LEDGER JOB SLEEP
    path, name, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    append(path, "start", name, None, None, None)
    time.sleep(seconds)
    append(path, "end", name, None, None, None)
