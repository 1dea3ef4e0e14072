"""Code that runs inside a job's child process: receive a task, run the callable, send back the outcome.

Kept small and free of Redis: the parent (the worker) owns every side effect but the job's own.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import threading
import traceback
import warnings
from collections.abc import Callable
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from beatd.records import cap_result
from beatd.targets import TargetError, resolve_call
from beatd.worker.context import CONTEXT_PARAMETERS, RunContext
from beatd.worker.lifeline import enter_child
from beatd.worker.output import Batch, Sink, capturing, install

__all__ = ["call_target", "serve", "takes_context"]

TRACEBACK_LIMIT = 4000
"""Characters of a failing job's traceback kept (the end of it)."""


def serve(connection: Connection) -> None:
    """Child main loop: one task at a time until the parent closes the pipe or sends None.

    First the child ties its life to the worker's (see :mod:`beatd.worker.lifeline`) and ignores SIGINT: a
    Ctrl-C in a terminal reaches the whole foreground process group, and it is the worker that decides
    whether a run goes on (first Ctrl-C: it drains) or stops (second: it stops the child itself).

    What a task writes (stdout, stderr, log records) is sent to the parent while it runs, in batches (see
    :class:`beatd.worker.output.Batch`), as ``{"output": [[stream, text], ...]}`` messages before the task's
    reply."""
    enter_child()
    install()
    sending = threading.Lock()  # the batch's thread and this one share the pipe

    def send(message: dict[str, Any]) -> None:
        with sending:
            connection.send(message)

    batch = Batch(lambda pieces: send({"output": pieces}))
    batch.start()
    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        root = logging.getLogger()
        if "log_level" in task and root.level != task["log_level"]:
            root.setLevel(int(task["log_level"]))
        # Each task under its own warning filters: a warning shown by one run is shown again by the next (Python
        # shows one once per process), and a job's filters do not outlive its run. Safe here only: the child
        # runs one task at a time; runner threads cannot do this for each other.
        with warnings.catch_warnings():
            reply = call_target(task, batch)
        batch.flush()  # all of the run's output before its reply
        send(reply)


def call_target(task: dict[str, Any], output: Sink | None = None) -> dict[str, Any]:
    """Run one task (target, args, kwargs, pythonpath, context) and describe how it ended; what it writes and
    logs in this thread goes to ``output`` (see :mod:`beatd.worker.output`)."""
    with capturing(output) if output is not None else contextlib.nullcontext():
        return _call(task)


def _call(task: dict[str, Any]) -> dict[str, Any]:
    try:
        pythonpath = tuple(task.get("pythonpath", ()))
        function = _resolve(task["target"], pythonpath)
        if "module" in task and getattr(function, "__module__", None) != task["module"]:
            defined = getattr(function, "__module__", None)
            raise TargetError(f"{task['target']!r} is defined in {defined!r}, not in {task['module']!r}")
        args = list(task.get("args", []))
        if takes_context(task["target"], pythonpath):
            args.insert(0, _context(task["context"]))
        value = function(*args, **task.get("kwargs", {}))
    except TargetError as error:
        return {"status": "failed", "error": {"type": "TargetError", "message": str(error), "traceback": ""}}
    except BaseException as error:  # the job's own failure, whatever it is
        text = "".join(traceback.format_exception(error))
        return {
            "status": "failed",
            "error": {"type": type(error).__name__, "message": str(error), "traceback": text[-TRACEBACK_LIMIT:]},
        }
    result, truncated = cap_result(value)
    return {"status": "succeeded", "result": result, "result_truncated": truncated}


@functools.lru_cache(maxsize=1024)
def _resolve(target: str, pythonpath: tuple[str, ...]) -> Callable[..., Any]:
    """The callable of ``target``, remembered (imports are anyway)."""
    return resolve_call(target, [Path(entry) for entry in pythonpath])


@functools.lru_cache(maxsize=1024)
def takes_context(target: str, pythonpath: tuple[str, ...]) -> bool:
    """Whether the callable of ``target`` takes a RunContext first; raise TargetError when it cannot be imported."""
    function = _resolve(target, pythonpath)
    try:
        parameters = list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return False
    return bool(parameters) and parameters[0] in CONTEXT_PARAMETERS


def _context(raw: dict[str, Any]) -> RunContext:
    zone = ZoneInfo(raw["timezone"])
    scheduled = datetime.fromisoformat(raw["scheduled_at"]).astimezone(zone)
    previous = datetime.fromisoformat(raw["previous_at"]).astimezone(zone) if raw.get("previous_at") else None
    return RunContext(
        run_id=raw["run_id"],
        fire_id=raw["fire_id"],
        job=raw["job"],
        scheduled_at=scheduled,
        data_interval=(previous, scheduled),
        attempt=int(raw["attempt"]),
        trigger=raw["trigger"],
        logger=logging.getLogger(f"beatd.job.{raw['job']}"),
    )
