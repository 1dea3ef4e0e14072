"""Before a worker serves a config (at start and on reload): every ``call`` target of the jobs on its queues
must import, or the worker refuses the config with a located problem per job.

Every target is first imported in a throwaway child process (started by the same fork server as the job
children), one after another, within one time budget for the whole check (``worker.target_check_timeout``):
an import that ends the child, or is still running when the budget is spent, is blamed on its target (the
rest are checked in another child); the targets not reached by then are reported as not checked. While it
waits, the check calls back (``waiting``) so the caller can feed the systemd watchdog and say it must stop.

- **process isolation**: that is the whole check. The worker itself never imports job code, so each check
  (and each run in a fresh child after a reload) sees the code on disk now.
- **thread isolation**: the targets that passed are then imported in the worker itself, where the jobs run
  (in its main thread: a module that installs signal handlers at import replaces the worker's). Python
  keeps a module once imported, so a reload cannot load new code; :class:`CodeWatch` names the job modules
  whose files changed since the worker imported them, so the reload can say that those changes need a
  restart.

The check of a target is not the check of a config, so a failure to run the check at all (no process to
import in) raises :class:`CheckError` instead of blaming the targets.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from beatd.config import Config, Isolation
from beatd.errors import BeatdError, Problem
from beatd.targets import TargetError, check_targets, resolve_call
from beatd.worker.lifeline import FORK_SERVER, enter_child, stop_child
from beatd.worker.registry import Setup

__all__ = ["CheckError", "CheckStopped", "CodeWatch", "TargetGate", "served_calls", "unimportable"]

log = logging.getLogger("beatd.worker")

POLL = 0.5
"""How often (s) the check calls ``waiting`` while a child imports (well under any watchdog interval)."""


class CheckError(BeatdError):
    """The target check could not be run (its child process did not start): no target is to blame."""


class CheckStopped(BeatdError):
    """``waiting`` asked the check to stop (the worker is stopping) before it was done."""


def served_calls(config: Config, queues: Iterable[str]) -> dict[str, str]:
    """``{job: call target}`` of every callable job of ``config`` on ``queues`` (enabled or not: a disabled job
    can still be triggered by hand)."""
    served = set(queues)
    return {name: spec.call for name, spec in config.jobs.items() if spec.call is not None and spec.queue in served}


def _go_on() -> bool:
    return False


@dataclass
class TargetGate:
    """What a worker does with jobs whose target cannot be imported, at start and on each reload: refuse the
    config, or (``allow_missing``) warn once per job and target and serve the rest."""

    isolation: Isolation
    allow_missing: bool = False
    watch: CodeWatch | None = None
    warned: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def of(cls, isolation: Isolation, allow_missing: bool) -> TargetGate:
        """The gate of a worker running callables with ``isolation``."""
        return cls(isolation, allow_missing, CodeWatch() if isolation == "thread" else None)

    def refused(self, setup: Setup, waiting: Callable[[], bool] = _go_on) -> list[Problem]:
        """The problems that make ``setup``'s config unusable for a worker on its queues (none with
        ``allow_missing``: each job not yet warned about is logged as a warning instead). Checked within the
        config's ``worker.target_check_timeout``; raise CheckError or CheckStopped (see :func:`unimportable`)."""
        budget = setup.config.settings.worker.target_check_timeout.total_seconds()
        problems = unimportable(setup, self.isolation, budget, self.watch, waiting)
        if not self.allow_missing:
            return list(problems.values())
        for job, problem in problems.items():
            key = (job, setup.config.jobs[job].call or "")
            if key not in self.warned:
                self.warned.add(key)
                log.warning("%s (--allow-missing: its runs fail until it can be imported)", problem.as_warning())
        return []


def unimportable(
    setup: Setup,
    isolation: Isolation,
    budget: float,
    watch: CodeWatch | None = None,
    waiting: Callable[[], bool] = _go_on,
) -> dict[str, Problem]:
    """``{job: Problem}`` for each job on ``setup``'s queues whose target cannot be imported within ``budget``
    seconds for them all, located at its ``call:`` value (see the module). ``waiting`` is called about every
    :data:`POLL` seconds while a child imports; when it returns True the check raises CheckStopped. Raise
    CheckError when no child to import in can be started. ``watch`` (thread isolation) explains a target
    missing from a module whose file changed since it was imported."""
    config = setup.config
    calls = served_calls(config, setup.queues)
    errors = _check_in_children(calls, setup.pythonpath, budget, waiting)
    problems = {job: config.problem(job, "call", error) for job, error in errors.items()}
    if isolation == "thread":
        problems |= check_targets(config, [job for job in calls if job not in errors])
        if watch is not None:
            watch.note(calls.values())
            changed = set(watch.changed())
            for job, problem in problems.items():
                if calls[job].partition(":")[0] in changed:
                    problems[job] = config.problem(job, "call", (
                        f"{problem.message}; its file changed since the worker imported it, and under thread "
                        "isolation code changes need a restart"
                    ))  # fmt: skip
    return {job: problems[job] for job in calls if job in problems}


class _Wait(Enum):
    """What waiting for a check child's next message gave instead of one."""

    TIMED_OUT = "the budget is spent"
    STOPPED = "waiting() said stop"
    DIED = "the child closed its end"


def _check_in_children(
    calls: dict[str, str], pythonpath: list[str], budget: float, waiting: Callable[[], bool]
) -> dict[str, str]:
    """``{job: why}`` for each target that does not import in a fresh child, all within ``budget`` seconds;
    a target whose import ends the child is blamed and the rest are checked in another child."""
    errors: dict[str, str] = {}
    left = list(calls.items())
    deadline = time.monotonic() + budget
    while left:
        first = len(left) == len(calls)
        process, connection = _start([target for _, target in left], pythonpath)
        try:
            answer = _next_answer(connection, deadline, waiting)
            if answer is _Wait.STOPPED:
                raise CheckStopped("stopped while checking the call targets")
            if answer is _Wait.TIMED_OUT and not first:
                break  # the budget went on earlier imports: the rest are not checked
            if answer != "ready":
                if answer is _Wait.TIMED_OUT:
                    raise CheckError(f"the process importing job code did not start within {budget:g}s")
                code = stop_child(process, 0.5)
                raise CheckError(f"the process importing job code ended before it started (exit code {code})")
            while left:
                answer = _next_answer(connection, deadline, waiting)
                if answer is _Wait.STOPPED:
                    raise CheckStopped("stopped while checking the call targets")
                job, target = left.pop(0)
                if answer is _Wait.TIMED_OUT:
                    errors[job] = (
                        f"cannot import {target!r}: importing it had not finished when the check's {budget:g}s were up"
                    )
                    break
                if answer is _Wait.DIED:
                    code = stop_child(process, 0.5)
                    errors[job] = f"cannot import {target!r}: importing it ended the process (exit code {code})"
                    break
                if answer is not None:
                    errors[job] = str(answer)
        finally:
            connection.close()
            stop_child(process, 0.5)
    return errors | {job: f"{target!r} not checked (time budget spent)" for job, target in left}


def _start(targets: list[str], pythonpath: list[str]) -> tuple[Any, Connection]:
    """A started check child importing ``targets`` and the end of the pipe it answers on; CheckError if the
    pipe or the process cannot be made."""
    try:
        parent, child = FORK_SERVER.Pipe(duplex=False)
    except OSError as error:
        raise CheckError(f"the process importing job code could not start: {error}") from error
    process = FORK_SERVER.Process(target=_probe, args=(child, targets, pythonpath), daemon=True, name="beatd-check")
    try:
        process.start()
    except OSError as error:
        parent.close()
        raise CheckError(f"the process importing job code could not start: {error}") from error
    finally:
        child.close()
    return process, parent


def _next_answer(connection: Connection, deadline: float, waiting: Callable[[], bool]) -> object:
    """The child's next message, or why there is none (see :class:`_Wait`)."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return _Wait.TIMED_OUT
        if waiting():
            return _Wait.STOPPED
        try:
            if connection.poll(min(POLL, remaining)):
                return connection.recv()
        except (EOFError, OSError):
            return _Wait.DIED


def _probe(connection: Connection, targets: list[str], pythonpath: list[str]) -> None:
    """In the check's child: say it runs, then import each target in turn and send None or why it cannot be
    imported."""
    enter_child()
    connection.send("ready")
    for target in targets:
        try:
            resolve_call(target, [Path(entry) for entry in pythonpath])
            answer: str | None = None
        except TargetError as error:
            answer = str(error)
        except BaseException as error:  # anything else is a bug of ours, but it must not end the check
            answer = f"cannot import {target!r}: {type(error).__name__}: {error}"
        connection.send(answer)
    connection.close()


@dataclass
class CodeWatch:
    """Thread isolation: the modification time of each job module's file when the worker first saw it
    imported, to name the modules whose files changed since (their new code runs only after a restart)."""

    seen: dict[str, tuple[str, int]] = field(default_factory=dict)

    def note(self, targets: Iterable[str]) -> None:
        """Remember the file and modification time of each imported module of ``targets`` not seen before."""
        for target in targets:
            name = target.partition(":")[0]
            module: Any = sys.modules.get(name)
            path = getattr(module, "__file__", None)
            if name in self.seen or not isinstance(path, str):
                continue
            with contextlib.suppress(OSError):
                self.seen[name] = (path, Path(path).stat().st_mtime_ns)

    def changed(self) -> list[str]:
        """The modules noted whose file changed (or went away) since, sorted."""
        found = []
        for name, (path, mtime) in self.seen.items():
            try:
                now = Path(path).stat().st_mtime_ns
            except OSError:
                now = -1
            if now != mtime:
                found.append(name)
        return sorted(found)
